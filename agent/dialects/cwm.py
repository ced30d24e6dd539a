"""CWM's own dialect: the required system prompt, reasoning before ``</think>``, text ``<tool: NAME>`` blocks.

Why text tools rather than OpenAI JSON: CWM was RL-trained on exactly these four text tools and no tool-call
parser is documented for it, so structured calls are neither requested nor expected. Results go back as USER
messages with CWM's ``<output>``/``<budget>`` body - the safe default, since how its template renders ``role:
tool`` is unverified.

The protocol CWM was trained with (facebookresearch/cwm, ``cwm/rl/envs/envs/swerl_tool.py`` and
``cwm/rl/swerl/default_tools.py``), which :meth:`CwmDialect.parse` reports in ``Parsed.format_error`` /
``think_error`` with the environment's own words:

* exactly one ``</think>`` per answer (when reasoning is on): "FormatError: Expected exactly one thinking end token,
  got N";
* exactly one tool call per step: a second block is "FormatError: Expected one tool call, but found 2: edit,
  submit. ..." and NEITHER block runs - the environment raised before executing anything, and so does mendloop;
* every ``<tool:`` has its ``</tool>``; no tool call at all is "FormatError: No tool calls found"; an unknown tool
  "NoSuchToolError: Tool 'x' not found."; an empty body "FormatError: Tool 'bash' requires non-empty arguments...".
  One deliberate difference: an empty ``<tool: submit>`` is accepted (it submits the files as they are), because
  the workspace has no git history to write a ``git diff`` from.

Those messages went back as a plain user message, with neither ``<output>`` nor ``<budget>``; the node does the same.
"""

from __future__ import annotations

import re

from agent.dialects.base import THINK_CLOSE, Action, BashCall, Parsed, Submit, TextToolsDialect, split_think
from agent.dialects.fences import parse_fenced, parse_search_replace
from agent.model import Completion
from agent.prompts import template
from tools.edits import CreateFile
from tools.tracing import Trace, render_cwm_prompt

__all__ = ["CWM_CONTEXT", "SYSTEM_PROMPT", "TOOL_RE", "CwmDialect", "environment", "format_error", "think_error"]

SYSTEM_PROMPT = (
    "You are a helpful AI assistant. You always reason before responding, using the following format:\n\n"
    "<think>\nyour internal reasoning\n</think>\nyour external response"
)

# CWM's own environment's regex, with the body made optional so that an empty ``<tool: submit>\n</tool>`` is read.
TOOL_RE = re.compile(r"<tool:\s([a-zA-Z_]+)>\n(?:(.*?)\n)?</tool>", re.DOTALL)
_OPEN_RE = re.compile(r"<tool:\s*([^>\n]*)>")
TOOLS = ("bash", "edit", "create", "submit")
CWM_CONTEXT = 131_072  # the context window CWM was trained with; the environment text states a window
SESSION_TIMEOUT = 120.0  # seconds per command in Meta's SWE environment


def environment(*, max_turns: int, context_size: int, timeout: float, strict: bool = True) -> str:
    """The ``# Environment`` text: CWM's trained tool specification with the limits of this run (``strict``), or
    mendloop's looser one that lets several tools run per answer and names the markdown forms (``permissive``)."""
    if not strict:
        return template("tools_cwm_permissive").strip()
    return (
        template("tools_cwm")
        .format(max_turns=max_turns, context_size=context_size, session_timeout=f"{int(timeout)}-second")
        .strip()
    )


def format_error(answer: str) -> str:
    """What CWM's environment said of ``answer`` (the text after ``</think>``) before running anything, or "" when
    it holds exactly one well-formed tool call. The checks run in the environment's order."""
    calls = TOOL_RE.findall(answer)
    if len(calls) > 1:
        names = ", ".join(name for name, _ in calls)
        return (
            f"FormatError: Expected one tool call, but found {len(calls)}: {names}. "
            "Ensure only one <tool:...></tool> block is present in the response."
        )
    opening, closing = answer.count("<tool:"), answer.count("</tool>")
    if len(calls) != opening or len(calls) != closing:
        return (
            f"FormatError: Mismatch in tool tag counts: found {len(calls)} tool calls via regex, but counted "
            f"{opening} opening tags and {closing} closing tags."
        )
    if not calls:
        return "FormatError: No tool calls found"
    name, body = calls[0]
    if name not in TOOLS:
        return f"NoSuchToolError: Tool '{name}' not found."
    if name != "submit" and not body.strip():  # the one difference: a plain submit is accepted
        return f"FormatError: Tool '{name}' requires non-empty arguments, but received empty or whitespace-only input."
    return ""


def think_error(completion: Completion) -> str:
    """The environment's word when the answer does not hold exactly one ``</think>`` (a server that split the
    reasoning off itself counts as one)."""
    count = completion.content.count(THINK_CLOSE)
    if count == 0 and completion.reasoning.strip():
        return ""
    return "" if count == 1 else f"FormatError: Expected exactly one thinking end token, got {count}"


class CwmDialect(TextToolsDialect):
    """Meta's CWM: split on the last ``</think>``; every ``<tool: …>`` block in the answer is an action (the generous
    reading), and ``format_error``/``think_error`` say what CWM's own environment would have refused."""

    name = "cwm"
    intro = SYSTEM_PROMPT
    brief = SYSTEM_PROMPT  # required on every request: CWM's output degrades badly without it
    tools_template = "tools_cwm"
    edit_hint = "Change the code with the edit tool (<tool: edit> block)."

    def tool_description(self) -> str:
        """The trained environment text with Meta's SWE limits (a node fills in its run's own: ``environment``)."""
        return environment(max_turns=128, context_size=CWM_CONTEXT, timeout=SESSION_TIMEOUT)

    def render_trace(self, trace: Trace, budget_tokens: int) -> str:
        """As CWM was trained on traces: the source (``<|trace_context_start|>…<|frame_sep|>``), then the frames."""
        return render_cwm_prompt(trace, budget_tokens=budget_tokens)

    def parse(self, completion: Completion) -> Parsed:
        reasoning, answer = split_think(completion)
        parsed = Parsed(reasoning=reasoning, answer=answer)
        parsed.think_error = think_error(completion)
        parsed.format_error = format_error(answer)
        covered: list[tuple[int, int]] = []
        for match in TOOL_RE.finditer(answer):
            covered.append(match.span())
            actions, problems = _tool(match.group(1), match.group(2) or "")
            parsed.actions.extend(actions)
            parsed.problems.extend(problems)
        for match in _OPEN_RE.finditer(answer):
            if not any(start <= match.start() < end for start, end in covered):
                parsed.problems.append(
                    f"the block starting with <tool: {match.group(1).strip()}> was not read: write "
                    "<tool: NAME> on its own line, the body, then </tool> on its own line"
                )
        if not covered:  # no tool blocks at all: accept markdown edits (never next to real tool blocks)
            edits, problems = parse_fenced(answer)
            parsed.actions.extend(edits)
            parsed.problems.extend(problems)
        return parsed


def _tool(name: str, body: str) -> tuple[list[Action], list[str]]:
    """One ``<tool: NAME>`` block as actions, or problems that say how to write it."""
    if name == "bash":
        if not body.strip():
            return [], ["<tool: bash> was empty: put the command between the tags"]
        return [BashCall(body)], []
    if name == "submit":
        return [Submit(body.strip() or None)], []
    path, _, rest = body.partition("\n")
    path = path.strip()
    if name == "create":
        if not path:
            return [], ["<tool: create> needs the file path on its first line, then the content"]
        return [CreateFile(path, rest + "\n" if rest else "")], []
    if name == "edit":
        if not path or path.startswith("<<<"):
            return [], ["<tool: edit> needs the file path on its first line, then a SEARCH/REPLACE block"]
        edits, problems = parse_search_replace(rest.splitlines(), path)
        if not edits and not problems:
            problems = [
                f"<tool: edit> for {path} has no SEARCH/REPLACE block: write <<<<<<< SEARCH, the exact old "
                "lines, =======, the new lines, >>>>>>> REPLACE"
            ]
        actions: list[Action] = list(edits)
        return actions, problems
    return [], [f"unknown tool '{name}': the tools are {', '.join(TOOLS)}"]
