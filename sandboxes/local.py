"""LocalSandbox: plain subprocesses on the host, no isolation; used only when asked for by name.

Why it still enforces limits: the timeout, the output cap and the minimal environment protect the agent itself
(a hung test, a runaway log, a leaked API key in a test report), which matters even when the code is trusted.
RLIMIT_NPROC is deliberately not set: it counts every process of the host user, not just this command's.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sandboxes._proc import (
    build_env,
    read_workspace_file,
    run_process,
    run_setup,
    to_argv,
    to_exec_result,
    write_workspace_files,
)
from sandboxes.base import ExecResult, Limits, SandboxError, SandboxSpec


def _host_path() -> str:
    """The host PATH with this interpreter's bin dir first, so ``python`` is the one running mendloop.

    (pyenv-style shims need the real HOME, which the sandbox hides; the real binary does not.)
    """
    entries = [str(Path(sys.executable).parent), *os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(e for e in entries if e))


def _rlimits(limits: Limits, timeout: float) -> Callable[[], None]:
    """A preexec hook: address-space and CPU-time limits for the child (only async-signal-safe calls)."""
    memory = limits.memory_mb * 1024 * 1024
    cpu = int(timeout) + 2

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class LocalSandbox:
    """Runs commands in ``root`` on the host with the same timeout/cap/env rules as the real sandboxes."""

    name = "local"

    def __init__(self, root: Path, spec: SandboxSpec) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SandboxError(f"workspace {self.root} is not a directory")
        self.spec = spec
        self.limits = spec.limits
        self._home = Path(tempfile.mkdtemp(prefix="mendloop-home-"))
        self._closed = False
        try:
            run_setup(self, spec.setup)
        except BaseException:
            self.close()
            raise

    def run(
        self, cmd: str | Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> ExecResult:
        if self._closed:
            raise SandboxError("sandbox is closed")
        limit = self.limits.timeout if timeout is None else timeout
        full_env = build_env(_host_path(), str(self._home), self.limits.env, env)
        res = run_process(
            to_argv(cmd),
            cwd=self.root,
            env=full_env,
            timeout=limit,
            output_bytes=self.limits.output_bytes,
            preexec_fn=_rlimits(self.limits, limit),
        )
        return to_exec_result(res, memory_limited=True)

    def put(self, files: Mapping[str, bytes]) -> None:
        write_workspace_files(self.root, files)

    def get(self, path: str) -> bytes:
        return read_workspace_file(self.root, path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        shutil.rmtree(self._home, ignore_errors=True)
