"""Decide whether a model-written reproduction test can be trusted, in the form the project's tests take.

Why so strict: a test that fails for the wrong reason (it cannot import the module, it has a syntax error, its
fixture is broken) "reproduces" nothing, and a loop that trusts it will happily "fix" the test instead of the bug.
A test is kept only if it runs, gives the same outcome on two runs, and fails on the current code with an assertion
or an exception raised by the code under test.

The form follows the test command (``tools.testing.command_form``): pytest test functions, a ``unittest.TestCase``
file, or - for any other command - a standalone script run as ``python test_mendloop_repro.py`` that must exit
non-zero with a Python traceback. Every reason given back to the model is true for its form: a script is never told
to "name the functions test_*".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tools.testing import Form, TestCase, TestReport, command_form, parse_python_error

__all__ = ["Verdict", "expected_exceptions", "form_of", "judge"]

# Failures that show the test itself is broken, not the code under test.
_WRONG_REASONS = (
    (re.compile(r"\b(ModuleNotFoundError|ImportError)\b"), "it cannot import what it tests"),
    (re.compile(r"\bSyntaxError\b|\bIndentationError\b"), "it has a syntax error"),
    (re.compile(r"fixture '[^']+' not found"), "it asks for a fixture that does not exist"),
)
_BROKEN_EXCEPTIONS = {
    "ModuleNotFoundError": "it cannot import what it tests",
    "ImportError": "it cannot import what it tests",
    "SyntaxError": "it has a syntax error",
    "IndentationError": "it has a syntax error",
    "TabError": "it has a syntax error",
}


@dataclass
class Verdict:
    """Whether the candidate test is kept, and why (the reason goes back to the model when it is not)."""

    accepted: bool
    reason: str
    failing: list[str] = field(default_factory=list)


def _outcomes(report: TestReport) -> dict[str, str]:
    return {case.id: case.outcome for case in report.cases}


# pytest's long tracebacks end with ``path.py:LINE: ExceptionType``: where the failure was raised, and what it was.
_RAISED_AT = re.compile(r"^(?P<path>[^\s:]+\.py):(?P<line>\d+): (?P<exc>[A-Za-z_][\w.]*)\s*$", re.MULTILINE)
_NAMED_EXCEPTION = re.compile(r"\b([A-Z][A-Za-z]*(?:Error|Exception|Exit|Interrupt)|StopIteration)\b")


def expected_exceptions(task_text: str) -> list[str]:
    """Exception names the task mentions (``KeyError``, ``ZeroDivisionError``...): the failures it describes."""
    return sorted({m for m in _NAMED_EXCEPTION.findall(task_text) if m != "AssertionError"})


def form_of(report: TestReport) -> Form:
    """The form that produced ``report``: its cases say so; a report without cases, its command."""
    if report.cases:
        return report.cases[0].kind
    return command_form(report.command)


def _judged_exception(exc: str, raised_in_test: bool, expected: Sequence[str]) -> str | None:
    """Why an exception of type ``exc`` is the wrong failure, or None when it is the right one."""
    if exc == "AssertionError":
        return None
    if expected:
        if exc in expected:
            return None
        return f"it fails with {exc}, not with an assertion or the exception the task describes ({', '.join(expected)})"
    if raised_in_test:
        return f"it fails with {exc} raised by the test's own code, not by the code under test"
    return None


def _wrong_reason_pytest(case: TestCase, expected: Sequence[str]) -> str | None:
    text = f"{case.message}\n{case.traceback}"
    for pattern, why in _WRONG_REASONS:
        if pattern.search(text):
            return why
    if case.outcome == "error":
        return "it errors in its own setup or fixture instead of failing in the test body"
    raised = list(_RAISED_AT.finditer(case.traceback))
    if not raised:
        return None
    last = raised[-1]
    test_file = case.id.split("::", 1)[0]
    return _judged_exception(last["exc"].rsplit(".", 1)[-1], last["path"] == test_file, expected)


def _wrong_reason_python(case: TestCase, files: Sequence[str], expected: Sequence[str]) -> str | None:
    """unittest cases and scripts: judged by the Python traceback they end with."""
    if case.kind == "unittest" and case.id.rsplit(".", 1)[-1] in ("setUpClass", "setUpModule", "tearDownClass"):
        return f"it errors in its own {case.id.rsplit('.', 1)[-1]} instead of failing in a test method"
    error = parse_python_error(case.traceback) or parse_python_error(case.message)
    if error is None:
        if case.kind == "command":
            return (
                "it exits non-zero without a Python traceback; let a failed `assert` (an AssertionError) or the "
                "exception the code under test raises end the script"
            )
        return None
    broken = _BROKEN_EXCEPTIONS.get(error.exception)
    if broken:
        return broken
    last = error.frames[-1].path if error.frames else ""
    raised_in_test = any(last == f or last.endswith("/" + f) for f in files)
    return _judged_exception(error.exception, raised_in_test, expected)


def _only(report: TestReport, files: Sequence[str]) -> TestReport:
    """The part of a report about ``files`` (a pytest command with its own paths also runs the rest of the suite;
    unittest and script runs of the files run only them)."""
    if not files:
        return report
    cases = [c for c in report.cases if c.kind != "pytest" or c.id.split("::", 1)[0] in files]
    return replace(report, cases=cases)


_NO_TESTS: dict[Form, str] = {
    "pytest": "pytest collected no test from it; name the functions test_*",
    "unittest": "unittest found no test in it; define a unittest.TestCase subclass whose methods are named test_*",
    "command": "it could not be run as a script",
}
_PASSES: dict[Form, str] = {
    "pytest": "it passes on the current code, so it does not reproduce the problem",
    "unittest": "it passes on the current code, so it does not reproduce the problem",
    "command": (
        "it exits 0 on the current code, so it does not reproduce the problem (the script must end with a failed "
        "assert while the problem is there)"
    ),
}


def judge(first: TestReport, second: TestReport, files: Sequence[str] = (), expected: Sequence[str] = ()) -> Verdict:
    """Judge two runs of the same candidate test file(s) on the unpatched code; only ``files``' tests count.

    ``expected`` are the exception names the task describes; with none, any exception raised by the code under test
    counts, but not one raised by the test's own code.
    """
    form = form_of(first)
    first, second = _only(first, files), _only(second, files)
    detail = " | ".join((first.output or second.output).strip().splitlines()[-3:])
    if first.status == "collection_error" or second.status == "collection_error":
        output = first.output or second.output
        why = next((why for pattern, why in _WRONG_REASONS if pattern.search(output)), "")
        runner = "collected by pytest" if form == "pytest" else "imported by unittest"
        return Verdict(False, f"it is not {runner}{': ' + why if why else ''} ({detail})")
    if first.status == "timeout" or second.status == "timeout":
        return Verdict(False, "it did not finish within the time limit")
    if first.status == "no_tests" or not first.cases:
        return Verdict(False, _NO_TESTS[form] + (f" ({detail})" if form == "command" and detail else ""))
    if first.status == "crashed":
        return Verdict(False, f"the test process crashed ({detail})")
    if _outcomes(first) != _outcomes(second):
        return Verdict(False, "it is not deterministic: two runs gave different outcomes")
    failing = [c for c in first.cases if c.outcome in ("failed", "error")]
    if not failing:
        return Verdict(False, _PASSES[form])
    for case in failing:
        if case.kind == "pytest":
            wrong = _wrong_reason_pytest(case, expected)
        else:
            wrong = _wrong_reason_python(case, files, expected)
        if wrong:
            return Verdict(False, f"{case.id} fails for the wrong reason: {wrong} ({case.message.strip()[:200]})")
    what = "script(s) fail" if form == "command" else "test(s) fail"
    return Verdict(True, f"{len(failing)} {what} on the current code as the task describes", [c.id for c in failing])
