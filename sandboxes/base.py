"""The Sandbox protocol: the only way mendloop runs code.

Why a protocol and a lazy registry: nodes never know which backend they talk to, and importing the package does not
import the ``docker`` SDK (or anything else a backend needs) until that backend is asked for by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tools.errors import FatalError


class SandboxError(FatalError):
    """The sandbox itself failed (backend missing, daemon gone, image absent): infrastructure, exit 2."""


class ImageUnavailable(SandboxError):
    """Docker answers but cannot provide the image (absent and not pullable): ``auto`` then falls back to bwrap."""

    def __init__(self, message: str, image: str, reason: str) -> None:
        super().__init__(message)
        self.image = image
        self.reason = reason


READ_LIMIT = 64 * 1024 * 1024  # bytes ``Sandbox.get`` reads back at most (a JUnit report, a trace): more is a runaway


@dataclass(frozen=True)
class Limits:
    """Hard limits for everything that runs inside a sandbox. Defaults are safe for untrusted code."""

    timeout: float = 120.0  # seconds per command; the whole process tree is killed at the limit
    memory_mb: int = 2048
    pids: int = 256
    cpus: float = 1.0
    output_bytes: int = 1_000_000  # merged stdout+stderr kept per command; the rest is dropped, not buffered
    network: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # the only host variables passed in
    max_file_bytes: int = 1 << 30  # one file a command writes; the writer is stopped there, the file removed
    max_growth_bytes: int = 4 << 30  # all that commands add to the workspace; the largest new files go first


@dataclass
class ExecResult:
    """The result of one command: merged output (capped) and why it ended."""

    exit_code: int
    output: str
    duration: float = 0.0
    timed_out: bool = False
    oom: bool = False  # killed for exceeding the memory limit
    truncated: bool = False
    limits: list[str] = field(default_factory=list)  # runaway limits hit, one line each (also ending ``output``)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.oom

    def describe(self) -> str:
        """One line for the model and the report: how the command ended."""
        if self.timed_out:
            return f"killed after exceeding the time limit ({self.duration:.0f}s)"
        if self.oom:
            return "killed for exceeding the memory limit"
        if self.limits:
            return f"exit code {self.exit_code}; a sandbox limit was hit (see the end of the output)"
        return f"exit code {self.exit_code}"


@runtime_checkable
class Sandbox(Protocol):
    """A place to run commands against a workspace directory on the host.

    Contract: edits are made to ``root`` on the host; every ``run`` sees the current content of ``root`` (backends
    that keep a copy, like Docker, push the changes before each command). Files that commands write inside the
    workspace are read back with ``get``. ``close`` is idempotent and releases everything (containers included).
    """

    name: str
    root: Path  # the workspace on the host

    def run(
        self, cmd: str | Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> ExecResult: ...

    def put(self, files: Mapping[str, bytes]) -> None: ...

    def get(self, path: str) -> bytes: ...

    def close(self) -> None: ...


@contextmanager
def closed_on_error(sandbox: Sandbox) -> Iterator[None]:
    """Close ``sandbox`` when the block raises: a sandbox that failed to open holds nothing (no container, no
    temporary directory) once the error leaves its constructor."""
    try:
        yield
    except BaseException:
        sandbox.close()
        raise


# name -> "module:Class"; imported only when asked for.
_REGISTRY: dict[str, str] = {
    "local": "sandboxes.local:LocalSandbox",
    "bwrap": "sandboxes.bwrap:BwrapSandbox",
    "docker": "sandboxes.docker:DockerSandbox",
}

KINDS = ("auto", *tuple(_REGISTRY))


def sandbox_class(name: str) -> Any:
    """Return the backend class registered under ``name`` (imports it on first use)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise SandboxError(f"unknown sandbox {name!r}; choose one of {', '.join(KINDS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


@dataclass(frozen=True)
class SandboxSpec:
    """Everything needed to open a sandbox; built from the settings by the agent.

    ``setup`` commands run once when the sandbox opens (Docker bakes them into a derived image keyed by a hash).
    """

    kind: str = "auto"
    image: str = "python:3.12-slim"
    dockerfile: str | None = None
    setup: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
