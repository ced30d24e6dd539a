"""tools.testing: real pytest runs on small generated projects (a tiny in-test sandbox and LocalSandbox)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from sandboxes.base import ExecResult, Limits, Sandbox, SandboxSpec
from tools.testing import (
    TestCase,
    TestReport,
    case_in_file,
    command_form,
    parse_junit,
    parse_python_error,
    parse_unittest,
    run_tests,
    script_target,
    trim_traceback,
    unittest_top,
)

PYTEST = f"{sys.executable} -m pytest -q"
# Third-party pytest plugins installed on the host (langsmith, anyio, ...) cost seconds per run on a loaded
# machine and have nothing to do with what is tested here.
FAST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


class SubprocessSandbox:
    """The Sandbox protocol in a dozen lines: a shell in ``root``, the process group killed at the timeout."""

    name = "test-subprocess"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commands: list[str] = []

    def run(
        self, cmd: str | Sequence[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None
    ) -> ExecResult:
        self.commands.append(cmd if isinstance(cmd, str) else " ".join(cmd))
        started = time.monotonic()
        child = subprocess.Popen(
            cmd,
            shell=isinstance(cmd, str),
            cwd=self.root,
            env={**os.environ, **FAST_ENV, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            out, _ = child.communicate()
            return ExecResult(-9, out.decode(errors="replace"), time.monotonic() - started, timed_out=True)
        return ExecResult(child.returncode, out.decode(errors="replace"), time.monotonic() - started)

    def put(self, files: Mapping[str, bytes]) -> None:
        for rel, data in files.items():
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_bytes(data)

    def get(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def close(self) -> None:
        pass


def project(root: Path, files: dict[str, str]) -> SubprocessSandbox:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")  # pins pytest's rootdir to the project
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return SubprocessSandbox(root)


MIXED = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "tests/test_mixed.py": """
import pytest
from calc import add

def check(value):
    assert value == 3, "add is broken"

def test_ok():
    assert True

def test_add():
    check(add(1, 2))

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_uses_fixture(broken):
    pass

@pytest.mark.parametrize("v", [1, "a b", "x::y"])
def test_param(v):
    assert v == 1

class TestGroup:
    def test_method(self):
        assert add(2, 2) == 4

    class TestInner:
        def test_deep(self):
            pass

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass
""",
}


def test_the_in_test_sandbox_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(SubprocessSandbox(tmp_path), Sandbox)


def test_mixed_run_ids_outcomes_messages_and_tracebacks(tmp_path: Path) -> None:
    sandbox = project(tmp_path / "p", MIXED)
    report = run_tests(sandbox, PYTEST)
    assert report.status == "failed" and report.exit_code == 1
    outcomes = {c.id: c.outcome for c in report.cases}
    assert outcomes == {
        "tests/test_mixed.py::test_ok": "passed",
        "tests/test_mixed.py::test_add": "failed",
        "tests/test_mixed.py::test_uses_fixture": "error",
        "tests/test_mixed.py::test_param[1]": "passed",
        "tests/test_mixed.py::test_param[a b]": "failed",
        "tests/test_mixed.py::test_param[x::y]": "failed",
        "tests/test_mixed.py::TestGroup::test_method": "failed",
        "tests/test_mixed.py::TestGroup::TestInner::test_deep": "passed",
        "tests/test_mixed.py::test_skipped": "skipped",
    }
    assert report.summary() == "3 passed, 4 failed, 1 errors, 1 skipped"
    assert report.counts == {"passed": 3, "skipped": 1, "error": 1, "failed": 4}
    assert "tests/test_mixed.py::test_uses_fixture" in report.failed
    assert report.passed == [
        "tests/test_mixed.py::test_ok",
        "tests/test_mixed.py::test_param[1]",
        "tests/test_mixed.py::TestGroup::TestInner::test_deep",
    ]

    add = next(c for c in report.cases if c.id.endswith("::test_add"))
    assert add.message.startswith("AssertionError: add is broken")
    assert "tests/test_mixed.py:6: AssertionError" in add.traceback
    fixture = next(c for c in report.cases if c.outcome == "error")
    assert "fixture exploded" in fixture.message

    feedback = report.feedback()
    assert feedback.startswith("Test run: 3 passed, 4 failed, 1 errors, 1 skipped")
    assert "FAILED tests/test_mixed.py::test_add\n  AssertionError: add is broken" in feedback
    assert "ERROR tests/test_mixed.py::test_uses_fixture" in feedback
    assert "E       AssertionError: add is broken" in feedback
    assert "test_ok" not in feedback and "_pytest" not in feedback
    # The XML was read back and deleted; .mendloop stays out of the way.
    assert list((tmp_path / "p" / ".mendloop").iterdir()) == []
    assert "--junitxml=.mendloop/junit-" in report.command and "-p no:cacheprovider" in report.command
    assert not (tmp_path / "p" / ".pytest_cache").exists()


def test_selected_ids_are_quoted_and_rerun_exactly(tmp_path: Path) -> None:
    sandbox = project(tmp_path / "p", MIXED)
    wanted = ["tests/test_mixed.py::test_param[a b]", "tests/test_mixed.py::TestGroup::TestInner::test_deep"]
    report = run_tests(sandbox, PYTEST, tests=wanted)
    assert sorted(c.id for c in report.cases) == sorted(wanted)
    assert report.failed == ["tests/test_mixed.py::test_param[a b]"]


def test_collection_error_syntax(tmp_path: Path) -> None:
    sandbox = project(tmp_path / "p", {"tests/test_ok.py": "def test_a(): pass\n", "tests/test_bad.py": "def f(:\n"})
    report = run_tests(sandbox, PYTEST)
    assert report.status == "collection_error" and report.exit_code == 2
    assert report.failed == ["tests/test_bad.py"]
    assert report.summary() == "collection error in tests/test_bad.py"
    feedback = report.feedback()
    assert "SyntaxError: invalid syntax" in feedback and "def f(:" in feedback
    assert "_pytest/python.py" not in feedback and "internal frames hidden" in feedback


def test_collection_error_import(tmp_path: Path) -> None:
    sandbox = project(tmp_path / "p", {"tests/test_imp.py": "import no_such_module_xyz\n\ndef test_a(): pass\n"})
    report = run_tests(sandbox, PYTEST)
    assert report.status == "collection_error"
    feedback = report.feedback()
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in feedback
    assert "tests/test_imp.py:1: in <module>" in feedback
    assert "importlib/__init__.py" not in feedback


def test_no_tests(tmp_path: Path) -> None:
    report = run_tests(project(tmp_path / "p", {"lib.py": "x = 1\n"}), PYTEST)
    assert (report.status, report.exit_code, report.cases) == ("no_tests", 5, [])
    assert report.summary() == "no tests ran"


def test_usage_error(tmp_path: Path) -> None:
    report = run_tests(project(tmp_path / "p", {}), PYTEST + " --no-such-option")
    assert report.status == "error" and report.exit_code == 4
    assert "--no-such-option" in report.feedback()


def test_timeout(tmp_path: Path) -> None:
    files = {"tests/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(30)\n"}
    started = time.monotonic()
    report = run_tests(project(tmp_path / "p", files), PYTEST, timeout=2)
    assert time.monotonic() - started < 15
    assert report.status == "timeout"
    assert re.fullmatch(r"timed out after [234]s", report.summary())
    assert "timed out" in report.feedback()


@pytest.mark.parametrize("body", ["os._exit(3)", "os.kill(os.getpid(), signal.SIGKILL)"], ids=["os-exit-3", "sigkill"])
def test_crash(tmp_path: Path, body: str) -> None:
    files = {"tests/test_crash.py": f"import os, signal\n\ndef test_ok(): pass\n\ndef test_dies():\n    {body}\n"}
    report = run_tests(project(tmp_path / "p", files), PYTEST)
    assert report.status == "crashed"
    assert report.summary().startswith("test process crashed (")
    assert "Output (tail):" in report.feedback()


# -- any other command: one case named after it -------------------------------------------------------------------
PY = sys.executable


def test_a_command_is_one_case_named_after_it_passed_iff_it_exits_0(tmp_path: Path) -> None:
    sandbox = project(tmp_path / "p", {"check.py": "import sys\nprint('3 checks, 1 bad')\nsys.exit(1)\n"})
    report = run_tests(sandbox, f"{PY} check.py")
    assert (report.status, report.command, report.exit_code) == ("failed", f"{PY} check.py", 1)
    (case,) = report.cases
    assert (case.id, case.kind, case.outcome, case.message) == (
        f"{PY} check.py",
        "command",
        "failed",
        "3 checks, 1 bad",
    )
    assert report.failed == [f"{PY} check.py"] and report.summary() == "failed (exit code 1)"
    assert report.feedback().splitlines() == [
        f"Test run: failed (exit code 1) - `{PY} check.py`",
        f"FAILED {PY} check.py",
        "  3 checks, 1 bad",
        "  | 3 checks, 1 bad",
    ]
    ok = run_tests(sandbox, "true")
    assert ok.status == "passed" and ok.summary() == "passed" and ok.passed == ["true"]
    assert ok.cases[0].kind == "command" and ok.feedback() == "Test run: passed - `true`"


SCRIPT_PROJECT = {
    "calc.py": "import json\n\n\ndef add(a, b):\n    return a - b\n\n\ndef load(text):\n    return json.loads(text)\n",
    "test_calc.py": "from calc import add\n\nprint('checking add')\nassert add(1, 1) == 0\nassert add(2, 3) == 5\n",
    "test_load.py": "from calc import load\n\n\ndef check():\n    load('{')\n\n\ncheck()\n",
}


def test_a_failing_script_names_its_assertion_and_keeps_project_frames(tmp_path: Path) -> None:
    sandbox = project(tmp_path / "p", SCRIPT_PROJECT)
    report = run_tests(sandbox, f"{PY} test_calc.py")
    (case,) = report.cases
    # a bare assert has no text: where it failed is the message
    assert case.message == "AssertionError at test_calc.py:5: assert add(2, 3) == 5"
    assert case.traceback.startswith("checking add\nTraceback (most recent call last):")
    load = run_tests(sandbox, f"{PY} test_load.py")
    (case,) = load.cases
    assert case.message.startswith("json.decoder.JSONDecodeError: Expecting property name")
    feedback = load.feedback()
    assert 'test_load.py", line 5, in check' in feedback and 'calc.py", line 9, in load' in feedback
    assert "json/decoder.py" not in feedback and "[... 3 internal frames hidden ...]" in feedback
    assert feedback.rstrip().endswith(
        "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )


@pytest.mark.parametrize(
    "cmd",
    ["no-such-test-runner-xyz -q", f"{PY} missing_script.py", f"{PY} -m no_such_module_xyz"],
    ids=["not-found", "no-such-script", "no-such-module"],
)
def test_a_command_that_cannot_start_gives_no_case(tmp_path: Path, cmd: str) -> None:
    report = run_tests(project(tmp_path / "p", {}), cmd)
    assert (report.status, report.cases) == ("error", [])
    assert report.summary().startswith("test command error (exit code")
    assert "Output (tail):" in report.feedback()


def test_a_command_that_hangs_or_dies_is_a_failed_case(tmp_path: Path) -> None:
    files = {"slow.py": "import time\nprint('working')\ntime.sleep(30)\n", "die.py": "import os\nos.abort()\n"}
    sandbox = project(tmp_path / "p", files)
    slow = run_tests(sandbox, f"{PY} slow.py", timeout=2)
    assert slow.status == "timeout" and slow.failed == [f"{PY} slow.py"]
    assert re.fullmatch(r"timed out after [234]s\nworking", slow.cases[0].message)
    died = run_tests(sandbox, f"{PY} die.py")
    assert died.status == "crashed" and died.cases[0].outcome == "failed"
    assert died.cases[0].message.startswith("killed (")


def test_make_noise_is_not_the_message(tmp_path: Path) -> None:
    files = {"Makefile": "test:\n\t@echo 'median([1, 2]) gave 2, expected 1.5'\n\t@exit 3\n"}
    report = run_tests(project(tmp_path / "p", files), "make test")
    assert report.status == "failed" and report.exit_code == 2
    assert report.cases[0].message == "median([1, 2]) gave 2, expected 1.5"
    assert "make: ***" in report.cases[0].traceback  # the whole tail is still there


# -- unittest ------------------------------------------------------------------------------------------------------
UNITTEST_PROJECT = {
    "calc.py": "def add(a, b):\n    return a + b + (1 if b == 2 else 0)\n",
    "tests/__init__.py": "",
    "tests/test_calc.py": """import unittest

from calc import add


class TestAdd(unittest.TestCase):
    def test_ok(self):
        self.assertEqual(add(1, 1), 2)

    def test_two(self):
        self.assertEqual(add(1, 2), 3)

    def test_error(self):
        raise KeyError("k")

    def test_doc(self):
        \"\"\"A docstring line.\"\"\"
        self.assertTrue(False, "doc failed")

    @unittest.skip("not now")
    def test_skip(self):
        pass

    def test_sub(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 1)

    def test_print(self):
        print("hello from the test")
""",
}
UNITTEST_OUTCOMES = {
    "tests.test_calc.TestAdd.test_ok": "passed",
    "tests.test_calc.TestAdd.test_two": "failed",
    "tests.test_calc.TestAdd.test_error": "error",
    "tests.test_calc.TestAdd.test_doc": "failed",
    "tests.test_calc.TestAdd.test_skip": "skipped",
    "tests.test_calc.TestAdd.test_sub": "failed",
    "tests.test_calc.TestAdd.test_print": "passed",
}


def test_unittest_run_lists_every_test_with_its_failure(tmp_path: Path) -> None:
    report = run_tests(project(tmp_path / "p", UNITTEST_PROJECT), f"{PY} -m unittest")
    assert report.command == f"{PY} -m unittest -v"
    assert report.status == "failed"
    assert {c.id: c.outcome for c in report.cases} == UNITTEST_OUTCOMES
    assert {c.kind for c in report.cases} == {"unittest"}
    cases = {c.id.rsplit(".", 1)[1]: c for c in report.cases}
    assert cases["test_two"].message == "AssertionError: 4 != 3"
    assert 'tests/test_calc.py", line 11, in test_two' in cases["test_two"].traceback
    assert cases["test_error"].message == "KeyError: 'k'"
    assert cases["test_sub"].message.splitlines() == [
        "subtest (i=1): AssertionError: 1 not less than 1",
        "subtest (i=2): AssertionError: 2 not less than 1",
    ]
    assert cases["test_skip"].message == "not now"
    feedback = report.feedback()
    assert feedback.startswith("Test run: 2 passed, 3 failed, 1 errors, 1 skipped")
    assert "FAILED tests.test_calc.TestAdd.test_two\n  AssertionError: 4 != 3" in feedback
    assert "unittest/case.py" not in feedback


def test_unittest_selection_keeps_the_ids_of_discovery_from_a_start_directory(tmp_path: Path) -> None:
    files = {k: v for k, v in UNITTEST_PROJECT.items() if k != "tests/__init__.py"}
    sandbox = project(tmp_path / "p", files)
    cmd = f"{PY} -m unittest discover -s tests"
    suite = run_tests(sandbox, cmd)
    assert "test_calc.TestAdd.test_two" in suite.failed  # named from the start directory
    again = run_tests(sandbox, cmd, tests=["tests/test_calc.py"])
    assert {c.id: c.outcome for c in again.cases} == {c.id: c.outcome for c in suite.cases}
    one = run_tests(sandbox, cmd, tests=["test_calc.TestAdd.test_ok"])
    assert [(c.id, c.outcome) for c in one.cases] == [("test_calc.TestAdd.test_ok", "passed")]
    assert one.status == "passed"


def test_unittest_import_failure_no_tests_and_passing(tmp_path: Path) -> None:
    broken = project(tmp_path / "b", {"test_broken.py": "import no_such_module_xyz\n"})
    report = run_tests(broken, f"{PY} -m unittest")
    assert report.status == "collection_error" and report.failed == ["test_broken"]
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in report.cases[0].message
    assert report.summary() == "collection error in test_broken"
    empty = run_tests(project(tmp_path / "e", {"lib.py": "x = 1\n"}), f"{PY} -m unittest")
    assert (empty.status, empty.cases) == ("no_tests", [])
    good = {"test_ok.py": "import unittest\n\n\nclass T(unittest.TestCase):\n    def test_a(self):\n        pass\n"}
    passed = run_tests(project(tmp_path / "g", good), f"{PY} -m unittest")
    assert (passed.status, passed.passed) == ("passed", ["test_ok.T.test_a"])


# Verbatim `python -m unittest -v` output: Python 3.10 names a test `test_x (mod.Class)`, runs a test with failing
# subtests into the next one's line, and prints setUpClass errors without a name.
UNITTEST_310 = """test_doc (test_m.TestA)
A docstring line. ... FAIL
test_err (test_m.TestA) ... ERROR
test_ok (test_m.TestA) ... ok
test_print (test_m.TestA) ... hello from test
ok
test_skip (test_m.TestA) ... skipped 'not now'
test_sub (test_m.TestA) ... test_xf (test_m.TestA) ... expected failure
test_xpass (test_m.TestA) ... unexpected success
ERROR
test_broken (unittest.loader._FailedTest) ... ERROR

======================================================================
ERROR: test_err (test_m.TestA)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 10, in test_err
    raise KeyError("k")
KeyError: 'k'

======================================================================
ERROR: setUpClass (test_m.TestSetup)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 36, in setUpClass
    raise RuntimeError("class setup broke")
RuntimeError: class setup broke

======================================================================
ERROR: test_broken (unittest.loader._FailedTest)
----------------------------------------------------------------------
ImportError: Failed to import test module: test_broken
Traceback (most recent call last):
  File "/usr/lib/python3.10/unittest/loader.py", line 154, in loadTestsFromName
    module = __import__(module_name)
  File "/tmp/ut/test_broken.py", line 1, in <module>
    import nosuchmod
ModuleNotFoundError: No module named 'nosuchmod'


======================================================================
FAIL: test_doc (test_m.TestA)
A docstring line.
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 15, in test_doc
    self.assertTrue(False, "doc failed")
AssertionError: False is not true : doc failed

======================================================================
FAIL: test_sub (test_m.TestA) (i=1)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 28, in test_sub
    self.assertLess(i, 1)
AssertionError: 1 not less than 1

----------------------------------------------------------------------
Ran 9 tests in 0.001s

FAILED (failures=2, errors=3, skipped=1, expected failures=1, unexpected successes=1)
"""
UNITTEST_311 = """test_doc (test_m.TestA.test_doc)
A docstring line. ... FAIL
test_err (test_m.TestA.test_err) ... ERROR
test_ok (test_m.TestA.test_ok) ... ok
test_print (test_m.TestA.test_print) ... hello from test
ok
test_skip (test_m.TestA.test_skip) ... skipped 'not now'
test_sub (test_m.TestA.test_sub) ...
  test_sub (test_m.TestA.test_sub) (i=1) ... FAIL
test_xf (test_m.TestA.test_xf) ... expected failure
test_xpass (test_m.TestA.test_xpass) ... unexpected success
ERROR
test_broken (unittest.loader._FailedTest.test_broken) ... ERROR

======================================================================
ERROR: test_err (test_m.TestA.test_err)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 10, in test_err
    raise KeyError("k")
KeyError: 'k'

======================================================================
ERROR: setUpClass (test_m.TestSetup)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 36, in setUpClass
    raise RuntimeError("class setup broke")
RuntimeError: class setup broke

======================================================================
ERROR: test_broken (unittest.loader._FailedTest.test_broken)
----------------------------------------------------------------------
ImportError: Failed to import test module: test_broken
Traceback (most recent call last):
  File "/usr/lib/python3.11/unittest/loader.py", line 162, in loadTestsFromName
    module = __import__(module_name)
             ^^^^^^^^^^^^^^^^^^^^^^^
  File "/tmp/ut/test_broken.py", line 1, in <module>
    import nosuchmod
ModuleNotFoundError: No module named 'nosuchmod'


======================================================================
FAIL: test_doc (test_m.TestA.test_doc)
A docstring line.
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 15, in test_doc
    self.assertTrue(False, "doc failed")
AssertionError: False is not true : doc failed

======================================================================
FAIL: test_sub (test_m.TestA.test_sub) (i=1)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 28, in test_sub
    self.assertLess(i, 1)
AssertionError: 1 not less than 1

======================================================================
UNEXPECTED SUCCESS: test_xpass (test_m.TestA.test_xpass)
----------------------------------------------------------------------
Ran 9 tests in 0.001s

FAILED (failures=2, errors=3, skipped=1, expected failures=1, unexpected successes=1)
"""


@pytest.mark.parametrize("output", [UNITTEST_310, UNITTEST_311], ids=["py3.10", "py3.11+"])
def test_parse_unittest_both_formats(output: str) -> None:
    cases = {c.id: c for c in parse_unittest(output)}
    assert {k: c.outcome for k, c in cases.items()} == {
        "test_m.TestA.test_doc": "failed",
        "test_m.TestA.test_err": "error",
        "test_m.TestA.test_ok": "passed",
        "test_m.TestA.test_print": "passed",
        "test_m.TestA.test_skip": "skipped",
        "test_m.TestA.test_sub": "failed",
        "test_m.TestA.test_xf": "passed",  # an expected failure is what the test wants
        "test_m.TestA.test_xpass": "failed",
        "test_broken": "error",
        "test_m.TestSetup.setUpClass": "error",
    }
    assert cases["test_m.TestA.test_doc"].message == "AssertionError: False is not true : doc failed"
    assert cases["test_m.TestA.test_sub"].message == "subtest (i=1): AssertionError: 1 not less than 1"
    assert cases["test_m.TestSetup.setUpClass"].message == "RuntimeError: class setup broke"
    assert cases["test_broken"].message.splitlines() == [
        "ImportError: Failed to import test module: test_broken",
        "ModuleNotFoundError: No module named 'nosuchmod'",
    ]
    assert cases["test_m.TestA.test_err"].traceback.startswith("Traceback (most recent call last):\n  File ")
    assert cases["test_m.TestA.test_xpass"].message.startswith("unexpected success")
    # killed before the verdict: the test that was running is an error, not a pass
    (cut,) = parse_unittest("test_a (m.T.test_a) ... ok\ntest_b (m.T.test_b) ... ")[1:]
    assert (cut.id, cut.outcome) == ("m.T.test_b", "error")


# -- what a command is ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cmd", "form", "target"),
    [
        ("python -m pytest -q tests", "pytest", ("python", "module", "pytest", ["-q", "tests"])),
        ("pytest -x", "pytest", None),
        ("uv run pytest", "pytest", None),
        ("PYTHONPATH=src .venv/bin/pytest", "pytest", None),
        ("timeout 60 py.test", "pytest", None),
        (
            "python -m unittest discover -s tests",
            "unittest",
            ("python", "module", "unittest", ["discover", "-s", "tests"]),
        ),
        ("python3 -munittest", "unittest", ("python3", "module", "unittest", [])),
        ("python test_gcd.py", "command", ("python", "script", "test_gcd.py", [])),
        ("X=1 python3.11 -u -W ignore checks.py --fast", "command", ("python3.11", "script", "checks.py", ["--fast"])),
        ("python -m mypkg.checks a", "command", ("python", "module", "mypkg.checks", ["a"])),
        ("python check.py --runner pytest", "command", ("python", "script", "check.py", ["--runner", "pytest"])),
        ("make test", "command", None),
        ("./run_tests.sh", "command", None),
        ("python -c 'import x'", "command", None),
        ("cd sub && python t.py", "command", None),
    ],
)
def test_command_forms(cmd: str, form: str, target: object) -> None:
    assert command_form(cmd) == form
    assert script_target(cmd) == target


def test_unittest_top_and_case_in_file() -> None:
    assert unittest_top("python -m unittest") == "."
    assert unittest_top("python -m unittest discover -s tests") == "tests"
    assert unittest_top("python -m unittest discover -s tests -t .") == "."
    assert unittest_top("python -m unittest discover tests 'test*.py' .") == "."
    assert unittest_top("python -m unittest discover src/tests/ -p '*_test.py'") == "src/tests"
    unit = TestCase("test_r.T.test_a", "failed", kind="unittest")
    assert case_in_file(unit, "tests/test_r.py", "python -m unittest discover -s tests")
    assert not case_in_file(unit, "tests/test_r.py", "python -m unittest")
    assert case_in_file(TestCase("tests.test_r.T.test_a", "failed", kind="unittest"), "tests/test_r.py")
    assert case_in_file(TestCase("tests/test_r.py::test_a", "failed"), "tests/test_r.py")
    assert case_in_file(TestCase("python test_r.py", "failed", kind="command"), "test_r.py")
    assert not case_in_file(TestCase("python test_gcd.py", "failed", kind="command"), "test_r.py")


def test_parse_python_error_takes_the_last_traceback() -> None:
    chained = """Traceback (most recent call last):
  File "/w/m.py", line 3, in g
    raise ValueError('inner')
ValueError: inner

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/w/m.py", line 7, in <module>
    raise KeyError('outer') from e
KeyError: 'outer'
"""
    error = parse_python_error(chained)
    assert error is not None and (error.exception, error.text) == ("KeyError", "KeyError: 'outer'")
    assert [(f.path, f.line, f.function, f.source) for f in error.frames] == [
        ("/w/m.py", 7, "<module>", "raise KeyError('outer') from e")
    ]
    syntax = parse_python_error('  File "/w/bad.py", line 1\n    def f(:\n          ^\nSyntaxError: invalid syntax\n')
    assert syntax is not None and syntax.exception == "SyntaxError" and syntax.frames[0].function == ""
    deep = parse_python_error(
        'Traceback (most recent call last):\n  File "/w/g.py", line 5, in gcd\n    return gcd(a % b, b)\n'
        "  [Previous line repeated 996 more times]\nRecursionError: maximum recursion depth exceeded\n"
    )
    assert deep is not None and deep.text == "RecursionError: maximum recursion depth exceeded"
    assert parse_python_error("all good\n") is None


def test_report_round_trips_through_json(tmp_path: Path) -> None:
    report = run_tests(project(tmp_path / "p", MIXED), PYTEST)
    again = TestReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert isinstance(again.cases[0], TestCase)


def test_feedback_respects_budget_and_lists_the_rest(tmp_path: Path) -> None:
    cases = [TestCase(f"t.py::test_{i}", "failed", "boom " * 50, "E   x\n" * 200) for i in range(30)]
    report = TestReport("failed", cases, "", 1, 1.0, "pytest")
    text = report.feedback(max_chars=3000)
    assert len(text) <= 3000
    assert "FAILED t.py::test_0" in text
    assert "more failing: " in text and "t.py::test_29" in text


def test_parse_junit_without_file_attribute_and_garbage() -> None:
    xml = """<testsuites><testsuite>
      <testcase classname="tests.test_x.TestK" name="test_m[1]" time="0.5"><failure message="bad">tb</failure>
      </testcase>
      <testcase classname="tests.test_x" name="test_f" time="x"/>
      <testcase classname="" name="tests.test_broken">
        <error message="collection failure">boom</error></testcase>
    </testsuite></testsuites>"""
    cases = parse_junit(xml, root_hint="sub/")
    assert [(c.id, c.outcome) for c in cases] == [
        ("sub/tests/test_x.py::TestK::test_m[1]", "failed"),
        ("sub/tests/test_x.py::test_f", "passed"),
        ("sub/tests/test_broken.py", "error"),
    ]
    assert cases[0].duration == 0.5 and cases[0].traceback == "tb"
    assert parse_junit("not xml <") == []
    assert parse_junit('<!DOCTYPE x [<!ENTITY a "b">]><testsuite/>') == []


def test_parse_junit_merges_call_failure_and_teardown_error() -> None:
    xml = """<testsuite>
      <testcase classname="t" name="test_td" file="t.py">
        <failure message="assert 0">call tb</failure></testcase>
      <testcase classname="t" name="test_td" file="t.py">
        <error message="teardown boom">td tb</error></testcase>
    </testsuite>"""
    (case,) = parse_junit(xml)
    assert (case.id, case.outcome, case.message) == ("t.py::test_td", "failed", "assert 0\nteardown boom")
    assert case.traceback == "call tb\n\ntd tb"


def test_trim_traceback_caps_length() -> None:
    text = "\n".join(f"line {i}" for i in range(500))
    trimmed = trim_traceback(text, max_lines=40).splitlines()
    assert len(trimmed) == 40 and trimmed[0] == "line 0" and trimmed[-1] == "line 499"
    assert any("lines ..." in line for line in trimmed)


def test_through_local_sandbox(tmp_path: Path) -> None:
    from sandboxes.local import LocalSandbox

    root = tmp_path / "p"
    project(root, MIXED)
    sandbox = LocalSandbox(root, SandboxSpec(kind="local", limits=Limits(env=FAST_ENV)))
    try:
        report = run_tests(sandbox, PYTEST, tests=["tests/test_mixed.py::test_add"])
        assert report.status == "failed" and report.failed == ["tests/test_mixed.py::test_add"]
        assert "add is broken" in report.feedback()
        slow = {"tests/test_slow.py": "import time\n\ndef test_slow():\n    time.sleep(30)\n"}
        project(root, slow)
        assert run_tests(sandbox, PYTEST, tests=["tests/test_slow.py"], timeout=2).status == "timeout"
    finally:
        sandbox.close()


def test_merge_reports_counts_each_test_once() -> None:
    from tools.testing import TestCase, TestReport, merge_reports

    first = TestReport("failed", [TestCase("t.py::a", "passed"), TestCase("t.py::b", "failed")], command="x")
    second = TestReport("passed", [TestCase("t.py::a", "passed"), TestCase("r.py::c", "passed")], command="y")
    merged = merge_reports(first, second)
    assert [c.id for c in merged.cases] == ["t.py::a", "t.py::b", "r.py::c"]
    assert merged.status == "failed"
