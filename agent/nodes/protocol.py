"""The conversation protocol CWM was trained on, as the write and reproduce conversations both speak it.

Why one module: CWM learned one environment (facebookresearch/cwm, ``swerl_tool.py``): a system prompt that states
the limits, one tool call per step, every tool result as ``<output>…</output>`` followed by a ``<budget>`` of the
turns and tokens left for the WHOLE episode, and format errors as a bare user message that runs nothing. The write
conversation (``converse.py``) and the reproduction step (``reproduce.py``) must say it identically.

* ``environment_message`` - the system prompt with this run's limits (turns, context window, command timeout);
* ``Budget`` of an episode - turns: ``max_turns`` or ``max_iterations x TURNS_PER_ROUND`` for the repair; tokens:
  what the run's token budget leaves, and never more than the context window leaves after the conversation so far;
* ``observation`` / ``format_message`` - the messages that carry a step's result back;
* pending observations - the last observation of a round is kept open (``PENDING``) so that what ``verify`` found
  (test results, an execution trace) goes INSIDE its ``<output>``, as the result of the step that changed the code,
  with the budget after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.budget import Budget
from agent.context import RunContext
from agent.dialects.base import observation_body
from agent.dialects.cwm import CWM_CONTEXT, environment
from agent.model import Completion
from agent.nodes.common import add_user, system_message
from agent.nodes.prompting import estimate_tokens, messages_tokens

__all__ = [
    "PENDING",
    "TURNS_PER_ROUND",
    "Episode",
    "amend_pending",
    "environment_message",
    "fold_feedback",
    "format_message",
    "observation",
    "reasoning_on",
    "strict",
    "unmark",
    "without_marks",
]

TURNS_PER_ROUND = 3
PENDING = "mendloop_pending"  # message key (never sent): the observation verify's findings are folded into


def strict(ctx: RunContext) -> bool:
    """CWM's trained protocol (one tool per step, its format errors) - the cwm dialect's default."""
    return ctx.dialect.name == "cwm" and ctx.settings.protocol == "strict"


def reasoning_on(ctx: RunContext) -> bool:
    """Whether the model is asked to reason (then a missing ``</think>`` is a format error, as in training)."""
    choice = ctx.settings.reasoning or ("on" if ctx.dialect.name == "cwm" else "off")
    return choice == "on"


def context_window(ctx: RunContext) -> int:
    """The endpoint's context window, or the one CWM was trained with when the endpoint does not say."""
    return ctx.model.context_size() or CWM_CONTEXT


def environment_message(ctx: RunContext, max_turns: int) -> dict[str, Any]:
    """The system message: for CWM its trained environment text with this episode's limits; other dialects keep
    their own tool description."""
    if ctx.dialect.name != "cwm":
        return system_message(ctx)
    text = environment(
        max_turns=max_turns,
        context_size=context_window(ctx),
        timeout=ctx.settings.command_timeout,
        strict=strict(ctx),
    )
    return {"role": "system", "content": ctx.dialect.system_prompt(text)}


@dataclass
class Episode:
    """The turn and token limits of one conversation; ``turns`` counts every model turn (format errors too)."""

    ctx: RunContext
    turns: int

    def turns_left(self, messages: list[dict[str, Any]]) -> int:
        return max(0, self.turns - sum(1 for m in messages if m.get("role") == "assistant"))

    def tokens_left(self, used: int, text: str) -> int:
        """Tokens left: the run's token budget and the context window after ``used`` tokens of conversation and
        the observation ``text`` about to be added, whichever is smaller (CWM's environment counted the second)."""
        window = context_window(self.ctx) - used - estimate_tokens(text)
        budget = Budget.from_settings(self.ctx.settings).remaining_tokens(self.ctx.usage)
        return max(0, window if budget is None else min(window, budget))

    @staticmethod
    def used(completion: Completion) -> int:
        """The conversation's size after this answer, as the server counted it."""
        return completion.prompt_tokens + completion.completion_tokens


def observation(
    ctx: RunContext, episode: Episode, messages: list[dict[str, Any]], completion: Completion, text: str
) -> list[dict[str, Any]]:
    """``messages`` (ending with the answer ``completion``) with the step's result appended: ``<output>`` then the
    ``<budget>`` left for the whole episode. Marked pending: the round may end here."""
    used = Episode.used(completion)
    body = observation_body(
        text, remaining_turns=episode.turns_left(messages), remaining_tokens=episode.tokens_left(used, text)
    )
    added = ctx.dialect.observation_messages(completion, body)
    added[0] = {**added[0], PENDING: {"output": text, "used": used}}
    return [*unmark(messages), *added]


def format_message(messages: list[dict[str, Any]], completion: Completion, error: str) -> list[dict[str, Any]]:
    """A format error the way CWM's environment returned it: a bare user message, no ``<output>``, no budget."""
    pending = {"format": error, "used": Episode.used(completion)}
    return [*unmark(messages), {"role": "user", "content": error, PENDING: pending}]


def unmark(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with no message pending any more (a later step's observation came after it)."""
    return [{k: v for k, v in m.items() if k != PENDING} if PENDING in m else m for m in messages]


def without_marks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What is sent: the messages without mendloop's bookkeeping."""
    return unmark(messages)


def _render(episode: Episode, messages: list[dict[str, Any]], pending: dict[str, Any], output: str) -> str:
    body = observation_body(
        output,
        remaining_turns=episode.turns_left(messages),
        remaining_tokens=episode.tokens_left(int(pending.get("used", 0)), output),
    )
    return f"{pending['format']}\n\n{body}" if pending.get("format") else body


def _pending(messages: list[dict[str, Any]]) -> tuple[int, dict[str, Any]] | None:
    """The observation still open since the model's last message: its index and its bookkeeping (None when none)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "assistant":
            break
        pending = message.get(PENDING)
        if isinstance(pending, dict):
            return index, pending
    return None


def _output_with(pending: dict[str, Any], text: str) -> str:
    """The pending observation's output: what the step itself printed, then ``text``."""
    return "\n\n".join(part for part in (str(pending.get("output") or ""), text) if part)


def fold_feedback(episode: Episode, messages: list[dict[str, Any]], feedback: str) -> list[dict[str, Any]]:
    """The conversation with ``feedback`` (verify's test results and trace) inside the pending observation's
    ``<output>``, after what the step itself printed; a new observation when none is pending (the model ended the
    round with a final response)."""
    out = list(messages)
    feedback = feedback.strip("\n")
    found = _pending(out)
    if found is not None:
        index, pending = found
        content = _render(episode, out, pending, _output_with(pending, feedback))
        out[index] = {k: v for k, v in out[index].items() if k != PENDING} | {"content": content}
        return out
    used = messages_tokens(out)  # no count from the server for a conversation that ends in an answer: estimated
    body = observation_body(
        feedback, remaining_turns=episode.turns_left(out), remaining_tokens=episode.tokens_left(used, feedback)
    )
    return add_user(unmark(out), body)


def amend_pending(episode: Episode, messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """Add ``note`` to the pending observation's output (a change undone after the round); kept pending."""
    out = list(messages)
    found = _pending(out)
    if found is None:
        return add_user(out, note)
    index, pending = found
    if pending.get("format"):
        pending = {**pending, "format": f"{pending['format']}\n\n{note}"}
        out[index] = {**out[index], "content": pending["format"], PENDING: pending}
        return out
    output = _output_with(pending, note)
    pending = {**pending, "output": output}
    out[index] = {**out[index], "content": _render(episode, out, pending, output), PENDING: pending}
    return out
