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
from tools.testing import TestCase, TestReport, parse_junit, run_tests, trim_traceback

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


def test_non_pytest_command(tmp_path: Path) -> None:
    sandbox = project(tmp_path / "p", {"check.py": "import sys\nprint('3 checks, 1 bad')\nsys.exit(1)\n"})
    report = run_tests(sandbox, f"{sys.executable} check.py")
    assert (report.status, report.cases, report.command) == ("failed", [], f"{sys.executable} check.py")
    assert report.feedback().endswith("3 checks, 1 bad")
    ok = run_tests(sandbox, "true")
    assert ok.status == "passed" and ok.summary() == "passed"


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
