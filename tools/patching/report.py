"""Text for the model: numbered snippets and "the closest lines in the file".

Why: a refused edit is only useful to a model if it shows what the file really contains near where it aimed,
with line numbers it can use in the next attempt (as CWM's own environment did).
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"\w+|[^\w\s]")


def numbered(lines: Sequence[str], start: int, end: int) -> str:
    """Lines ``start..end`` (0-based, end exclusive, clamped) as ``cat -n`` style text."""
    start, end = max(start, 0), min(end, len(lines))
    width = len(str(max(end, 1)))
    return "\n".join(f"{i + 1:>{width}}\t{lines[i]}" for i in range(start, end))


def around(lines: Sequence[str], start: int, end: int, radius: int = 8) -> str:
    """The changed region ``start..end`` with ``radius`` numbered lines either side."""
    return numbered(lines, start - radius, max(end, start + 1) + radius)


def _tokens(line: str) -> list[str]:
    return _TOKEN.findall(line)


def _shortlist(hay: Sequence[str], needle: Sequence[str], size: int, keep: int = 12) -> list[int]:
    """Window starts with the most tokens in common with ``needle`` (a sliding count, linear in the file)."""
    wanted = Counter(t for line in needle for t in _tokens(line))
    window: Counter[str] = Counter()
    lines = [_tokens(line) for line in hay]
    scored: list[tuple[int, int]] = []
    for end, toks in enumerate(lines):
        window.update(toks)
        if end >= size:
            window.subtract(lines[end - size])
        if end >= size - 1 or end == len(lines) - 1:
            score = sum(min(n, window[t]) for t, n in wanted.items())
            scored.append((-score, max(end - size + 1, 0)))
    return [start for _, start in heapq.nsmallest(keep, scored)]


def closest_block(hay: Sequence[str], needle: Sequence[str]) -> tuple[int, float]:
    """Start of the window of ``hay`` most similar to ``needle`` (difflib ratio), and that ratio.

    Only a shortlist of windows sharing the most tokens with ``needle`` gets the quadratic difflib comparison,
    so a failing edit on a file of ten thousand lines still answers in well under a second.
    """
    size = max(len(needle), 1)
    target = "\n".join(line.strip() for line in needle if line.strip())
    best, best_ratio = 0, 0.0
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(target)
    for pos in sorted(_shortlist(hay, needle, size)):
        matcher.set_seq1("\n".join(line.strip() for line in hay[pos : pos + size] if line.strip()))
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best, best_ratio = pos, ratio
    return best, best_ratio


def closest_lines(hay: Sequence[str], needle: Sequence[str], context: int = 2) -> str:
    """A numbered excerpt of the part of ``hay`` most like ``needle``, or a note if nothing is similar."""
    if not hay:
        return "The file is empty."
    pos, ratio = closest_block(hay, needle)
    if ratio < 0.3:
        return "No similar lines were found in the file."
    return "The closest lines in the file are:\n" + numbered(hay, pos - context, pos + len(needle) + context)
