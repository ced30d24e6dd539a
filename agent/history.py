"""The conversation a request carries, bounded: whatever the model answered and the commands printed, what is sent
again each turn stays within the endpoint's context window, or ``max_history_chars`` when the window is unknown.

Why a bound even without a known window: a conversation grows by an answer and an observation per turn, and each
request sends all of it again; with no bound a few large answers are resent every turn (three 10 MB answers were).
The cut is :func:`agent.nodes.prompting.fit_conversation`'s: the system prompt and the first request stay, then the
most recent turns that fit, and what was left out is said in one line. Each later message is first shortened in the
middle to a quarter of the room, so that one huge answer cannot push the latest turns out.
"""

from __future__ import annotations

from typing import Any

from agent.config import Settings
from agent.nodes.prompting import CHARS_PER_TOKEN, Section, fit_conversation, prompt_budget

__all__ = ["bounded_history"]


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
