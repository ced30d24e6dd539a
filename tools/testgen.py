"""Decide whether a model-written reproduction test can be trusted.

Why so strict: a test that fails for the wrong reason (it cannot import the module, it has a syntax error, its
fixture is broken) "reproduces" nothing, and a loop that trusts it will happily "fix" the test instead of the bug.
A test is kept only if it is collected, gives the same outcome on two runs, and fails on the current code with an
assertion or an exception raised by the code under test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tools.testing import TestCase, TestReport

# Failures that show the test itself is broken, not the code under test.
_WRONG_REASONS = (
    (re.compile(r"\b(ModuleNotFoundError|ImportError)\b"), "it cannot import what it tests"),
    (re.compile(r"\bSyntaxError\b|\bIndentationError\b"), "it has a syntax error"),
    (re.compile(r"fixture '[^']+' not found"), "it asks for a fixture that does not exist"),
)


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


def _wrong_reason(case: TestCase, test_file: str, expected: Sequence[str]) -> str | None:
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
    exc = last["exc"].rsplit(".", 1)[-1]
    if exc == "AssertionError":
        return None
    if expected:
        if exc in expected:
            return None
        return f"it fails with {exc}, not with an assertion or the exception the task describes ({', '.join(expected)})"
    if last["path"] == test_file:
        return f"it fails with {exc} raised by the test's own code, not by the code under test"
    return None


def _only(report: TestReport, files: Sequence[str]) -> TestReport:
    """The part of a report about ``files`` (a test command with its own paths also runs the rest of the suite)."""
    if not files:
        return report
    cases = [c for c in report.cases if c.id.split("::", 1)[0] in files]
    return replace(report, cases=cases)


def judge(first: TestReport, second: TestReport, files: Sequence[str] = (), expected: Sequence[str] = ()) -> Verdict:
    """Judge two runs of the same candidate test file(s) on the unpatched code; only ``files``' tests count.

    ``expected`` are the exception names the task describes; with none, any exception raised by the code under test
    counts, but not one raised by the test's own code.
    """
    first, second = _only(first, files), _only(second, files)
    if first.status == "collection_error" or second.status == "collection_error":
        output = first.output or second.output
        why = next((why for pattern, why in _WRONG_REASONS if pattern.search(output)), "")
        detail = " | ".join(output.strip().splitlines()[-3:])
        return Verdict(False, f"it is not collected by pytest{': ' + why if why else ''} ({detail})")
    if first.status == "no_tests" or not first.cases:
        return Verdict(False, "pytest collected no test from it; name the functions test_*")
    if first.status == "timeout":
        return Verdict(False, "it did not finish within the time limit")
    if _outcomes(first) != _outcomes(second):
        return Verdict(False, "it is not deterministic: two runs gave different outcomes")
    failing = [c for c in first.cases if c.outcome in ("failed", "error")]
    if not failing:
        return Verdict(False, "it passes on the current code, so it does not reproduce the problem")
    for case in failing:
        wrong = _wrong_reason(case, case.id.split("::", 1)[0], expected)
        if wrong:
            return Verdict(False, f"{case.id} fails for the wrong reason: {wrong} ({case.message.strip()[:200]})")
    return Verdict(
        True, f"{len(failing)} test(s) fail on the current code as the task describes", [c.id for c in failing]
    )
