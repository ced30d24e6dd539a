"""Fenced code with no path: the answer small models give ("here is the fixed function"), placed by name.

Why through the syntax tree: a model that returns the whole corrected ``def`` (or ``class``) has said exactly what it
means, but not where. The definition of that name is found in the repository's source files (not its tests), and its
lines - decorators included - are replaced by the block's, re-indented to where it lives; everything else in the file
stays byte for byte. A class in the block is merged member by member, so a class written with only the method that
changed does not delete its other methods. Imports the block adds are put after the file's own imports. A block that
is the whole of the only source file replaces that file. Nothing is written when the block does not parse, names
nothing the repository defines, or a name is defined in several files that nothing tells apart: the observation says
what was looked for and where.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.edits import EditOutcome, FencedCode
from tools.patching.textfile import TextFile, read_text, split_text, text_file_from, write_text

__all__ = ["apply_fenced", "source_files"]

Protected = Callable[[str], str | None]
_SKIP_DIRS = {".git", ".mendloop", "__pycache__", ".venv", "venv", "node_modules", ".tox", "build", "dist"}
_Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _is_test_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    parts = rel.split("/")[:-1]
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
        or any(p in ("tests", "test", "testing") for p in parts)
    )


def source_files(root: Path, limit: int = 2000) -> list[str]:
    """The repository's Python source files (tests excluded), sorted; links are not followed."""
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(p in _SKIP_DIRS or p.startswith(".") for p in rel.parts[:-1]) or path.is_symlink():
            continue
        if path.is_file() and not _is_test_file(rel.as_posix()):
            out.append(rel.as_posix())
            if len(out) >= limit:
                break
    return out


@dataclass
class _Target:
    rel: str
    text: TextFile
    tree: ast.Module


def _start(node: _Def) -> int:
    """First line (1-based) of a definition, its decorators included."""
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def _defs(body: Sequence[ast.stmt]) -> dict[str, _Def]:
    return {n.name: n for n in body if isinstance(n, _Def)}


def _find(tree: ast.Module, name: str) -> list[tuple[_Def, ast.ClassDef | None]]:
    """Where ``name`` is defined: at the top level, or as a member of a top-level class."""
    hits: list[tuple[_Def, ast.ClassDef | None]] = []
    for node in tree.body:
        if isinstance(node, _Def) and node.name == name:
            hits.append((node, None))
        if isinstance(node, ast.ClassDef):
            hits.extend((member, node) for member in _defs(node.body).values() if member.name == name)
    return hits


def _load(root: Path, rel: str) -> _Target | None:
    text = read_text(root / rel, rel)
    if isinstance(text, str):
        return None
    try:
        tree = ast.parse("\n".join(text.lines))
    except (SyntaxError, ValueError):
        return None
    return _Target(rel, text, tree)


def _block_source(lines: list[str], node: ast.stmt, indent: str) -> list[str]:
    """The block's lines for ``node`` (decorators included), re-indented from its own column to ``indent``."""
    start = _start(node) if isinstance(node, _Def) else node.lineno
    end = node.end_lineno or node.lineno
    chunk = lines[start - 1 : end]
    own = len(chunk[0]) - len(chunk[0].lstrip()) if chunk else 0
    out = []
    for line in chunk:
        if not line.strip():
            out.append("")
            continue
        cut = min(own, len(line) - len(line.lstrip()))
        out.append(indent + line[cut:])
    return out


def _indent_of(lines: Sequence[str], node: ast.stmt) -> str:
    line = lines[(_start(node) if isinstance(node, _Def) else node.lineno) - 1]
    return line[: len(line) - len(line.lstrip())]


@dataclass
class _Splice:
    start: int  # 0-based, inclusive
    end: int  # 0-based, exclusive
    lines: list[str]


def _plan(block_lines: list[str], block: ast.Module, target: _Target) -> tuple[list[_Splice], list[str]]:
    """The splices that put the block's definitions into ``target``, and the names written."""
    file_lines = list(target.text.lines)
    splices: list[_Splice] = []
    names: list[str] = []
    pending_new: list[ast.stmt] = []  # block definitions the file lacks: they go in before the next known one
    last_end = None
    for node in block.body:
        if not isinstance(node, _Def):
            continue
        hits = _find(target.tree, node.name)
        top = [h for h in hits if h[1] is None]
        if isinstance(node, ast.ClassDef) and top and isinstance(top[0][0], ast.ClassDef):
            member_splices, member_names = _merge_class(block_lines, node, top[0][0], file_lines)
            splices += member_splices
            names += member_names
            last_end = (top[0][0].end_lineno or top[0][0].lineno) - 1
            continue
        if not hits:
            pending_new.append(node)
            continue
        found, _owner = (top or hits)[0]
        indent = _indent_of(file_lines, found)
        new_lines: list[str] = []
        for extra in pending_new:
            new_lines += [*_block_source(block_lines, extra, indent), ""]
        pending_new = []
        new_lines += _block_source(block_lines, node, indent)
        splices.append(_Splice(_start(found) - 1, found.end_lineno or found.lineno, new_lines))
        names.append(node.name)
        last_end = (found.end_lineno or found.lineno) - 1
    if pending_new and last_end is not None:
        extra_lines: list[str] = []
        for extra in pending_new:
            extra_lines += ["", "", *_block_source(block_lines, extra, "")]
        splices.append(_Splice(last_end + 1, last_end + 1, extra_lines))
        names += [n.name for n in pending_new if isinstance(n, _Def)]
    return splices, names


def _merge_class(
    block_lines: list[str], new: ast.ClassDef, old: ast.ClassDef, file_lines: list[str]
) -> tuple[list[_Splice], list[str]]:
    """A class in the block, merged into the file's class: members replaced by name, new members appended."""
    old_members = _defs(old.body)
    splices: list[_Splice] = []
    names: list[str] = []
    appended: list[str] = []
    member_indent = _indent_of(file_lines, old.body[0]) if old.body else _indent_of(file_lines, old) + "    "
    for member in new.body:
        if not isinstance(member, _Def):
            continue
        if member.name in old_members:
            found = old_members[member.name]
            lines = _block_source(block_lines, member, _indent_of(file_lines, found))
            splices.append(_Splice(_start(found) - 1, found.end_lineno or found.lineno, lines))
        else:
            appended += ["", *_block_source(block_lines, member, member_indent)]
        names.append(f"{new.name}.{member.name}")
    if appended:
        end = old.end_lineno or old.lineno
        splices.append(_Splice(end, end, appended))
    return splices, names


def _imports(block: ast.Module, block_lines: list[str], file_lines: list[str], tree: ast.Module) -> _Splice | None:
    """The block's top-level imports that the file does not have yet, to go after the file's own imports."""
    have = {line.strip() for line in file_lines}
    new = []
    for node in block.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for line in block_lines[node.lineno - 1 : node.end_lineno or node.lineno]:
                if line.strip() and line.strip() not in have:
                    new.append(line.strip())
    if not new:
        return None
    after = 0
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is tree.body[0]
        if isinstance(node, ast.Import | ast.ImportFrom) or is_doc:
            after = node.end_lineno or node.lineno
        else:
            break
    return _Splice(after, after, new)


def _write(root: Path, target: _Target, splices: list[_Splice]) -> None:
    lines = list(target.text.lines)
    for splice in sorted(splices, key=lambda s: (s.start, s.end), reverse=True):
        lines[splice.start : splice.end] = splice.lines
    write_text(root / target.rel, target.text.with_lines(lines))


def _choose(names: list[str], defining: dict[str, list[str]], hints: Sequence[str]) -> str:
    """The one file the names point at, or an observation (``"!..."``) saying why none could be chosen."""
    files = [f for f in defining if all(n in defining[f] for n in names)] or [
        f for f in defining if any(n in defining[f] for n in names)
    ]
    if len(files) == 1:
        return files[0]
    hinted = [f for f in files if f in hints]
    if len(hinted) == 1:
        return hinted[0]
    return (
        f"!The code block defines {', '.join(names)}, which several files define ({', '.join(files)}); nothing was "
        "written. Write the file's path on the line before the block."
    )


def apply_fenced(
    root: Path, edit: FencedCode, *, protected: Protected | None = None, hints: Sequence[str] = ()
) -> EditOutcome:
    """Put the block's definitions where the repository defines them (see the module docstring)."""
    block_lines, _ = split_text(edit.code.replace("\r\n", "\n"))
    try:
        block = ast.parse(edit.code)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        return EditOutcome(False, f"The code block does not parse ({where}{exc.msg}); nothing was written.")
    wanted = [n.name for n in block.body if isinstance(n, _Def)]
    candidates = [f for f in source_files(root) if protected is None or not protected(f)]
    loaded = {rel: t for rel in candidates if (t := _load(root, rel)) is not None}
    defining = {rel: [n for n in wanted if _find(t.tree, n)] for rel, t in loaded.items()}
    defining = {rel: names for rel, names in defining.items() if names}
    if not defining:
        if len(loaded) == 1 and wanted:
            return _whole_file(root, next(iter(loaded.values())), edit.code)
        looked = ", ".join(wanted) or "no def or class at all"
        where = f" in {', '.join(candidates[:8])}" if candidates else " (the repository has no source file)"
        return EditOutcome(
            False,
            f"The code block matches no definition: looked for {looked}{where}; nothing was written. Give the whole "
            "function with its def line, or write the file's path on the line before the block.",
        )
    choice = _choose(wanted, defining, hints)
    if choice.startswith("!"):
        return EditOutcome(False, choice[1:])
    target = loaded[choice]
    if len(loaded) == 1 and _covers_file(block, block_lines, target):
        return _whole_file(root, target, edit.code)
    splices, names = _plan(block_lines, block, target)
    extra = _imports(block, block_lines, list(target.text.lines), target.tree)
    if extra is not None:
        splices.append(extra)
    if not splices:
        return EditOutcome(False, f"The code block changes nothing in {choice}; nothing was written.")
    _write(root, target, splices)
    return EditOutcome(True, f"Replaced {', '.join(names)} in {choice}.", [choice])


def _covers_file(block: ast.Module, block_lines: list[str], target: _Target) -> bool:
    """Is the block the whole file rewritten: every top-level definition and every import of the file in it?"""
    tree = target.tree
    have = {n.name for n in tree.body if isinstance(n, _Def)}
    if not have or not have <= {n.name for n in block.body if isinstance(n, _Def)}:
        return False
    block_text = {line.strip() for line in block_lines}
    file_lines = target.text.lines
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    wanted = [ln.strip() for n in imports for ln in file_lines[n.lineno - 1 : n.end_lineno or n.lineno]]
    return all(line in block_text for line in wanted)


def _whole_file(root: Path, target: _Target, code: str) -> EditOutcome:
    content = text_file_from(code, like=target.text)
    write_text(root / target.rel, content)
    return EditOutcome(True, f"Rewrote {target.rel} with the code block (it is the only source file).", [target.rel])
