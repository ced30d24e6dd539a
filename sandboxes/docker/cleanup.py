"""Leave no container behind: remove every live sandbox container at exit, on SIGINT and on SIGTERM.

Why besides ``close()``: a Ctrl-C or a crash skips the caller's ``finally`` more often than one would like,
and SIGTERM's default action skips ``atexit`` altogether. The handlers remove the containers through a fresh
API client (the sandbox's own client may be mid-request) and then hand the signal on to whatever handler was
there before, so Ctrl-C still raises KeyboardInterrupt and SIGTERM still terminates. The keep-alive's dead-man
switch (see :mod:`sandboxes.docker.container`) covers SIGKILL, which no handler sees.

A handler that removed the containers always ends the run it cleaned up after: when the signal was ignored before
(mendloop started in the background, or embedded in a program that ignores Ctrl-C) or the previous handler returns,
the run could only go on to fail on a container that is gone, so the handler raises ``KeyboardInterrupt`` (SIGINT)
or ``SystemExit`` itself.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from types import FrameType
from typing import Any

_live: set[str] = set()
_lock = threading.Lock()
_installed = False
_previous: dict[int, Any] = {}


def remember(container_id: str) -> None:
    """Track a container for emergency removal (and install the handlers on first use)."""
    with _lock:
        _live.add(container_id)
    _install()


def forget(container_id: str) -> None:
    with _lock:
        _live.discard(container_id)


def remove_all() -> list[str]:
    """Force-remove every tracked container; returns the ids removed. Safe to call more than once."""
    with _lock:
        ids = sorted(_live)
        _live.clear()
    if not ids:
        return []
    try:
        import docker

        client = docker.from_env(timeout=10)
    except Exception:  # daemon gone: the dead-man switch is all that is left
        return []
    removed = []
    for cid in ids:
        try:
            client.api.remove_container(cid, force=True)
            removed.append(cid)
        except Exception:
            pass
    client.close()
    return removed


def _on_signal(signum: int, frame: FrameType | None) -> None:
    remove_all()
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)  # usually raises (KeyboardInterrupt, the CLI's Interrupted)
    elif previous != signal.SIG_IGN:  # SIG_DFL: restore it and deliver the signal again, to end as it would have
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    # Ignored before, or a handler that returned: the containers are gone, so the run must end here.
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _install() -> None:
    """Register the atexit hook once, and the signal handlers once from the main thread (the only thread
    allowed to: a sandbox first opened in a worker leaves them to the next one opened in the main thread)."""
    global _installed
    with _lock:
        first, _installed = not _installed, True
        wanted = not _previous and threading.current_thread() is threading.main_thread()
        if wanted:
            for signum in (signal.SIGINT, signal.SIGTERM):
                _previous[signum] = signal.getsignal(signum)
                signal.signal(signum, _on_signal)
    if first:
        atexit.register(remove_all)
