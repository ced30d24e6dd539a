"""Parse a unified diff the way models write them, into plain hunks.

Why two parsers: ``unidiff`` is exact for well-formed diffs but refuses (or, with a header count that is too
small, silently truncates) the diffs models actually write: wrong counts, ``@@ @@`` without numbers, a missing
``+``, prose and ```diff fences around the patch. The hand parser ignores counts and keeps every body line;
the ``unidiff`` result is used only when both parsers agree on every file, hunk and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

_HUNK_HEADER = re.compile(r"^@@+\s*-(\d+)(?:,(\d+))?\s+\+(\d+)(?:,(\d+))?\s*@@")


@dataclass
class HunkLine:
    """One body line; ``op`` is `` ``, ``-``, ``+`` or ``?`` (no prefix: context, or a forgotten ``+``)."""

    op: str
    text: str
    raw: str


@dataclass
class Hunk:
    header: str
    old_start: int | None
    lines: list[HunkLine] = field(default_factory=list)
    no_newline_old: bool = False
    no_newline_new: bool = False

    @property
    def expected_index(self) -> int | None:
        """0-based index of the first old line (for a pure insertion, diffs state the line *before* it)."""
        if self.old_start is None:
            return None
        has_old = any(line.op != "+" for line in self.lines)
        return max(self.old_start - 1, 0) if has_old else self.old_start


@dataclass
class FilePatch:
    """All hunks for one file. Paths are as written (``a/`` prefixes kept); ``None`` means ``/dev/null``."""

    old_path: str | None
    new_path: str | None
    hunks: list[Hunk] = field(default_factory=list)
    binary: bool = False
    new_file: bool = False
    deleted: bool = False

    def shape(self) -> tuple[object, ...]:
        return (
            self.old_path,
            self.new_path,
            self.binary,
            tuple((h.old_start, tuple((x.op, x.text) for x in h.lines)) for h in self.hunks),
        )


def extract_diff(text: str) -> str:
    """Keep only fenced blocks that look like a diff (models wrap diffs in prose); else all the text."""
    text = text.replace("\r\n", "\n")
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        if line.lstrip().startswith("```") and (current is None or line.strip().startswith("```")):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
            continue
        if current is not None:
            current.append(line)
    if current is not None:
        blocks.append(current)
    diffy = ["\n".join(b) for b in blocks if any(x.startswith(("@@", "--- ", "diff --git")) for x in b)]
    return "\n".join(diffy) + "\n" if diffy else text


def _clean_path(raw: str) -> str | None:
    path = raw.split("\t")[0].strip()
    if len(path) >= 2 and path[0] == path[-1] == '"':
        path = path[1:-1]
    if path == "/dev/null" or path == "":
        return None
    # `diff -u` style timestamps after two or more spaces.
    path = re.split(r"\s{2,}\d{4}-\d\d-\d\d", path)[0]
    return path


def _git_header_paths(line: str) -> tuple[str | None, str | None]:
    rest = line[len("diff --git ") :].strip()
    if " b/" in rest:
        old, new = rest.split(" b/", 1)
        return _clean_path(old), _clean_path("b/" + new)
    parts = rest.split()
    if len(parts) == 2:
        return _clean_path(parts[0]), _clean_path(parts[1])
    return None, None


def _is_boundary(lines: list[str], i: int) -> bool:
    line = lines[i]
    if line.startswith(("diff --git ", "@@", "Index: ", "```")):
        return True
    return line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _more_body_ahead(lines: list[str], i: int) -> bool:
    """Does a prefixed body line follow before the next boundary? (Decides: forgotten ``+`` or prose.)"""
    for j in range(i, len(lines)):
        if _is_boundary(lines, j):
            return False
        if lines[j][:1] in ("+", "-", " "):
            return True
    return False


def _unprefixed_run(lines: list[str], i: int) -> list[str]:
    run: list[str] = []
    while i < len(lines) and lines[i] and lines[i][0] not in " +-\\" and not _is_boundary(lines, i):
        run.append(lines[i])
        i += 1
    return run


def _read_hunk(lines: list[str], i: int, header: str) -> tuple[Hunk, int]:
    m = _HUNK_HEADER.match(header)
    old_count = new_count = None
    hunk = Hunk(header=header.strip(), old_start=None)
    if m:
        hunk.old_start = int(m.group(1))
        old_count = int(m.group(2)) if m.group(2) is not None else 1
        new_count = int(m.group(4)) if m.group(4) is not None else 1
    seen_old = seen_new = 0
    while i < len(lines) and not _is_boundary(lines, i):
        line = lines[i]
        done = old_count is not None and new_count is not None and seen_old >= old_count and seen_new >= new_count
        if line == "" or line[0] not in " +-\\":
            if done:
                break
            if line != "" and not _more_body_ahead(lines, i):
                # Trailing lines without prefix: prose, unless the header counts say they are the hunk's
                # last added lines (the model forgot their "+").
                tail = _unprefixed_run(lines, i)
                if (seen_old, seen_new + len(tail)) != (old_count, new_count):
                    break
                hunk.lines += [HunkLine("+", x, x) for x in tail]
                i += len(tail)
                break
            hunk.lines.append(HunkLine(" " if line == "" else "?", line, line))
            seen_old, seen_new = seen_old + 1, seen_new + 1
        elif line[0] == "\\":
            last = hunk.lines[-1].op if hunk.lines else " "
            hunk.no_newline_old |= last in " -?"
            hunk.no_newline_new |= last in " +?"
        else:
            hunk.lines.append(HunkLine(line[0], line[1:], line))
            seen_old += line[0] != "+"
            seen_new += line[0] != "-"
        i += 1
    while hunk.lines and hunk.lines[-1].raw == "":
        hunk.lines.pop()
    return hunk, i


def parse_by_hand(text: str) -> list[FilePatch]:
    lines = text.split("\n")
    files: list[FilePatch] = []
    cur: FilePatch | None = None
    fresh_git_header = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            cur = FilePatch(*_git_header_paths(line))
            files.append(cur)
            fresh_git_header = True
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            old, new = _clean_path(line[4:]), _clean_path(lines[i + 1][4:])
            if cur is not None and fresh_git_header and not cur.hunks:
                cur.old_path, cur.new_path = old, new
            else:
                cur = FilePatch(old, new)
                files.append(cur)
            fresh_git_header = False
            i += 2
            continue
        elif line.startswith("@@"):
            if cur is None:
                cur = FilePatch(None, None)
                files.append(cur)
            hunk, i = _read_hunk(lines, i + 1, line)
            cur.hunks.append(hunk)
            continue
        elif cur is not None and (line.startswith("Binary files ") or line.startswith("GIT binary patch")):
            cur.binary = True
        elif cur is None and line.startswith("Binary files "):
            m = re.match(r"Binary files (.*) and (.*) differ", line)
            cur = FilePatch(_clean_path(m.group(1)) if m else None, _clean_path(m.group(2)) if m else None)
            cur.binary = True
            files.append(cur)
        elif cur is not None and line.startswith("new file mode"):
            cur.new_file = True
        elif cur is not None and line.startswith("deleted file mode"):
            cur.deleted = True
        elif cur is not None and line.startswith("rename from "):
            cur.old_path = line[len("rename from ") :].strip()
        elif cur is not None and line.startswith("rename to "):
            cur.new_path = line[len("rename to ") :].strip()
        i += 1
    for fp in files:
        if fp.new_file:
            fp.old_path = None
        if fp.deleted:
            fp.new_path = None
    return files


def _parse_with_unidiff(text: str) -> list[FilePatch] | None:
    try:
        patch = PatchSet(text)
    except (UnidiffParseError, ValueError, IndexError):
        return None
    files: list[FilePatch] = []
    for pf in patch:
        fp = FilePatch(_clean_path(pf.source_file or ""), _clean_path(pf.target_file or ""))
        fp.binary = bool(pf.is_binary_file)
        for h in pf:
            hunk = Hunk(
                header=f"@@ -{h.source_start},{h.source_length} +{h.target_start},{h.target_length} @@",
                old_start=h.source_start,
            )
            for ln in h:
                value = ln.value[:-1] if ln.value.endswith("\n") else ln.value
                value = value[:-1] if value.endswith("\r") else value
                if ln.line_type == "\\":
                    last = hunk.lines[-1].op if hunk.lines else " "
                    hunk.no_newline_old |= last in " -"
                    hunk.no_newline_new |= last in " +"
                    continue
                hunk.lines.append(HunkLine(ln.line_type, value, ln.line_type + value))
            fp.hunks.append(hunk)
        files.append(fp)
    return files


def parse_diff(text: str) -> tuple[list[FilePatch], str]:
    """Return the file patches and which parser produced them (``"unidiff"`` or ``"tolerant"``)."""
    body = extract_diff(text)
    hand = parse_by_hand(body)
    uni = _parse_with_unidiff(body)
    if uni is not None and [f.shape() for f in uni] == [f.shape() for f in hand]:
        for u, h in zip(uni, hand, strict=True):  # keep the headers as the model wrote them
            for uh, hh in zip(u.hunks, h.hunks, strict=True):
                uh.header = hh.header
        return uni, "unidiff"
    return hand, "tolerant"
