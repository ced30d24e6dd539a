"""Requests that fit the endpoint's context window: prompt sections by priority, trimmed to a token budget, and a
conversation bounded before it is sent again (``bounded_history``: within the window, or ``max_history_chars`` when the
window is unknown, so a few huge answers are never resent turn after turn).

Why here: a small local server (4096 tokens per slot) refuses a request that is one token too long, and that refusal
must never end a run. Every prompt is built from named sections, each with a priority and a floor; the request is
cut to fit the window *before* it is sent (what is left over is the room for the answer), and when the server still
refuses, the caller asks again with a smaller budget. Token counts are estimates (characters / 3, on the safe side
for code); the server's own refusal is the final word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.config import Settings

CHARS_PER_TOKEN = 3.0  # code tokenizes at ~3-4 characters per token; 3 errs towards sending less
MIN_ANSWER_TOKENS = 256  # never squeeze the answer below this: a cut-off answer is a wasted call
MESSAGE_OVERHEAD = 8  # tokens a chat template adds per message (role markers)

__all__ = ["Section", "bounded_history", "estimate_tokens", "fit_conversation", "fit_sections", "prompt_budget"]


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1


def messages_tokens(messages: Sequence[dict[str, Any]]) -> int:
    return sum(estimate_tokens(str(m.get("content") or "")) + MESSAGE_OVERHEAD for m in messages)


@dataclass
class Section:
    """One part of a prompt. Lower ``priority`` numbers are kept longest; ``floor`` is how short it may become
    (characters; 0 = it may be dropped). ``keep`` says which end survives trimming: "head", "tail" or "both"."""

    name: str
    text: str
    priority: int
    floor: int = 0
    keep: str = "head"

    def cut(self, chars: int) -> str:
        text = self.text
        if len(text) <= chars:
            return text
        if chars <= 0:
            return ""
        marker = f"\n[... {len(text) - chars} characters left out ...]\n"
        room = max(0, chars - len(marker))
        if self.keep == "tail":
            return marker.lstrip("\n") + text[len(text) - room :]
        if self.keep == "both":
            head = room // 3
            return text[:head] + marker + text[len(text) - (room - head) :]
        return text[:room] + marker.rstrip("\n")


def prompt_budget(context: int | None, answer_tokens: int, fixed_tokens: int) -> int | None:
    """Tokens left for the variable part of a prompt, or ``None`` when the window is unknown (no trimming).

    ``answer_tokens`` is the room wanted for the answer; it shrinks to ``MIN_ANSWER_TOKENS`` before the prompt does.
    """
    if not context:
        return None
    answer = min(answer_tokens, max(MIN_ANSWER_TOKENS, context // 4))
    return max(0, context - answer - fixed_tokens - 32)


def fit_sections(sections: Sequence[Section], budget_tokens: int | None) -> dict[str, str]:
    """The text of each section after trimming to ``budget_tokens`` in all (``None``: nothing is trimmed).

    Sections are cut from the highest priority number down: first to their floor, then (where the floor is 0)
    away; a section at its floor is cut no further, so what must be seen (the task, the code) always stays.
    """
    out = {s.name: s.text for s in sections}
    if budget_tokens is None:
        return out
    budget = int(budget_tokens * CHARS_PER_TOKEN)
    over = sum(len(t) for t in out.values()) - budget
    for section in sorted(sections, key=lambda s: -s.priority):
        if over <= 0:
            break
        current = len(out[section.name])
        target = max(section.floor, current - over)
        if target < current:
            out[section.name] = section.cut(target)
            over -= current - len(out[section.name])
    return out


def fit_conversation(messages: list[dict[str, Any]], budget_tokens: int | None) -> list[dict[str, Any]]:
    """A conversation cut to ``budget_tokens``: the system prompt and the first request stay, then the most recent
    turns that fit; what is left out is said in one line. Long single messages are shortened in the middle."""
    if budget_tokens is None or messages_tokens(messages) <= budget_tokens:
        return messages
    head = messages[:2]
    rest = messages[2:]
    kept: list[dict[str, Any]] = []
    used = messages_tokens(head) + 40
    for message in reversed(rest):
        cost = messages_tokens([message])
        if used + cost > budget_tokens:
            break
        kept.insert(0, message)
        used += cost
    while kept and kept[0].get("role") not in ("assistant",) and len(kept) < len(rest):
        kept.pop(0)  # start the kept tail at an answer so roles keep alternating after the note
    dropped = len(rest) - len(kept)
    out = [dict(m) for m in head]
    if dropped:
        note = f"[{dropped} earlier message(s) of this conversation were left out to fit the model's context]"
        out[-1] = {**out[-1], "content": f"{out[-1].get('content') or ''}\n\n{note}"}
    out += kept
    if messages_tokens(out) > budget_tokens:  # even the first request is too long: shorten the longest message
        longest = max(range(len(out)), key=lambda i: len(str(out[i].get("content") or "")))
        text = str(out[longest].get("content") or "")
        excess = int((messages_tokens(out) - budget_tokens) * CHARS_PER_TOKEN) + 200
        section = Section("long", text, 0, keep="both")
        out[longest] = {**out[longest], "content": section.cut(max(400, len(text) - excess))}
    return out


def bounded_history(
    messages: list[dict[str, Any]], settings: Settings, context_tokens: int | None, *, shrink: int = 0
) -> list[dict[str, Any]]:
    """``messages`` cut to fit ``context_tokens`` (leaving room for the answer), or ``settings.max_history_chars``;
    ``shrink`` times smaller again (0.7 each) after refusals for length."""
    budget = prompt_budget(context_tokens, settings.max_completion_tokens, 0) if context_tokens else None
    cap = int(settings.max_history_chars / CHARS_PER_TOKEN)
    tokens = int((cap if budget is None else min(budget, cap)) * 0.7**shrink)
    per_message = max(2_000, int(tokens * CHARS_PER_TOKEN) // 4)
    shortened = [*messages[:2]]
    for message in messages[2:]:
        text = message.get("content")
        if isinstance(text, str) and len(text) > per_message:
            message = {**message, "content": Section("message", text, 0, keep="both").cut(per_message)}
        shortened.append(message)
    return fit_conversation(shortened, tokens)
