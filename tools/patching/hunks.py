"""Apply the hunks of one file: the per-hunk ladder, the split rung, and all-or-nothing per file.

Why: hunk line numbers from a model are hints, not facts, and hunks arrive out of order. Each hunk is located
by ``ladder.locate`` near where its header says (shifted by what earlier hunks added or removed); a hunk that
will not apply whole is split at its unchanged lines and each part is placed on its own. A line without prefix
is tried both as context and as an addition whose ``+`` was forgotten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tools.patching.diffparse import Hunk
from tools.patching.ladder import Ambiguous, Match, Op, locate, new_side, old_side, splice
from tools.patching.report import closest_lines


@dataclass
class HunkResult:
    ok: bool
    note: str
    lines: list[str] = field(default_factory=list)
    start: int = 0
    new_len: int = 0
    old_len: int = 0


@dataclass
class FileResult:
    ok: bool
    lines: list[str]
    final_newline: bool
    notes: list[str]
    first_change: int = 0
    last_change: int = 0


def _content_set(hay: Sequence[str]) -> set[str]:
    return {" ".join(line.split()) for line in hay}


def variants(hunk: Hunk, hay: Sequence[str]) -> list[tuple[Op, ...]]:
    """Readings of the hunk, most literal first: unprefixed lines as context, blank edges trimmed, unprefixed
    lines as additions, and context lines that look like an added line whose ``+`` was forgotten."""
    as_context = tuple((" " if x.op == "?" else x.op, x.text) for x in hunk.lines)
    lo, hi = 0, len(as_context)
    while lo < hi and as_context[lo] == (" ", ""):
        lo += 1
    while hi > lo and as_context[hi - 1][0] == " " and not as_context[hi - 1][1].strip():
        hi -= 1
    trimmed = as_context[lo:hi]
    as_added = tuple(("+" if x.op == "?" else x.op, x.text) for x in hunk.lines)
    known = _content_set(hay)
    forgot_plus = tuple(
        ("+", x.raw)
        if x.op == " "
        and x.text.strip()
        and (len(x.text) - len(x.text.lstrip(" "))) % 4 == 3
        and " ".join(x.text.split()) not in known
        else ((" " if x.op == "?" else x.op), x.text)
        for x in hunk.lines
    )
    out: list[tuple[Op, ...]] = []
    for ops in (as_context, trimmed, as_added, forgot_plus):
        if ops and ops not in out:
            out.append(ops)
    return out


def _groups(ops: Sequence[Op]) -> list[tuple[list[Op], list[Op], list[Op], int]]:
    """Split into change groups: (context before, changes, context after, old-side offset of the group)."""
    runs: list[tuple[bool, list[Op]]] = []
    for op in ops:
        is_change = op[0] != " "
        if runs and runs[-1][0] == is_change:
            runs[-1][1].append(op)
        else:
            runs.append((is_change, [op]))
    groups: list[tuple[list[Op], list[Op], list[Op], int]] = []
    offset = 0
    for i, (is_change, run) in enumerate(runs):
        if is_change:
            before = runs[i - 1][1] if i > 0 else []
            after = runs[i + 1][1] if i + 1 < len(runs) else []
            groups.append((before, run, after, offset - len(before)))
        offset += len(old_side(run))
    return groups


def _plans(nb: int, na: int, removes: bool) -> list[tuple[int, int]]:
    plans: list[tuple[int, int]] = []
    for k in (max(nb, na), 3, 2, 1):
        plans.append((min(k, nb), min(k, na)))
    for k in (3, 2, 1):
        plans += [(min(k, nb), 0), (0, min(k, na))]
    if removes:
        plans.append((0, 0))
    return list(dict.fromkeys(plans))


def _anchored(sub: Sequence[Op]) -> bool:
    """A part may only be placed on its own if it removes something or has a meaningful context line."""
    return any(op == "-" for op, _ in sub) or any(op == " " and len(t.strip()) >= 3 for op, t in sub)


def _apply_split(hay: Sequence[str], ops: Sequence[Op], expected: int | None) -> HunkResult | None:
    work = list(hay)
    shift = 0
    first, last = len(work), 0
    groups = _groups(ops)
    for before, changes, after, offset in groups:
        removes = any(op == "-" for op, _ in changes)
        placed = False
        for kb, ka in _plans(len(before), len(after), removes):
            sub = [*before[len(before) - kb :], *changes, *after[:ka]]
            if not _anchored(sub):
                continue
            exp = None if expected is None else max(expected + shift + offset + len(before) - kb, 0)
            found = locate(work, [tuple(sub)], exp)
            if isinstance(found, Match):
                size = len(old_side(found.ops))
                work, new_len = splice(work, found)
                shift += new_len - size
                first, last = min(first, found.pos), max(last, found.pos + new_len)
                placed = True
                break
        if not placed:
            return None
    return HunkResult(True, f"split into {len(groups)} part(s)", work, first, max(last - first, 0), 0)


def _describe_ambiguous(found: Ambiguous) -> str:
    lines = ", ".join(str(p + 1) for p in found.positions)
    return (
        f"its lines match several places equally well ({found.rung} at lines [{lines}]); "
        "add more unchanged context lines (or correct line numbers) so only one place matches"
    )


def apply_hunk(hay: Sequence[str], hunk: Hunk, expected: int | None, shown: Sequence[str] | None = None) -> HunkResult:
    """Place one hunk; ``shown`` is the file as the model knows it, for the "closest lines" of a failure."""
    readings = variants(hunk, hay)
    if all(op == " " for ops in readings for op, _ in ops):
        return HunkResult(False, "it contains no added or removed lines")
    primary = readings[0]
    if not old_side(primary):
        if expected is None and hay:
            return HunkResult(False, "it has no context lines and no line number, so it cannot be placed")
        pos = min(expected or 0, len(hay))
        added = new_side(primary)
        return HunkResult(True, f"inserted at line {pos + 1}", [*hay[:pos], *added, *hay[pos:]], pos, len(added))
    found = locate(hay, [primary], expected)
    if found is None:
        done = locate(hay, [tuple(("-", t) for t in new_side(primary))], expected)
        if isinstance(done, Match) and any(op == "+" for op, _ in primary):
            return HunkResult(
                False, f"it seems to be applied already: its new lines are present at line {done.pos + 1}"
            )
        found = locate(hay, readings[1:], expected)
    if isinstance(found, Match):
        size = len(old_side(found.ops))
        lines, new_len = splice(hay, found)
        return HunkResult(True, f"{found.rung} (line {found.pos + 1})", lines, found.pos, new_len, size)
    if isinstance(found, Ambiguous):
        return HunkResult(False, _describe_ambiguous(found))
    split = _apply_split(hay, primary, expected)
    if split is not None:
        return split
    return HunkResult(
        False,
        "its context and removed lines were not found in the file.\n"
        + closest_lines(hay if shown is None else shown, old_side(primary)),
    )


def apply_hunks(hay: Sequence[str], final_newline: bool, hunks: Sequence[Hunk]) -> FileResult:
    """Apply every hunk in order given (any order works); the caller writes only if ``ok``."""
    work = list(hay)
    shifts: list[tuple[int, int]] = []
    notes: list[str] = []
    ok = True
    first, last = len(work), 0
    for number, hunk in enumerate(hunks, 1):
        stated = hunk.expected_index
        expected = None if stated is None else stated + sum(d for s, d in shifts if s < stated)
        if expected is not None:
            expected = min(max(expected, 0), len(work))
        result = apply_hunk(work, hunk, expected, hay)
        label = f"hunk {number} ({hunk.header})"
        if not result.ok:
            ok = False
            notes.append(f"{label} FAILED: {result.note}")
            continue
        notes.append(f"{label} applied: {result.note}")
        delta = len(result.lines) - len(work)
        shifts.append((stated if stated is not None else result.start, delta))
        first = min(first, result.start)
        last = max(last, result.start + result.new_len)
        touches_end = result.start + result.new_len >= len(result.lines)
        work = result.lines
        if touches_end and hunk.no_newline_new:
            final_newline = False
        elif touches_end and hunk.no_newline_old:
            final_newline = True
    return FileResult(ok, work, final_newline, notes, first if first <= len(work) else 0, last)
