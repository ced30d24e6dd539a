"""Record a real execution trace of one failing test, for CWM's trace format.

STANDALONE on purpose: this file is copied into the sandbox (``.mendloop/_tracer.py``) and run there by whatever
Python the sandbox has (3.8+), so it imports only the standard library (and pytest, which the project under test
brings, for pytest ids). The host side (``tools/tracing/__init__.py``) reads the JSON it writes. Four ways to run the
failing test, one per test form:

    python .mendloop/_tracer.py --out .mendloop/trace.json --test tests/test_x.py::test_y      # a pytest node id
    python .mendloop/_tracer.py --out ... --unittest tests.test_x.TestK.test_y [--path DIR]   # a unittest id
    python .mendloop/_tracer.py --out ... --script test_gcd.py -- ARGS...                     # `python test_gcd.py`
    python .mendloop/_tracer.py --out ... --module mypkg.checks -- ARGS...                    # `python -m mypkg.checks`

A script or module runs as Python would run it (``runpy``, ``__name__ == "__main__"``, ``sys.argv`` and
``sys.path[0]`` set the same way); it is the "test", and its own file is test code.

How the function to trace is chosen (the "entry function"):
  1. the failure is an exception whose traceback passes through project code: the DEEPEST project (non-test) frame
     of that traceback - the exact invocation, matched by frame identity;
  2. otherwise (an ``assert`` in the test on a wrong value, a script's module-level ``assert``, a script that exits
     non-zero): the LAST project call made directly by the test (its caller is test code) that completed before
     the failure - its return value is what the test judged;
  3. otherwise (no project code ran at all): the test function itself (pytest and unittest).
Only files under the project root count as project code (not site-packages, a venv, the stdlib, pytest, or
``.mendloop``); test files (``test_*.py``, ``*_test.py``, ``conftest.py``, the traced script) are code under test
only in case 3.

What is recorded is the SCOPE of that one invocation, as CWM's traces are: its call, line, exception and return
events. By default nested calls (recursive ones included) show up only as the line that makes them; with
``--step-into N`` the project functions it calls are stepped into, N calls deep, the way CWM's debugger demo steps:
the callee's call frame, its lines and its return frame sit between the caller's lines (each event carries its
``depth``). A generator shows each ``yield`` as a return frame and each resumption as a call frame, exactly as
``sys.settrace`` reports them. A caught exception is an exception frame followed by the handler's lines; an uncaught
one is an exception frame followed by a return frame whose value is ``None`` (that is what settrace emits, and what
CWM's own tracer records).

Size control - and no frame the program did not produce: long loops keep their first iterations and the last one,
the whole trace is then capped at ``--max-frames``; where frames are left out, the first frame after the gap carries
a ``gap`` note (how many frames of which lines) and its locals in full, so nothing after a gap refers to a value
before it. Every ``repr`` is guarded and cut at ``--max-repr`` characters. An endless loop is stopped after
``--max-events`` traced lines or ``--max-seconds`` (the test is aborted; the trace says so).
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
import runpy
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
    """One raw settrace event: ``kind`` is call/line/return/exception. ``depth`` 0 is the scope itself, 1 a function
    it called (stepped into), and so on; ``code`` is the callee's code object (None at depth 0). ``start`` marks the
    call that begins an invocation (a generator's resumptions are calls too). ``gap`` says which frames were left out
    just before this one (empty when none were)."""

    __slots__ = ("code", "depth", "gap", "kind", "line", "locals", "start", "value")

    def __init__(self, kind, line, local_vars=None, value=None, depth=0, code=None, start=False, gap=""):
        self.kind = kind
        self.line = line
        self.locals = local_vars
        self.value = value
        self.depth = depth
        self.code = code
        self.start = start
        self.gap = gap

    def nested(self, depth, code):
        """This event as seen from a caller ``depth`` calls up."""
        return Event(self.kind, self.line, self.locals, self.value, self.depth + depth, self.code or code, self.start)

    def with_gap(self, text):
        """A copy that says ``text`` was left out just before it (joined to a gap it already has)."""
        joined = f"{self.gap}; {text}" if self.gap else text
        return Event(self.kind, self.line, self.locals, self.value, self.depth, self.code, self.start, joined)


class Scope:
    """Everything recorded for one invocation (one frame object; a generator frame keeps its scope across resumes)."""

    def __init__(self, recorder, frame, top_level, qualname, parent=None):
        self.recorder = recorder
        self.code = frame.f_code
        self.top_level = top_level
        self.qualname = qualname
        self.parent = parent  # the scope of the (project or test) function that called this one, when stepping in
        self.head = []
        self.tail = collections.deque(maxlen=max(1, recorder.limits.max_frames))
        self.dropped = 0
        self.dropped_lines = set()
        self.last_kind = None
        self.stopped = None  # why recording ended early, if it did

    def add(self, event):
        """Record an event of this invocation, and show it to the callers that step into it."""
        self.last_kind = event.kind
        self.keep(event)
        parent, depth = self.parent, 1
        while parent is not None and depth <= self.recorder.step_into:
            parent.keep(event.nested(depth, self.code))
            parent, depth = parent.parent, depth + 1

    def keep(self, event):
        if len(self.head) < HEAD_EVENTS:
            self.head.append(event)
            return
        if len(self.tail) == self.tail.maxlen:
            old = self.tail[0]
            self.dropped += 1
            if old.depth == 0:
                self.dropped_lines.add(old.line)
        self.tail.append(event)

    def events(self):
        if not self.dropped:
            return list(self.head) + list(self.tail)
        tail = list(self.tail)
        tail[0] = tail[0].with_gap(f"{self.dropped} events{_of_lines(self.dropped_lines)}")
        return [*list(self.head), *tail]

    def trace(self, frame, event, arg):
        rec = self.recorder
        if event == "line":
            rec.count_line(self)
            self.add(Event("line", frame.f_lineno, rec.snapshot(frame)))
        elif event == "return":
            by_exception = self.last_kind == "exception" and arg is None
            self.add(Event("return", frame.f_lineno, value=safe_repr(arg, rec.limits.max_repr)))
            rec.finished(self, frame, by_exception)
        elif event == "exception":
            exc = arg[1] if arg[1] is not None else arg[0]
            self.add(Event("exception", frame.f_lineno, value=safe_repr(exc, rec.limits.max_repr)))
        return self.trace


class Recorder:
    """Watches every new frame while one test's call phase runs; keeps the scopes that may become the trace.
    ``limits`` holds the command line's ``max_frames``, ``max_repr``, ``max_events``, ``max_seconds`` and
    ``step_into``."""

    def __init__(self, root, test_file, test_name, limits):
        self.root = os.path.realpath(root)
        self.test_file = os.path.realpath(test_file) if test_file else None
        self.test_name = test_name
        self.limits = limits
        self.step_into = max(0, int(limits.step_into or 0))  # how many calls deep callees are stepped into
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
            unittest_file = getattr(sys.modules.get("unittest"), "__file__", None)  # imported by now if it runs
            in_unittest = bool(unittest_file) and filename.startswith(os.path.dirname(unittest_file) + os.sep)
            known = self.harness[filename] = "_pytest" in parts or "pluggy" in parts or in_unittest
        return known

    def is_top_level(self, frame):
        """A project call is top level when the nearest project-or-test frame above it is test code (or none)."""
        caller = frame.f_back
        while caller is not None:
            if caller.f_code is trace_call.__code__:
                return True
            if self.is_harness(caller.f_code.co_filename):
                return False  # the test runner calling in (e.g. __repr__ for an assertion message)
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
        self.deadline = STARTED + self.limits.max_seconds
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
            scope.add(Event("call", frame.f_lineno, self.snapshot(frame), start=True))
            self.active[id(frame)] = (frame, scope)
            return scope.trace
        key = id(frame)
        if code.co_flags & _GENERATOR_FLAGS:
            seen = self.generators.get(key)
            if seen is not None and seen[0] is frame:
                seen[1].parent = self.caller_scope(frame)  # whoever resumes it now steps into it
                seen[1].add(Event("call", frame.f_lineno, self.snapshot(frame)))
                self.active[key] = seen
                return seen[1].trace
        top = self.is_top_level(frame)
        if top:
            self.raised.clear()
        scope = Scope(self, frame, top, _qualname(frame), self.caller_scope(frame))
        scope.add(Event("call", frame.f_lineno, self.snapshot(frame), start=True))
        self.active[key] = (frame, scope)
        if code.co_flags & _GENERATOR_FLAGS:
            self.generators[key] = (frame, scope)
        return scope.trace

    def caller_scope(self, frame):
        """The running scope (project or test function) this call comes from, through frames that are not traced
        (a comprehension, ``sorted(key=...)``); None when not stepping into calls or when the runner called."""
        if not self.step_into:
            return None
        caller = frame.f_back
        while caller is not None:
            hit = self.active.get(id(caller))
            if hit is not None and hit[0] is caller:
                return hit[1]
            if self.is_harness(caller.f_code.co_filename):
                return None
            caller = caller.f_back
        return None

    def count_line(self, scope):
        self.lines += 1
        if self.lines > self.limits.max_events:
            self.stopped = f"stopped after {self.limits.max_events} traced lines (a likely endless loop)"
        elif self.lines % 512 == 0 and time.monotonic() > self.deadline:
            self.stopped = f"stopped {self.limits.max_seconds:.0f} s after the tracer started (a likely endless loop)"
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
            name: safe_repr(value, self.limits.max_repr)
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
def _of_lines(lines):
    """`` of lines 3-4`` for a set of line numbers (empty when there are none)."""
    lines = sorted(lines)
    if not lines:
        return ""
    return f" of line {lines[0]}" if lines[0] == lines[-1] else f" of lines {lines[0]}-{lines[-1]}"


def _chain(events, start, header, base):
    """Positions of the loop header ``header`` (at depth ``base``) from ``start`` on, while the events stay inside the
    loop body; the frames of functions it steps into (deeper events) are part of the body."""
    positions = [start]
    index = start + 1
    while index < len(events):
        event = events[index]
        if event.depth > base:
            index += 1
            continue
        if event.kind in ("call", "return"):
            break
        if event.kind == "line":
            if event.line == header:
                positions.append(index)
            elif event.line < header:
                break
        index += 1
    return positions


def compress_loops(events, keep_first=KEEP_FIRST_ITERATIONS, keep_last=KEEP_LAST_ITERATIONS, base=0):
    """Keep the first and last iterations of every long loop; the first frame after the left-out iterations says so
    in its ``gap``. Nested loops are compressed inside the iterations that are kept, and the frames of a function
    stepped into (deeper events) are compressed as that function's own."""
    out = []
    index = 0
    while index < len(events):
        event = events[index]
        if event.depth > base:
            end = index
            while end < len(events) and events[end].depth > base:
                end += 1
            out.extend(compress_loops(events[index:end], keep_first, keep_last, base + 1))
            index = end
            continue
        if event.kind != "line":
            out.append(event)
            index += 1
            continue
        positions = _chain(events, index, event.line, base)
        iterations = len(positions) - 1  # the last header event is the final loop test
        skipped = iterations - keep_first - keep_last
        if skipped < MIN_SKIPPED_ITERATIONS:
            out.append(event)
            index += 1
            continue
        middle = events[positions[keep_first] : positions[iterations - keep_last]]
        lines = {e.line for e in middle if e.depth == base and e.kind in ("line", "exception")}
        gap = f"{skipped} iterations{_of_lines(lines)}"
        for number in [*list(range(keep_first)), *list(range(iterations - keep_last, iterations))]:
            segment = events[positions[number] : positions[number + 1]]
            first = segment[0].with_gap(gap) if number == iterations - keep_last else segment[0]
            out.append(first)
            out.extend(compress_loops(segment[1:], keep_first, keep_last, base))
        index = positions[-1]
    return out


def cap_frames(events, max_frames):
    """Drop middle frames beyond ``max_frames`` (keeping the start and the end, where the answer is); the first
    frame after the cut says what was left out."""
    if len(events) <= max_frames:
        return events, False
    keep_tail = max(1, max_frames // 4)
    keep_head = max(1, max_frames - keep_tail)
    middle = events[keep_head : len(events) - keep_tail]
    lines = {e.line for e in middle if e.depth == 0}
    tail = events[len(events) - keep_tail :]
    inner = [e.gap for e in middle if e.gap]  # gaps inside the cut are still gaps: said first
    tail[0] = tail[0].with_gap("; ".join([*inner, f"{len(middle)} frames{_of_lines(lines)}"]))
    return [*events[:keep_head], *tail], True


def diff_locals(events):
    """CWM's locals: full on call frames, ``".."`` for a value unchanged since the previous call/line frame.
    A return breaks the chain (CWM's debugger stops resolving there), and so does a gap: the first frame after
    left-out frames carries its values in full."""
    previous = None
    out = []
    for event in events:
        if event.gap:
            previous = None
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
            if event.kind == "return":
                previous = None
        out.append(shown)
    return out


_SOURCES = {}


def _source_of(code, filename):
    """``(source, first_line, def_line)`` of a code object (cached: stepped-into callees repeat)."""
    known = _SOURCES.get(code)
    if known is not None:
        return known
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
    _SOURCES[code] = result = ("".join(lines), first, def_line)
    return result


def _relative(filename, root):
    return os.path.relpath(os.path.realpath(filename), root).replace(os.sep, "/")


def _code_name(code):
    return getattr(code, "co_qualname", None) or code.co_name


def build_trace(scope, reason, root, max_frames, outcome=None):
    """Turn a recorded scope into the JSON document the host reads."""
    code = scope.code
    filename = code.co_filename
    source, first_line, _ = _source_of(code, filename)
    events = compress_loops(scope.events())
    loops_skipped = any("iterations" in e.gap for e in events)
    events, capped = cap_frames(events, max_frames)
    shown = diff_locals(events)
    frames = []
    callees = []
    seen_callees = {code}
    seen_call = False
    for event, local_vars in zip(events, shown):  # noqa: B905 (3.8+)
        line = event.line
        where = event.code or code
        if event.kind == "call" and (event.start if event.depth else not seen_call):
            line = _source_of(where, where.co_filename)[2]
        if event.depth == 0:
            seen_call = seen_call or event.kind == "call"
        frame = {
            "event": event.kind,
            "line": line,
            "source_line": linecache.getline(where.co_filename, line).rstrip("\r\n"),
            "locals": local_vars,
            "value": event.value,
            "depth": event.depth,
            "gap": event.gap,
        }
        if event.depth:
            frame["file"] = _relative(where.co_filename, root)
            if where not in seen_callees:
                seen_callees.add(where)
                callee_source, callee_first, _ = _source_of(where, where.co_filename)
                callees.append(
                    {
                        "function": _code_name(where),
                        "file": frame["file"],
                        "source": callee_source,
                        "first_line": callee_first,
                    }
                )
        frames.append(frame)
    own = [e for e in events if e.depth == 0]
    last = own[-1] if own else None
    if scope.stopped:
        ending = scope.stopped
    elif _ended_by_exception(own):
        ending = f"raised {_last_exception(own).value} at line {_last_exception(own).line}"
    elif last is not None and last.kind == "return":
        ending = f"returned {last.value}"
    else:
        ending = "did not return"
    summary = f"{scope.qualname} {ending}; {len(frames)} frames"
    if callees:
        summary += f"; steps into {', '.join(c['function'] for c in callees)}"
    if loops_skipped:
        summary += "; long loops shortened"
    if capped:
        summary += f"; capped at {max_frames} frames"
    summary += f". Chosen because {reason}."
    if outcome:
        summary += f" Test outcome: {outcome}."
    return {
        "function": scope.qualname,
        "file": _relative(filename, root),
        "source": source,
        "first_line": first_line,
        "frames": frames,
        "callees": callees,
        "truncated": bool(capped or loops_skipped or scope.dropped or scope.stopped),
        "summary": summary,
    }


def _ended_by_exception(events):
    return len(events) >= 2 and events[-2].kind == "exception" and events[-1].value == "None"


def _last_exception(events):
    return [e for e in events if e.kind == "exception"][-1]


# -- in-process helper (used by tests; no pytest involved) ---------------------------------------------------
def trace_call(func, args=(), kwargs=None, root=None, max_frames=200, max_repr=200, max_events=2000000, step_into=0):
    """Trace ``func(*args, **kwargs)`` in this process and return the trace document (exceptions are swallowed: they are
    part of the trace)."""
    root = os.path.realpath(root or os.path.dirname(func.__code__.co_filename))
    limits = argparse.Namespace(
        max_frames=max_frames, max_repr=max_repr, max_events=max_events, max_seconds=30.0, step_into=step_into
    )
    recorder = Recorder(root, None, None, limits)
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
        recorder = Recorder(self.root, self.test_file, self.test_name, self.options)
        recorder.start()
        try:
            outcome = yield
        finally:
            recorder.stop()
        excinfo = outcome.excinfo
        self.results.append((excinfo is not None, _document(recorder, excinfo, self.root, self.options)))


def _split_test_id(test_id):
    path, _, rest = test_id.partition("::")
    name = rest.split("::")[-1].split("[")[0] if rest else None
    return path, name


def _trace_pytest(options, root):
    """pytest runs the test; the plugin traces its call phase. Returns the document to write."""
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
        return failing[0]
    if traced:
        return traced[-1]
    if plugin.results:
        return plugin.results[0][1]
    return _nothing(f"no test ran (pytest exit code {int(code)})")


def _nothing(why):
    return {"function": None, "summary": why, "frames": []}


def _document(recorder, excinfo, root, options):
    scope, reason = recorder.select(excinfo)
    if scope is None:
        return _nothing(reason)
    verdict = f"failed with {safe_repr(excinfo[1], 120)}" if excinfo is not None else "passed"
    return build_trace(scope, reason, root, options.max_frames, verdict)


def _flatten(suite):
    import unittest

    if isinstance(suite, unittest.TestSuite):
        for item in suite:
            yield from _flatten(item)
    else:
        yield suite


def _trace_unittest(options, root):
    """unittest's loader finds the test by its id (``mod.Class.test_x``); it runs under the recorder, and the first
    error or failure it reports (a subtest's included) is the failure to explain."""
    import unittest

    sys.path[0] = os.getcwd()  # as `python -m unittest` has it
    for entry in reversed(options.path):
        sys.path.insert(0, os.path.abspath(entry))
    try:
        suite = unittest.defaultTestLoader.loadTestsFromName(options.unittest)
    except Exception as exc:
        return _nothing(f"unittest could not load {options.unittest}: {safe_repr(exc, 200)}")
    tests = list(_flatten(suite))
    failed_import = [t for t in tests if type(t).__name__ in ("_FailedTest", "ModuleImportFailure")]
    if not tests or failed_import:
        return _nothing(f"unittest could not load {options.unittest}")
    module = sys.modules.get(type(tests[0]).__module__)
    test_file = getattr(module, "__file__", None)
    test_name = options.unittest.rsplit(".", 1)[-1]

    class Result(unittest.TestResult):
        excinfo = None

        def addError(self, test, err):
            super().addError(test, err)
            self.excinfo = self.excinfo or err

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self.excinfo = self.excinfo or err

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                self.excinfo = self.excinfo or err

    result = Result()
    recorder = Recorder(root, test_file, test_name, options)
    recorder.start()
    try:
        suite.run(result)
    finally:
        recorder.stop()
    return _document(recorder, result.excinfo, root, options)


def _trace_script(options, root, args):
    """Run a script (``--script``) or a module (``--module``) as ``__main__``, the way ``python`` would."""
    if options.script:
        path = os.path.abspath(options.script)
        sys.argv = [options.script, *args]
        sys.path[0] = os.path.dirname(path)
        test_file = path
    else:
        sys.argv = [options.module, *args]
        sys.path[0] = os.getcwd()
        test_file = _module_file(options.module)
    recorder = Recorder(root, test_file, None, options)
    excinfo = None
    recorder.start()
    try:
        if options.script:
            runpy.run_path(path, run_name="__main__")
        else:
            runpy.run_module(options.module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            excinfo = sys.exc_info()
    except BaseException:
        excinfo = sys.exc_info()
    finally:
        recorder.stop()
    return _document(recorder, excinfo, root, options)


def _module_file(name):
    try:
        import importlib.util

        spec = importlib.util.find_spec(name)
    except Exception:
        return None
    if spec is None or not spec.origin:
        return None
    if spec.submodule_search_locations:  # a package runs its __main__
        return os.path.join(os.path.dirname(spec.origin), "__main__.py")
    return spec.origin


def main(argv=None):
    parser = argparse.ArgumentParser(description="Trace the function behind one failing test.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--test", help="pytest node id, e.g. tests/test_x.py::test_y")
    mode.add_argument("--unittest", help="unittest id, e.g. tests.test_x.TestK.test_y")
    mode.add_argument("--script", help="a Python script to run as __main__ (arguments after --)")
    mode.add_argument("--module", help="a module to run as __main__, like python -m (arguments after --)")
    parser.add_argument("--out", required=True, help="where to write the JSON trace")
    parser.add_argument("--root", default=".", help="project root (default: the current directory)")
    parser.add_argument("--path", action="append", default=[], help="a directory to import from (repeatable)")
    parser.add_argument("--max-frames", type=int, default=200)
    parser.add_argument("--max-repr", type=int, default=200)
    parser.add_argument("--max-events", type=int, default=2000000)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="stop tracing this long after start")
    parser.add_argument("--step-into", type=int, default=0, help="step into project calls this many calls deep")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, args = argv[:cut], argv[cut + 1 :]
    options = parser.parse_args(argv)
    out = os.path.abspath(options.out)
    if os.path.lexists(out):
        os.remove(out)  # never let the host read a stale trace
    root = os.path.realpath(options.root)
    if options.test:
        document = _trace_pytest(options, root)
    elif options.unittest:
        document = _trace_unittest(options, root)
    else:
        document = _trace_script(options, root, args)
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
