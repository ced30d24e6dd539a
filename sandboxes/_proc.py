"""What every sandbox backend shares: one capped output buffer, and for host processes one process group, a hard
timeout, a minimal environment and the runaway limits (:mod:`sandboxes._limits`).

Why one chokepoint: every backend that starts a host process (local, bwrap) must kill the whole process tree at
the deadline, must never buffer unbounded output, and must build the same minimal environment; every backend,
docker included, must cap output the same way. Getting that right once, here, is what makes the backends
interchangeable. The process groups of running commands are known here too (:func:`kill_running`), so a batch worker
that must die can take along the commands it runs, each in a session of its own.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sandboxes._limits import WorkspaceGuard, add_notes
from sandboxes.base import READ_LIMIT, ExecResult, SandboxError, SandboxSpec, closed_on_error

__all__ = [
    "BASE_ENV",
    "CappedBuffer",
    "HostSandbox",
    "ProcResult",
    "build_env",
    "kill_running",
    "read_workspace_file",
    "resolve_in_workspace",
    "run_process",
    "run_setup",
    "to_argv",
    "to_exec_result",
    "write_workspace_files",
]

BASE_ENV: dict[str, str] = {"LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
_CHUNK = 65536
_DRAIN_GRACE = 2.0  # seconds to keep reading after the group is dead (a setsid'd escapee may hold the pipe)
_WATCH_EVERY = 0.5  # seconds between two polls of a command's ``watch``
_TIMEOUT = "timeout"

# Process groups of commands running now, so a worker that must die (its batch was killed) can take them along:
# every command runs in a session of its own, out of reach of a kill of the worker's own group.
_RUNNING: set[int] = set()
_RUNNING_LOCK = threading.Lock()


def kill_running() -> None:
    """SIGKILL the process group of every command this process is running (for a worker that is going away)."""
    with _RUNNING_LOCK:
        groups = list(_RUNNING)
    for pgid in groups:
        _killpg(pgid)


class CappedBuffer:
    """Keep the first and the last ``cap // 2`` bytes of a stream and count the rest: memory stays O(cap).

    Why head and tail: a test runner's verdict (the pytest summary) is at the end of its output, the first error at
    the beginning; both matter more than the middle of a flood. Every sandbox backend caps through this one class,
    so the same command keeps the same output whichever backend ran it.
    """

    def __init__(self, cap: int) -> None:
        self.cap = max(cap, 0)
        self._head_cap = self.cap // 2
        self._tail_cap = self.cap - self._head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data or self._tail_cap == 0:
            return
        self.tail += data[-self._tail_cap :]
        if len(self.tail) > 2 * self._tail_cap:  # trim lazily: amortized O(1) per byte
            del self.tail[: len(self.tail) - self._tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        if len(self.tail) > self._tail_cap:
            del self.tail[: len(self.tail) - self._tail_cap]
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.truncated:
            return head + tail
        dropped = self.total - len(self.head) - len(self.tail)
        return f"{head}\n[... {dropped} bytes of output dropped ...]\n{tail}"


@dataclass
class ProcResult:
    """How a host process ended. ``exit_code`` is 128+N when it died from signal N (shell convention)."""

    exit_code: int
    output: str
    duration: float
    timed_out: bool
    truncated: bool
    stopped: str = ""  # why a ``watch`` stopped the command (a limit), "" when it was not stopped


def to_argv(cmd: str | Sequence[str]) -> list[str]:
    """A string is a shell command line; a sequence is argv as given."""
    if isinstance(cmd, str):
        return ["/bin/sh", "-c", cmd]
    argv = [str(part) for part in cmd]
    if not argv:
        raise SandboxError("empty command")
    return argv


def build_env(path: str, home: str, *layers: Mapping[str, str] | None) -> dict[str, str]:
    """The minimal environment: nothing from the host unless a layer names it explicitly."""
    env = {"PATH": path, "HOME": home, **BASE_ENV}
    for layer in layers:
        env.update(layer or {})
    return env


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _ExitWaiter:
    """Wait for a child to exit WITHOUT reaping it: its pid (the group id) stays ours until we kill."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd: int | None = None
        try:
            self.fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.fd = None

    def exited(self) -> bool:
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _pump(
    fd: int, waiter: _ExitWaiter, buf: CappedBuffer, deadline: float, watch: Callable[[], str | None] | None
) -> str:
    """Read ``fd`` into ``buf`` until the child exits (""), the deadline passes (``_TIMEOUT``) or ``watch`` gives a
    reason to stop it (that reason)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    if waiter.fd is not None:
        poller.register(waiter.fd, select.POLLIN)
    pipe_open = True
    next_watch = time.monotonic() + _WATCH_EVERY
    while True:
        if waiter.exited():
            return ""
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            return _TIMEOUT
        if watch is not None and now >= next_watch:
            next_watch = now + _WATCH_EVERY
            reason = watch()
            if reason:
                return reason
        # Without a pidfd (or once the pipe is closed) wake up periodically to re-check the child.
        wait_ms = remaining * 1000 if waiter.fd is not None and pipe_open else min(remaining * 1000, 50)
        if watch is not None:
            wait_ms = min(wait_ms, _WATCH_EVERY * 1000)
        for ready, _ in poller.poll(wait_ms):
            if ready == fd and pipe_open:
                data = os.read(fd, _CHUNK)
                if data:
                    buf.feed(data)
                else:
                    poller.unregister(fd)
                    pipe_open = False


def _drain(fd: int, buf: CappedBuffer, grace: float) -> None:
    """Read what is left after the group was killed; stop at EOF or after ``grace`` seconds."""
    end = time.monotonic() + grace
    while (remaining := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            return
        data = os.read(fd, _CHUNK)
        if not data:
            return
        buf.feed(data)


def run_process(
    argv: Sequence[str],
    *,
    cwd: str | Path | None,
    env: Mapping[str, str],
    timeout: float,
    output_bytes: int,
    preexec_fn: Callable[[], None] | None = None,
    pass_fds: Iterable[int] = (),
    watch: Callable[[], str | None] | None = None,
) -> ProcResult:
    """Run ``argv`` in a new session; SIGKILL the whole group at the deadline, when the leader exits, and when
    ``watch`` (polled every half second) returns a reason to stop.

    Output (stdout+stderr merged) is read in chunks into a :class:`CappedBuffer`, never accumulated whole.
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
            pass_fds=tuple(pass_fds),
            close_fds=True,
        )
    except OSError as exc:
        raise SandboxError(f"cannot start {argv[0]}: {exc}") from None
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = CappedBuffer(output_bytes)
    waiter = _ExitWaiter(proc.pid)
    with _RUNNING_LOCK:
        _RUNNING.add(proc.pid)
    try:
        ended = _pump(fd, waiter, buf, start + timeout, watch)
        # The leader is dead or doomed: take its whole group with it (not reaped yet, so no pid reuse).
        _killpg(proc.pid)
        returncode = proc.wait()
        _drain(fd, buf, _DRAIN_GRACE)
    finally:
        waiter.close()
        proc.stdout.close()
        if proc.returncode is None:
            _killpg(proc.pid)
            proc.wait()
        with _RUNNING_LOCK:
            _RUNNING.discard(proc.pid)
    exit_code = 128 - returncode if returncode < 0 else returncode
    stopped = "" if ended in ("", _TIMEOUT) else ended
    return ProcResult(exit_code, buf.text(), time.monotonic() - start, ended == _TIMEOUT, buf.truncated, stopped)


def _last_line(text: str) -> str:
    lines = [line for line in text[-4096:].splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def to_exec_result(res: ProcResult, *, memory_limited: bool, limits: Sequence[str] = ()) -> ExecResult:
    """Map a finished process to an ExecResult; decide ``oom`` from how it died; ``limits`` are runaway limits hit
    (said at the end of the output too).

    Under RLIMIT_AS Python raises MemoryError (exit 1, traceback ending in ``MemoryError``) instead of being
    killed; a SIGKILL that was not ours (no timeout, no limit) under a memory limit is the kernel's OOM killer.
    """
    notes = [*([res.stopped] if res.stopped else []), *limits]
    oom = False
    if memory_limited and not res.timed_out and not res.stopped:
        killed = res.exit_code == 128 + signal.SIGKILL
        python_oom = res.exit_code == 1 and _last_line(res.output).startswith("MemoryError")
        oom = killed or python_oom
    return ExecResult(
        exit_code=res.exit_code,
        output=add_notes(res.output, notes),
        duration=res.duration,
        timed_out=res.timed_out,
        oom=oom,
        truncated=res.truncated,
        limits=notes,
    )


class _Runs(Protocol):
    def run(self, cmd: str, *, timeout: float | None = None) -> ExecResult: ...


def run_setup(sandbox: _Runs, commands: Iterable[str]) -> None:
    """Run ``spec.setup`` once; a failing step is infrastructure, not an observation."""
    for cmd in commands:
        res = sandbox.run(cmd)
        if not res.ok:
            tail = res.output[-2000:]
            raise SandboxError(f"sandbox setup failed ({res.describe()}): {cmd}\n{tail}")


def resolve_in_workspace(root: Path, rel: str) -> Path:
    """``root / rel``, refusing absolute paths and anything (``..``, symlinks) that lands outside ``root``."""
    if not rel or Path(rel).is_absolute():
        raise SandboxError(f"path must be relative to the workspace: {rel!r}")
    base = root.resolve()
    target = (base / rel).resolve()
    if target == base or not target.is_relative_to(base):
        raise SandboxError(f"path escapes the workspace: {rel!r}")
    return target


def write_workspace_files(root: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write files relative to the workspace (parents created); returns the paths written."""
    written = []
    for rel, data in files.items():
        target = resolve_in_workspace(root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written


def read_workspace_file(root: Path, rel: str) -> bytes:
    """Read one workspace file; a missing file raises FileNotFoundError (an observation, not a failure), one larger
    than ``READ_LIMIT`` a SandboxError (never read into memory)."""
    path = resolve_in_workspace(root, rel)
    size = path.stat().st_size
    if size > READ_LIMIT:
        raise SandboxError(f"{rel} is too large to read back ({size} bytes)")
    return path.read_bytes()


class HostSandbox:
    """A sandbox whose commands are host processes working directly in the workspace directory (local, bwrap).

    A backend says what it holds (:meth:`_open`, :meth:`_release`) and how one command starts (:meth:`_process`);
    the rest is the same for every such backend: the workspace check, setup, the default timeout, reading and
    writing workspace files, and an idempotent close.
    """

    name = "host"

    def __init__(self, root: Path, spec: SandboxSpec) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SandboxError(f"workspace {self.root} is not a directory")
        self.spec = spec
        self.limits = spec.limits
        self._closed = False
        self._guard = WorkspaceGuard(self.root, self.limits)
        self._open()
        with closed_on_error(self):
            run_setup(self, spec.setup)

    def run(
        self, cmd: str | Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> ExecResult:
        if self._closed:
            raise SandboxError("sandbox is closed")
        limit = self.limits.timeout if timeout is None else timeout
        used = self._guard.used()
        res = self._process(to_argv(cmd), limit, env, self._guard.watch(used))
        return to_exec_result(res, memory_limited=True, limits=self._guard.after(used))

    def put(self, files: Mapping[str, bytes]) -> None:
        write_workspace_files(self.root, files)

    def get(self, path: str) -> bytes:
        return read_workspace_file(self.root, path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()

    def _open(self) -> None:
        """Acquire what commands need (a private HOME, ...); on failure, release what was acquired, then raise."""

    def _process(
        self, argv: list[str], timeout: float, env: Mapping[str, str] | None, watch: Callable[[], str | None]
    ) -> ProcResult:
        """Run one command to its end (``env`` holds the caller's extra variables; ``watch`` goes to
        :func:`run_process`)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Give back what :meth:`_open` acquired."""
