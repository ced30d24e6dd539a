"""Fenced Python code holding whole definitions: the answer small models give ("here is the fixed function"),
placed by name through the syntax tree.

Why through the syntax tree: a model that returns the whole corrected ``def`` (or ``class``) has said exactly what
it means, but not where. Its names say where, and the syntax tree says which lines each definition spans, so the
change lands on exactly those lines and everything else stays byte for byte (line endings, final newline, BOM).

Where: with no path, the block's def/class names are looked up in the repository's source files - never its tests,
since such a block fixes code. One file defining them is the target. Several are told apart only by ``hints`` (the
files the task and the failure point at, most relevant first), else the block is refused, naming the files. A name
that only a test (or a protected file) defines is refused with the reason. With a path (the file named on the line
before the fence), that file is the target; a path that is no existing source file is a plain whole-file write.

What: a definition replaces the one of the same name - at the top level first, else a class member (a method given
alone, at any indentation), else a nested one; several at the same depth are refused - re-indented to where it lives
and to the file's indent unit (a tab file stays tabs); multi-line strings other than docstrings are not re-indented.
A definition that is the same code as the file's (docstrings, comments and layout aside) is left as it is, so a
whole file given back touches only what changed. A def given without decorators, or without a docstring, keeps the
file's. A class is merged member by member, so a class written with only the changed method keeps the others. A
name the block defines twice counts once, the last (as Python reads it). Definitions the file lacks go next to their
neighbour in the block; imports it lacks go after its imports; a top-level constant, and a ``__main__`` block the
file has, replace the file's.

Never written: example code around the definitions - ``print(...)``, loops, values only the example uses, an
``if __name__ == "__main__":`` demo the file does not have; the message says it was left out. Nothing at all is
written when the block does not parse, names nothing the repository defines, or cannot be placed surely: the
observation says what was looked for and where.
"""

from __future__ import annotations

import ast
import copy
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.edits import EditOutcome, FencedCode, WholeFile
from tools.patching.textfile import TextFile, normalize_newlines, read_text, write_text

__all__ = ["apply_fenced", "is_test_file", "python_files"]

Protected = Callable[[str], str | None]
_SKIP_DIRS = {".git", ".mendloop", "__pycache__", ".venv", "venv", "node_modules", ".tox", "build", "dist"}
_Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
_Import = ast.Import | ast.ImportFrom
_ACCESSORS = ("setter", "getter", "deleter")
_SHOWN_FILES = 8
_QUOTE = re.compile(r"[rRuU]?[\"']")  # a line that opens a string literal
_MAIN = "if __name__"  # the key of a file's ``if __name__ == "__main__":`` block


def is_test_file(rel: str) -> bool:
    """pytest's discovery rules, conftest, and anything under a tests folder."""
    name = rel.rsplit("/", 1)[-1]
    parts = rel.split("/")[:-1]
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
        or any(p in ("tests", "test", "testing") for p in parts)
    )


def python_files(root: Path, limit: int = 2000) -> list[str]:
    """The repository's Python files (tests included), sorted; caches, hidden folders and links are skipped."""
    out: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(p in _SKIP_DIRS or p.startswith(".") for p in rel.parts[:-1]) or path.is_symlink():
            continue
        if path.is_file():
            out.append(rel.as_posix())
            if len(out) >= limit:
                break
    return out


# --- reading the block and the files ------------------------------------------------------------------------


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _start(node: ast.stmt) -> int:
    """First line (1-based) of a statement, a definition's decorators included."""
    if isinstance(node, _Def):
        return min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return node.lineno


def _end(node: ast.stmt) -> int:
    return node.end_lineno or node.lineno


def _is_docstring(node: ast.stmt, body: Sequence[ast.stmt]) -> bool:
    return (
        bool(body)
        and node is body[0]
        and isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _is_text(node: ast.expr) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str | bytes))


def _indent_unit(lines: Sequence[str], tree: ast.Module) -> str | None:
    """One level of indentation as the code writes it (four spaces, a tab, ...), from its first indented body."""
    for node in ast.walk(tree):
        if isinstance(node, _Def | ast.If | ast.For | ast.While | ast.With | ast.Try) and node.body:
            outer, inner = _indent(lines[node.lineno - 1]), _indent(lines[_start(node.body[0]) - 1])
            if inner.startswith(outer) and len(inner) > len(outer):
                return inner[len(outer) :]
    return None


def _frozen_lines(tree: ast.Module) -> frozenset[int]:
    """Lines (1-based) inside multi-line string literals: re-indenting them would change the string.

    Docstrings are the exception - they are re-indented with their code, as a person moving the code would."""
    docstrings = {
        id(node.body[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | _Def) and node.body and _is_docstring(node.body[0], node.body)
    }
    frozen: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and id(node) in docstrings:
            continue
        strings = [n for n in ast.iter_child_nodes(node) if isinstance(n, ast.expr) and _is_text(n)]
        for string in strings:
            frozen.update(range(string.lineno + 1, (string.end_lineno or string.lineno) + 1))
    return frozenset(frozen)


@dataclass
class _Code:
    """Parsed Python source: the block, or a file (then with how it is stored)."""

    lines: list[str]
    tree: ast.Module
    frozen: frozenset[int] = frozenset()
    unit: str | None = None
    text: TextFile | None = None
    rel: str = ""


def _parse_block(code: str) -> _Code | str:
    """The block dedented and parsed, or the observation saying where it does not parse."""
    source = textwrap.dedent(normalize_newlines(code).removeprefix("\ufeff"))
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        text = (exc.text or "").strip()
        shown = f": `{text[:80]}`" if text else ""
        return f"The code block does not parse ({where}{exc.msg}{shown}); nothing was written."
    lines = source.split("\n")
    return _Code(lines, tree, _frozen_lines(tree), _indent_unit(lines, tree))


def _load(root: Path, rel: str) -> _Code | str:
    """A file parsed, or why it cannot be (not text, or not valid Python itself)."""
    text = read_text(root / rel, rel)
    if isinstance(text, str):
        return text
    lines = list(text.lines)
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError as exc:
        return f"{rel} does not parse itself (line {exc.lineno}: {exc.msg})"
    except ValueError as exc:
        return f"{rel} cannot be parsed ({exc})"
    return _Code(lines, tree, unit=_indent_unit(lines, tree), text=text, rel=rel)


# --- what a statement is --------------------------------------------------------------------------------------


def _assigned(node: ast.stmt) -> str | None:
    """The one plain name a top-level (or class-level) assignment binds, else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _key(node: ast.stmt) -> str | None:
    """What a statement defines, as a key matching it to the file's: ``name``, ``name@setter``, ``=NAME``, and the
    ``__main__`` block."""
    if isinstance(node, _Def):
        accessors = [d.attr for d in node.decorator_list if isinstance(d, ast.Attribute) and d.attr in _ACCESSORS]
        return node.name + "".join(f"@{a}" for a in accessors)
    if _is_main_guard(node):
        return _MAIN
    name = _assigned(node)
    return f"={name}" if name else None


def _label(key: str) -> str:
    return "the __main__ block" if key == _MAIN else key.lstrip("=")


def _units(body: Sequence[ast.stmt]) -> list[tuple[str, ast.stmt]]:
    """The definitions and assignments of a body by key; a key given twice counts once, the last, where it is."""
    last: dict[str, tuple[int, ast.stmt]] = {}
    for i, node in enumerate(body):
        key = _key(node)
        if key is not None:
            last[key] = (i, node)
    return [(key, node) for key, (_, node) in sorted(last.items(), key=lambda item: item[1][0])]


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test)


def _is_method(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and bool(node.args.args)
        and node.args.args[0].arg in ("self", "cls")
    )


def _import_keys(node: ast.stmt) -> list[tuple[str, ...]]:
    if isinstance(node, ast.Import):
        return [("import", a.name, a.asname or "") for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [("from", str(node.level), node.module or "", a.name, a.asname or "") for a in node.names]
    return []


def _example_code(block: _Code, target: _Code) -> list[ast.stmt]:
    """The block's top-level code that only shows or tests the fix, never written: calls, loops, a ``__main__``
    demo the file does not have, values only the example uses (``numbers = [4, 1, 3, 2]``), new test functions, and
    new functions only the example calls (HumanEval's ``def check(candidate)`` then ``check(f)``) - unless the file
    itself has them."""
    body = block.tree.body
    have = {ast.dump(n) for n in target.tree.body}
    file_keys = {_key(n) for n in target.tree.body} - {None}
    file_defs = {h.node.name for h in _definitions(target.tree)}
    new_defs = [n for n in body if isinstance(n, _Def) and n.name not in file_defs]
    tests = {id(n) for n in new_defs if n.name.startswith(("test_", "Test"))}
    kept_defs = [n for n in body if isinstance(n, _Def) and id(n) not in tests]
    used = {n.id for d in kept_defs for n in ast.walk(d) if isinstance(n, ast.Name)}
    out: list[ast.stmt] = []
    for node in body:
        if ast.dump(node) in have or _is_docstring(node, body) or isinstance(node, _Def | _Import):
            continue
        key = _key(node)
        if key is not None and (key in file_keys or key.lstrip("=") in used):
            continue
        out.append(node)
    shown = {n.id for s in out for n in ast.walk(s) if isinstance(n, ast.Name)}
    for node in new_defs:
        others = {n.id for d in kept_defs if d is not node for n in ast.walk(d) if isinstance(n, ast.Name)}
        if id(node) in tests or (node.name in shown and node.name not in others):
            out.append(node)
    return sorted(out, key=_start)


# --- finding definitions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    """One definition in a file: the node, its dotted name, how deep it sits, the top-level statement holding it."""

    node: _Def
    qualname: str
    tier: int  # 0 top level, 1 member of a class, 2 nested deeper
    top: ast.stmt
    owner: ast.ClassDef | None  # the class it is a direct member of


def _definitions(tree: ast.Module) -> list[_Hit]:
    out: list[_Hit] = []

    def walk(body: Sequence[ast.stmt], prefix: str, depth: int, top: ast.stmt | None, owner: _Def | None) -> None:
        for node in body:
            if isinstance(node, _Def):
                here = top or node
                cls = owner if isinstance(owner, ast.ClassDef) else None
                tier = 0 if depth == 0 else 1 if depth == 1 and cls is not None else 2
                out.append(_Hit(node, prefix + node.name, tier, here, cls))
                walk(node.body, f"{prefix}{node.name}.", depth + 1, here, node)
            elif isinstance(node, ast.If | ast.Try | ast.With):  # conditional definitions count where they sit
                inner = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
                for handler in getattr(node, "handlers", []):
                    inner.extend(handler.body)
                walk(inner, prefix, depth, top or node, owner)

    walk(tree.body, "", 0, None, None)
    return out


def _select(hits: list[_Hit], unit: ast.stmt) -> _Hit | list[_Hit] | None:
    """The one definition ``unit`` replaces, the several it could (ambiguous), or None (it is new)."""
    key = _key(unit)
    same = [h for h in hits if _key(h.node) == key]
    for tier in (1, 0, 2) if _is_method(unit) else (0, 1, 2):
        found = [h for h in same if h.tier == tier]
        if len(found) == 1:
            return found[0]
        if found:
            return found
    return None


# --- planning the change ------------------------------------------------------------------------------------


@dataclass
class _Splice:
    start: int  # 0-based first line replaced
    end: int  # 0-based, exclusive; == start for an insertion
    lines: list[str]
    seq: int  # the block's order: of two overlapping splices the later one wins


@dataclass
class _Plan:
    block: _Code
    target: _Code
    splices: list[_Splice] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def splice(self, start: int, end: int, lines: list[str]) -> None:
        self.splices.append(_Splice(start, end, lines, len(self.splices)))

    def code(self, first: int, last: int, indent: str) -> list[str]:
        """The block's lines ``first``..``last`` (1-based), re-indented from the block's column and indent unit to
        ``indent`` and the file's unit; lines inside multi-line strings are left as they are."""
        chunk = self.block.lines[first - 1 : last]
        own = _indent(chunk[0]) if chunk else ""
        out: list[str] = []
        for number, line in enumerate(chunk, start=first):
            if number in self.block.frozen:
                out.append(line)
            elif not line.strip():
                out.append("")
            else:
                margin = _indent(line)
                rest = margin[len(own) :] if margin.startswith(own) else margin[min(len(own), len(margin)) :]
                out.append(indent + _convert(rest, self.block.unit, self.target.unit) + line.lstrip(" \t"))
        return out

    def unit(self, node: ast.stmt, indent: str) -> list[str]:
        """The block's lines for ``node``, decorators included, re-indented to ``indent``."""
        return self.code(_start(node), _end(node), indent)

    def file_indent(self, node: ast.stmt) -> str:
        return _indent(self.target.lines[_start(node) - 1])


def _convert(margin: str, unit: str | None, to: str | None) -> str:
    """Indentation written in one unit (e.g. four spaces) rewritten in another (e.g. a tab), level for level."""
    if not unit or not to or unit == to:
        return margin
    levels = 0
    while margin.startswith(unit):
        margin = margin[len(unit) :]
        levels += 1
    return to * levels + margin


def _replace(plan: _Plan, found: ast.stmt, unit: ast.stmt, label: str) -> None:
    """Replace the file's ``found`` by the block's ``unit`` - unless they are the same code, docstrings and layout
    aside. A def given without decorators keeps the file's, and one given without a docstring keeps the file's."""
    keep_decorators = isinstance(unit, _Def) and not unit.decorator_list
    if _shape(found, decorators=not keep_decorators) == _shape(unit, decorators=not keep_decorators):
        return
    start = found.lineno if keep_decorators else _start(found)
    first = unit.lineno if keep_decorators else _start(unit)
    lines = plan.code(first, _end(unit), _indent(plan.target.lines[start - 1]))
    docstring = _own_line_docstring(found, plan.target.lines)
    if docstring and isinstance(unit, _Def) and not _is_docstring(unit.body[0], unit.body):
        at = _start(unit.body[0]) - first
        if at > 0:
            lines = [*lines[:at], *docstring, *lines[at:]]
    plan.splice(start - 1, _end(found), lines)
    plan.replaced.append(label)


def _shape(node: ast.stmt, *, decorators: bool) -> str:
    """A statement's code without its docstrings (and decorators, unless asked): what it does, not how it reads."""
    bare = copy.deepcopy(node)
    for inner in ast.walk(bare):
        if isinstance(inner, _Def) and _is_docstring(inner.body[0], inner.body):
            inner.body = inner.body[1:] or [ast.Pass()]
    if isinstance(bare, _Def) and not decorators:
        bare.decorator_list = []
    return ast.dump(bare)


def _own_line_docstring(node: ast.stmt, lines: Sequence[str]) -> list[str]:
    """A definition's docstring lines when it stands on lines of its own (the usual layout), else nothing."""
    if not isinstance(node, _Def) or not _is_docstring(node.body[0], node.body):
        return []
    doc = node.body[0]
    if doc.lineno == node.lineno or not _QUOTE.match(lines[doc.lineno - 1].lstrip()):
        return []
    return list(lines[doc.lineno - 1 : _end(doc)])


def _merge_class(plan: _Plan, found: ast.ClassDef, unit: ast.ClassDef, label: str) -> None:
    """The block's class merged into the file's: its header if changed, members by name, new members added. A class
    written on one line (``class A: pass``) has no lines of its own to merge into: it is replaced whole."""
    if _start(found.body[0]) == found.lineno or _start(unit.body[0]) == unit.lineno:
        _replace(plan, found, unit, label)
        return
    decorated = bool(unit.decorator_list)
    if _header(unit, decorated) != _header(found, decorated):
        start = _start(found) if decorated else found.lineno
        indent = _indent(plan.target.lines[start - 1])
        header = plan.code(_start(unit) if decorated else unit.lineno, _start(unit.body[0]) - 1, indent)
        plan.splice(start - 1, _start(found.body[0]) - 1, header)
        plan.replaced.append(f"{label} (its class line)")
    member_indent = _indent(plan.target.lines[_start(found.body[0]) - 1])
    _merge_body(plan, found.body, unit.body, member_indent, _end(found), prefix=f"{label}.", blank=1)


def _header(node: ast.ClassDef, with_decorators: bool) -> str:
    parts = [ast.dump(b) for b in node.bases] + [ast.dump(k) for k in node.keywords]
    if with_decorators:
        parts += [ast.dump(d) for d in node.decorator_list]
    return "|".join(parts)


def _merge_body(
    plan: _Plan,
    file_body: Sequence[ast.stmt],
    block_body: Sequence[ast.stmt],
    indent: str,
    scope_end: int,
    *,
    prefix: str,
    blank: int,
) -> None:
    """Members of one class body: replaced by key, merged when both are classes, new ones next to a neighbour."""
    placed: list[tuple[ast.stmt, ast.stmt | None]] = []  # (block unit, the file statement it landed on)
    for key, unit in _units(block_body):
        same = [n for n in file_body if _key(n) == key]
        label = prefix + _label(key)
        if len(same) > 1 and key.startswith("="):
            plan.skipped.append(f"{label} (assigned {len(same)} times in {plan.target.rel})")
            continue
        if len(same) > 1:
            plan.problems.append(f"{label} is defined {len(same)} times in {plan.target.rel}")
            return
        if not same:
            placed.append((unit, None))
            continue
        found = same[0]
        if isinstance(found, ast.ClassDef) and isinstance(unit, ast.ClassDef):
            _merge_class(plan, found, unit, label)
        elif ast.dump(found) != ast.dump(unit):
            _replace(plan, found, unit, label)
        placed.append((unit, found))
    _place_new(plan, placed, indent, scope_end, prefix=prefix, blank=blank)


def _place_new(
    plan: _Plan,
    placed: list[tuple[ast.stmt, ast.stmt | None]],
    indent: str,
    scope_end: int,
    *,
    prefix: str,
    blank: int,
) -> None:
    """Units the file lacks go after the block's previous unit that the file has, else before its next one, else at
    the end of the scope, ``blank`` empty lines apart."""
    gap = [""] * blank
    for i, (unit, found) in enumerate(placed):
        if found is not None:
            continue
        before = next((f for _, f in reversed(placed[:i]) if f is not None), None)
        after = next((f for _, f in placed[i + 1 :] if f is not None), None)
        lines = plan.unit(unit, indent)
        if before is not None:
            plan.splice(_end(before), _end(before), [*gap, *lines])
        elif after is not None:
            plan.splice(_start(after) - 1, _start(after) - 1, [*lines, *gap])
        else:
            plan.splice(scope_end, scope_end, [*gap, *lines])
        plan.added.append(prefix + _label(_key(unit) or ""))


def _plan_module(plan: _Plan) -> None:
    """The block's top-level units placed in the target: by name at any depth, or as new code next to a neighbour."""
    hits = _definitions(plan.target.tree)
    block, target = plan.block, plan.target
    examples = {id(n) for n in _example_code(block, target)}
    placed: list[tuple[ast.stmt, ast.stmt | None]] = []
    methods: list[tuple[_Def, _Hit]] = []  # new methods given at column 0 next to a method the file has
    anchor_hit: _Hit | None = None
    for key, unit in _units(block.tree.body):
        if id(unit) in examples:
            continue
        if not isinstance(unit, _Def):
            same = [n for n in target.tree.body if _key(n) == key]
            if len(same) > 1:
                plan.skipped.append(f"{_label(key)} (assigned {len(same)} times in {target.rel})")
                continue
            if same and ast.dump(same[0]) != ast.dump(unit):
                _replace(plan, same[0], unit, _label(key))
            placed.append((unit, same[0] if same else None))
            continue
        found = _select(hits, unit)
        if isinstance(found, list):
            where = ", ".join(h.qualname for h in found)
            plan.problems.append(
                f"{unit.name} is defined in several places in {target.rel} ({where}); give the whole class (or "
                "function) that holds the one to change"
            )
            return
        if found is None:
            if _is_method(unit) and anchor_hit is not None and anchor_hit.owner is not None:
                methods.append((unit, anchor_hit))
            else:
                placed.append((unit, None))
            continue
        anchor_hit = found
        label = found.qualname + key[len(unit.name) :]  # Shape.area@setter
        if isinstance(found.node, ast.ClassDef) and isinstance(unit, ast.ClassDef):
            _merge_class(plan, found.node, unit, label)
        else:
            _replace(plan, found.node, unit, label)
        placed.append((unit, found.top))
    for unit, hit in methods:
        lines = plan.unit(unit, plan.file_indent(hit.node))
        plan.splice(_end(hit.node), _end(hit.node), ["", *lines])
        plan.added.append(f"{hit.qualname.rsplit('.', 1)[0]}.{unit.name}")
    _place_new(plan, placed, "", len(target.lines), prefix="", blank=2)
    _add_imports(plan)


def _add_imports(plan: _Plan) -> None:
    """The block's top-level imports the file lacks, written after the file's own imports (a ``__future__`` one
    after its docstring)."""
    tree = plan.target.tree
    have = {k for node in tree.body for k in _import_keys(node)}
    new: list[str] = []
    future: list[str] = []
    for node in plan.block.tree.body:
        if isinstance(node, ast.Import):
            missing = [a for a in node.names if _import_keys(ast.Import(names=[a]))[0] not in have]
            new += [ast.unparse(ast.Import(names=[a])) for a in missing]
        elif isinstance(node, ast.ImportFrom):
            keys = _import_keys(node)
            aliases = [a for a, k in zip(node.names, keys, strict=True) if k not in have]
            if aliases:
                text = ast.unparse(ast.ImportFrom(module=node.module, names=aliases, level=node.level))
                (future if node.module == "__future__" else new).append(text)
    new = list(dict.fromkeys(new))
    docstring = _end(tree.body[0]) if tree.body and _is_docstring(tree.body[0], tree.body) else 0
    if future:
        plan.splice(docstring, docstring, ["", *future] if docstring else future)
        plan.added += future
    if not new:
        return
    lines = plan.target.lines
    after, last_import = docstring, False
    for node in tree.body:
        if isinstance(node, _Import):
            after, last_import = _end(node), True
        elif not _is_docstring(node, tree.body):
            break
    if after == 0:  # a shebang or a licence header stays first
        while after < len(lines) and lines[after].startswith("#"):
            after += 1
    added = new if last_import or not after else ["", *new]
    if after < len(lines) and lines[after].strip():
        added += [""] if last_import else ["", ""]
    plan.splice(after, after, added)
    plan.added += new


def _apply(lines: Sequence[str], splices: list[_Splice]) -> list[str]:
    """The lines with the splices made; of two overlapping ones the later in the block wins."""
    kept: list[_Splice] = []
    for s in sorted(splices, key=lambda s: -s.seq):
        if not any(_overlap(s, k) for k in kept):
            kept.append(s)
    out: list[str] = []
    pos = 0
    for s in sorted(kept, key=lambda s: (s.start, s.end > s.start, s.seq)):
        out += lines[pos : s.start]
        out += s.lines
        pos = max(pos, s.end)
    return out + list(lines[pos:])


def _overlap(a: _Splice, b: _Splice) -> bool:
    if a.start == a.end:
        return b.start < a.start < b.end
    if b.start == b.end:
        return a.start < b.start < a.end
    return a.start < b.end and b.start < a.end


# --- the entry point ------------------------------------------------------------------------------------------


def _listing(files: Sequence[str]) -> str:
    shown = ", ".join(files[:_SHOWN_FILES])
    return shown + (f" and {len(files) - _SHOWN_FILES} more" if len(files) > _SHOWN_FILES else "")


def _normalize_hint(root: Path, hint: str) -> str:
    text = hint.strip().replace("\\", "/")
    path = Path(text)
    if path.is_absolute():
        for base in (root, root.resolve()):
            if path.is_relative_to(base):
                return path.relative_to(base).as_posix()
    return text.removeprefix("./")


def _first_line(node: ast.stmt, block: _Code) -> str:
    return block.lines[_start(node) - 1].strip()


def apply_fenced(
    root: Path, edit: FencedCode, *, protected: Protected | None = None, hints: Sequence[str] = ()
) -> EditOutcome:
    """Put the block's definitions where the repository defines them (see the module docstring)."""
    block = _parse_block(edit.code)
    if isinstance(block, str):
        return EditOutcome(False, block)
    if edit.path is not None:
        return _at_path(root, block, edit.path, edit.code, protected)
    names = list(dict.fromkeys(n.name for _, n in _units(block.tree.body) if isinstance(n, _Def)))
    if not names:
        return EditOutcome(
            False,
            "The code block holds no def or class at its top level, so there is nothing to place by name; nothing "
            "was written. Give the whole function, from its def line to its last line.",
        )
    found = _search(root, names, protected)
    choice = _choose(root, found, names, hints)
    if isinstance(choice, str):
        return EditOutcome(False, choice)
    return _place(root, block, choice)


@dataclass
class _Found:
    """Where a block's names are defined: usable source files, and the files that may not or cannot be used."""

    sources: list[str] = field(default_factory=list)  # every source file looked in
    defining: dict[str, tuple[_Code, list[str]]] = field(default_factory=dict)  # file -> (parsed, names it has)
    nested_only: set[str] = field(default_factory=set)  # files where the names are only nested helpers
    blocked: dict[str, str] = field(default_factory=dict)  # tests and protected files -> why not
    broken: list[str] = field(default_factory=list)  # files naming them that are not valid Python themselves


def _search(root: Path, names: list[str], protected: Protected | None) -> _Found:
    found = _Found()
    wanted = re.compile(
        rf"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+(?:{'|'.join(map(re.escape, names))})\b", re.MULTILINE
    )
    for rel in python_files(root):
        test = is_test_file(rel)
        if not test:
            found.sources.append(rel)
        try:
            if not wanted.search((root / rel).read_text(encoding="utf-8", errors="replace")):
                continue  # cheap: most files never mention the names
        except OSError:
            continue
        code = _load(root, rel)
        if isinstance(code, str):
            found.broken.append(code)
            continue
        hits = [h for h in _definitions(code.tree) if h.node.name in names]
        here = [n for n in names if any(h.node.name == n for h in hits)]
        reason = protected(rel) if protected is not None and here else None
        if not here:
            continue
        if test or reason:
            found.blocked[rel] = reason or (
                f"{rel} is a test file, and a code block with no path only changes source files (write the path on "
                "the line before the block to change a test)"
            )
            continue
        found.defining[rel] = (code, here)
        if all(h.tier == 2 for h in hits):
            found.nested_only.add(rel)
    return found


def _choose(root: Path, found: _Found, names: list[str], hints: Sequence[str]) -> _Code | str:
    """The one file the block belongs in, or the observation saying why there is none."""
    looked = ", ".join(names)
    if not found.defining:
        if found.blocked:
            rel, reason = next(iter(found.blocked.items()))
            return f"The code block defines {looked}, found only in {rel}: {reason}. Nothing was written."
        if found.broken:
            return (
                f"The code block defines {looked}, but {found.broken[0]}, so the block cannot be placed by name; "
                "nothing was written. Write the file's path on the line before the block, and give the whole file."
            )
        where = f"in {_listing(found.sources)}" if found.sources else "(the repository has no Python source file)"
        return (
            f"The code block matches no definition: looked for {looked} {where}; nothing was written. Give the whole "
            "function as it is named in the code, from its def line to its last line, or write the file's path on "
            "the line before the block."
        )
    defining = found.defining
    pool = [rel for rel, (_, here) in defining.items() if len(here) == len(names)] or list(defining)
    if len(pool) > 1:  # a file defining the name for real beats one with only a nested helper of that name
        pool = [rel for rel in pool if rel not in found.nested_only] or pool
    if len(pool) > 1:
        hinted = [h for h in (_normalize_hint(root, h) for h in hints) if h in pool]
        if not hinted:
            each = "; ".join(f"{rel}: {', '.join(defining[rel][1])}" for rel in pool[:_SHOWN_FILES])
            return (
                f"The code block defines {looked}, which several files define ({each}), and nothing in the task or "
                "the failure tells which one is meant; nothing was written. Write the file's path on the line "
                "before the block."
            )
        pool = hinted[:1]
    return defining[pool[0]][0]


def _at_path(root: Path, block: _Code, path: str, code_text: str, protected: Protected | None) -> EditOutcome:
    """Definitions after a source file's path: placed by name in that file. A path that is not an existing Python
    source file here (a new file, a link, anything odd) is what a whole-file edit is, with its checks."""
    rel = _normalize_hint(root, path)
    code = _load(root, rel) if rel in python_files(root) else None
    if code is None or isinstance(code, str):
        from tools.patching import apply_edit  # at call time: tools.patching imports this module

        return apply_edit(root, WholeFile(path, code_text), protected=protected)
    reason = protected(rel) if protected is not None else None
    if reason:
        return EditOutcome(False, f"Refused to edit {rel}: {reason}")
    return _place(root, block, code)


def _place(root: Path, block: _Code, target: _Code) -> EditOutcome:
    assert target.text is not None
    rel = target.rel
    plan = _Plan(block, target)
    _plan_module(plan)
    if plan.problems:
        return EditOutcome(False, f"The code block cannot be placed surely: {plan.problems[0]}; nothing was written.")
    lines = _apply(target.lines, plan.splices)
    if lines == target.lines:
        return EditOutcome(
            False,
            f"The code block is the code {rel} already has (comments, docstrings and layout aside); nothing changed.",
        )
    left_out = _example_code(block, target)
    parts = [f"replaced {', '.join(plan.replaced)}"] if plan.replaced else []
    parts += [f"added {', '.join(plan.added)}"] if plan.added else []
    notes = [f"the example code (`{_first_line(left_out[0], block)}`)"] if left_out else []
    notes += plan.skipped
    done = "; ".join(parts)
    message = f"{done[0].upper()}{done[1:]} in {rel}" + (f"; left out {', '.join(notes)}" if notes else "") + "."
    write_text(root / rel, target.text.with_lines(lines))
    return EditOutcome(True, message, [rel])
