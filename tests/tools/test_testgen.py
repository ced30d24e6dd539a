"""tools.testgen: reproduction tests judged in the form the test command takes, on real runs of real files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.tools.test_testing import project
from tools.testgen import expected_exceptions, judge
from tools.testing import run_tests

PY = sys.executable
BUGGY = {
    "calc.py": "def add(a, b):\n    return a - b\n\n\ndef ratio(a, b):\n    return a / b\n",
    "test_calc.py": "from calc import add\n\nassert add(2, 0) == 2\n",
}
REPRO = "test_mendloop_repro.py"


def verdict(tmp_path: Path, cmd: str, files: dict[str, str], task: str = "add() subtracts") -> tuple[bool, str]:
    sandbox = project(tmp_path / "p", {**BUGGY, **files})
    written = [rel for rel in files if rel.endswith(".py")]
    first = run_tests(sandbox, cmd, tests=written, timeout=10)
    second = run_tests(sandbox, cmd, tests=written, timeout=10)
    result = judge(first, second, written, expected_exceptions(task))
    return result.accepted, result.reason


SCRIPT_CMD = f"{PY} test_calc.py"


def test_a_script_that_fails_with_an_assertion_is_kept_under_its_own_command(tmp_path: Path) -> None:
    sandbox = project(tmp_path / "p", {**BUGGY, REPRO: "from calc import add\n\nassert add(2, 3) == 5\n"})
    first = run_tests(sandbox, SCRIPT_CMD, tests=[REPRO])
    second = run_tests(sandbox, SCRIPT_CMD, tests=[REPRO])
    result = judge(first, second, [REPRO])
    assert result.accepted, result.reason
    assert (
        result.failing == [f"{PY} {REPRO}"]
        and result.reason == "1 script(s) fail on the current code as the task describes"
    )


@pytest.mark.parametrize(
    ("script", "task", "reason"),
    [
        ("from calc import add\n\nassert add(2, 0) == 2\n", "", "it exits 0 on the current code"),
        ("from calc import nothing\n\nassert nothing()\n", "", "it cannot import what it tests"),
        ("from calc import add\n\nassert add(2, 3) == 5 +\n", "", "it has a syntax error"),
        ("from calc import add\n\nvalues = []\nassert add(values[0], 3) == 5\n", "", "raised by the test's own code"),
        ("import sys\n\nprint('add is wrong')\nsys.exit(1)\n", "", "exits non-zero without a Python traceback"),
        (
            "from calc import ratio\n\nassert ratio(1, 0) == 0\n",
            "ratio() raises KeyError",
            "it fails with ZeroDivisionError, not with an assertion or the exception the task describes (KeyError)",
        ),
        (
            "import os\n\nfirst = not os.path.exists('.mark')\nopen('.mark', 'w').close()\nassert not first\n",
            "",
            "it is not deterministic",
        ),
        ("import time\n\ntime.sleep(60)\n", "", "it did not finish within the time limit"),
    ],
    ids=["passes", "import-error", "syntax-error", "own-bug", "no-traceback", "wrong-exception", "flaky", "hangs"],
)
def test_a_script_failing_for_the_wrong_reason_is_rejected_with_a_reason_true_for_scripts(
    tmp_path: Path, script: str, task: str, reason: str
) -> None:
    accepted, why = verdict(tmp_path, SCRIPT_CMD, {REPRO: script}, task)
    assert not accepted and reason in why
    assert "test_*" not in why and "collected" not in why  # nothing a script could act on


def test_an_exception_raised_by_the_code_under_test_is_a_reproduction(tmp_path: Path) -> None:
    accepted, why = verdict(tmp_path, SCRIPT_CMD, {REPRO: "from calc import ratio\n\nratio(1, 0)\n"}, "ratio breaks")
    assert accepted, why
    named, why = verdict(
        tmp_path / "2", SCRIPT_CMD, {REPRO: "from calc import ratio\n\nratio(1, 0)\n"}, "ZeroDivisionError"
    )
    assert named, why


UNIT_CMD = f"{PY} -m unittest"
UNIT_REPRO = "tests/test_mendloop_repro.py"


def test_unittest_reproduction_is_a_testcase(tmp_path: Path) -> None:
    good = (
        "import unittest\n\nfrom calc import add\n\n\nclass TestAdd(unittest.TestCase):\n"
        "    def test_adds(self):\n        self.assertEqual(add(2, 3), 5)\n"
    )
    sandbox = project(tmp_path / "p", {**BUGGY, UNIT_REPRO: good})
    first = run_tests(sandbox, UNIT_CMD, tests=[UNIT_REPRO])
    result = judge(first, run_tests(sandbox, UNIT_CMD, tests=[UNIT_REPRO]), [UNIT_REPRO])
    assert result.accepted, result.reason
    assert result.failing == ["tests.test_mendloop_repro.TestAdd.test_adds"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "from calc import add\n\n\ndef test_adds():\n    assert add(2, 3) == 5\n",
            "unittest found no test in it; define a unittest.TestCase subclass whose methods are named test_*",
        ),
        ("from calc import nothing\n", "it is not imported by unittest: it cannot import what it tests"),
        (
            "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_a(self):\n        [][0]\n",
            "raised by the test's own code",
        ),
        (
            "import unittest\n\n\nclass T(unittest.TestCase):\n    @classmethod\n    def setUpClass(cls):\n"
            "        raise RuntimeError('x')\n\n    def test_a(self):\n        pass\n",
            "errors in its own setUpClass",
        ),
    ],
    ids=["functions-only", "import-error", "own-bug", "setup-class"],
)
def test_unittest_reproduction_rejected_for_unittest_reasons(tmp_path: Path, text: str, reason: str) -> None:
    accepted, why = verdict(tmp_path, UNIT_CMD, {UNIT_REPRO: text})
    assert not accepted and reason in why


def test_pytest_reproduction_without_tests_is_told_to_name_them(tmp_path: Path) -> None:
    accepted, why = verdict(tmp_path, f"{PY} -m pytest -q", {"tests/test_mendloop_repro.py": "X = 1\n"})
    assert not accepted and why == "pytest collected no test from it; name the functions test_*"
