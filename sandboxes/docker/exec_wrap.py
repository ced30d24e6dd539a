"""One command in a running container: a streamed ``exec`` with a byte cap and a wall-clock limit.

Why streamed: a test run can print 100 MB; reading the exec socket chunk by chunk into a
:class:`~sandboxes._proc.CappedBuffer` (the bounded head and tail every backend keeps) means the agent's memory
never grows with the command's output. Why a reader thread: the docker SDK blocks on the socket with no timeout,
so the caller waits on the thread with a deadline and, when it passes, asks the container to kill the command's
whole process tree (``on_timeout``); the stream then ends by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandboxes._proc import CappedBuffer

KILL_GRACE = 10.0  # seconds to wait for the stream to end after the process tree was killed
WATCH_EVERY = 2.0  # seconds between two polls of a command's ``watch``


@dataclass
class ExecOutcome:
    """What the exec reported: exit code (None if unknown), capped output, and whether the deadline passed."""

    exit_code: int | None
    cap: CappedBuffer
    duration: float
    timed_out: bool
    stopped: str = ""  # why ``watch`` stopped the command (a limit); "" when it was not stopped


def _drain(stream: Iterable[bytes], cap: CappedBuffer, errors: list[BaseException]) -> None:
    try:
        for chunk in stream:
            cap.feed(chunk)
    except Exception as exc:  # the socket closed under us (container removed): report, don't crash the thread
        errors.append(exc)


def _exit_code(api: Any, exec_id: str) -> int | None:
    """The exec's exit code; the daemon may need a moment after the stream ends to record it."""
    for _ in range(50):
        info = api.exec_inspect(exec_id)
        if not info.get("Running") and info.get("ExitCode") is not None:
            return int(info["ExitCode"])
        time.sleep(0.02)
    return None


def stream_exec(
    api: Any,
    container_id: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    workdir: str,
    timeout: float,
    limit: int,
    on_timeout: Callable[[], None],
    watch: Callable[[], str | None] | None = None,
) -> ExecOutcome:
    """Run ``argv`` in the container, waiting at most ``timeout`` s; ``on_timeout`` kills the process tree, at the
    deadline and when ``watch`` (polled every ``WATCH_EVERY`` s) gives a reason to stop."""
    cap = CappedBuffer(limit)
    errors: list[BaseException] = []
    start = time.monotonic()
    exec_id = str(api.exec_create(container_id, list(argv), environment=dict(env), workdir=workdir)["Id"])
    stream = api.exec_start(exec_id, stream=True, demux=False)
    reader = threading.Thread(target=_drain, args=(stream, cap, errors), daemon=True, name="mendloop-exec")
    reader.start()
    deadline = start + timeout
    stopped = ""
    while reader.is_alive() and not stopped:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        reader.join(min(remaining, WATCH_EVERY) if watch is not None else remaining)
        if reader.is_alive() and watch is not None and time.monotonic() < deadline:
            stopped = watch() or ""
    timed_out = reader.is_alive() and not stopped
    if reader.is_alive():
        on_timeout()
        reader.join(KILL_GRACE)
        if reader.is_alive():  # something outside the tree holds the pipe: stop reading, the exec is abandoned
            close = getattr(stream, "close", None)
            if close is not None:
                close()
    duration = time.monotonic() - start
    return ExecOutcome(_exit_code(api, exec_id), cap, duration, timed_out, stopped)
