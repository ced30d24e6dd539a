"""Real traces of real failing pytest tests, run through LocalSandbox: golden frames, CWM text, and the grammar."""

from __future__ import annotations

import importlib.util
import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandboxes.base import SandboxSpec
from sandboxes.local import LocalSandbox
from tests.tools import cwm_trace_grammar as grammar
from tools.testing import TestCase, run_tests
from tools.tracing import (
    Frame,
    Trace,
    TraceOptions,
    _tracer,
    estimate_tokens,
    fit_frames,
    render_cwm,
    render_cwm_prompt,
    render_prompt_context,
    render_readable,
    trace_failure,
    trace_from_json,
    trace_script,
    trace_test,
    trace_unittest,
)

PROG = """\
def total(xs):
    s = 0
    for x in xs:
        s += x
    return s - 1


def fact(n):
    if n <= 1:
        return 1
    return n * fact(n - 2)


def safe_div(a, b):
    try:
        return a / b
    except ZeroDivisionError:
        result = 0
    return result + 1


def parse(text):
    parts = text.split(",")
    return int(parts[1])


def evens(n):
    i = 0
    while i < n:
        yield i
        i += 3


class Counter:
    def __init__(self, start):
        self.value = start

    def __repr__(self):
        return f"Counter({self.value})"

    def bump(self, by):
        self.value += by + 1
        return self.value


def make_adder(n):
    def add(x):
        return x + n + 1

    return add


class Bad:
    def __repr__(self):
        raise RuntimeError("no repr")


def shout(text, bad):
    loud = text.upper()
    return len(loud) + 1


def spin():
    n = 0
    while True:
        n += 1


def down(n):
    return down(n + 1)


def double(x):
    y = x * 2
    return inc(y)


def inc(v):
    return v + 1


def add_doubles(xs):
    total = 0
    for x in xs:
        total += double(x)
    return total
"""

TESTS = """\
from prog import Bad, Counter, add_doubles, down, evens, fact, make_adder, parse, safe_div, shout, spin, total


def test_total():
    assert total([1, 2]) == 3


def test_fact():
    assert fact(4) == 24


def test_safe_div():
    assert safe_div(1, 0) == 0


def test_parse():
    assert parse("7") == 7


def test_evens():
    assert list(evens(5)) == [0, 2, 4]


def test_bump():
    counter = Counter(1)
    assert counter.bump(1) == 2


def test_adder():
    assert make_adder(2)(3) == 5


def test_long_loop():
    assert total(range(1000)) == 499500


def test_six():
    assert total([1, 2, 3, 4, 5, 6]) == 21


def test_shout():
    assert shout("x" * 500, Bad()) == 500


def test_spin():
    spin()


def test_down():
    down(0)


def test_no_project_code():
    numbers = [1, 2]
    assert sum(numbers) == 4


def test_add_doubles():
    assert add_doubles([1, 2]) == 0
"""


# the host has heavy pytest plugins installed (langsmith's, via langgraph); the tiny golden project needs none
NO_PLUGINS = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> LocalSandbox:
    root = tmp_path_factory.mktemp("golden")
    (root / "prog.py").write_text(PROG)
    (root / "tests").mkdir()
    (root / "tests" / "test_prog.py").write_text(TESTS)
    (root / "tests" / "test_broken.py").write_text("def test_x(:\n    pass\n")
    box = LocalSandbox(root, SandboxSpec(kind="local"))
    yield box
    box.close()


def without_note(text: str) -> str:
    """A CWM trace prompt without its one note line (there when frames were left out)."""
    return text.split("\n", 1)[1] if text.startswith("(Frames left out") else text


def grammatical(trace: Trace | None) -> Trace:
    """Every way a trace is rendered obeys CWM's grammar, and no frame is one the program did not produce."""
    assert trace is not None
    for text in (
        render_cwm(trace),
        render_cwm(trace, end_of_text=True),
        render_cwm(trace, budget_tokens=60),
        render_prompt_context(trace) + render_cwm(trace),
        without_note(render_cwm_prompt(trace)),
        without_note(render_cwm_prompt(trace, budget_tokens=120)),
    ):
        parsed = grammar.parse(text)
        assert all(f.event in ("call", "line", "return", "exception") for f in parsed.frames)
        assert "skipped" not in text
    assert all(f.event in ("call", "line", "return", "exception") for f in trace.frames)
    return trace


def traced(sandbox: LocalSandbox, name: str, **kwargs: Any) -> Trace:
    trace = trace_test(sandbox, f"tests/test_prog.py::{name}", options=TraceOptions(env=NO_PLUGINS, **kwargs))
    return grammatical(trace)


def rows(trace: Trace) -> list[tuple[str, int, dict[str, str] | None, str | None]]:
    return [(f.event, f.line, f.locals, f.value) for f in trace.frames]


def test_loop_golden_frames_and_exact_cwm_text(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_total")
    assert (trace.function, trace.file, trace.first_line, trace.truncated) == ("total", "prog.py", 1, False)
    assert trace.source.startswith("def total(xs):\n")
    assert rows(trace) == [
        ("call", 1, {"xs": "[1, 2]"}, None),
        ("line", 2, {"xs": ".."}, None),
        ("line", 3, {"xs": "..", "s": "0"}, None),
        ("line", 4, {"xs": "..", "s": "..", "x": "1"}, None),
        ("line", 3, {"xs": "..", "s": "1", "x": ".."}, None),
        ("line", 4, {"xs": "..", "s": "..", "x": "2"}, None),
        ("line", 3, {"xs": "..", "s": "3", "x": ".."}, None),
        ("line", 5, {"xs": "..", "s": "..", "x": ".."}, None),
        ("return", 5, None, "2"),
    ]
    assert render_cwm(trace) == (
        '<|call_sep|>{"xs": "[1, 2]"}<|action_sep|>def total(xs):  # << START_OF_TRACE\n<|frame_sep|>'
        '<|line_sep|>{"xs": ".."}<|action_sep|>    s = 0\n<|frame_sep|>'
        '<|line_sep|>{"xs": "..", "s": "0"}<|action_sep|>    for x in xs:\n<|frame_sep|>'
        '<|line_sep|>{"xs": "..", "s": "..", "x": "1"}<|action_sep|>        s += x\n<|frame_sep|>'
        '<|line_sep|>{"xs": "..", "s": "1", "x": ".."}<|action_sep|>    for x in xs:\n<|frame_sep|>'
        '<|line_sep|>{"xs": "..", "s": "..", "x": "2"}<|action_sep|>        s += x\n<|frame_sep|>'
        '<|line_sep|>{"xs": "..", "s": "3", "x": ".."}<|action_sep|>    for x in xs:\n<|frame_sep|>'
        '<|line_sep|>{"xs": "..", "s": "..", "x": ".."}<|action_sep|>    return s - 1\n<|frame_sep|>'
        '<|return_sep|><|action_sep|>    return s - 1\n<|arg_sep|>"2"<|frame_sep|>'
    )
    assert render_prompt_context(trace).startswith(
        "<|trace_context_start|>def total(xs):  # << START_OF_TRACE\n    s = 0\n"
    )
    assert render_prompt_context(trace).endswith("    return s - 1\n<|frame_sep|>")
    readable = render_readable(trace).splitlines()
    assert readable[1:4] == ["L1 call  xs=[1, 2]", "L2 line", "L3 line  s=0"]
    assert readable[-1] == "L5 return 2"


def test_uncaught_exception_is_the_deepest_project_frame_then_return_none(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_parse")
    assert trace.function == "parse"
    assert rows(trace) == [
        ("call", 22, {"text": "'7'"}, None),
        ("line", 23, {"text": ".."}, None),
        ("line", 24, {"text": "..", "parts": "['7']"}, None),
        ("exception", 24, None, "IndexError('list index out of range')"),
        ("return", 24, None, "None"),
    ]
    assert "raised IndexError('list index out of range') at line 24" in trace.summary
    assert render_cwm(trace) == (
        '<|call_sep|>{"text": "\'7\'"}<|action_sep|>def parse(text):  # << START_OF_TRACE\n<|frame_sep|>'
        '<|line_sep|>{"text": ".."}<|action_sep|>    parts = text.split(",")\n<|frame_sep|>'
        '<|line_sep|>{"text": "..", "parts": "[\'7\']"}<|action_sep|>    return int(parts[1])\n<|frame_sep|>'
        "<|exception_sep|><|action_sep|>    return int(parts[1])\n"
        "<|arg_sep|>\"IndexError('list index out of range')\"<|frame_sep|>"
        '<|return_sep|><|action_sep|>    return int(parts[1])\n<|arg_sep|>"None"<|frame_sep|>'
    )


def test_caught_exception_continues_in_the_handler(sandbox: LocalSandbox) -> None:
    assert rows(traced(sandbox, "test_safe_div")) == [
        ("call", 14, {"a": "1", "b": "0"}, None),
        ("line", 15, {"a": "..", "b": ".."}, None),
        ("line", 16, {"a": "..", "b": ".."}, None),
        ("exception", 16, None, "ZeroDivisionError('division by zero')"),
        ("line", 17, {"a": "..", "b": ".."}, None),
        ("line", 18, {"a": "..", "b": ".."}, None),
        ("line", 19, {"a": "..", "b": "..", "result": "0"}, None),
        ("return", 19, None, "1"),
    ]


def test_recursion_traces_the_entry_call_with_recursive_calls_as_lines(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_fact")
    assert rows(trace) == [
        ("call", 8, {"n": "4"}, None),
        ("line", 9, {"n": ".."}, None),
        ("line", 11, {"n": ".."}, None),
        ("return", 11, None, "8"),
    ]


def test_generator_yields_are_returns_and_resumes_are_calls(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_evens")
    assert rows(trace) == [
        ("call", 27, {"n": "5"}, None),
        ("line", 28, {"n": ".."}, None),
        ("line", 29, {"n": "..", "i": "0"}, None),
        ("line", 30, {"n": "..", "i": ".."}, None),
        ("return", 30, None, "0"),
        ("call", 30, {"n": "5", "i": "0"}, None),
        ("line", 31, {"n": "..", "i": ".."}, None),
        ("line", 29, {"n": "..", "i": "3"}, None),
        ("line", 30, {"n": "..", "i": ".."}, None),
        ("return", 30, None, "3"),
        ("call", 30, {"n": "5", "i": "3"}, None),
        ("line", 31, {"n": "..", "i": ".."}, None),
        ("line", 29, {"n": "..", "i": "6"}, None),
        ("return", 29, None, "None"),
    ]
    # only the first call carries the START_OF_TRACE marker
    assert render_cwm(trace).count("START_OF_TRACE") == 1


def test_method_is_traced_not_the_repr_pytest_calls_for_its_message(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_bump")
    assert trace.function == "Counter.bump"
    assert rows(trace) == [
        ("call", 41, {"self": "Counter(1)", "by": "1"}, None),
        ("line", 42, {"self": "..", "by": ".."}, None),
        ("line", 43, {"self": "Counter(3)", "by": ".."}, None),
        ("return", 43, None, "3"),
    ]


def test_closure_shows_its_free_variable(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_adder")
    assert trace.function == "make_adder.<locals>.add"
    assert rows(trace) == [
        ("call", 47, {"x": "3", "n": "2"}, None),
        ("line", 48, {"x": "..", "n": ".."}, None),
        ("return", 48, None, "6"),
    ]


def test_long_loop_keeps_first_and_last_iterations(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_long_loop")
    assert trace.truncated and len(trace.frames) == 13  # no invented frame: the gap is a note on a real one
    gaps = [(index, frame.gap) for index, frame in enumerate(trace.frames) if frame.gap]
    assert gaps == [(8, "996 iterations of lines 3-4")]
    after = trace.frames[8]
    assert (after.event, after.line, after.source_line) == ("line", 3, "    for x in xs:")  # the last iteration
    assert after.locals == {"xs": "range(0, 1000)", "s": "498501", "x": "998"}  # full values after a gap
    assert trace.frames[-1].value == "499499"
    readable = render_readable(trace)
    assert "... 996 iterations of lines 3-4 left out ..." in readable
    shown = render_cwm_prompt(trace)
    note, text = shown.split("\n", 1)
    assert note == (
        "(Frames left out of this trace: 996 iterations of lines 3-4 before frame 9. "
        "The frame after a gap carries its locals in full.)"
    )
    assert len(grammar.parse(text).frames) == 13  # one marker, outside the token stream


def test_frame_cap(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_six", max_frames=8)
    assert len(trace.frames) == 8 and trace.truncated
    assert trace.frames[0].event == "call" and trace.frames[-1] == Frame("return", 5, "    return s - 1", None, "20")
    # the loop's left-out iterations fell inside the cut: both are said, on the one frame after the gap
    assert [f.gap for f in trace.frames if f.gap] == ["2 iterations of lines 3-4; 5 frames of lines 3-4"]
    assert trace.frames[6].locals is not None and ".." not in trace.frames[6].locals.values()


def test_huge_repr_is_cut_and_a_raising_repr_is_named(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_shout", max_repr=24)
    call = trace.frames[0]
    assert call.locals == {"text": "'" + "x" * 20 + "...", "bad": "<unrepresentable Bad>"}
    assert trace.frames[-1].value == "501"


def test_endless_loop_is_stopped_and_still_traced(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_spin", timeout=4)
    assert trace.function == "spin" and trace.truncated
    assert "likely endless loop" in trace.summary
    assert any(f.gap for f in trace.frames)


def test_recursion_error_shows_the_outermost_call(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_down")
    assert trace.function == "down" and "recursion went too deep" in trace.summary
    assert rows(trace)[:2] == [("call", 69, {"n": "0"}, None), ("line", 70, {"n": ".."}, None)]


def test_test_function_itself_when_no_project_code_runs(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_no_project_code")
    assert trace.function == "test_no_project_code"
    assert [f.event for f in trace.frames] == ["call", "line", "line", "exception", "return"]


def test_collection_error_gives_none(sandbox: LocalSandbox) -> None:
    no_plugins = TraceOptions(env=NO_PLUGINS)
    assert trace_test(sandbox, "tests/test_broken.py::test_x", options=no_plugins) is None
    assert trace_test(sandbox, "tests/test_prog.py::test_missing", options=no_plugins) is None


def test_calls_are_lines_unless_the_trace_steps_into_them(sandbox: LocalSandbox) -> None:
    flat = traced(sandbox, "test_add_doubles")
    assert flat.function == "add_doubles" and {f.depth for f in flat.frames} == {0} and flat.callees == []
    assert [f.line for f in flat.frames] == [82, 83, 84, 85, 84, 85, 84, 86, 86]


def test_stepping_into_project_calls_one_deep(sandbox: LocalSandbox) -> None:
    trace = traced(sandbox, "test_add_doubles", step_into=1)
    assert [(f.event, f.line, f.depth, f.locals, f.value) for f in trace.frames] == [
        ("call", 82, 0, {"xs": "[1, 2]"}, None),
        ("line", 83, 0, {"xs": ".."}, None),
        ("line", 84, 0, {"xs": "..", "total": "0"}, None),
        ("line", 85, 0, {"xs": "..", "total": "..", "x": "1"}, None),
        ("call", 73, 1, {"x": "1"}, None),  # double's own frames, between the caller's lines
        ("line", 74, 1, {"x": ".."}, None),
        ("line", 75, 1, {"x": "..", "y": "2"}, None),  # inc is two calls deep: a line here
        ("return", 75, 1, None, "3"),
        ("line", 84, 0, {"xs": "[1, 2]", "total": "3", "x": "1"}, None),  # full again after a return
        ("line", 85, 0, {"xs": "..", "total": "..", "x": "2"}, None),
        ("call", 73, 1, {"x": "2"}, None),
        ("line", 74, 1, {"x": ".."}, None),
        ("line", 75, 1, {"x": "..", "y": "4"}, None),
        ("return", 75, 1, None, "5"),
        ("line", 84, 0, {"xs": "[1, 2]", "total": "8", "x": "2"}, None),
        ("line", 86, 0, {"xs": "..", "total": "..", "x": ".."}, None),
        ("return", 86, 0, None, "8"),
    ]
    assert [f.file for f in trace.frames if f.depth] == ["prog.py"] * 8
    assert [c.function for c in trace.callees] == ["double"] and "steps into double" in trace.summary
    text = render_cwm(trace)
    assert text.count("START_OF_TRACE") == 1  # a stepped-into call is a call frame, not a new trace
    assert '<|call_sep|>{"x": "1"}<|action_sep|>def double(x):\n<|frame_sep|>' in text
    prompt = render_cwm_prompt(trace)
    assert prompt.startswith("<|trace_context_start|>def add_doubles(xs):  # << START_OF_TRACE\n")
    parsed = grammar.parse(prompt)
    assert parsed.context is not None
    assert parsed.context.endswith("\n\ndef double(x):\n    y = x * 2\n    return inc(y)\n")
    assert "\n  L73 call  x=1 prog.py\n  L74 line\n" in render_readable(trace)  # indented by depth


def test_stepping_in_is_depth_limited(sandbox: LocalSandbox) -> None:
    two = traced(sandbox, "test_add_doubles", step_into=2)
    assert [c.function for c in two.callees] == ["double", "inc"]
    inner = [(f.event, f.line, f.depth, f.value) for f in two.frames if f.depth == 2]
    assert inner == [
        ("call", 78, 2, None),
        ("line", 79, 2, None),
        ("return", 79, 2, "3"),
        ("call", 78, 2, None),
        ("line", 79, 2, None),
        ("return", 79, 2, "5"),
    ]
    # recursion stepped into: each level is one deeper, as far as asked
    fact = traced(sandbox, "test_fact", step_into=3)
    assert [(f.event, f.depth) for f in fact.frames if f.event in ("call", "return")] == [
        ("call", 0),
        ("call", 1),
        ("call", 2),
        ("return", 2),
        ("return", 1),
        ("return", 0),
    ]
    assert fact.callees == []  # the traced function's own source is already in the context


# -- the other test forms: a script, a module, a unittest test ----------------------------------------------------
SCRIPTS = {
    "prog.py": PROG,
    # QuixBugs' form: module-level asserts after the program; the second one fails
    "test_total_script.py": "from prog import total\n\nassert total([1]) == 0\nassert total([1, 2]) == 3\n",
    # not named like a test: the traced script is test code all the same; it reads its arguments
    "check_parse.py": (
        "import sys\n\nfrom prog import parse\n\nassert __name__ == '__main__'\n\n\n"
        "def check():\n    return parse(sys.argv[1])\n\n\ncheck()\n"
    ),
    "spin_script.py": "from prog import spin\n\nspin()\n",
    "passing_script.py": "from prog import fact\n\nassert fact(1) == 1\n",
    "checks/__init__.py": "",
    "checks/run.py": "from prog import fact\n\nassert fact(4) == 24\n",
    "tests/test_unit.py": """import unittest

from prog import parse, total


class TestProg(unittest.TestCase):
    def test_total(self):
        self.assertEqual(total([1, 2]), 3)

    def test_parse(self):
        self.assertEqual(parse("7"), 7)

    def test_sub(self):
        for n in (0, 2):
            with self.subTest(n=n):
                self.assertEqual(total([n]), n)

    def test_own(self):
        self.assertEqual(sum([1, 2]), 4)
""",
}


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> LocalSandbox:
    root = tmp_path_factory.mktemp("forms")
    for rel, text in SCRIPTS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    box = LocalSandbox(root, SandboxSpec(kind="local"))
    yield box
    box.close()


TOTAL_ROWS = [
    ("call", 1, {"xs": "[1, 2]"}, None),
    ("line", 2, {"xs": ".."}, None),
    ("line", 3, {"xs": "..", "s": "0"}, None),
    ("line", 4, {"xs": "..", "s": "..", "x": "1"}, None),
    ("line", 3, {"xs": "..", "s": "1", "x": ".."}, None),
    ("line", 4, {"xs": "..", "s": "..", "x": "2"}, None),
    ("line", 3, {"xs": "..", "s": "3", "x": ".."}, None),
    ("line", 5, {"xs": "..", "s": "..", "x": ".."}, None),
    ("return", 5, None, "2"),
]


def test_a_module_level_assert_traces_the_last_top_level_call_before_it(forms: LocalSandbox) -> None:
    trace = grammatical(trace_script(forms, "test_total_script.py"))
    assert (trace.function, trace.file) == ("total", "prog.py")
    assert rows(trace) == TOTAL_ROWS  # total([1, 2]), not total([1]) which passed before it
    assert "the last project call the test made before it failed" in trace.summary
    assert "Test outcome: failed with AssertionError()" in trace.summary


def test_a_script_traceback_is_traced_into_the_innermost_project_function(forms: LocalSandbox) -> None:
    trace = grammatical(trace_script(forms, "check_parse.py", ["7"]))
    assert trace.function == "parse"
    assert rows(trace) == [
        ("call", 22, {"text": "'7'"}, None),
        ("line", 23, {"text": ".."}, None),
        ("line", 24, {"text": "..", "parts": "['7']"}, None),
        ("exception", 24, None, "IndexError('list index out of range')"),
        ("return", 24, None, "None"),
    ]
    again = grammatical(trace_script(forms, "check_parse.py", ["1,5"]))  # sys.argv reached the script
    assert again.frames[0].locals == {"text": "'1,5'"} and again.frames[-1].value == "5"
    assert "Test outcome: passed" in again.summary


def test_a_module_runs_as_main_and_an_endless_script_is_stopped(forms: LocalSandbox) -> None:
    trace = grammatical(trace_script(forms, "checks.run", module=True))
    assert trace.function == "fact" and rows(trace)[0] == ("call", 8, {"n": "4"}, None)
    spin = grammatical(trace_script(forms, "spin_script.py", options=TraceOptions(timeout=4)))
    assert spin.function == "spin" and "likely endless loop" in spin.summary


def test_unittest_ids_are_traced(forms: LocalSandbox) -> None:
    total = grammatical(trace_unittest(forms, "tests.test_unit.TestProg.test_total"))
    assert rows(total) == TOTAL_ROWS and "AssertionError('2 != 3')" in total.summary
    parse = grammatical(trace_unittest(forms, "tests.test_unit.TestProg.test_parse"))
    assert parse.function == "parse" and parse.frames[-2].event == "exception"
    sub = grammatical(trace_unittest(forms, "tests.test_unit.TestProg.test_sub"))
    assert sub.function == "total" and sub.frames[0].locals == {"xs": "[2]"}  # the failing subtest's call
    own = grammatical(trace_unittest(forms, "tests.test_unit.TestProg.test_own"))
    assert own.function == "TestProg.test_own"  # no project code ran: the test method itself
    # named from a start directory (`discover -s tests`): the tracer imports from there too
    top = grammatical(trace_unittest(forms, "test_unit.TestProg.test_total", top="tests"))
    assert rows(top) == TOTAL_ROWS
    assert trace_unittest(forms, "tests.test_unit.TestProg.test_missing") is None
    assert trace_unittest(forms, "tests.no_such_module.T.test_a") is None


def test_trace_failure_follows_the_case_kind(forms: LocalSandbox) -> None:
    minute = TraceOptions(timeout=60)
    script = run_tests(forms, "python test_total_script.py", timeout=60)
    (case,) = script.cases
    assert rows(grammatical(trace_failure(forms, case, "python test_total_script.py", options=minute))) == TOTAL_ROWS
    suite = "python -m unittest discover -s tests"
    unit = run_tests(forms, suite, timeout=60)
    failing = next(c for c in unit.cases if c.id == "test_unit.TestProg.test_total")
    assert rows(grammatical(trace_failure(forms, failing, suite, options=minute))) == TOTAL_ROWS
    # a reproduction script merged into a suite's report is traced by its own command
    repro = TestCase("python check_parse.py 7", "failed", kind="command")
    assert grammatical(trace_failure(forms, repro, "make test", options=minute)).function == "parse"
    assert trace_failure(forms, TestCase("make test", "failed", kind="command"), "make test") is None
    assert trace_failure(forms, TestCase("./run.sh", "failed", kind="command"), "./run.sh") is None
    assert trace_failure(forms, TestCase("test_unit", "error", kind="unittest"), "python -m unittest") is None


def test_a_tracer_that_never_starts_leaves_no_old_trace(forms: LocalSandbox) -> None:
    assert trace_script(forms, "test_total_script.py") is not None
    assert trace_script(forms, "test_total_script.py", options=TraceOptions(python="no-such-python-xyz")) is None


def test_budget_drops_middle_frames_and_says_so_outside_the_frames() -> None:
    frames = [Frame("call", 1, "def f(a):", {"a": "1"}, None)]
    frames += [Frame("line", 2, "    a += 1", {"a": str(i + 2)}, None) for i in range(60)]
    frames += [Frame("line", 3, "    return a", {"a": ".."}, None), Frame("return", 3, "    return a", None, "61")]
    trace = Trace("f", "m.py", "def f(a):\n    a += 1\n    return a\n", 1, frames, False, "")
    full = render_cwm(trace)
    cut = render_cwm(trace, budget_tokens=200)
    assert estimate_tokens(full) > 200 >= estimate_tokens(cut)
    parsed = grammar.parse(cut)
    real = {"def f(a):  # << START_OF_TRACE\n", "    a += 1\n", "    return a\n"}
    assert {f.source_line for f in parsed.frames} <= real
    assert parsed.frames[-1].arg == "61" and parsed.frames[-2].locals == {"a": ".."}
    kept = fit_frames(trace, lambda t, fs: render_cwm(replace(t, frames=list(fs))), 200)
    (gap,) = [i for i, f in enumerate(kept) if f.gap]
    assert kept[gap].gap.endswith("frames of line 2")
    # the first frame after the gap carries its full value again
    after = parsed.frames[gap].locals
    assert after is not None and ".." not in after.values()
    assert estimate_tokens(render_readable(trace, budget_tokens=150)) <= 150
    prompt = render_cwm_prompt(trace, budget_tokens=260)
    note, text = prompt.split("\n", 1)
    assert note.startswith("(Frames left out of this trace: ") and "frames of line 2 before frame" in note
    assert grammar.parse(text).context == "def f(a):  # << START_OF_TRACE\n    a += 1\n    return a\n"


def test_estimate_tokens_counts_special_tokens_as_one() -> None:
    assert estimate_tokens("<|frame_sep|><|action_sep|>") == 2
    assert estimate_tokens("abcdefg") == 2


def test_grammar_rejects_malformed_traces() -> None:
    good = '<|call_sep|>{"a": "1"}<|action_sep|>def f(a):  # << START_OF_TRACE\n<|frame_sep|>'
    grammar.parse(good)
    for bad in (
        good.replace("\n", ""),  # source line without newline
        good.replace('"1"', "1"),  # value not a string
        good + '<|line_sep|>{"b": ".."}<|action_sep|>    x\n<|frame_sep|>',  # unresolvable ".."
        good + "<|return_sep|><|action_sep|>    x\n<|frame_sep|>",  # return without value
        good.replace("  # << START_OF_TRACE", ""),
    ):
        with pytest.raises(grammar.GrammarError):
            grammar.parse(bad)


def test_tracer_is_python38_syntax_and_stdlib_only() -> None:
    import ast

    source = Path(_tracer.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {
        "__future__",
        "argparse",
        "collections",
        "inspect",
        "json",
        "linecache",
        "os",
        "runpy",
        "sys",
        "time",
        "importlib",
        "unittest",
        "pytest",
    }


# -- property: random small functions always give grammatical traces --------------------------------------------
_STATEMENT = st.one_of(
    st.tuples(st.just("assign"), st.integers(0, 2), st.integers(-5, 5)),
    st.tuples(st.just("loop"), st.integers(0, 2), st.integers(0, 12)),
    st.tuples(st.just("if"), st.integers(0, 2), st.integers(-5, 5)),
    st.tuples(st.just("try"), st.integers(0, 2), st.integers(-1, 1)),
    st.tuples(st.just("div"), st.integers(0, 2), st.integers(0, 3)),
    st.tuples(st.just("text"), st.integers(0, 2), st.text(max_size=12)),
    st.tuples(st.just("call"), st.integers(0, 2), st.integers(0, 12)),
)
HELPERS = """def helper(a, n):
    b = a
    for k in range(n):
        b = inner(b, k)
    return b


def inner(b, k):
    if k == 3:
        return b // 0 if b < -100 else b - 1
    return b + k


"""


def _program(statements: list[tuple[str, int, object]]) -> str:
    lines = [*HELPERS.splitlines(), "def generated(v0, v1=1):", "    v2 = 0"]
    for kind, var, arg in statements:
        v = f"v{var}"
        if kind == "assign":
            lines.append(f"    {v} = {v} + {arg}")
        elif kind == "loop":
            lines += [f"    for j in range({arg}):", f"        {v} += j"]
        elif kind == "if":
            lines += [f"    if {v} > {arg}:", f"        {v} = -{v}", "    else:", f"        {v} += 1"]
        elif kind == "try":
            lines += ["    try:", f"        {v} = 10 // ({arg})", "    except ZeroDivisionError:", f"        {v} = 99"]
        elif kind == "div":
            lines.append(f"    {v} = {v} // {arg}")
        elif kind == "call":
            lines.append(f"    {v} = helper({v}, {arg})")
        else:
            lines.append(f"    s = {arg!r}")
    lines.append("    return v0 + v1 + v2")
    return "\n".join(lines) + "\n"


_counter = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    statements=st.lists(_STATEMENT, max_size=8),
    v0=st.integers(-3, 3),
    budget=st.integers(20, 400),
    step_into=st.integers(0, 2),
)
def test_random_functions_always_render_grammatical_traces(
    tmp_path: Path, statements: list[tuple[str, int, object]], v0: int, budget: int, step_into: int
) -> None:
    path = tmp_path / f"gen_{next(_counter)}.py"
    path.write_text(_program(statements))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    document = _tracer.trace_call(module.generated, (v0,), root=str(tmp_path), max_frames=60, step_into=step_into)
    trace = trace_from_json(json.loads(json.dumps(document)))
    assert trace is not None and trace.function == "generated"
    parsed = grammar.parse(render_prompt_context(trace) + render_cwm(trace, end_of_text=True))
    assert parsed.ended and parsed.context is not None and len(parsed.frames) == len(trace.frames) <= 60
    assert parsed.frames[-1].event == "return"
    assert max((f.depth for f in trace.frames), default=0) <= step_into
    grammar.parse(render_cwm(trace, budget_tokens=budget))
    grammar.parse(without_note(render_cwm_prompt(trace, budget_tokens=budget)))
    # every frame is one the program produced: its source line is a line of the module
    source_lines = set(path.read_text().splitlines())
    assert all(f.source_line in source_lines for f in trace.frames)
