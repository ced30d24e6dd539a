"""Where code runs: a small Sandbox protocol and its backends (local, bwrap, docker)."""

from sandboxes.base import ExecResult, Limits, Sandbox, SandboxError, SandboxSpec

__all__ = ["ExecResult", "Limits", "Sandbox", "SandboxError", "SandboxSpec"]
