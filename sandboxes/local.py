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
from collections.abc import Callable, Mapping
from pathlib import Path

from sandboxes._proc import HostSandbox, ProcResult, build_env, run_process
from sandboxes.base import Limits


def _host_path() -> str:
    """The host PATH with this interpreter's bin dir first, so ``python`` is the one running mendloop.

    (pyenv-style shims need the real HOME, which the sandbox hides; the real binary does not.)
    """
    entries = [str(Path(sys.executable).parent), *os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(e for e in entries if e))


def _rlimits(limits: Limits, timeout: float) -> Callable[[], None]:
    """A preexec hook: address-space, CPU-time and file-size limits for the child (only async-signal-safe calls)."""
    memory = limits.memory_mb * 1024 * 1024
    cpu = int(timeout) + 2
    fsize = limits.max_file_bytes

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return apply


class LocalSandbox(HostSandbox):
    """Runs commands in ``root`` on the host with the same timeout/cap/env rules as the real sandboxes."""

    name = "local"

    def _open(self) -> None:
        self._home = Path(tempfile.mkdtemp(prefix="mendloop-home-"))

    def _process(
        self, argv: list[str], timeout: float, env: Mapping[str, str] | None, watch: Callable[[], str | None]
    ) -> ProcResult:
        return run_process(
            argv,
            cwd=self.root,
            env=build_env(_host_path(), str(self._home), self.limits.env, env),
            timeout=timeout,
            output_bytes=self.limits.output_bytes,
            preexec_fn=_rlimits(self.limits, timeout),
            watch=watch,
        )

    def _release(self) -> None:
        shutil.rmtree(self._home, ignore_errors=True)
