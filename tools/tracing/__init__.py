"""Real execution traces of a failing test, rendered in the format CWM was mid-trained on.

Why: a trace of what the code actually did (every line, every local, the value returned) is the most direct evidence
a model can get, and CWM learned to read exactly this format. The recording happens inside the sandbox by the
standalone script ``tools/tracing/_tracer.py`` (it must run on the sandbox's Python, so it cannot import mendloop);
this module ships it there, reads its JSON back and renders it:

* :func:`render_cwm` - CWM's special-token frames (``<|call_sep|>``, ``<|line_sep|>``, ...), byte for byte the
  grammar in docs/CWM.md;
* :func:`render_prompt_context` - the ``<|trace_context_start|>SOURCE<|frame_sep|>`` prefix CWM's trace prediction
  prompt starts with;
* :func:`render_readable` - ``L12 call  c='r'`` lines for people and for models that never saw CWM's tokens.

Marker frames (event ``"skip"``) stand for loop iterations or frames that were left out; in CWM text they are line
frames whose source is a ``# ... skipped ...`` comment, so the text still parses by CWM's grammar.

Links are never followed on the host: the tracer's own paths are cleared of links before they are written and the
trace is not read back through one (the traced code may plant them), and the tracer writes its JSON as a new file
(``O_EXCL | O_NOFOLLOW``). A project file that resolves outside the project is not project code, so it is never
traced.
"""

from __future__ import annotations

import json
import math
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sandboxes.base import Sandbox
from tools.testing import TestCase

__all__ = [
    "END_OF_TEXT",
    "SPECIAL_TOKENS",
    "START_MARKER",
    "Frame",
    "Trace",
    "estimate_tokens",
    "render_cwm",
    "render_prompt_context",
    "render_readable",
    "trace_failure",
    "trace_from_json",
    "trace_test",
]

FRAME_SEP = "<|frame_sep|>"
ACTION_SEP = "<|action_sep|>"
RETURN_SEP = "<|return_sep|>"
CALL_SEP = "<|call_sep|>"
LINE_SEP = "<|line_sep|>"
EXCEPTION_SEP = "<|exception_sep|>"
ARG_SEP = "<|arg_sep|>"
TRACE_CONTEXT_START = "<|trace_context_start|>"
END_OF_TEXT = "<|end_of_text|>"
START_MARKER = "  # << START_OF_TRACE"
SPECIAL_TOKENS = (
    FRAME_SEP,
    ACTION_SEP,
    RETURN_SEP,
    CALL_SEP,
    LINE_SEP,
    EXCEPTION_SEP,
    ARG_SEP,
    TRACE_CONTEXT_START,
    END_OF_TEXT,
)
_EVENT_TOKENS = {"call": CALL_SEP, "line": LINE_SEP, "return": RETURN_SEP, "exception": EXCEPTION_SEP}
_SPECIAL_RE = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))
_TRACER = Path(__file__).with_name("_tracer.py")
TRACER_PATH = ".mendloop/_tracer.py"
TRACE_OUT = ".mendloop/trace.json"
UNCHANGED = ".."


@dataclass
class Frame:
    """One event of the traced scope. ``locals`` (call/line) holds ``repr`` strings, ``".."`` where unchanged since
    the previous call/line frame; ``value`` (return/exception) is the ``repr`` of what was returned or raised.
    ``event == "skip"`` marks left-out frames; its ``source_line`` is the ``# ... skipped ...`` comment."""

    event: str
    line: int
    source_line: str
    locals: dict[str, str] | None
    value: str | None


@dataclass
class Trace:
    """The recorded execution of one function invocation (see ``tools/tracing/_tracer.py`` for how it is chosen)."""

    function: str
    file: str
    source: str
    first_line: int
    frames: list[Frame]
    truncated: bool
    summary: str


# -- getting a trace -----------------------------------------------------------------------------------------
def trace_test(
    sandbox: Sandbox,
    test_id: str,
    *,
    max_frames: int = 200,
    max_repr: int = 200,
    timeout: float | None = None,
    python: str = "python",
    env: Mapping[str, str] | None = None,
) -> Trace | None:
    """Trace the function behind the failing pytest ``test_id`` inside ``sandbox``.

    Returns None - never raises - when nothing could be traced (a collection error, a crash, a timeout, no project
    code on the failing path): a missing trace is an observation, not an infrastructure failure. Errors of the
    sandbox itself (``SandboxError``) still propagate. ``env`` goes to the command (e.g.
    ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` where heavy unrelated pytest plugins are installed).
    """
    _clear_links(Path(sandbox.root))
    sandbox.put({TRACER_PATH: _TRACER.read_bytes(), ".mendloop/.gitignore": b"*\n"})
    cmd = [python, TRACER_PATH, "--test", test_id, "--out", TRACE_OUT]
    cmd += ["--max-frames", str(max_frames), "--max-repr", str(max_repr)]
    if timeout is not None:
        # the tracer stops an endless loop itself, early enough to still write what it saw
        cmd += ["--max-seconds", f"{max(1.0, timeout * 0.75):.1f}"]
    sandbox.run(cmd, timeout=timeout, env=env)
    if _unreadable(Path(sandbox.root)):
        return None
    try:
        raw = sandbox.get(TRACE_OUT)
    except (OSError, KeyError):
        return None
    try:
        return trace_from_json(json.loads(raw.decode("utf-8", "replace")))
    except (ValueError, TypeError, KeyError):
        return None


# The tracer's files in the workspace; the traced code runs as the sandbox user and may have put a link at any.
_OWN_PATHS = (".mendloop", TRACER_PATH, ".mendloop/.gitignore", TRACE_OUT)


def _clear_links(root: Path) -> None:
    """Remove a link at any of the tracer's paths before writing them: a link would take the write elsewhere."""
    for rel in _OWN_PATHS:
        if (root / rel).is_symlink():
            (root / rel).unlink()


def _unreadable(root: Path) -> bool:
    """Whether the trace would be read back through a link, or is not a regular file (a FIFO would hang the
    read); the traced code may have planted either while the test ran. Then it is not read."""
    if (root / ".mendloop").is_symlink():
        return True
    try:
        mode = (root / TRACE_OUT).lstat().st_mode
    except OSError:
        return False  # nothing here: a backend with its own copy (Docker) is asked, which refuses non-files
    return not stat.S_ISREG(mode)


def trace_failure(sandbox: Sandbox, case: TestCase, test_cmd: str, *, timeout: float | None = None) -> Trace | None:
    """Trace the project function behind one failing test case, whatever ran it; ``None`` when it cannot be traced.

    pytest cases are traced by their node id. (Cases of other test commands are traced where the tracer knows how.)
    """
    if "::" in case.id:
        return trace_test(sandbox, case.id, timeout=timeout)
    return None


def trace_from_json(document: Mapping[str, Any]) -> Trace | None:
    """Build a :class:`Trace` from the tracer's JSON; None when it traced nothing."""
    if not document.get("function"):
        return None
    frames = [
        Frame(
            event=str(f["event"]),
            line=int(f["line"]),
            source_line=str(f["source_line"]),
            locals=None if f.get("locals") is None else {str(k): str(v) for k, v in f["locals"].items()},
            value=None if f.get("value") is None else str(f["value"]),
        )
        for f in document["frames"]
    ]
    return Trace(
        function=str(document["function"]),
        file=str(document["file"]),
        source=str(document["source"]),
        first_line=int(document["first_line"]),
        frames=frames,
        truncated=bool(document.get("truncated", False)),
        summary=str(document.get("summary", "")),
    )


# -- sizes and budgets ---------------------------------------------------------------------------------------
def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: each special token is one token, other text about 3.5 characters per token."""
    specials = len(_SPECIAL_RE.findall(text))
    rest = len(_SPECIAL_RE.sub("", text))
    return specials + math.ceil(rest / 3.5)


def resolve_locals(frames: Sequence[Frame]) -> list[dict[str, str] | None]:
    """Full locals per frame (``".."`` replaced by the value it stands for); None for return/exception/skip."""
    resolved: list[dict[str, str] | None] = []
    previous: dict[str, str] | None = None
    for frame in frames:
        current = None
        if frame.event in ("call", "line"):
            current = {
                name: (previous.get(name, value) if value == UNCHANGED and previous else value)
                for name, value in (frame.locals or {}).items()
            }
        resolved.append(current)
        previous = _carried(frame, current, previous)
    return resolved


def _rediff(frames: Sequence[Frame], full: Sequence[dict[str, str] | None]) -> list[Frame]:
    """Recompute ``".."`` after frames were dropped: the first frame after a gap must carry full values."""
    out: list[Frame] = []
    previous: dict[str, str] | None = None
    for frame, current in zip(frames, full, strict=True):
        if frame.event == "call" and current is not None:
            frame = replace(frame, locals=dict(current))
        elif frame.event == "line" and current is not None:
            shown = {k: (UNCHANGED if previous is not None and previous.get(k) == v else v) for k, v in current.items()}
            frame = replace(frame, locals=shown)
        out.append(frame)
        previous = _carried(frame, current, previous)
    return out


def _carried(frame: Frame, current: dict[str, str] | None, previous: dict[str, str] | None) -> dict[str, str] | None:
    """The locals the next frame's ``".."`` refer to: this frame's own, none after a return or a skip marker."""
    if current is not None:
        return current
    return None if frame.event in ("return", "skip") else previous


def _fit(trace: Trace, render: Any, budget_tokens: int | None) -> str:
    """Render; if over budget, keep fewer and fewer frames from both ends with a skip marker in the middle."""
    text: str = render(trace, trace.frames)
    if budget_tokens is None or estimate_tokens(text) <= budget_tokens or len(trace.frames) <= 2:
        return text
    full = resolve_locals(trace.frames)
    keep = len(trace.frames) - 1
    while keep >= 2:
        head, tail = (keep + 1) // 2, keep // 2
        dropped = trace.frames[head : len(trace.frames) - tail]
        lines = [f.line for f in dropped]
        indent = re.match(r"\s*", dropped[0].source_line)
        marker = Frame(
            "skip",
            dropped[0].line,
            f"{indent.group(0) if indent else ''}# ... {len(dropped)} frames of lines "
            f"{min(lines)}-{max(lines)} skipped ...",
            None,
            None,
        )
        frames = [*trace.frames[:head], marker, *trace.frames[len(trace.frames) - tail :]]
        fulls = [*full[:head], None, *full[len(full) - tail :]]
        text = render(trace, _rediff(frames, fulls))
        if estimate_tokens(text) <= budget_tokens:
            return text
        keep = keep * 3 // 4 if keep > 8 else keep - 1
    return text


# -- CWM rendering -------------------------------------------------------------------------------------------
def _locals_json(local_vars: Mapping[str, str] | None) -> str:
    return json.dumps(dict(local_vars or {}))


def _cwm_frames(trace: Trace, frames: Sequence[Frame]) -> str:
    parts: list[str] = []
    first = True
    for frame in frames:
        source = frame.source_line.rstrip("\n")
        if frame.event == "call" and first:
            source += START_MARKER
        first = False
        if frame.event == "skip":
            parts.append(f"{LINE_SEP}{{}}{ACTION_SEP}{source}\n{FRAME_SEP}")
        elif frame.event in ("call", "line"):
            token = _EVENT_TOKENS[frame.event]
            parts.append(f"{token}{_locals_json(frame.locals)}{ACTION_SEP}{source}\n{FRAME_SEP}")
        else:
            token = _EVENT_TOKENS[frame.event]
            parts.append(f"{token}{ACTION_SEP}{source}\n{ARG_SEP}{json.dumps(frame.value or 'None')}{FRAME_SEP}")
    return "".join(parts)


def render_cwm(trace: Trace, *, budget_tokens: int | None = None, end_of_text: bool = False) -> str:
    """The trace as CWM's frames: ``<|call_sep|>{locals}<|action_sep|>def f(c):  # << START_OF_TRACE\\n<|frame_sep|>``
    then line / return / exception frames. ``end_of_text`` appends ``<|end_of_text|>``, which is how CWM's traces
    end when execution leaves the scope. The ``<|begin_of_text|>`` token is the tokenizer's business, not ours."""
    text = _fit(trace, _cwm_frames, budget_tokens)
    return text + END_OF_TEXT if end_of_text else text


def marked_source(trace: Trace) -> str:
    """The function's source with its ``def`` line marked ``  # << START_OF_TRACE`` (as CWM's prompt expects)."""
    lines = trace.source.splitlines(keepends=True)
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(("def ", "async def ")):
            body = line.rstrip("\r\n")
            lines[index] = body + START_MARKER + line[len(body) :]
            break
    return "".join(lines)


def render_prompt_context(trace: Trace) -> str:
    """``<|trace_context_start|>SOURCE<|frame_sep|>``: the prefix of CWM's trace-prediction prompt (raw completion,
    no chat template); append :func:`render_cwm` frames to show what really happened, or let CWM predict them."""
    return f"{TRACE_CONTEXT_START}{marked_source(trace)}{FRAME_SEP}"


# -- readable rendering --------------------------------------------------------------------------------------
def _readable_frames(trace: Trace, frames: Sequence[Frame]) -> str:
    lines = [f"Trace of {trace.function} ({trace.file}:{trace.first_line}): {trace.summary}"]
    for frame in frames:
        if frame.event == "skip":
            lines.append(f"      {frame.source_line.strip().lstrip('#').strip()}")
        elif frame.event in ("call", "line"):
            changed = ", ".join(f"{k}={v}" for k, v in (frame.locals or {}).items() if v != UNCHANGED)
            lines.append(f"L{frame.line} {frame.event:<5} {changed}".rstrip())
        else:
            lines.append(f"L{frame.line} {frame.event:<5} {frame.value}")
    return "\n".join(lines) + "\n"


def render_readable(trace: Trace, *, budget_tokens: int | None = None) -> str:
    """One line per event, showing only locals that changed: ``L12 call  c='r'`` ... ``L20 return 'Found 3'``."""
    return _fit(trace, _readable_frames, budget_tokens)
