"""Apply a model's edits to a workspace, tolerantly, and answer every failure with an observation.

Why: weak models mean the right change but write it sloppily. This module turns SEARCH/REPLACE blocks, whole
files and unified diffs (with wrong line numbers, lost indentation, forgotten ``+`` signs, prose around
fences) into the intended change, and refuses - with a precise, numbered observation instead of an exception -
anything that is ambiguous, outside the workspace, protected, binary or not UTF-8. A diff is applied all-or-
nothing per file.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath

from tools.edits import CreateFile, DeleteFile, Edit, EditOutcome, FencedCode, SearchReplace, UnifiedDiff, WholeFile
from tools.patching.definitions import apply_fenced
from tools.patching.diffparse import FilePatch, parse_diff
from tools.patching.hunks import apply_hunks
from tools.patching.ladder import Ambiguous, Match, locate, splice
from tools.patching.report import around, closest_lines
from tools.patching.textfile import TextFile, normalize_newlines, read_text, split_text, text_file_from, write_text

__all__ = ["PathRefused", "apply_edit", "apply_edits", "check_syntax", "resolve_path"]

Protected = Callable[[str], str | None]


class PathRefused(ValueError):
    """A path the model may not touch: outside the workspace, absolute, through a symlink out, in .git."""


def _display(rel: str) -> str:
    return str(PurePosixPath(rel.strip().replace("\\", "/")))


def resolve_path(root: Path, rel: str) -> Path:
    """``root / rel`` after checking that it stays inside ``root`` even once symlinks are followed."""
    raw = rel.strip().replace("\\", "/")
    if not raw or "\x00" in raw:
        raise PathRefused(f"Refused: {rel!r} is not a usable file path.")
    pure = PurePosixPath(raw)
    if pure.is_absolute() or (len(raw) > 1 and raw[1] == ":"):
        raise PathRefused(f"Refused: {rel} is an absolute path; give a path relative to the repository root.")
    if ".." in pure.parts:
        raise PathRefused(f"Refused: {rel} contains '..'; paths must stay inside the repository.")
    if pure.parts and pure.parts[0] == ".git":
        raise PathRefused(f"Refused: {rel} is inside .git, which edits may not touch.")
    base = root.resolve()
    target = base / pure
    if not target.resolve().is_relative_to(base):
        raise PathRefused(f"Refused: {rel} leads outside the repository through a symbolic link.")
    return target


def _guard(root: Path, rel: str, protected: Protected | None) -> Path:
    path = resolve_path(root, rel)
    reason = protected(_display(rel)) if protected is not None else None
    if reason:
        raise PathRefused(f"Refused to edit {_display(rel)}: {reason}")
    return path


def _count(n: int) -> str:
    return f"{n} line" + ("" if n == 1 else "s")


# --- whole-file edits ---------------------------------------------------------------------------------------


def _create(root: Path, edit: CreateFile, protected: Protected | None) -> EditOutcome:
    path, name = _guard(root, edit.path, protected), _display(edit.path)
    if path.exists() or path.is_symlink():
        return EditOutcome(
            False,
            f"{name} already exists; create does not overwrite files. Edit it with SEARCH/REPLACE or a diff.",
        )
    content = text_file_from(edit.content)
    write_text(path, content)
    return EditOutcome(True, f"Created {name} ({_count(len(content.lines))}).", [name])


def _whole(root: Path, edit: WholeFile, protected: Protected | None) -> EditOutcome:
    path, name = _guard(root, edit.path, protected), _display(edit.path)
    if path.is_dir():
        return EditOutcome(False, f"{name} is a directory; it was left unchanged.")
    before: TextFile | None = None
    if path.exists():
        old = read_text(path, name)
        if isinstance(old, str):
            return EditOutcome(False, old)
        before = old
    content = text_file_from(edit.content, like=before)
    write_text(path, content)
    was = "" if before is None else f"; it had {_count(len(before.lines))}"
    verb = "Created" if before is None else "Rewrote"
    return EditOutcome(True, f"{verb} {name} ({_count(len(content.lines))}{was}).", [name])


def _delete(root: Path, edit: DeleteFile, protected: Protected | None) -> EditOutcome:
    path, name = _guard(root, edit.path, protected), _display(edit.path)
    if path.is_dir():
        return EditOutcome(False, f"{name} is a directory; only files can be deleted.")
    if not path.exists() and not path.is_symlink():
        return EditOutcome(False, f"{name} does not exist; nothing was deleted.")
    path.unlink()
    return EditOutcome(True, f"Deleted {name}.", [name])


# --- SEARCH/REPLACE -----------------------------------------------------------------------------------------


def _trim_blank_edges(search: list[str], replace: list[str]) -> tuple[list[str], list[str]]:
    s, r = list(search), list(replace)
    while s and not s[0].strip():
        s.pop(0)
        if r and not r[0].strip():
            r.pop(0)
    while s and not s[-1].strip():
        s.pop()
        if r and not r[-1].strip():
            r.pop()
    return s, r


def _fragment(lines: list[str], search: str, replace: str) -> tuple[list[str], int] | list[int] | None:
    """Last rung for a one-line search: a unique substring of one line (models quote part of a line)."""
    hits = [i for i, line in enumerate(lines) for _ in range(line.count(search))]
    if len(hits) == 1:
        i = hits[0]
        return [*lines[:i], lines[i].replace(search, replace), *lines[i + 1 :]], i
    return sorted(set(hits)) if hits else None


def _search_replace(root: Path, edit: SearchReplace, protected: Protected | None) -> EditOutcome:
    path, name = _guard(root, edit.path, protected), _display(edit.path)
    search, _ = split_text(normalize_newlines(edit.search))
    replace, _ = split_text(normalize_newlines(edit.replace))
    if not path.exists():
        if not edit.search.strip():
            content = text_file_from(edit.replace)
            write_text(path, content)
            return EditOutcome(True, f"Created {name} ({_count(len(content.lines))}).", [name])
        return EditOutcome(False, f"No replacement was performed, {name} does not exist. Create it first.")
    current = read_text(path, name)
    if isinstance(current, str):
        return EditOutcome(False, current)
    lines = list(current.lines)
    if not edit.search.strip():
        if any(line.strip() for line in lines):
            return EditOutcome(
                False, f"No replacement was performed, the search block is empty but {name} is not empty."
            )
        content = text_file_from(edit.replace, like=current)
        write_text(path, content)
        return EditOutcome(True, f"Wrote {name} ({_count(len(content.lines))}).", [name])
    ops = tuple([("-", s) for s in search] + [("+", r) for r in replace])
    ts, tr = _trim_blank_edges(search, replace)
    trimmed = tuple([("-", s) for s in ts] + [("+", r) for r in tr])
    found = locate(lines, [ops, trimmed] if ts else [ops], None)
    if isinstance(found, Ambiguous):
        where = ", ".join(str(p + 1) for p in found.positions)
        return EditOutcome(
            False,
            f"No replacement was performed. Multiple occurrences of the search lines in lines [{where}] of "
            f"{name}. Please ensure it is unique: include more surrounding lines in the search block.",
        )
    if isinstance(found, Match):
        new_lines, new_len = splice(lines, found)
        start, how = found.pos, found.rung
    else:
        one_line = len(search) == 1 and len(replace) <= 1
        frag = _fragment(lines, search[0], replace[0] if replace else "") if one_line else None
        if isinstance(frag, list):
            where = ", ".join(str(p + 1) for p in frag)
            return EditOutcome(
                False,
                f"No replacement was performed. Multiple occurrences of the search text in lines "
                f"[{where}] of {name}. Please ensure it is unique.",
            )
        if frag is None:
            return EditOutcome(
                False,
                f"No replacement was performed, the search lines did not appear verbatim in {name}.\n"
                + closest_lines(lines, search),
            )
        (new_lines, start), new_len, how = frag, 1, "match inside one line"
    write_text(path, current.with_lines(new_lines))
    return EditOutcome(
        True,
        f"The file {name} has been edited ({how}). It now has {_count(len(new_lines))}.\n"
        f"Here is the result around the change:\n{around(new_lines, start, start + new_len)}",
        [name],
    )


# --- unified diffs ------------------------------------------------------------------------------------------


def _pick_path(root: Path, raw: str | None) -> str | None:
    """Drop git's ``a/``/``b/`` prefix unless the prefixed path is the one that exists."""
    if raw is None:
        return None
    raw = raw.removeprefix("./")
    if raw[:2] in ("a/", "b/"):
        stripped = raw[2:]
        try:
            if (root / raw).exists() and not (root / stripped).exists():
                return raw
        except OSError:
            pass
        return stripped
    return raw


def _new_file_content(fp: FilePatch) -> TextFile:
    lines = [x.text for h in fp.hunks for x in h.lines if x.op != "-"]
    final = not (fp.hunks and fp.hunks[-1].no_newline_new)
    return TextFile(tuple(lines), final_newline=final)


def _file_patch(root: Path, fp: FilePatch, protected: Protected | None) -> tuple[bool, str, list[str]]:
    old, new = _pick_path(root, fp.old_path), _pick_path(root, fp.new_path)
    if old is None and new is None:
        return (
            False,
            "A hunk came without '--- a/PATH' / '+++ b/PATH' lines naming its file; nothing changed.",
            [],
        )
    name = _display(new or old or "")
    if fp.binary:
        return False, f"{name}: binary file changes cannot be applied from a diff; nothing changed.", []
    try:
        src = _guard(root, old, protected) if old is not None else None
        dst = _guard(root, new, protected) if new is not None else None
    except PathRefused as exc:
        return False, str(exc), []
    if dst is None:
        assert src is not None and old is not None
        if not src.is_file():
            return False, f"{_display(old)}: cannot delete, the file does not exist.", []
        src.unlink()
        return True, f"{_display(old)}: deleted.", [_display(old)]
    if src is None or (not src.exists() and all(x.op == "+" for h in fp.hunks for x in h.lines)):
        if dst.exists() and read_text(dst, name) != TextFile(()):
            return (
                False,
                f"{name}: the diff creates it from /dev/null, but it already exists; nothing changed.",
                [],
            )
        content = _new_file_content(fp)
        write_text(dst, content)
        return True, f"{name}: created ({_count(len(content.lines))}).", [name]
    return _modify(src, dst, fp, _display(old or name), name)


def _modify(src: Path, dst: Path, fp: FilePatch, old_name: str, name: str) -> tuple[bool, str, list[str]]:
    if not src.is_file():
        return False, f"{old_name}: the file does not exist, so its hunks cannot be applied.", []
    current = read_text(src, old_name)
    if isinstance(current, str):
        return False, current, []
    renamed = src.resolve() != dst.resolve()
    if renamed and dst.exists():
        return False, f"{old_name}: cannot rename to {name}, which already exists; nothing changed.", []
    if not fp.hunks and not renamed:
        return (
            False,
            f"{name}: the diff has no hunks ('@@ ... @@' sections) for this file; nothing changed.",
            [],
        )
    result = apply_hunks(current.lines, current.final_newline, fp.hunks)
    detail = "\n".join("  " + note for note in result.notes)
    if not result.ok:
        return False, f"{old_name}: left unchanged because not every hunk applied.\n{detail}", []
    write_text(dst, current.with_lines(result.lines, result.final_newline))
    changed = [name]
    if renamed:
        src.unlink()
        changed.insert(0, old_name)
    head = f"{name}: {len(fp.hunks)} hunk(s) applied" + (f" (renamed from {old_name})" if renamed else "")
    text = f"{head}; it now has {_count(len(result.lines))}.\n{detail}"
    if fp.hunks and result.last_change - result.first_change <= 40:
        text += "\n" + around(result.lines, result.first_change, result.last_change, radius=3)
    return True, text, changed


def _diff(root: Path, edit: UnifiedDiff, protected: Protected | None) -> EditOutcome:
    files, _parser = parse_diff(edit.text)
    if not files:
        return EditOutcome(
            False,
            "No file changes were found in the diff. A unified diff needs '--- a/PATH' and '+++ b/PATH' "
            "lines followed by '@@ -START,COUNT +START,COUNT @@' hunks.",
        )
    results = [_file_patch(root, fp, protected) for fp in files]
    changed = [name for _, _, names in results for name in names]
    return EditOutcome(all(ok for ok, _, _ in results), "\n".join(msg for _, msg, _ in results), changed)


# --- public entry points ------------------------------------------------------------------------------------


def apply_edit(root: Path, edit: Edit, *, protected: Protected | None = None, hints: Sequence[str] = ()) -> EditOutcome:
    """Apply one edit under ``root``. Never raises for a bad edit: the outcome carries the observation.

    ``hints`` are the files the task and the failure point at, most relevant first: where a block of code with no
    path could belong to several files, they tell which.
    """
    try:
        if isinstance(edit, FencedCode):
            return apply_fenced(root, edit, protected=protected, hints=hints)
        if isinstance(edit, SearchReplace):
            return _search_replace(root, edit, protected)
        if isinstance(edit, CreateFile):
            return _create(root, edit, protected)
        if isinstance(edit, WholeFile):
            return _whole(root, edit, protected)
        if isinstance(edit, DeleteFile):
            return _delete(root, edit, protected)
        return _diff(root, edit, protected)
    except PathRefused as exc:
        return EditOutcome(False, str(exc))
    except OSError as exc:
        return EditOutcome(False, f"The edit could not be written: {exc.strerror or exc} ({exc.filename}).")
    except Exception as exc:  # a patcher bug must not end the repair loop; it is visible in the trajectory
        return EditOutcome(
            False,
            f"Internal error in the patcher ({type(exc).__name__}: {exc}); files written before it are kept.",
        )


def apply_edits(root: Path, edits: Sequence[Edit], *, protected: Protected | None = None) -> list[EditOutcome]:
    """Apply edits in order: each sees the previous ones' result; a failure does not stop the rest."""
    return [apply_edit(root, edit, protected=protected) for edit in edits]


def _syntax_error(rel: str, source: str) -> str | None:
    try:
        ast.parse(source, filename=rel)
    except SyntaxError as exc:
        lineno, col = exc.lineno or 1, exc.offset or 1
        lines = source.splitlines()
        text = (exc.text or (lines[lineno - 1] if 0 < lineno <= len(lines) else "")).rstrip("\r\n")
        caret = " " * (max(col, 1) - 1 + 4) + "^"
        return f"{rel}:{lineno}:{col}: {exc.msg}\n    {text}\n{caret}"
    except ValueError as exc:
        return f"{rel}: {exc}"
    return None


def check_syntax(root: Path, paths: Iterable[str]) -> list[str]:
    """One observation per ``.py`` file among ``paths`` that does not parse; missing files are skipped."""
    problems: list[str] = []
    for rel in dict.fromkeys(paths):
        if not rel.endswith(".py"):
            continue
        name = _display(rel)
        try:
            path = resolve_path(root, rel)
        except PathRefused as exc:
            problems.append(str(exc))
            continue
        if not path.is_file():
            continue
        try:
            source = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            problems.append(f"{name}: not valid UTF-8, so it cannot be parsed as Python.")
            continue
        problem = _syntax_error(name, source)
        if problem:
            problems.append(problem)
    return problems
