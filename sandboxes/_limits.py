"""Runaway limits on what sandboxed commands write into the workspace: one file's size, and the total growth.

Why in the sandbox layer: every command the model, the tests or a setup step run goes through a sandbox, so a
command that writes 2.6 GB is stopped there and what it left is removed before anything on the host (git, the
patch, the checkpoint) reads it. A limit hit never ends the run: it is a line at the end of the command's output,
which is what the model reads as the observation, and in :attr:`ExecResult.limits`.

How, for host processes (local, bwrap): the kernel stops a writer at the file-size limit (``RLIMIT_FSIZE``: a
shell tool dies of SIGXFSZ, Python gets ``EFBIG``); :class:`WorkspaceGuard` then removes what is over a limit. A
full scan of the workspace after every command would cost seconds on a large tree, so the filesystem's used-space
counter (``statvfs``, one system call) decides when to scan: only a command that made the disk grow by a sizeable
amount, or a run whose growth adds up, is looked at file by file. The same counter, polled while the command runs,
stops a command that keeps writing once the growth limit is passed. Docker enforces the same limits inside the
container (:mod:`sandboxes.docker`), where the files are.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sandboxes.base import Limits
from tools.tree import walk

__all__ = ["MTIME_SLACK", "WorkspaceGuard", "add_notes", "human_size"]

MTIME_SLACK = 2.0  # seconds: a file whose mtime is this close to the sandbox's opening counts as the run's
_MAX_NAMED = 5  # files named one by one in the notes of one command; the rest are counted


def human_size(n: int) -> str:
    """``1.5 GiB``, ``20.0 MiB``, ``512 B``: sizes as a person reads them."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def add_notes(output: str, notes: list[str]) -> str:
    """``output`` with one ``[mendloop] NOTE`` line per limit hit at its end, where a reader looks for the verdict."""
    if not notes:
        return output
    return output.rstrip("\n") + "\n" + "\n".join(f"[mendloop] {note}" for note in notes) + "\n"


@dataclass(frozen=True)
class _File:
    rel: str
    size: int
    mtime: float


def _scan(root: Path) -> Iterator[_File]:
    """Every regular file under ``root`` (symlinks are not followed), with its size and modification time."""
    for rel, entry in walk(root):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:  # removed while we looked: nothing to count
            continue
        if stat.S_ISREG(st.st_mode):
            yield _File(rel, st.st_size, st.st_mtime)


def _fs_used(root: Path) -> int:
    """Bytes in use on the filesystem holding ``root`` (0 when it cannot be asked)."""
    try:
        st = os.statvfs(root)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class WorkspaceGuard:
    """The two runaway limits over one workspace, for the life of one sandbox.

    ``growth`` is measured from the workspace's size when the sandbox opened; only files written since then are
    ever removed (a large file the repository already holds is the repository's business).
    """

    def __init__(self, root: Path, limits: Limits) -> None:
        self.root = root
        self.max_file = max(1, int(limits.max_file_bytes))
        self.max_growth = max(1, int(limits.max_growth_bytes))
        self.since = time.time() - MTIME_SLACK
        self.base_total = sum(f.size for f in _scan(root))
        self.growth = 0  # known at the last scan, plus the disk growth seen since
        # A file at the size limit makes the disk grow by about that much (RLIMIT_FSIZE stops it there); growth
        # past the total limit is caught by adding up what each command added.
        self.trigger = max(1, min(self.max_file, self.max_growth) // 2)
        self._lock = threading.Lock()

    # --- around one command ------------------------------------------------------------------------------------
    def used(self) -> int:
        """The filesystem's used bytes now: what :meth:`watch` and :meth:`after` compare against."""
        return _fs_used(self.root)

    def watch(self, used_before: int) -> Callable[[], str | None]:
        """A check to poll while a command runs: a reason to stop it once the workspace grew past its limit."""
        baseline = [used_before]

        def check() -> str | None:
            used = _fs_used(self.root)
            if used - baseline[0] + self.growth <= self.max_growth:
                return None
            growth = self._measure()
            if growth > self.max_growth:
                return (
                    f"the command was stopped: it made the workspace grow by {human_size(growth)}, over the limit "
                    f"of {human_size(self.max_growth)} (max_workspace_growth)"
                )
            baseline[0] = used  # the disk filled from elsewhere: look again only after as much more
            return None

        return check

    def after(self, used_before: int) -> list[str]:
        """Enforce both limits once a command ended; returns one note per limit hit (files removed)."""
        delta = _fs_used(self.root) - used_before
        with self._lock:
            self.growth = max(0, self.growth + delta)
            if delta < self.trigger and self.growth <= self.max_growth:
                return []
        return self.enforce()

    # --- the scan ------------------------------------------------------------------------------------------------
    def enforce(self) -> list[str]:
        """Scan the workspace, remove new files over a limit (largest first for growth), and say what was removed."""
        with self._lock:
            files = list(_scan(self.root))
            mine = [f for f in files if f.mtime >= self.since]
            too_big = [f for f in mine if f.size >= self.max_file]
            removed_big = [f for f in too_big if self._remove(f)]
            total = sum(f.size for f in files) - sum(f.size for f in removed_big)
            growth = total - self.base_total
            removed_growth: list[_File] = []
            if growth > self.max_growth:
                left = sorted((f for f in mine if f not in too_big), key=lambda f: f.size, reverse=True)
                for f in left:
                    if growth <= self.max_growth:
                        break
                    if self._remove(f):
                        removed_growth.append(f)
                        growth -= f.size
            self.growth = max(0, growth)
        notes = []
        if removed_big:
            notes.append(
                f"removed {_named(removed_big)}: one file in the workspace may hold less than "
                f"{human_size(self.max_file)} (max_file_size); write less, or smaller files"
            )
        if removed_growth:
            notes.append(
                f"removed {_named(removed_growth)}: the files written in this run may add at most "
                f"{human_size(self.max_growth)} to the workspace (max_workspace_growth)"
            )
        return notes

    def _measure(self) -> int:
        with self._lock:
            return sum(f.size for f in _scan(self.root)) - self.base_total

    def _remove(self, f: _File) -> bool:
        with contextlib.suppress(OSError):  # gone already, or not ours to remove: it stays, and is not named
            os.unlink(self.root / f.rel)
            return True
        return False


def _named(files: list[_File]) -> str:
    shown = ", ".join(f"{f.rel} ({human_size(f.size)})" for f in files[:_MAX_NAMED])
    more = len(files) - _MAX_NAMED
    return shown + (f" and {more} more file(s)" if more > 0 else "")
