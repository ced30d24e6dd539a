"""What of the repository the model is shown: a file list and the most relevant source files, within a budget.

Why a ranking and not the whole tree: prompt processing dominates on CPU endpoints (tens of tokens per second), so the
model sees the files the task and the failing tracebacks point at first, then the rest of the source while the
budget lasts. The result is deterministic for a given tree and task so that it stays a stable prompt prefix.

Why nothing here follows a symbolic link: the tree is untrusted (the repository being repaired, and whatever sandboxed
code wrote into it). A committed ``notes.txt -> /proc/self/environ`` or a link to a key outside the repository would
otherwise be read on the host and sent to the endpoint. Links are listed as ``name -> target``; only regular files
are read, through :func:`read_source`, which opens every path component without following links.
"""

from __future__ import annotations

import ast
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tools.patching.definitions import is_test_file as is_test_file  # the one rule, re-exported for the nodes
from tools.secrets import scrub
from tools.tree import walk

_SKIP_DIRS = {
    ".git",
    ".mendloop",
    "__pycache__",
    ".venv",
    "venv",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".hypothesis",
    ".tox",
    "build",
    "dist",
}
_TEXT_SUFFIXES = {".py", ".pyi", ".toml", ".cfg", ".ini", ".txt", ".md", ".rst", ".json", ".yaml", ".yml"}
READ_LIMIT = 1_000_000  # bytes: a bigger file is never shown whole, so it is not read at all


@dataclass
class Listing:
    """The repository's regular files and its symbolic links (``rel -> target``), relative ``/`` paths."""

    files: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)


def _skipped(name: str) -> bool:
    return name in _SKIP_DIRS or name.endswith(".egg-info")


def scan(root: Path) -> Listing:
    """Every regular file and symbolic link under ``root``, sorted by path, skipping caches and VCS folders.

    A link is never followed (not even a link to a directory), so the listing stays inside ``root``.
    """
    listing = Listing()
    for rel, entry in walk(root, _skipped):
        if entry.is_symlink():
            listing.links[rel] = _target(entry.path)
        elif entry.is_file(follow_symlinks=False):
            listing.files.append(rel)
    listing.files.sort(key=_order)
    listing.links = dict(sorted(listing.links.items(), key=lambda item: _order(item[0])))
    return listing


def _order(rel: str) -> tuple[str, ...]:
    return PurePosixPath(rel).parts


def _target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def list_files(root: Path, limit: int = 400) -> list[str]:
    """Relative paths of the repository's files and links, sorted, skipping caches and VCS folders."""
    listing = scan(root)
    return sorted([*listing.files, *listing.links], key=_order)[:limit]


def read_source(root: Path, rel: str, limit: int = READ_LIMIT) -> str | None:
    """The text of the regular file ``root/rel``, with the user's secrets masked; ``None`` for anything else.

    ``None`` for a symbolic link anywhere on the path, a path leaving ``root``, a FIFO or device, a file larger
    than ``limit`` bytes, and bytes that are not UTF-8. Every component is opened with ``O_NOFOLLOW`` relative to
    its parent, so a link swapped in after :func:`scan` is not followed either.
    """
    parts = PurePosixPath(rel).parts
    if not parts or parts[0] == "/" or any(p in ("..", ".") for p in parts):
        return None
    data = _read_nofollow(root, parts, limit)
    if data is None:
        return None
    try:
        return scrub(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def _read_nofollow(root: Path, parts: tuple[str, ...], limit: int) -> bytes | None:
    directory = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root, directory)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            inner = os.open(part, directory, dir_fd=fd)
            os.close(fd)
            fd = inner
        # O_NONBLOCK: opening a FIFO that sandboxed code made must not hang the host.
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    with os.fdopen(leaf, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def _score(rel: str, mentioned: str) -> tuple[int, str]:
    stem = rel.rsplit("/", 1)[-1].removesuffix(".py")
    score = 0
    if rel in mentioned:
        score += 100
    if len(stem) > 2 and re.search(rf"\b{re.escape(stem)}\b", mentioned):
        score += 50
    if rel.endswith(".py"):
        score += 10
    if is_test_file(rel):
        score -= 5
    return (-score, rel)


def gather(root: Path, task_text: str, hints: str = "", budget_chars: int = 24_000) -> str:
    """The repository section of a prompt: the file list, then whole files in order of relevance."""
    listing = scan(root)
    shown = sorted([*listing.files, *listing.links], key=_order)[:400]
    mentioned = f"{task_text}\n{hints}"
    ranked = sorted((f for f in listing.files if Path(f).suffix in _TEXT_SUFFIXES), key=lambda f: _score(f, mentioned))
    parts = ["Files:", *(_file_line(f, listing.links) for f in shown), ""]
    used = sum(len(p) + 1 for p in parts)
    for rel in ranked:
        text = read_source(root, rel)
        if text is None:
            continue
        block = f"--- {rel}\n{text}{'' if text.endswith(chr(10)) else chr(10)}--- end of {rel}\n"
        if used + len(block) > budget_chars:
            continue
        parts.append(block)
        used += len(block)
    return "\n".join(parts).rstrip() + "\n"


def defined_names(source: str) -> dict[str, tuple[int, int]]:
    """Top-level functions and classes (and methods, as ``name``) of a Python source: name -> (first, last) line."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    out: dict[str, tuple[int, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out.setdefault(node.name, (first, node.end_lineno or node.lineno))
    return out


def _mentions(root: Path, rel: str, words: set[str]) -> int:
    """How many of ``words`` the file defines (a function or class the task or the failure names)."""
    text = read_source(root, rel)
    return len(words & set(defined_names(text))) if text is not None else 0


def _file_line(rel: str, links: dict[str, str]) -> str:
    """One line of the file list: a link shows where it points (it is never read). A name or target holding a
    newline or another control character is shown escaped, so it cannot pose as more lines of the prompt."""
    return f"  {_printable(rel)} -> {_printable(links[rel])}" if rel in links else f"  {_printable(rel)}"


def _printable(text: str) -> str:
    return text if text.isprintable() else ascii(text)[1:-1]


def relevant_sources(root: Path, task_text: str, hints: str = "", *, failing: list[str] | None = None) -> list[str]:
    """Python files to show with the code, most relevant first: the project files a failure went through, then
    source files that define what the task and the test output name, ranked as in ``gather``, then the failing
    tests' own files.

    Regular files only, never a symbolic link; read each with :func:`read_source` (a link may be swapped in since)."""
    files = [f for f in scan(root).files[:400] if f.endswith(".py")]
    mentioned = f"{task_text}\n{hints}"
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", mentioned))
    first = [f for f in failing or [] if f in files and not is_test_file(f)]
    rest = [f for f in files if not is_test_file(f) and f not in first]
    defining = {f: _mentions(root, f, words) for f in rest}
    sources = sorted(rest, key=lambda f: (-defining[f], _score(f, mentioned)))
    tests = [f for f in failing or [] if f in files and is_test_file(f)]
    if not tests:
        tests = [f for f in sorted(files, key=lambda f: _score(f, mentioned)) if is_test_file(f)][:1]
    return [*first, *sources, *tests]
