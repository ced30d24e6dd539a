"""Edits written as markdown: fenced diffs, fenced whole files after their path, aider-style SEARCH/REPLACE.

Why a fallback parser shared by both dialects: whatever format was asked for, models (small local ones above
all) often answer in markdown instead. Losing a correct fix because it came in a fence would waste a whole
turn. The callers use this only when an answer has no tool blocks/calls at all, so an example fence next to a
real tool call never becomes an edit. A Python fence without a path counts only when it holds a whole ``def`` or
``class`` at its top level (the fixed function a small model returns) and is closed (a fence cut short by the token
limit could hold a function cut short); it is placed by name (tools/patching/definitions.py), never by guessing a
file. Example usage with no definition is not an edit at all. After a source file's path, a fence holding definitions
is placed by name in that file too: "`stats/core.py`:" and the one fixed function is what small models write, and
as a whole file it would delete every other function of the file. After a test's path, or with no definition, a
fence is the whole file.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from tools.edits import Edit, FencedCode, SearchReplace, UnifiedDiff, WholeFile
from tools.patching.definitions import is_test_file

__all__ = ["looks_like_path", "parse_fenced", "parse_search_replace"]

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_SEARCH = re.compile(r"^<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_REPLACE = re.compile(r"^>{5,9} ?REPLACE\s*$")
_PATH = re.compile(r"^(?:[A-Za-z0-9_.\-]+/)*[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
_DIFF_LANGS = {"diff", "patch", "udiff"}
_PATH_PREFIXES = ("file:", "path:", "filename:", "in ")


@dataclass
class _Fence:
    info: str
    body: list[str]
    before: str  # the nearest non-blank line above the fence
    closed: bool


def looks_like_path(line: str) -> str | None:
    """The path a line names (``src/x.py``, ``**src/x.py**``, ``File: src/x.py:``, ``# x.py``), else None."""
    text = line.strip().strip("*`'\"").strip()
    lowered = text.lower()
    for prefix in _PATH_PREFIXES:
        if lowered.startswith(prefix):
            text = text[len(prefix) :].strip().strip("*`'\"")
            break
    text = text.lstrip("#").strip().rstrip(":").strip("*`'\"").strip()
    if text.startswith("./"):
        text = text[2:]
    if not text or " " in text or text.startswith(("http:", "https:")) or not _PATH.match(text):
        return None
    name = text.rsplit("/", 1)[-1]
    has_ext = "." in name.strip(".") and not name.endswith(".")
    return text if has_ext or ("/" in text and not text.endswith("/")) else None


def _fences(lines: list[str]) -> tuple[list[_Fence], list[str]]:
    """The fenced blocks, and the lines outside any fence."""
    fences: list[_Fence] = []
    outside: list[str] = []
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if not match:
            outside.append(lines[i])
            i += 1
            continue
        fence = match.group("fence")
        before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and stripped.strip(fence[0]) == "":
                closed = True
                i += 1
                break
            body.append(lines[i])
            i += 1
        fences.append(_Fence(match.group("info").strip(), body, before, closed))
    return fences, outside


def parse_search_replace(lines: list[str], path: str | None) -> tuple[list[SearchReplace], list[str]]:
    """SEARCH/REPLACE blocks; a path-like line before a block (re)sets the path. Texts keep whole lines."""
    edits: list[SearchReplace] = []
    problems: list[str] = []
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            if named := looks_like_path(lines[i]):
                path = named
            i += 1
            continue
        start = i
        search: list[str] = []
        replace: list[str] = []
        part = search
        i += 1
        while i < len(lines) and not _REPLACE.match(lines[i]):
            if _DIVIDER.match(lines[i]) and part is search:
                part = replace
            else:
                part.append(lines[i])
            i += 1
        where = f" for {path}" if path else ""
        if i >= len(lines) or part is search:
            problems.append(
                f"the SEARCH/REPLACE block{where} starting at line {start + 1} is incomplete: "
                "it needs <<<<<<< SEARCH, the old lines, =======, the new lines, >>>>>>> REPLACE"
            )
            break
        i += 1
        if path is None:
            problems.append("a SEARCH/REPLACE block has no file path: put the path on the line before it")
            continue
        edits.append(SearchReplace(path, _join(search), _join(replace)))
    return edits, problems


def _join(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


_PYTHON_LANGS = {"", "python", "py", "python3", "py3"}
_DEFINES = re.compile(r"^\s*(?:async\s+def|def|class)\s+\w+", re.MULTILINE)


def _defines_code(body: str) -> bool:
    """Does a Python fence hold a def or class at its top level (then it is code to place by name)?

    A block that parses is judged by its syntax tree, so example usage - calls, prints, a docstring mentioning a
    class - is never an edit; one that does not parse counts if a line starts a definition, so that the model hears
    where its code does not parse instead of "no edit was found"."""
    try:
        tree = ast.parse(textwrap.dedent(body))
    except SyntaxError:
        return bool(_DEFINES.search(body))
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for node in tree.body)


def _is_python(info: str) -> bool:
    return (info.split()[0].lower() if info.split() else "") in _PYTHON_LANGS


def _is_diff(info: str, body: list[str]) -> bool:
    lang = info.split()[0].lower() if info.split() else ""
    if lang in _DIFF_LANGS:
        return True
    starts = [ln for ln in body if ln.strip()][:3]
    return bool(starts) and (
        starts[0].startswith("diff --git ")
        or (len(starts) >= 2 and starts[0].startswith("--- ") and starts[1].startswith("+++ "))
    )


def _info_path(info: str) -> str | None:
    """``python path/to/x.py`` or ``path/to/x.py`` as a fence info string; a bare language is not a path."""
    for token in info.split():
        token = token.removeprefix("title=").strip("\"'")
        if "." in token or "/" in token:
            path = looks_like_path(token)
            if path:
                return path
    return None


def parse_fenced(text: str) -> tuple[list[Edit], list[str]]:
    """Every edit written in markdown in ``text``, in order, and problems to tell the model."""
    fences, outside = _fences(text.splitlines())
    edits: list[Edit] = []
    problems: list[str] = []
    for fence in fences:
        path = _info_path(fence.info) or looks_like_path(fence.before)
        if any(_SEARCH.match(ln) for ln in fence.body):
            found, trouble = parse_search_replace(fence.body, path)
            edits.extend(found)
            problems.extend(trouble)
        elif _is_diff(fence.info, fence.body):
            edits.append(UnifiedDiff(_join(fence.body)))
        elif path is not None:
            if not fence.closed:
                problems.append(f"the code block for {path} is not closed with ``` - the file was not written")
            elif path.endswith(".py") and not is_test_file(path) and _defines_code(_join(fence.body)):
                # a source file's path and its changed function: placed by name in that file, the rest kept
                edits.append(FencedCode(_join(fence.body), path))
            else:
                edits.append(WholeFile(path, _join(fence.body)))
        elif _is_python(fence.info) and _defines_code(_join(fence.body)):
            # no path: whole definitions, placed by name in the file that defines them (several fences apply in
            # order, so a fix written after a quote of the buggy original wins)
            if not fence.closed:
                problems.append("the code block is not closed with ``` - it may be cut short, so it was not applied")
            else:
                edits.append(FencedCode(_join(fence.body)))
    if any(_SEARCH.match(ln) for ln in outside):
        found, trouble = parse_search_replace(outside, None)
        edits.extend(found)
        problems.extend(trouble)
    return edits, problems
