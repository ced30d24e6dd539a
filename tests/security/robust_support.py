"""Helpers for the robustness attacks in ``tests/security`` (no tests here): the CLI as a subprocess, a watcher of a
process's peak memory, and the live descendants of a process.

Why a subprocess: the attacks are about what the user sees (exit code, one line on stderr, the run directory), and a
limit that only holds inside one Python process proves nothing about the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.support.example import ROOT

__all__ = ["ROOT", "PeakMemory", "alive", "cli_env", "descendants", "run_cli", "start_cli"]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment for a CLI run: this worktree first on the path, no endpoint or key from outside."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("MENDLOOP_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "MENDLOOP_API_KEY"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def start_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [python, "-m", "agent.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
        cwd=ROOT,
        preexec_fn=preexec_fn,
    )


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "agent.cli.main", *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=ROOT,
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    """The ``mendloop: error:`` lines of a run's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("mendloop: error:")]


class PeakMemory:
    """Polls ``/proc/PID/status`` for VmHWM (the peak resident set, which only grows) until the process ends."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        path = Path(f"/proc/{self.pid}/status")
        while True:
            try:
                text = path.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            if "State:\tZ" in text:
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._thread.join(5)
        return self.peak_kb * 1024


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc), zombies excluded."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    """The ``pids`` still running (zombies count as gone)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out
