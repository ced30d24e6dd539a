"""Record a real execution trace of one failing pytest test, for CWM's trace format.

STANDALONE on purpose: this file is copied into the sandbox (``.mendloop/_tracer.py``) and run there by whatever
Python the sandbox has (3.8+), so it imports only the standard library (and pytest, which the project under test
brings). The host side (``tools/tracing/__init__.py``) reads the JSON it writes.

    python .mendloop/_tracer.py --test tests/test_x.py::test_y --out .mendloop/trace.json

How the function to trace is chosen (the "entry function"):
  1. the failure is an exception whose traceback passes through project code: the DEEPEST project (non-test) frame
     of that traceback - the exact invocation, matched by frame identity;
  2. otherwise (an ``assert`` in the test on a wrong value): the LAST project call made directly by the test
     (its caller is test code) that completed before the failure - its return value is what the test judged;
  3. otherwise (no project code ran at all): the test function itself.
Only files under the project root count as project code (not site-packages, a venv, the stdlib, pytest, or
``.mendloop``); test files (``test_*.py``, ``*_test.py``, ``conftest.py``) are code under test only in case 3.

What is recorded is the SCOPE of that one invocation, as CWM's traces are: its call, line, exception and return
events. Nested calls (recursive ones included) show up only as the line that makes them. A generator shows each
``yield`` as a return frame and each resumption as a call frame, exactly as ``sys.settrace`` reports them. A caught
exception is an exception frame followed by the handler's lines; an uncaught one is an exception frame followed by
a return frame whose value is ``None`` (that is what settrace emits, and what CWM's own tracer records).

Size control: long loops keep their first iterations and the last one, with a marker frame (event ``skip``) saying
how many iterations of which lines were left out; the whole trace is then capped at ``--max-frames``; every
``repr`` is guarded and cut at ``--max-repr`` characters. An endless loop is stopped after ``--max-events`` traced
lines or ``--max-seconds`` (the test is aborted; the trace says so).
"""

# mypy: ignore-errors
# (standalone script run by the sandbox's own Python 3.8+; kept annotation-free so no typing import can break there)
from __future__ import annotations

import argparse
import collections
import inspect
import json
import linecache
import os
import sys
import time

_GENERATOR_FLAGS = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
_EXCLUDED_DIRS = {".mendloop", ".venv", "venv", ".tox", ".nox", ".git", "site-packages", "dist-packages"}
KEEP_FIRST_ITERATIONS = 3
KEEP_LAST_ITERATIONS = 1
MIN_SKIPPED_ITERATIONS = 2
STARTED = time.monotonic()
HEAD_EVENTS = 20000  # events kept from the start of one invocation before only its tail is kept


class TracingLimit(BaseException):
    """Raised into the traced code to stop a test that runs too long (BaseException: ``except Exception`` in the code
    under test must not swallow it)."""


def safe_repr(value, limit):
    """``repr`` that never raises and never floods: a failing ``__repr__`` becomes ``<unrepresentable T>``."""
    try:
        text = repr(value)
        if not isinstance(text, str):
            raise TypeError("__repr__ returned non-string")
    except Exception:
        text = f"<unrepresentable {type(value).__name__}>"
    if len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


class Event:
    """One raw settrace event of the traced scope. ``kind`` is call/line/return/exception, or skip (a marker)."""

    __slots__ = ("kind", "line", "locals", "text", "value")

    def __init__(self, kind, line, local_vars=None, value=None, text=None):
        self.kind = kind
        self.line = line
        self.locals = local_vars
        self.value = value
        self.text = text  # only for skip markers


class Scope:
    """Everything recorded for one invocation (one frame object; a generator frame keeps its scope across resumes)."""

    def __init__(self, recorder, frame, top_level, qualname):
        self.recorder = recorder
        self.code = frame.f_code
        self.top_level = top_level
        self.qualname = qualname
        self.head = []
        self.tail = collections.deque(maxlen=max(1, recorder.max_frames))
        self.dropped = 0
        self.dropped_lines = set()
        self.last_kind = None
        self.stopped = None  # why recording ended early, if it did

    def add(self, event):
        self.last_kind = event.kind
        if len(self.head) < self.recorder.head_events:
            self.head.append(event)
            return
        if len(self.tail) == self.tail.maxlen:
            old = self.tail[0]
            self.dropped += 1
            self.dropped_lines.add(old.line)
        self.tail.append(event)

    def events(self):
        if not self.dropped:
            return list(self.head) + list(self.tail)
        lo, hi = min(self.dropped_lines), max(self.dropped_lines)
        text = f"... {self.dropped} events of lines {lo}-{hi} skipped ..."
        return [*list(self.head), Event("skip", lo, text=text), *list(self.tail)]

    def trace(self, frame, event, arg):
        rec = self.recorder
        if event == "line":
            rec.count_line(self)
            self.add(Event("line", frame.f_lineno, rec.snapshot(frame)))
        elif event == "return":
            by_exception = self.last_kind == "exception" and arg is None
            self.add(Event("return", frame.f_lineno, value=safe_repr(arg, rec.max_repr)))
            rec.finished(self, frame, by_exception)
        elif event == "exception":
            exc = arg[1] if arg[1] is not None else arg[0]
            self.add(Event("exception", frame.f_lineno, value=safe_repr(exc, rec.max_repr)))
        return self.trace


class Recorder:
    """Watches every new frame while one test's call phase runs; keeps the scopes that may become the trace."""

    def __init__(
        self,
        root,
        test_file,
        test_name,
        max_frames=200,
        max_repr=200,
        max_events=2000000,
        max_seconds=30.0,
        head_events=HEAD_EVENTS,
    ):
        self.root = os.path.realpath(root)
        self.test_file = os.path.realpath(test_file) if test_file else None
        self.test_name = test_name
        self.max_frames = max_frames
        self.max_repr = max_repr
        self.max_events = max_events
        self.max_seconds = max_seconds
        self.head_events = head_events
        self.prefixes = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
        self.kinds = {}
        self.harness = {}
        self.active = {}  # id(frame) -> (frame, scope): running project frames
        self.generators = {}  # id(frame) -> (frame, scope): generator frames seen (strong refs keep ids
        # unique)
        self.raised = {}  # id(frame) -> (frame, scope): frames that exited by an exception (since the last
        # top call)
        self.last_top = None
        self.test_scope = None
        self.lines = 0
        self.deadline = None
        self.stopped = None
        self.previous = None

    # -- which code counts -----------------------------------------------------------------------------------
    def kind(self, filename):
        """0 = not ours, 1 = project code, 2 = test code. Cached per file name."""
        known = self.kinds.get(filename)
        if known is not None:
            return known
        self.kinds[filename] = result = self._classify(filename)
        return result

    def _classify(self, filename):
        if not filename or filename.startswith("<"):
            return 0
        path = os.path.realpath(os.path.abspath(filename))
        if not path.startswith(self.root + os.sep):
            return 0
        for prefix in self.prefixes:
            if prefix != self.root and path.startswith(prefix + os.sep) and prefix.startswith(self.root):
                return 0
        parts = path[len(self.root) + 1 :].split(os.sep)
        if any(part in _EXCLUDED_DIRS for part in parts[:-1]):
            return 0
        base = parts[-1]
        if path == self.test_file or base == "conftest.py" or base.startswith("test_") or base.endswith("_test.py"):
            return 2
        return 1

    def is_harness(self, filename):
        known = self.harness.get(filename)
        if known is None:
            parts = filename.replace("\\", "/").split("/")
            known = self.harness[filename] = "_pytest" in parts or "pluggy" in parts
        return known

    def is_top_level(self, frame):
        """A project call is top level when the nearest project-or-test frame above it is test code (or none)."""
        caller = frame.f_back
        while caller is not None:
            if caller.f_code is trace_call.__code__:
                return True
            if self.is_harness(caller.f_code.co_filename):
                return False  # pytest itself calling in (e.g. __repr__ for an assertion message)
            kind = self.kind(caller.f_code.co_filename)
            if kind == 2:
                return True
            if kind == 1 and not caller.f_code.co_name.startswith("<"):
                return False
            caller = caller.f_back
        return True

    # -- settrace callbacks ----------------------------------------------------------------------------------
    def start(self):
        # counted from the tracer's own start: pytest's start-up eats into the same time limit
        self.deadline = STARTED + self.max_seconds
        self.previous = sys.gettrace()
        sys.settrace(self.on_call)

    def stop(self):
        sys.settrace(self.previous)

    def on_call(self, frame, event, arg):
        if event != "call":
            return None
        code = frame.f_code
        kind = self.kind(code.co_filename)
        if kind == 0 or code.co_name.startswith("<"):
            return None
        if kind == 2:
            if self.test_scope is not None or code.co_name != self.test_name:
                return None
            scope = self.test_scope = Scope(self, frame, False, _qualname(frame))
            scope.add(Event("call", frame.f_lineno, self.snapshot(frame)))
            return scope.trace
        key = id(frame)
        if code.co_flags & _GENERATOR_FLAGS:
            seen = self.generators.get(key)
            if seen is not None and seen[0] is frame:
                seen[1].add(Event("call", frame.f_lineno, self.snapshot(frame)))
                self.active[key] = seen
                return seen[1].trace
        top = self.is_top_level(frame)
        if top:
            self.raised.clear()
        scope = Scope(self, frame, top, _qualname(frame))
        scope.add(Event("call", frame.f_lineno, self.snapshot(frame)))
        self.active[key] = (frame, scope)
        if code.co_flags & _GENERATOR_FLAGS:
            self.generators[key] = (frame, scope)
        return scope.trace

    def count_line(self, scope):
        self.lines += 1
        if self.lines > self.max_events:
            self.stopped = f"stopped after {self.max_events} traced lines (a likely endless loop)"
        elif self.lines % 512 == 0 and time.monotonic() > self.deadline:
            self.stopped = f"stopped {self.max_seconds:.0f} s after the tracer started (a likely endless loop)"
        if self.stopped:
            scope.stopped = self.stopped
            raise TracingLimit(self.stopped)

    def finished(self, scope, frame, by_exception):
        key = id(frame)
        self.active.pop(key, None)
        if scope.top_level:
            self.last_top = scope
        if by_exception:
            self.raised[key] = (frame, scope)

    def snapshot(self, frame):
        return {
            name: safe_repr(value, self.max_repr)
            for name, value in frame.f_locals.items()
            if not (name.startswith("__") and name.endswith("__"))
        }

    # -- choosing the trace ----------------------------------------------------------------------------------
    def select(self, excinfo):
        """Return (scope, reason) for the invocation to report, or (None, why not)."""
        tb = excinfo[2] if excinfo else None
        on_path = []
        while tb is not None:
            code = tb.tb_frame.f_code
            if self.kind(code.co_filename) == 1 and not code.co_name.startswith("<"):
                on_path.append(tb.tb_frame)
            tb = tb.tb_next
        # deepest first; a RecursionError can switch tracing off, so the deepest frame may be unrecorded
        # on a RecursionError the deepest frames cannot even repr their locals: show the outermost call instead
        too_deep = excinfo is not None and isinstance(excinfo[1], RecursionError)
        for frame in on_path if too_deep else reversed(on_path):
            for table in (self.raised, self.active):
                hit = table.get(id(frame))
                if hit is not None and hit[0] is frame:
                    if too_deep:
                        return hit[1], "the recursion went too deep; this is its outermost call"
                    return hit[1], "the exception passed through this function (deepest traced project frame)"
        if self.last_top is not None:
            return self.last_top, "the last project call the test made before it failed"
        if self.test_scope is not None:
            return self.test_scope, "no project code ran; this is the test function itself"
        return None, "no project or test code ran under the tracer"


def _qualname(frame):
    code = frame.f_code
    qualname = getattr(code, "co_qualname", None)
    if qualname:
        return qualname
    local_vars = frame.f_locals
    if code.co_argcount and code.co_varnames and code.co_varnames[0] in ("self", "cls"):
        owner = local_vars.get(code.co_varnames[0])
        owner_type = owner if isinstance(owner, type) else type(owner)
        if owner is not None:
            return f"{owner_type.__qualname__}.{code.co_name}"
    return code.co_name


# -- shaping: loops, caps, diffs -----------------------------------------------------------------------------
def _chain(events, start, header):
    """Positions of the loop header ``header`` from ``start`` on, while the events stay inside the loop body."""
    positions = [start]
    index = start + 1
    while index < len(events):
        event = events[index]
        if event.kind in ("call", "return", "skip"):
            break
        if event.kind == "line":
            if event.line == header:
                positions.append(index)
            elif event.line < header:
                break
        index += 1
    return positions


def compress_loops(events, keep_first=KEEP_FIRST_ITERATIONS, keep_last=KEEP_LAST_ITERATIONS):
    """Keep the first and last iterations of every long loop; a skip marker stands for the rest (nested loops are
    compressed inside the iterations that are kept)."""
    out = []
    index = 0
    while index < len(events):
        event = events[index]
        if event.kind != "line":
            out.append(event)
            index += 1
            continue
        positions = _chain(events, index, event.line)
        iterations = len(positions) - 1  # the last header event is the final loop test
        skipped = iterations - keep_first - keep_last
        if skipped < MIN_SKIPPED_ITERATIONS:
            out.append(event)
            index += 1
            continue
        for number in [*list(range(keep_first)), None, *list(range(iterations - keep_last, iterations))]:
            if number is None:
                middle = events[positions[keep_first] : positions[iterations - keep_last]]
                lines = [e.line for e in middle if e.kind in ("line", "exception")]
                text = f"... {skipped} iterations of lines {min(lines)}-{max(lines)} skipped ..."
                out.append(Event("skip", event.line, text=text))
                continue
            segment = events[positions[number] : positions[number + 1]]
            out.append(segment[0])
            out.extend(compress_loops(segment[1:], keep_first, keep_last))
        index = positions[-1]
    return out


def cap_frames(events, max_frames):
    """Drop middle frames beyond ``max_frames`` (keeping the start and the end, where the answer is)."""
    if len(events) <= max_frames:
        return events, False
    keep_tail = max(1, max_frames // 4)
    keep_head = max(1, max_frames - keep_tail - 1)
    middle = events[keep_head : len(events) - keep_tail]
    lines = [e.line for e in middle]
    text = f"... {len(middle)} frames of lines {min(lines)}-{max(lines)} skipped ..."
    return [
        *events[:keep_head],
        Event("skip", middle[0].line, text=text),
        *events[len(events) - keep_tail :],
    ], True


def diff_locals(events):
    """CWM's locals: full on call frames, ``".."`` for a value unchanged since the previous call/line frame.
    A return or a skip marker breaks the chain (a reader cannot resolve ``..`` across them)."""
    previous = None
    out = []
    for event in events:
        if event.kind == "call":
            shown = dict(event.locals or {})
            previous = event.locals
        elif event.kind == "line":
            current = event.locals or {}
            shown = {
                name: (".." if previous is not None and previous.get(name) == value else value)
                for name, value in current.items()
            }
            previous = current
        else:
            shown = None
            if event.kind in ("return", "skip"):
                previous = None
        out.append(shown)
    return out


def _source_of(code, filename):
    try:
        lines, first = inspect.getsourcelines(code)
    except (OSError, TypeError):
        first = code.co_firstlineno
        lines = [linecache.getline(filename, first)]
    if first == 0:  # a module
        first = 1
    def_line = first
    for offset, text in enumerate(lines):
        stripped = text.lstrip()
        if stripped.startswith("def ") or stripped.startswith("async def "):
            def_line = first + offset
            break
    return "".join(lines), first, def_line


def build_trace(scope, reason, root, max_frames, outcome=None):
    """Turn a recorded scope into the JSON document the host reads."""
    code = scope.code
    filename = code.co_filename
    source, first_line, def_line = _source_of(code, filename)
    events = compress_loops(scope.events())
    loops_skipped = sum(1 for e in events if e.kind == "skip")
    events, capped = cap_frames(events, max_frames)
    shown = diff_locals(events)
    frames = []
    seen_call = False
    for event, local_vars in zip(events, shown, strict=False):
        line = event.line
        if event.kind == "skip":
            indent = linecache.getline(filename, line)
            indent = indent[: len(indent) - len(indent.lstrip())] or "    "
            source_line = indent.rstrip("\n") + "# " + event.text.strip()
            frames.append({"event": "skip", "line": line, "source_line": source_line, "locals": None, "value": None})
            continue
        if event.kind == "call" and not seen_call:
            line = def_line
        seen_call = seen_call or event.kind == "call"
        frames.append(
            {
                "event": event.kind,
                "line": line,
                "source_line": linecache.getline(filename, line).rstrip("\r\n"),
                "locals": local_vars,
                "value": event.value,
            }
        )
    last = events[-1] if events else None
    if scope.stopped:
        ending = scope.stopped
    elif _ended_by_exception(events):
        ending = f"raised {_last_exception(events).value} at line {_last_exception(events).line}"
    elif last is not None and last.kind == "return":
        ending = f"returned {last.value}"
    else:
        ending = "did not return"
    summary = f"{scope.qualname} {ending}; {len(frames)} frames"
    if loops_skipped:
        summary += "; long loops shortened (skip frames)"
    if capped:
        summary += f"; capped at {max_frames} frames"
    summary += f". Chosen because {reason}."
    if outcome:
        summary += f" Test outcome: {outcome}."
    return {
        "function": scope.qualname,
        "file": os.path.relpath(os.path.realpath(filename), root).replace(os.sep, "/"),
        "source": source,
        "first_line": first_line,
        "frames": frames,
        "truncated": bool(capped or loops_skipped or scope.dropped or scope.stopped),
        "summary": summary,
    }


def _ended_by_exception(events):
    return len(events) >= 2 and events[-2].kind == "exception" and events[-1].value == "None"


def _last_exception(events):
    return [e for e in events if e.kind == "exception"][-1]


# -- in-process helper (used by tests; no pytest involved) ---------------------------------------------------
def trace_call(func, args=(), kwargs=None, root=None, max_frames=200, max_repr=200, max_events=2000000):
    """Trace ``func(*args, **kwargs)`` in this process and return the trace document (exceptions are swallowed: they are
    part of the trace)."""
    root = os.path.realpath(root or os.path.dirname(func.__code__.co_filename))
    recorder = Recorder(root, None, None, max_frames=max_frames, max_repr=max_repr, max_events=max_events)
    recorder.start()
    excinfo = None
    try:
        func(*args, **(kwargs or {}))
    except BaseException:
        excinfo = sys.exc_info()
    finally:
        recorder.stop()
    scope, reason = recorder.select(excinfo)
    if scope is None:
        return {"function": None, "summary": reason, "frames": []}
    return build_trace(scope, reason, root, max_frames)


# -- pytest driver -------------------------------------------------------------------------------------------
class _Plugin:
    """Turns tracing on for exactly the call phase of each selected test, then picks that test's trace."""

    def __init__(self, options, root, test_file, test_name):
        self.options = options
        self.root = root
        self.test_file = test_file
        self.test_name = test_name
        self.results = []  # (failed, document)

    def pytest_runtest_call(self, item):
        o = self.options
        recorder = Recorder(
            self.root, self.test_file, self.test_name, o.max_frames, o.max_repr, o.max_events, o.max_seconds
        )
        recorder.start()
        try:
            outcome = yield
        finally:
            recorder.stop()
        excinfo = outcome.excinfo
        scope, reason = recorder.select(excinfo)
        failed = excinfo is not None
        if scope is None:
            self.results.append((failed, {"function": None, "summary": reason, "frames": []}))
            return
        verdict = f"failed with {safe_repr(excinfo[1], 120)}" if failed else "passed"
        self.results.append((failed, build_trace(scope, reason, self.root, o.max_frames, verdict)))


def _split_test_id(test_id):
    path, _, rest = test_id.partition("::")
    name = rest.split("::")[-1].split("[")[0] if rest else None
    return path, name


def main(argv=None):
    parser = argparse.ArgumentParser(description="Trace the function behind one failing pytest test.")
    parser.add_argument("--test", required=True, help="pytest node id, e.g. tests/test_x.py::test_y")
    parser.add_argument("--out", required=True, help="where to write the JSON trace")
    parser.add_argument("--root", default=".", help="project root (default: the current directory)")
    parser.add_argument("--max-frames", type=int, default=200)
    parser.add_argument("--max-repr", type=int, default=200)
    parser.add_argument("--max-events", type=int, default=2000000)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="stop tracing this long after start")
    options = parser.parse_args(argv)
    out = os.path.abspath(options.out)
    if os.path.lexists(out):
        os.remove(out)  # never let the host read a stale trace
    root = os.path.realpath(options.root)
    sys.path.insert(0, root)
    import pytest

    if not hasattr(_Plugin.pytest_runtest_call, "pytest_impl") and not getattr(
        _Plugin.pytest_runtest_call, "hookwrapper", False
    ):
        _Plugin.pytest_runtest_call = pytest.hookimpl(hookwrapper=True)(_Plugin.pytest_runtest_call)
    test_path, test_name = _split_test_id(options.test)
    plugin = _Plugin(options, root, os.path.join(root, test_path), test_name)
    code = pytest.main([options.test, "-q", "-p", "no:cacheprovider", "-p", "no:langsmith_plugin"], plugins=[plugin])
    failing = [doc for failed, doc in plugin.results if failed and doc.get("function")]
    traced = [doc for _, doc in plugin.results if doc.get("function")]
    if failing:
        document = failing[0]
    elif traced:
        document = traced[-1]
    elif plugin.results:
        document = plugin.results[0][1]
    else:
        document = {
            "function": None,
            "summary": f"no test ran (pytest exit code {int(code)})",
            "frames": [],
        }
    _write_trace(out, document)
    return 0


def _write_trace(out, document):
    """Write the JSON as a new regular file: the traced code may have planted a link at ``out`` meanwhile, and
    writing through it would put the trace wherever the link points (or let the host read that file back)."""
    directory = os.path.dirname(out)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory)
    if os.path.lexists(out):
        os.remove(out)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(out, flags, 0o644), "w", encoding="utf-8") as handle:
        json.dump(document, handle)


if __name__ == "__main__":
    sys.exit(main())
