"""Keep the container's /workspace equal to the host workspace by shipping only what changed.

Why not a bind mount: the container must not see any host directory. Why a manifest: before each command only
the files whose (kind, mode, size, mtime) changed since the last sync are hashed, and only those whose content
or mode really changed go into the tar archive; paths that vanished on the host are deleted inside. A
no-change sync is one directory walk and no Docker call.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SPOOL_LIMIT = 16 * 1024 * 1024  # archives larger than this go to a temporary file instead of memory


@dataclass(frozen=True)
class Entry:
    kind: str  # "f" file, "d" directory, "l" symlink
    mode: int
    size: int
    mtime_ns: int
    digest: str = ""  # sha256 of a file, target of a symlink; "" for directories


def _stat_entry(path: Path) -> Entry | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return Entry("d", mode, 0, 0)
    if stat.S_ISLNK(st.st_mode):
        return Entry("l", mode, 0, 0, os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        return Entry("f", mode, st.st_size, st.st_mtime_ns)
    return None  # sockets, fifos, devices: never shipped


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scan(root: Path) -> dict[str, Entry]:
    """Every directory, regular file and symlink under ``root`` by POSIX relative path (not yet hashed)."""
    found: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in (*dirnames, *filenames):
            entry = _stat_entry(base / name)
            if entry is not None:
                found[(base / name).relative_to(root).as_posix()] = entry
    return found


@dataclass
class Changes:
    send: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.send or self.delete)


class Mirror:
    """What the container is known to hold, and the diff that brings it up to date with the host."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.synced: dict[str, Entry] = {}
        self.extra_deletes: set[str] = set()  # paths known inside but not on the host (e.g. baked into an image)

    def diff(self) -> tuple[Changes, dict[str, Entry]]:
        """Compare the host with the last sync: the changes, and the manifest to commit once they shipped."""
        current = scan(self.root)
        changes = Changes()
        for rel, entry in current.items():
            old = self.synced.get(rel)
            if entry.kind == "f":
                if old is not None and old.kind == "f" and (old.size, old.mtime_ns) == (entry.size, entry.mtime_ns):
                    entry = Entry("f", entry.mode, entry.size, entry.mtime_ns, old.digest)
                else:
                    entry = Entry("f", entry.mode, entry.size, entry.mtime_ns, _sha256(self.root / rel))
                current[rel] = entry
            if old is None or (old.kind, old.mode, old.digest) != (entry.kind, entry.mode, entry.digest):
                if old is not None and old.kind != entry.kind:
                    changes.delete.append(rel)  # a file became a directory or the reverse: clear it first
                changes.send.append(rel)
        gone = (set(self.synced) | self.extra_deletes) - set(current)
        changes.delete.extend(sorted(gone))
        return changes, current

    def commit(self, manifest: dict[str, Entry]) -> None:
        self.synced = manifest
        self.extra_deletes.clear()

    def archive(self, rels: list[str]) -> IO[bytes]:
        """A tar of ``rels`` (owned by root, host modes and mtimes kept), rewound and ready to upload."""
        total = sum(self.synced_size(rel) for rel in rels)
        buf: IO[bytes] = io.BytesIO() if total < SPOOL_LIMIT else tempfile.TemporaryFile()  # noqa: SIM115
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in sorted(rels):
                path = self.root / rel
                try:
                    info = tar.gettarinfo(str(path), arcname=rel)
                except FileNotFoundError:
                    continue  # deleted between the scan and now: the next sync removes it
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if info.isreg():
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
        buf.seek(0)
        return buf

    def synced_size(self, rel: str) -> int:
        try:
            return (self.root / rel).lstat().st_size
        except OSError:
            return 0
