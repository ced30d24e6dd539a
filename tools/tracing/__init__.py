"""Real execution traces of a failing test, rendered in the format CWM was mid-trained on.

Why: a trace of what the code actually did (every line, every local, the value returned) is the most direct evidence
a model can get, and CWM learned to read exactly this format. The recording happens inside the sandbox by the
standalone script ``tools/tracing/_tracer.py`` (it must run on the sandbox's Python, so it cannot import mendloop);
this module ships it there, reads its JSON back and renders it:

* :func:`render_cwm` - CWM's special-token frames (``<|call_sep|>``, ``<|line_sep|>``, ...), byte for byte the
  grammar in docs/CWM.md;
* :func:`render_prompt_context` - the ``<|trace_context_start|>SOURCE<|frame_sep|>`` prefix CWM's trace prediction
  prompt starts with: the traced function's source, its ``def`` line marked ``  # << START_OF_TRACE``, then the
  source of each project function the trace steps into;
* :func:`render_cwm_prompt` - what a CWM model is shown: that prefix, then the frames (CWM was trained on traces
  that follow their source), with one plain line before it when frames were left out;
* :func:`render_readable` - ``L12 call  c='r'`` lines for people and for models that never saw CWM's tokens.

No frame the program did not produce is ever shown. Where frames are left out (a long loop's middle iterations, a
cap, a budget), the first frame after the gap carries ``gap`` (what was left out) and its locals in full - the
grammar's own way to start over, as a call frame does - and the ONE marker of the gap is outside the token stream:
the note line of :func:`render_cwm_prompt` (CWM's grammar has no token for "left out", and an invented frame would
teach the model a step the program never took), or an indented line of :func:`render_readable`.

Links are never followed on the host: the tracer's own paths are cleared of links before they are written and the
trace is not read back through one (the traced code may plant them), and the tracer writes its JSON as a new file
(``O_EXCL | O_NOFOLLOW``). A project file that resolves outside the project is not project code, so it is never
traced.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sandboxes.base import Sandbox
from tools.testing import TestCase, python_of, script_target, unittest_top

__all__ = [
    "END_OF_TEXT",
    "SPECIAL_TOKENS",
    "START_MARKER",
    "Callee",
    "Frame",
    "Trace",
    "TraceOptions",
    "estimate_tokens",
    "gaps_note",
    "render_cwm",
    "render_cwm_prompt",
    "render_prompt_context",
    "render_readable",
    "trace_failure",
    "trace_from_json",
    "trace_script",
    "trace_test",
    "trace_unittest",
    "untraceable",
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
    ``depth`` 0 is the traced function, 1 a function it called and the trace stepped into (``file`` then names its
    file), and so on. ``gap`` says which frames were left out just before this one ("996 iterations of lines 3-4")."""

    event: str
    line: int
    source_line: str
    locals: dict[str, str] | None
    value: str | None
    depth: int = 0
    gap: str = ""
    file: str = ""


@dataclass
class Callee:
    """A project function the trace steps into: its source goes into CWM's trace context after the traced one's."""

    function: str
    file: str
    source: str
    first_line: int


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
    callees: list[Callee] = field(default_factory=list)


# -- getting a trace -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceOptions:
    """How a trace is recorded, whatever ran the test: at most ``max_frames`` frames and ``max_repr`` characters per
    value; ``timeout`` for the whole run (the tracer stops an endless loop itself, early enough to still write what
    it saw); ``python`` the sandbox's interpreter; ``env`` for the command (e.g. ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``
    where heavy unrelated pytest plugins are installed); ``step_into`` > 0 steps into the project functions the
    traced one calls, that many calls deep (0: calls are lines)."""

    max_frames: int = 200
    max_repr: int = 200
    timeout: float | None = None
    python: str = "python"
    env: Mapping[str, str] | None = None
    step_into: int = 0


_DEFAULTS = TraceOptions()


def trace_test(sandbox: Sandbox, test_id: str, *, options: TraceOptions = _DEFAULTS) -> Trace | None:
    """Trace the function behind the failing pytest ``test_id`` inside ``sandbox``.

    Returns None - never raises - when nothing could be traced (a collection error, a crash, a timeout, no project
    code on the failing path): a missing trace is an observation, not an infrastructure failure. Errors of the
    sandbox itself (``SandboxError``) still propagate.
    """
    return _run_tracer(sandbox, ["--test", test_id], options)


def trace_unittest(
    sandbox: Sandbox, test_id: str, *, top: str = ".", options: TraceOptions = _DEFAULTS
) -> Trace | None:
    """Trace the function behind the failing unittest ``test_id`` (``tests.test_x.TestK.test_y``); ``top`` is the
    directory unittest named it from (``discover -t``/``-s``). None when nothing could be traced."""
    mode = ["--unittest", test_id] + (["--path", top] if top not in ("", ".") else [])
    return _run_tracer(sandbox, mode, options)


def trace_script(
    sandbox: Sandbox,
    target: str,
    args: Sequence[str] = (),
    *,
    module: bool = False,
    options: TraceOptions = _DEFAULTS,
) -> Trace | None:
    """Trace a Python script run as a test (``python test_gcd.py``; ``module``: ``python -m pkg.checks``): the
    innermost project function a traceback reached, or the last top-level project call before the script failed
    (a module-level ``assert``). None when nothing could be traced."""
    mode = ["--module" if module else "--script", target, "--", *args]
    return _run_tracer(sandbox, mode, options)


def untraceable(case: TestCase) -> str:
    """Why ``case`` cannot be traced, told from its id alone ("" when it can): the one check :func:`trace_failure`
    and ``mendloop trace`` (which says it before any sandbox starts) share."""
    if case.kind == "pytest" and "::" not in case.id:
        return (
            "is no pytest test id: name one test (tests/test_x.py::test_y), "
            "or give the command that runs a script ('python test_x.py')"
        )
    if case.kind == "unittest" and "." not in case.id:  # a module that failed to import: there is no test to run
        return "is no unittest test id: name one test (tests.test_x.TestK.test_y)"
    if case.kind != "command":
        return ""
    target = script_target(case.id)
    if target is None:
        return "is not one Python run (python X.py or python -m module): it cannot be traced"
    if target[1] == "module" and target[2] in ("pytest", "unittest"):
        return f"runs {target[2]}: name one test for it to run, e.g. tests/test_x.py::test_y"
    return ""


def trace_failure(
    sandbox: Sandbox, case: TestCase, test_cmd: str, *, options: TraceOptions = _DEFAULTS
) -> Trace | None:
    """Trace the project function behind one failing test case, whatever ran it; ``None`` when it cannot be traced.

    pytest cases by their node id, unittest cases by their id (from the command's top-level directory), and a
    command's case by running its Python script or module under the tracer (the case's id is the command that ran:
    the suite's own, or ``python test_mendloop_repro.py``). Commands that are not one Python run (``make test``, a
    shell script) cannot be traced. The interpreter is the one ``test_cmd`` names (``options.python`` is ignored).
    """
    options = replace(options, python=python_of(test_cmd))
    if untraceable(case):
        return None
    if case.kind == "pytest":
        return trace_test(sandbox, case.id, options=options)
    if case.kind == "unittest":
        return trace_unittest(sandbox, case.id, top=unittest_top(test_cmd), options=options)
    target = script_target(case.id)
    if target is None:  # not reached: untraceable() said so; this narrows the type
        return None
    python, how, name, args = target
    return trace_script(sandbox, name, args, module=how == "module", options=replace(options, python=python))


def _run_tracer(sandbox: Sandbox, mode: Sequence[str], options: TraceOptions) -> Trace | None:
    _clear_links(Path(sandbox.root))
    # an empty trace file first: a tracer that never starts (no such interpreter) must not leave an old trace to read
    sandbox.put({TRACER_PATH: _TRACER.read_bytes(), ".mendloop/.gitignore": b"*\n", TRACE_OUT: b""})
    cmd = [options.python, TRACER_PATH, "--out", TRACE_OUT]
    cmd += ["--max-frames", str(options.max_frames), "--max-repr", str(options.max_repr)]
    if options.timeout is not None:
        # the tracer stops an endless loop itself, early enough to still write what it saw
        cmd += ["--max-seconds", f"{max(1.0, options.timeout * 0.75):.1f}"]
    if options.step_into > 0:
        cmd += ["--step-into", str(options.step_into)]
    # through the shell: an interpreter the sandbox lacks is exit 127 (no trace), not an error of the sandbox
    sandbox.run(shlex.join([*cmd, *mode]), timeout=options.timeout, env=options.env)
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
            depth=int(f.get("depth", 0)),
            gap=str(f.get("gap") or ""),
            file=str(f.get("file") or ""),
        )
        for f in document["frames"]
    ]
    callees = [
        Callee(str(c["function"]), str(c["file"]), str(c["source"]), int(c["first_line"]))
        for c in document.get("callees") or []
    ]
    return Trace(
        function=str(document["function"]),
        file=str(document["file"]),
        source=str(document["source"]),
        first_line=int(document["first_line"]),
        frames=frames,
        truncated=bool(document.get("truncated", False)),
        summary=str(document.get("summary", "")),
        callees=callees,
    )


# -- sizes and budgets ---------------------------------------------------------------------------------------
def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: each special token is one token, other text about 3.5 characters per token."""
    specials = len(_SPECIAL_RE.findall(text))
    rest = len(_SPECIAL_RE.sub("", text))
    return specials + math.ceil(rest / 3.5)


def resolve_locals(frames: Sequence[Frame]) -> list[dict[str, str] | None]:
    """Full locals per frame (``".."`` replaced by the value it stands for); None for return/exception frames."""
    resolved: list[dict[str, str] | None] = []
    previous: dict[str, str] | None = None
    for frame in frames:
        if frame.gap:
            previous = None
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
        if frame.gap:
            previous = None
        if frame.event == "call" and current is not None:
            frame = replace(frame, locals=dict(current))
        elif frame.event == "line" and current is not None:
            shown = {k: (UNCHANGED if previous is not None and previous.get(k) == v else v) for k, v in current.items()}
            frame = replace(frame, locals=shown)
        out.append(frame)
        previous = _carried(frame, current, previous)
    return out


def _carried(frame: Frame, current: dict[str, str] | None, previous: dict[str, str] | None) -> dict[str, str] | None:
    """The locals the next frame's ``".."`` refer to: this frame's own, none after a return."""
    if current is not None:
        return current
    return None if frame.event == "return" else previous


def _joined(first: str, second: str) -> str:
    return f"{first}; {second}" if first and second else first or second


def fit_frames(trace: Trace, render: Any, budget_tokens: int | None) -> list[Frame]:
    """The frames to show within ``budget_tokens`` of ``render(trace, frames)``: all of them, or fewer and fewer from
    both ends with the middle left out (the first frame after the cut says so in its ``gap``)."""
    frames = list(trace.frames)
    if budget_tokens is None or len(frames) <= 2 or estimate_tokens(render(trace, frames)) <= budget_tokens:
        return frames
    full = resolve_locals(frames)
    keep = len(frames) - 1
    chosen = frames
    while keep >= 2:
        head, tail = (keep + 1) // 2, keep // 2
        dropped = frames[head : len(frames) - tail]
        lines = sorted({f.line for f in dropped if f.depth == 0})
        where = "" if not lines else f" of line {lines[0]}" if len(lines) == 1 else f" of lines {lines[0]}-{lines[-1]}"
        after = frames[len(frames) - tail]
        inner = [f.gap for f in dropped if f.gap]  # gaps inside the cut are still gaps: said first
        after = replace(after, gap=_joined("; ".join([*inner, f"{len(dropped)} frames{where}"]), after.gap))
        chosen = _rediff(
            [*frames[:head], after, *frames[len(frames) - tail + 1 :]],
            [*full[:head], *full[len(full) - tail :]],
        )
        if estimate_tokens(render(trace, chosen)) <= budget_tokens:
            return chosen
        keep = keep * 3 // 4 if keep > 8 else keep - 1
    return chosen


def gaps_note(frames: Sequence[Frame]) -> str:
    """One plain line naming every gap of ``frames`` ("" when none): the marker that stands outside CWM's tokens."""
    gaps = [f"{frame.gap} before frame {index + 1}" for index, frame in enumerate(frames) if frame.gap]
    if not gaps:
        return ""
    return f"(Frames left out of this trace: {'; '.join(gaps)}. The frame after a gap carries its locals in full.)"


# -- CWM rendering -------------------------------------------------------------------------------------------
def _locals_json(local_vars: Mapping[str, str] | None) -> str:
    return json.dumps(dict(local_vars or {}))


def _cwm_frames(trace: Trace, frames: Sequence[Frame]) -> str:
    parts: list[str] = []
    for index, frame in enumerate(frames):
        source = frame.source_line.rstrip("\n")
        if index == 0 and frame.event == "call":
            source += START_MARKER
        token = _EVENT_TOKENS[frame.event]
        if frame.event in ("call", "line"):
            parts.append(f"{token}{_locals_json(frame.locals)}{ACTION_SEP}{source}\n{FRAME_SEP}")
        else:
            parts.append(f"{token}{ACTION_SEP}{source}\n{ARG_SEP}{json.dumps(frame.value or 'None')}{FRAME_SEP}")
    return "".join(parts)


def render_cwm(trace: Trace, *, budget_tokens: int | None = None, end_of_text: bool = False) -> str:
    """The trace as CWM's frames: ``<|call_sep|>{locals}<|action_sep|>def f(c):  # << START_OF_TRACE\\n<|frame_sep|>``
    then line / return / exception frames. ``end_of_text`` appends ``<|end_of_text|>``, which is how CWM's traces
    end when execution leaves the scope. The ``<|begin_of_text|>`` token is the tokenizer's business, not ours."""
    text = _cwm_frames(trace, fit_frames(trace, _cwm_frames, budget_tokens))
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


def _context_source(trace: Trace) -> str:
    """The traced function's marked source, then each stepped-into callee's, separated by blank lines."""
    blocks = [marked_source(trace), *(callee.source for callee in trace.callees)]
    return "\n".join(block if block.endswith("\n") else block + "\n" for block in blocks)


def render_prompt_context(trace: Trace) -> str:
    """``<|trace_context_start|>SOURCE<|frame_sep|>``: the prefix of CWM's trace-prediction prompt (raw completion,
    no chat template); append :func:`render_cwm` frames to show what really happened, or let CWM predict them.
    SOURCE is the traced function (marked) followed by the functions the trace steps into."""
    return f"{TRACE_CONTEXT_START}{_context_source(trace)}{FRAME_SEP}"


def render_cwm_prompt(trace: Trace, *, budget_tokens: int | None = None) -> str:
    """What a CWM model is shown of a trace, as it was trained: the source context, then the frames (within
    ``budget_tokens`` for the whole text, the source taking its share first but never more than half); a plain note
    line first when frames were left out."""
    context = render_prompt_context(trace)
    room = None
    if budget_tokens is not None:
        room = max(budget_tokens - estimate_tokens(context), budget_tokens // 2)
    frames = fit_frames(trace, _cwm_frames, room)
    note = gaps_note(frames)
    return (f"{note}\n" if note else "") + context + _cwm_frames(trace, frames)


# -- readable rendering --------------------------------------------------------------------------------------
def _readable_frames(trace: Trace, frames: Sequence[Frame]) -> str:
    lines = [f"Trace of {trace.function} ({trace.file}:{trace.first_line}): {trace.summary}"]
    for frame in frames:
        indent = "  " * frame.depth
        if frame.gap:
            lines.append(f"      {indent}... {frame.gap} left out ...")
        if frame.event in ("call", "line"):
            changed = ", ".join(f"{k}={v}" for k, v in (frame.locals or {}).items() if v != UNCHANGED)
            where = f" {frame.file}" if frame.event == "call" and frame.depth and frame.file else ""
            lines.append(f"{indent}L{frame.line} {frame.event:<5} {changed}".rstrip() + where)
        else:
            lines.append(f"{indent}L{frame.line} {frame.event:<5} {frame.value}")
    return "\n".join(lines) + "\n"


def render_readable(trace: Trace, *, budget_tokens: int | None = None) -> str:
    """One line per event, showing only locals that changed: ``L12 call  c='r'`` ... ``L20 return 'Found 3'``;
    stepped-into calls indented by their depth, a left-out stretch as one ``... left out ...`` line."""
    return _readable_frames(trace, fit_frames(trace, _readable_frames, budget_tokens))
