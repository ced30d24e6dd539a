"""Records that survive faults: whole files replaced atomically, JSON lines appended whole or not at all.

Why: a run directory is what ``--resume`` continues from and a batch directory what a rerun skips by, so a kill or a
full disk at any instant must leave every record readable. A file is rewritten through a temporary file, fsync'd and
renamed over the old one (the old one stays until the new one is whole); a line is appended in one ``write`` with
``O_APPEND`` and fsync'd, and when the disk takes only part of it the file is cut back to where it was. A full disk
then ends the run with one line (:class:`DiskFull`) and a directory that resumes once there is room again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

from tools.errors import FatalError

__all__ = ["DiskFull", "append_line", "is_disk_full", "write_atomic"]

_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_TEXT = ("no space left on device", "disk is full", "disk quota exceeded")


class DiskFull(FatalError):
    """The disk holding a run's records is full: one line, exit 2, the records whole."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, SQLite's "database or disk is full", a failed git call) means a full disk."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    if isinstance(exc, sqlite3.OperationalError | FatalError):
        text = exc.message if isinstance(exc, FatalError) else str(exc)
        return any(marker in text.lower() for marker in _FULL_TEXT)
    return False


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old file or the new one, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def append_line(path: Path, line: str) -> None:
    """Append ``line`` (a newline is added) as one whole line, fsync'd; on any failure the file keeps its old end."""
    data = (line.rstrip("\n") + "\n").encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        end = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):  # the disk took part of it: ENOSPC in all but name
                raise OSError(errno.ENOSPC, f"no space left on device (wrote {written} of {len(data)} bytes)")
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)
