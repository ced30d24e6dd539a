"""The OpenAI dialect: JSON tool schemas, structured ``tool_calls`` - and the same calls written inside
``content``.

Why parse JSON out of the text too: with ``tool_choice: "auto"`` small local models (llama.cpp) write the call
as JSON in ``content`` (fenced, bare, ``<tool_call>``-wrapped, ``{"function": ...}``) and return no structured
calls. An agent that insists on structured calls stops with a repeated format error on such a model; this one
reads both. (Named ``openai_tools`` so it never shadows the ``openai`` SDK.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from agent.dialects.base import Action, BashCall, Parsed, Submit, TextToolsDialect, split_think
from agent.dialects.fences import parse_fenced
from agent.model import Completion
from tools.edits import CreateFile, SearchReplace, UnifiedDiff

__all__ = ["TOOL_SCHEMAS", "OpenAIDialect", "calls_in_text"]

_INTRO = """You are an expert software engineer. You fix problems in the repository described below by \
changing its files. The simplest way: the whole corrected function (or class) in one ```python block - it replaces \
the definition of the same name. Or use the tools you are given:
- edit: replace one exact, unique snippet of a file (copy the old lines verbatim, indentation included, with \
enough context to be unique);
- create: write a new file;
- apply_patch: apply a unified diff (git diff format);
- submit: say that you are done.
If you cannot call tools directly, write each call as JSON in your message, for example
{"name": "edit", "arguments": {"path": "<a listed file>", "search": "<old lines>", "replace": "<new lines>"}}"""


def _schema(name: str, description: str, **props: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {key: {"type": "string", "description": text} for key, text in props.items()},
                "required": list(props),
                "additionalProperties": False,
            },
        },
    }


TOOL_SCHEMAS: list[dict[str, Any]] = [
    _schema(
        "edit",
        "Replace one exact, unique occurrence of `search` in the file at `path` by `replace`.",
        path="file path relative to the repository root",
        search="the exact current lines, indentation included",
        replace="the new lines",
    ),
    _schema(
        "create",
        "Create a new file.",
        path="file path relative to the repository root",
        content="file content",
    ),
    _schema("apply_patch", "Apply a unified diff to the repository.", patch="the diff, in git diff format"),
    _schema("submit", "Say that the change is complete."),
]
_TOOL_NAMES = ("edit", "create", "apply_patch", "submit")

_ALIASES = {
    "path": ("path", "file", "file_path", "filename", "filepath"),
    "search": ("search", "old", "old_str", "old_string", "find"),
    "replace": ("replace", "new", "new_str", "new_string", "replacement"),
    "content": ("content", "file_text", "text", "contents"),
    "patch": ("patch", "diff", "input"),
    "command": ("command", "cmd"),
}
_CALL_HINT = re.compile(r"""["'](?:name|function|tool)["']\s*:\s*["'](?:edit|create|apply_patch|submit|bash)\b""")
_DECODER = json.JSONDecoder(strict=False)  # small models put raw newlines inside JSON strings


def _arg(args: Mapping[str, Any], key: str) -> str | None:
    for alias in _ALIASES[key]:
        value = args.get(alias)
        if isinstance(value, str):
            return value
    return None


def to_action(name: str, args: Mapping[str, Any]) -> tuple[Action | None, str | None]:
    """One call as an action, or a problem naming what is missing."""

    def missing(*keys: str) -> tuple[None, str]:
        return None, f"the {name} call is missing {', '.join(repr(k) for k in keys)}"

    if name == "edit":
        path, search, replace = _arg(args, "path"), _arg(args, "search"), _arg(args, "replace")
        if path is None or search is None:
            return missing(*[k for k, v in (("path", path), ("search", search)) if v is None])
        return SearchReplace(path, search, replace or ""), None
    if name == "create":
        path, content = _arg(args, "path"), _arg(args, "content")
        if path is None or content is None:
            return missing(*[k for k, v in (("path", path), ("content", content)) if v is None])
        return CreateFile(path, content), None
    if name == "apply_patch":
        patch = _arg(args, "patch")
        if patch is None:
            return missing("patch")
        return UnifiedDiff(patch if patch.endswith("\n") else patch + "\n"), None
    if name == "submit":
        return Submit(_arg(args, "path")), None
    if name == "bash":
        command = _arg(args, "command")
        return (BashCall(command), None) if command else missing("command")
    return None, f"unknown tool '{name}': the tools are {', '.join(_TOOL_NAMES)}"


def _decode_args(name: str, raw: Any) -> tuple[Mapping[str, Any] | None, str | None]:
    if raw is None or raw == "":
        return {}, None
    if isinstance(raw, Mapping):
        return raw, None
    if isinstance(raw, str):
        try:
            value = _DECODER.decode(raw)
        except json.JSONDecodeError as exc:
            return None, f"the arguments of the {name} call are not valid JSON ({exc.msg} at char {exc.pos})"
        if isinstance(value, Mapping):
            return value, None
    return None, f"the arguments of the {name} call must be a JSON object"


def _shapes(value: Any) -> list[tuple[str, Any]] | None:
    """``(name, raw arguments)`` for every call in one decoded JSON value, or None if it holds no call."""
    if isinstance(value, list):
        found = [call for item in value for call in (_shapes(item) or [])]
        return found or None
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("tool_calls"), list):
        return _shapes(value["tool_calls"])
    if isinstance(value.get("function"), dict):  # {"type": "function", "function": {"name", "arguments"}}
        return _shapes(value["function"])
    name = value.get("name", value.get("tool", value.get("tool_name", value.get("function"))))
    has_args = any(k in value for k in ("arguments", "parameters", "args", "input"))
    if not isinstance(name, str) or not (has_args or name in _TOOL_NAMES):
        return None
    raw: Any = next((value[k] for k in ("arguments", "parameters", "args", "input") if k in value), {})
    return [(name, raw)]


def calls_in_text(text: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """Tool calls written as JSON anywhere in ``text`` (fenced, bare, wrapped in tags), and problems."""
    calls: list[tuple[str, Any]] = []
    pos = 0
    while (start := _next_open(text, pos)) >= 0:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            repaired = _close_braces(text, start)
            if repaired is None:
                pos = start + 1
                continue
            value, end = repaired
        found = _shapes(value)
        if found:
            calls.extend(found)
        pos = end
    problems: list[str] = []
    if not calls and (hint := _CALL_HINT.search(text)):
        start = text.rfind("{", 0, hint.start() + 1)
        try:
            _DECODER.raw_decode(text, max(start, 0))
        except json.JSONDecodeError as exc:
            problems.append(f"a tool call written as JSON could not be read ({exc.msg} at char {exc.pos})")
    return calls, problems


def _close_braces(text: str, start: int) -> tuple[Any, int] | None:
    """A tool call cut short of its last closing braces (small models do this), completed; else None.

    Only the text from ``start`` to the end of its fence or of the message is tried, with one to three ``}`` added,
    and only when it names a tool and its arguments: nothing else is guessed.
    """
    rest = text[start:]
    fence = rest.find("```")
    chunk = (rest[:fence] if fence >= 0 else rest).rstrip()
    if '"name"' not in chunk or '"arguments"' not in chunk:
        return None
    for extra in range(1, 4):
        try:
            value = json.loads(chunk + "}" * extra)
        except json.JSONDecodeError:
            continue
        return value, start + len(chunk)
    return None


def _next_open(text: str, pos: int) -> int:
    brace, bracket = text.find("{", pos), text.find("[", pos)
    found = [i for i in (brace, bracket) if i >= 0]
    return min(found) if found else -1


class OpenAIDialect(TextToolsDialect):
    """OpenAI-style function calling for any chat model; reads structured calls and JSON in the text."""

    name = "openai"
    intro = _INTRO
    tools_template = "tools_openai"
    edit_hint = "Change the code with the edit tool (call the `edit` function)."

    def tools(self) -> list[dict[str, Any]] | None:
        return TOOL_SCHEMAS

    def parse(self, completion: Completion) -> Parsed:
        reasoning, answer = split_think(completion)
        parsed = Parsed(reasoning=reasoning, answer=answer)
        raw_calls: list[tuple[str, Any]] = [(c.name, c.arguments) for c in completion.tool_calls]
        if not raw_calls:
            text_calls, problems = calls_in_text(answer)
            raw_calls = text_calls
            parsed.problems.extend(problems)
        for name, raw in raw_calls:
            args, problem = _decode_args(name, raw)
            action = None
            if args is not None:
                action, problem = to_action(name, args)
            if action is not None:
                parsed.actions.append(action)
            if problem is not None:
                parsed.problems.append(problem)
        if not raw_calls:  # a plain markdown answer: fenced diffs and files
            edits, problems = parse_fenced(answer)
            parsed.actions.extend(edits)
            parsed.problems.extend(problems)
        return parsed

    def assistant_message(self, completion: Completion) -> dict[str, Any]:
        if not completion.tool_calls:
            return {"role": "assistant", "content": completion.content}
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in completion.tool_calls
        ]
        return {"role": "assistant", "content": completion.content or None, "tool_calls": calls}

    def observation_messages(self, completion: Completion, body: str) -> list[dict[str, Any]]:
        if not completion.tool_calls:
            return [{"role": "user", "content": body}]
        # every structured call needs its own answer; the one output covers them all
        first, *rest = completion.tool_calls
        messages = [{"role": "tool", "tool_call_id": first.id, "content": body}]
        messages += [
            {"role": "tool", "tool_call_id": c.id, "content": "(the output of all calls is in the first result)"}
            for c in rest
        ]
        return messages
