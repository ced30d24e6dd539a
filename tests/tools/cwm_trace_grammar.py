"""An independent parser for CWM's execution-trace text (docs/CWM.md, "Execution traces").

Why a second implementation: the tests check every rendered trace against the grammar as written in the doc, not
against the renderer's own idea of it. It is a small state machine over the special tokens:

    trace   := [ "<|trace_context_start|>" SOURCE "<|frame_sep|>" ] frame+ [ "<|end_of_text|>" ]
    frame   := ( "<|call_sep|>" | "<|line_sep|>" ) LOCALS "<|action_sep|>" LINE "<|frame_sep|>"
             | ( "<|return_sep|>" | "<|exception_sep|>" ) "<|action_sep|>" LINE "<|arg_sep|>" JSONSTR "<|frame_sep|>"
    LOCALS  := a JSON object whose values are JSON strings ("..": unchanged since the previous frame)
    LINE    := one source line, ending with its newline, free of special tokens

Semantic checks on top: the first frame is a call whose line carries ``# << START_OF_TRACE``; every ``".."`` can be
resolved by walking back the way CWM's debugger demo does (through line/exception frames, stopping after a
call or at a return).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TOKENS = {
    "frame_sep": "<|frame_sep|>",
    "action_sep": "<|action_sep|>",
    "return_sep": "<|return_sep|>",
    "call_sep": "<|call_sep|>",
    "line_sep": "<|line_sep|>",
    "exception_sep": "<|exception_sep|>",
    "arg_sep": "<|arg_sep|>",
    "trace_context_start": "<|trace_context_start|>",
    "end_of_text": "<|end_of_text|>",
}
_EVENTS = {"call_sep": "call", "line_sep": "line", "return_sep": "return", "exception_sep": "exception"}
_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in TOKENS.values()) + ")")
_NAME = {v: k for k, v in TOKENS.items()}


class GrammarError(ValueError):
    """The text is not a well-formed CWM trace."""


@dataclass
class ParsedFrame:
    event: str
    locals: dict[str, str] | None
    source_line: str
    arg: str | None


@dataclass
class ParsedTrace:
    context: str | None
    frames: list[ParsedFrame]
    ended: bool


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split into ("tok", name) and ("text", chunk) items."""
    items: list[tuple[str, str]] = []
    for piece in _SPLIT.split(text):
        if not piece:
            continue
        items.append(("tok", _NAME[piece]) if piece in _NAME else ("text", piece))
    return items


def _locals(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GrammarError(f"locals are not JSON: {text!r}") from exc
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise GrammarError(f"locals must be an object of strings: {text!r}")
    if json.dumps(value) != text:
        raise GrammarError(f"locals are not in json.dumps form: {text!r}")
    return value


def _line(text: str) -> str:
    if not text.endswith("\n") or "\n" in text[:-1]:
        raise GrammarError(f"a source line must be exactly one line ending with a newline: {text!r}")
    return text


def parse(text: str) -> ParsedTrace:
    """Parse ``text``; raise :class:`GrammarError` at the first violation."""
    items = _tokens(text)
    pos = 0

    def take(kind: str, name: str | None = None) -> str:
        nonlocal pos
        if pos >= len(items):
            raise GrammarError(f"unexpected end, wanted {name or kind}")
        got_kind, got = items[pos]
        if got_kind != kind or (name is not None and got != name):
            raise GrammarError(f"at item {pos}: wanted {name or kind}, got {got_kind} {got!r}")
        pos += 1
        return got

    def peek() -> tuple[str, str] | None:
        return items[pos] if pos < len(items) else None

    context = None
    if peek() == ("tok", "trace_context_start"):
        take("tok")
        context = take("text")
        take("tok", "frame_sep")
    frames: list[ParsedFrame] = []
    ended = False
    while pos < len(items):
        if peek() == ("tok", "end_of_text"):
            take("tok")
            ended = True
            break
        event_token = take("tok")
        if event_token not in _EVENTS:
            raise GrammarError(f"a frame must start with an event token, got {event_token}")
        event = _EVENTS[event_token]
        if event in ("call", "line"):
            local_vars = _locals(take("text"))
            take("tok", "action_sep")
            frames.append(ParsedFrame(event, local_vars, _line(take("text")), None))
        else:
            take("tok", "action_sep")
            source = _line(take("text"))
            take("tok", "arg_sep")
            raw = take("text")
            try:
                arg = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise GrammarError(f"return/exception value is not JSON: {raw!r}") from exc
            if not isinstance(arg, str) or json.dumps(arg) != raw:
                raise GrammarError(f"return/exception value must be a JSON string: {raw!r}")
            frames.append(ParsedFrame(event, None, source, arg))
        take("tok", "frame_sep")
    if pos != len(items):
        raise GrammarError("text after <|end_of_text|>")
    if not frames:
        raise GrammarError("no frames")
    if frames[0].event != "call" or "  # << START_OF_TRACE\n" not in frames[0].source_line:
        raise GrammarError("the first frame must be the call of the entry function, marked START_OF_TRACE")
    _check_unchanged(frames)
    return ParsedTrace(context, frames, ended)


def _check_unchanged(frames: list[ParsedFrame]) -> None:
    """Every ".." must resolve the way CWM's debugger demo resolves it."""
    for index, frame in enumerate(frames):
        for name, value in (frame.locals or {}).items():
            if value != "..":
                continue
            back = index - 1
            resolved = False
            while back >= 0:
                previous = frames[back]
                if previous.event == "return":
                    break
                earlier = (previous.locals or {}).get(name, "..")
                if earlier != "..":
                    resolved = True
                    break
                if previous.event == "call":
                    break
                back -= 1
            if frame.event == "call" or not resolved:
                raise GrammarError(f"frame {index}: '..' for {name!r} refers to no earlier value")


def resolved_locals(trace: ParsedTrace) -> list[dict[str, str] | None]:
    """Full locals per frame (".." replaced), for tests that compare values."""
    out: list[dict[str, str] | None] = []
    previous: dict[str, str] = {}
    for frame in trace.frames:
        if frame.locals is None:
            out.append(None)
            if frame.event == "return":
                previous = {}
            continue
        current = {k: (previous[k] if v == ".." else v) for k, v in frame.locals.items()}
        out.append(current)
        previous = current
    return out
