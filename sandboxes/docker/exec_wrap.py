"""One command in a running container: a streamed ``exec`` with a byte cap and a wall-clock limit.

Why streamed: a test run can print 100 MB; reading the exec socket chunk by chunk and keeping only a bounded
head and tail means the agent's memory never grows with the command's output. Why a reader thread: the docker
SDK blocks on the socket with no timeout, so the caller waits on the thread with a deadline and, when it
passes, asks the container to kill the command's whole process tree (``on_timeout``); the stream then ends by
itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KILL_GRACE = 10.0  # seconds to wait for the stream to end after the process tree was killed


class OutputCap:
    """Keep at most ``limit`` bytes of a stream: the first 3/4 and the last 1/4, dropping the middle.

    Why head and tail: a test runner's verdict (the pytest summary) is at the end of its output, the first
    error at the beginning; both matter more than the middle of a flood.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._head_max = self.limit - self.limit // 4
        self._tail_max = self.limit // 4
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_max - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self._tail_max:
            self.tail += chunk[-self._tail_max :]
            if len(self.tail) > self._tail_max:
                del self.tail[: len(self.tail) - self._tail_max]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        dropped = self.total - len(self.head) - len(self.tail)
        marker = f"\n[... {dropped} bytes of output dropped ...]\n".encode()
        return (bytes(self.head) + marker + bytes(self.tail)).decode("utf-8", "replace")


@dataclass
class ExecOutcome:
    """What the exec reported: exit code (None if unknown), capped output, and whether the deadline passed."""

    exit_code: int | None
    cap: OutputCap
    duration: float
    timed_out: bool


def _drain(stream: Iterable[bytes], cap: OutputCap, errors: list[BaseException]) -> None:
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
) -> ExecOutcome:
    """Run ``argv`` in the container, waiting at most ``timeout`` s; ``on_timeout`` kills the process tree."""
    cap = OutputCap(limit)
    errors: list[BaseException] = []
    start = time.monotonic()
    exec_id = str(api.exec_create(container_id, list(argv), environment=dict(env), workdir=workdir)["Id"])
    stream = api.exec_start(exec_id, stream=True, demux=False)
    reader = threading.Thread(target=_drain, args=(stream, cap, errors), daemon=True, name="mendloop-exec")
    reader.start()
    reader.join(timeout)
    timed_out = reader.is_alive()
    if timed_out:
        on_timeout()
        reader.join(KILL_GRACE)
        if reader.is_alive():  # something outside the tree holds the pipe: stop reading, the exec is abandoned
            close = getattr(stream, "close", None)
            if close is not None:
                close()
    duration = time.monotonic() - start
    return ExecOutcome(_exit_code(api, exec_id), cap, duration, timed_out)
