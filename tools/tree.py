"""The one walk over a tree that untrusted code wrote: it never goes through a symbolic link.

Why one: the repository being repaired, and whatever sandboxed code wrote into it, may hold a link to a directory
anywhere on the host (``up -> /``); a walk that entered it would read, pin or remove files outside the tree. The
repository listing shown to the model, the test configuration held to the base and the sandbox's size limits all
walk the same way, through :func:`walk`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["walk"]


def walk(root: Path, skip: Callable[[str], bool] = lambda name: False) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry below ``root`` that is not a directory (regular files, links, anything else), with its relative
    ``/`` path. Directories are entered unless ``skip(name)`` says not to; a link to one is yielded, never entered.
    A directory that cannot be read (removed meanwhile, no permission) is passed over."""
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(root / prefix if prefix else root) as entries:
                found = list(entries)
        except OSError:
            continue
        for entry in found:
            rel = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                if not skip(entry.name):
                    pending.append(rel + "/")
            else:
                yield rel, entry
