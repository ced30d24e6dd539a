"""One round of a repair, told the same way everywhere: report.md, the pull request, ``mendloop fix``, the live view,
``mendloop show`` and the HTML page.

Why one module: a round is summarised in six places, and two summaries that disagree (one says "winner #1", the other
lists #0 first) cost a reader more than no summary. Every view builds :class:`Round` from the state's ``rounds`` entry
(written by ``agent/nodes/verify.py``) and takes its words from the functions here; the views only choose markup
(markdown, rich, HTML) around them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

__all__ = [
    "Candidate",
    "Round",
    "candidate_label",
    "diff_stat",
    "fence",
    "headline",
    "markdown_observations",
    "markdown_table",
    "rich_diff",
    "rich_round",
]


@dataclass(frozen=True)
class Candidate:
    """One candidate change of a round and how its tests went."""

    index: int
    passed: int
    failed: int
    tokens: int
    winner: bool
    patch: str = ""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Candidate:
        return cls(
            index=int(entry.get("index", 0)),
            passed=int(entry.get("passed", 0)),
            failed=int(entry.get("failed", 0)),
            tokens=int(entry.get("tokens", 0)),
            winner=bool(entry.get("winner")),
            patch=str(entry.get("patch") or ""),
        )


@dataclass(frozen=True)
class Round:
    """A verified round, from the state's ``rounds`` entry; missing keys read as empty (older runs, hand-made
    states)."""

    iteration: int
    tests: str
    passed: int = 0
    failed: int = 0
    error: str = ""
    edited: tuple[str, ...] = ()
    observations: tuple[str, ...] = ()
    traced: bool = False
    no_change: bool = False
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Round:
        return cls(
            iteration=int(entry.get("iteration", 0)),
            tests=str(entry.get("tests", "")),
            passed=int(entry.get("passed", 0)),
            failed=int(entry.get("failed", 0)),
            error=str(entry.get("error") or ""),
            edited=tuple(str(e) for e in entry.get("edited") or ()),
            observations=tuple(str(o) for o in entry.get("observations") or ()),
            traced=bool(entry.get("traced")),
            no_change=bool(entry.get("no_change")),
            candidates=tuple(Candidate.from_entry(c) for c in entry.get("candidates") or ()),
        )

    @property
    def winner(self) -> Candidate | None:
        return next((c for c in self.candidates if c.winner), self.candidates[0] if self.candidates else None)

    @property
    def green(self) -> bool:
        """Every test of the round passed (whether that resolves the task is the run's verdict, not the round's)."""
        return self.failed == 0 and self.passed > 0


def candidate_label(candidate: Candidate, of: int) -> str:
    """``#1: 3 passed/1 failed, 120 tok`` and ``(winner)`` when there were several (``of``) to choose from."""
    mark = " (winner)" if candidate.winner and of > 1 else ""
    return f"#{candidate.index}: {candidate.passed} passed/{candidate.failed} failed, {candidate.tokens} tok{mark}"


def headline(r: Round) -> str:
    """The round in one line: tests, what changed, which candidate won, and the first error while tests fail."""
    parts = [f"round {r.iteration}: {r.tests or 'no test result'}"]
    if r.no_change or not r.edited:
        parts.append("no change")
    else:
        parts.append("edited " + ", ".join(r.edited))
    winner = r.winner
    if winner is not None and len(r.candidates) > 1:
        parts.append(f"winner #{winner.index} of {len(r.candidates)}")
    if r.traced:
        parts.append("traced")
    if r.error and r.failed:
        parts.append(f"first error: {r.error}")
    return " · ".join(parts)


def diff_stat(patch: str) -> str:
    """``+3 -1 in 2 files`` for a unified diff (``no change`` for an empty one)."""
    added = removed = files = 0
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            files += 1
        elif line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    if not patch.strip():
        return "no change"
    return f"+{added} -{removed} in {files or 1} file{'s' if files > 1 else ''}"


# --- markdown: report.md, and through it the pull request body ---------------------------------------------------


def fence(text: str, lang: str = "") -> str:
    """A fenced block that a fence inside ``text`` cannot close."""
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(rounds: Sequence[Round]) -> list[str]:
    """The rounds as one markdown table: tests, files edited, candidates."""
    lines = ["| round | tests | files edited | candidates |", "|---|---|---|---|"]
    for r in rounds:
        cands = ", ".join(candidate_label(c, len(r.candidates)) for c in r.candidates)
        lines.append(f"| {r.iteration} | {_cell(r.tests)} | {_cell(', '.join(r.edited)) or '-'} | {_cell(cands)} |")
    return lines


def markdown_observations(r: Round, limit: int = 4000) -> list[str]:
    """What the model was told about its edits in round ``r``, folded (empty when nothing was observed)."""
    if not r.observations:
        return []
    return [
        f"<details><summary>Round {r.iteration} observations</summary>",
        "",
        fence("\n".join(r.observations)[-limit:]),
        "",
        "</details>",
        "",
    ]


# --- rich: the live view, ``mendloop show`` and ``mendloop fix`` ---------------------------------------------------


_DIFF_STYLES = (("+++", "bold"), ("---", "bold"), ("diff --git", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


def rich_diff(patch: str) -> Text:
    """A unified diff, a colour per line (dropped where the output is not a terminal); never cut to the width."""
    out = Text()
    for line in patch.rstrip("\n").splitlines():
        style = next((s for prefix, s in _DIFF_STYLES if line.startswith(prefix)), "")
        out.append(line + "\n", style=style)
    out.rstrip()
    return out


def rich_headline(r: Round) -> Text:
    mark, style = ("✓", "green") if r.green else ("✗", "red")
    return Text.assemble((f"{mark} ", f"bold {style}"), (headline(r), style if r.green else ""))


def rich_round(r: Round, *, diff: bool = False) -> RenderableType:
    """The headline, the candidates when there were several, and the winner's diff when ``diff``."""
    parts: list[RenderableType] = [rich_headline(r)]
    if len(r.candidates) > 1:
        for c in r.candidates:
            parts.append(Text(f"    {candidate_label(c, len(r.candidates))}", style="bold" if c.winner else "dim"))
    winner = r.winner
    if diff and winner is not None and winner.patch.strip():
        parts.append(rich_diff(winner.patch))
    return Group(*parts)
