"""The Dialect protocol: how one family of models is prompted, and how its answers are read.

Why a protocol: the write and reproduce nodes only ever ask "what system prompt, which tool schemas, what did
the model ask for, what do I append to the history" - CWM's text tools and OpenAI's JSON tool calls answer
those differently, and nothing else in the loop needs to know which one is in use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.model import Completion
from agent.prompts import template
from tools.edits import Edit
from tools.tracing import Trace, render_readable

__all__ = [
    "THINK_CLOSE",
    "Action",
    "BashCall",
    "Dialect",
    "Parsed",
    "Submit",
    "TextToolsDialect",
    "observation_body",
    "split_think",
]

THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class BashCall:
    """Run a shell command in the sandbox (CWM's ``<tool: bash>``)."""

    command: str


@dataclass(frozen=True)
class Submit:
    """The model says it is done; ``path`` names a patch file when it gave one (CWM's ``<tool: submit>``)."""

    path: str | None = None


Action = Edit | BashCall | Submit


@dataclass
class Parsed:
    """What one answer asked for; ``problems`` are for the model (malformed block, unknown tool, bad JSON).

    ``actions`` and ``problems`` read the answer generously (every block, markdown fallbacks). A dialect with a trained
    protocol also says how its own environment judged the answer: ``format_error`` is the message that environment
    gave instead of running anything (several tool calls, none, a tag without its pair), ``think_error`` the one for
    a missing or repeated end of reasoning; empty when the answer is well formed. The node chooses which reading
    applies (``protocol``).
    """

    reasoning: str
    answer: str
    actions: list[Action] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    format_error: str = ""
    think_error: str = ""

    @property
    def edits(self) -> list[Edit]:
        return [a for a in self.actions if not isinstance(a, BashCall | Submit)]

    @property
    def submitted(self) -> bool:
        return any(isinstance(a, Submit) for a in self.actions)


class Dialect(Protocol):
    """How a model speaks: what it is told, how its answers are read, how results go back to it."""

    name: str

    def system_prompt(self, environment: str) -> str: ...

    def tool_description(self) -> str:
        """The environment text that tells this model which tools it has and how to write them."""
        ...

    def no_edit_hint(self) -> str:
        """What to tell the model when its answer held no edit, in the form this dialect reads."""
        ...

    def render_trace(self, trace: Trace, budget_tokens: int) -> str:
        """An execution trace as this model reads it best (CWM's own format for CWM, readable text otherwise)."""
        ...

    def tools(self) -> list[dict[str, Any]] | None: ...

    def parse(self, completion: Completion) -> Parsed: ...

    def assistant_message(self, completion: Completion) -> dict[str, Any]: ...

    def observation_messages(self, completion: Completion, body: str) -> list[dict[str, Any]]:
        """The messages that carry ``body`` (an ``observation_body``) back to the model after ``completion``."""
        ...


class TextToolsDialect:
    """What the dialects share: the tool description from a prompt file, the answer with its reasoning as the
    assistant turn, results as a user message, readable traces. A dialect overrides only where it differs."""

    name = ""
    intro = ""  # the system prompt's opening; the tool description follows under "# Environment"
    brief = "You are an expert software engineer. You fix bugs in code with small, correct changes."
    tools_template = ""
    edit_hint = ""

    def system_prompt(self, environment: str) -> str:
        """The intro and, when there are tools to describe, the environment; without tools the brief intro."""
        if not environment:
            return self.brief
        return f"{self.intro}\n\n# Environment\n\n{environment}"

    def tool_description(self) -> str:
        return template(self.tools_template).strip()

    def no_edit_hint(self) -> str:
        return f"No edit was found in your answer. {self.edit_hint}"

    def render_trace(self, trace: Trace, budget_tokens: int) -> str:
        return render_readable(trace, budget_tokens=budget_tokens)

    def tools(self) -> list[dict[str, Any]] | None:
        return None

    def assistant_message(self, completion: Completion) -> dict[str, Any]:
        return {"role": "assistant", "content": full_text(completion)}

    def observation_messages(self, completion: Completion, body: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": body}]


def split_think(completion: Completion) -> tuple[str, str]:
    """``(reasoning, answer)``: split on the LAST ``</think>``; no tag means the whole text is the answer.

    A server that splits reasoning itself (``reasoning_content``) leaves no tag in ``content``; that
    reasoning is used.
    """
    text = completion.content
    head, sep, tail = text.rpartition(THINK_CLOSE)
    if not sep:
        return completion.reasoning.strip(), text.strip()
    reasoning = head.strip()
    if reasoning.startswith("<think>"):
        reasoning = reasoning[len("<think>") :].strip()
    return reasoning, tail.strip()


def full_text(completion: Completion) -> str:
    """The answer as the model produced it, with server-split reasoning put back in its ``<think>`` block."""
    if completion.reasoning and THINK_CLOSE not in completion.content:
        return f"{completion.reasoning.strip()}\n{THINK_CLOSE}\n{completion.content}"
    return completion.content


def observation_body(output: str, *, remaining_turns: int | None, remaining_tokens: int | None) -> str:
    """CWM's tool-result body: ``<output>`` then a ``<budget>`` block holding only what is known."""
    body = f"<output>\n{output}\n</output>"
    lines = []
    if remaining_turns is not None:
        lines.append(f"* Remaining turns: {remaining_turns}")
    if remaining_tokens is not None:
        lines.append(f"* Remaining tokens: {remaining_tokens}")
    if lines:
        body += "\n\n<budget>\n" + "\n".join(lines) + "\n</budget>"
    return body
