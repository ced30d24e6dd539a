"""Find where a block of old lines sits in a file, ever more tolerantly, and splice in the new lines.

Why a ladder: a model's edit is usually *meant* right but written sloppily (wrong line numbers, tabs for
spaces, the whole block indented one level off). Each rung accepts a little more; the first rung that finds
exactly one place (or one place nearest to the stated line) wins. Several equally good places are never
guessed between: that is refused as ambiguous, and the ladder stops there rather than trying fuzzier rungs
that would only find more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Op = tuple[str, str]
"""``(' ' | '-' | '+', text)``: context, removed or added line."""

RUNGS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("exact", "exact match", (4,)),
    ("whitespace", "whitespace-insensitive match", (4, 8)),
    ("indent", "relative-indentation match", (4, 8)),
)


@dataclass(frozen=True)
class Match:
    pos: int
    rung: str
    mode: str
    delta: int
    tab: int
    ops: tuple[Op, ...]


@dataclass(frozen=True)
class Ambiguous:
    positions: tuple[int, ...]
    rung: str


def old_side(ops: Sequence[Op]) -> list[str]:
    return [text for op, text in ops if op != "+"]


def new_side(ops: Sequence[Op]) -> list[str]:
    return [text for op, text in ops if op != "-"]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _width(ws: str, tab: int) -> int:
    return len(ws.expandtabs(tab))


def _key(line: str, mode: str, tab: int) -> tuple[int, str]:
    if not line.strip():
        return (0, "")
    content = " ".join(line.split())
    return (_width(_indent(line), tab), content) if mode == "whitespace" else (0, content)


def _find(
    hay: Sequence[str], keys: list[tuple[int, str]], needle: Sequence[str], mode: str, tab: int
) -> dict[int, int]:
    """All positions where ``needle`` matches under ``mode``, with the indentation delta found there."""
    m = len(needle)
    found: dict[int, int] = {}
    if mode == "exact":
        first = needle[0]
        for pos in range(len(hay) - m + 1):
            if hay[pos] == first and list(hay[pos : pos + m]) == list(needle):
                found[pos] = 0
        return found
    nkeys = [_key(line, mode, tab) for line in needle]
    for pos in range(len(hay) - m + 1):
        if keys[pos] != nkeys[0] or keys[pos : pos + m] != nkeys:
            continue
        deltas = {
            _width(_indent(hay[pos + j]), tab) - _width(_indent(needle[j]), tab) for j in range(m) if needle[j].strip()
        }
        if len(deltas) <= 1:
            found[pos] = deltas.pop() if deltas else 0
    return found


def _nearest(positions: Sequence[int], expected: int | None) -> int | None:
    if len(positions) == 1:
        return positions[0]
    if expected is None:
        return None
    ranked = sorted(positions, key=lambda p: abs(p - expected))
    if abs(ranked[0] - expected) == abs(ranked[1] - expected):
        return None
    return ranked[0]


def locate(hay: Sequence[str], variants: Sequence[Sequence[Op]], expected: int | None) -> Match | Ambiguous | None:
    """Find the old side of one of ``variants`` in ``hay``: rung by rung, within a rung variant by variant."""
    if expected is not None:
        for ops in variants:
            needle = old_side(ops)
            if needle and list(hay[expected : expected + len(needle)]) == needle:
                return Match(expected, "exact match at the stated line", "exact", 0, 4, tuple(ops))
    keys: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for mode, name, tabs in RUNGS:
        for ops in variants:
            needle = old_side(ops)
            if not needle or len(needle) > len(hay):
                continue
            cands: dict[int, tuple[int, int]] = {}
            for tab in tabs:
                if mode != "exact" and (mode, tab) not in keys:
                    keys[(mode, tab)] = [_key(line, mode, tab) for line in hay]
                for pos, delta in _find(hay, keys.get((mode, tab), []), needle, mode, tab).items():
                    cands.setdefault(pos, (delta, tab))
            if not cands:
                continue
            pick = _nearest(sorted(cands), expected)
            if pick is None:
                return Ambiguous(tuple(sorted(cands)), name)
            delta, tab = cands[pick]
            return Match(pick, name, mode, delta, tab, tuple(ops))
    return None


def _uses_tabs(hay: Sequence[str], start: int, end: int) -> bool:
    region = [line for line in hay[start:end] if line[:1] in (" ", "\t")]
    if not region:
        region = [line for line in hay if line[:1] in (" ", "\t")]
    tabbed = sum(line.startswith("\t") for line in region)
    return tabbed * 2 > len(region)


def _restyle(text: str, delta: int, tab: int, tabs: bool) -> str:
    if not text.strip():
        return ""
    ws = _indent(text)
    if delta == 0 and ("\t" in ws) == tabs and not ("\t" in ws and " " in ws):
        return text
    width = max(_width(ws, tab) + delta, 0)
    new_ws = "\t" * (width // tab) + " " * (width % tab) if tabs else " " * width
    return new_ws + text[len(ws) :]


def render(hay: Sequence[str], match: Match) -> list[str]:
    """The lines replacing ``hay[pos : pos + len(old side)]``: file's own context, restyled added lines."""
    if match.mode == "exact":
        return new_side(match.ops)
    size = len(old_side(match.ops))
    tabs = _uses_tabs(hay, match.pos, match.pos + size)
    out: list[str] = []
    j = match.pos
    for op, text in match.ops:
        if op == " ":
            out.append(hay[j])
            j += 1
        elif op == "-":
            j += 1
        else:
            out.append(_restyle(text, match.delta, match.tab, tabs))
    return out


def splice(hay: Sequence[str], match: Match) -> tuple[list[str], int]:
    """Apply ``match``; return the new lines and the length of the inserted block."""
    new = render(hay, match)
    size = len(old_side(match.ops))
    return [*hay[: match.pos], *new, *hay[match.pos + size :]], len(new)
