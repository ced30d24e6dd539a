"""CWM's own dialect: the required system prompt, reasoning before ``</think>``, text ``<tool: NAME>`` blocks.

Why text tools rather than OpenAI JSON: CWM was RL-trained on exactly these four text tools and no tool-call
parser is documented for it, so structured calls are neither requested nor expected. Results go back as USER
messages with CWM's ``<output>``/``<budget>`` body - the safe default, since how its template renders ``role:
tool`` is unverified.
"""

from __future__ import annotations

import re

from agent.dialects.base import Action, BashCall, Parsed, Submit, TextToolsDialect, split_think
from agent.dialects.fences import parse_fenced, parse_search_replace
from agent.model import Completion
from tools.edits import CreateFile
from tools.tracing import Trace, render_cwm

__all__ = ["SYSTEM_PROMPT", "TOOL_RE", "CwmDialect"]

SYSTEM_PROMPT = (
    "You are a helpful AI assistant. You always reason before responding, using the following format:\n\n"
    "<think>\nyour internal reasoning\n</think>\nyour external response"
)

# CWM's own environment's regex, with the body made optional so that an empty ``<tool: submit>\n</tool>`` is read.
TOOL_RE = re.compile(r"<tool:\s([a-zA-Z_]+)>\n(?:(.*?)\n)?</tool>", re.DOTALL)
_OPEN_RE = re.compile(r"<tool:\s*([^>\n]*)>")
TOOLS = ("bash", "edit", "create", "submit")


class CwmDialect(TextToolsDialect):
    """Meta's CWM: split on the last ``</think>``; every ``<tool: …>`` block in the answer is an action."""

    name = "cwm"
    intro = SYSTEM_PROMPT
    brief = SYSTEM_PROMPT  # required on every request: CWM's output degrades badly without it
    tools_template = "tools_cwm"
    edit_hint = "Change the code with the edit tool (<tool: edit> block)."

    def render_trace(self, trace: Trace, budget_tokens: int) -> str:
        return render_cwm(trace, budget_tokens=budget_tokens)

    def parse(self, completion: Completion) -> Parsed:
        reasoning, answer = split_think(completion)
        parsed = Parsed(reasoning=reasoning, answer=answer)
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
