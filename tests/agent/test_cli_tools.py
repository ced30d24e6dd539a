"""The CLI's tool commands through ``main(argv)``: trace, doctor, sandbox prune, and usage errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.main import main
from tests.support.example import ROOT, make_repo
from tests.support.fake_server import ScriptedServer

IMAGE = os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm")
FAILING = "tests/test_core.py::test_median_even"


def test_trace_prints_the_failing_function_readably(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    assert main(["trace", FAILING, "--repo", str(repo), "--sandbox", "local"]) == 0
    out = capsys.readouterr().out
    assert "median" in out
    assert re.search(r"call .*values=\[4, 1, 3, 2\]", out), out
    assert re.search(r"return 3\b", out), out  # the buggy result the test saw


def test_trace_cwm_format_follows_the_grammar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.tools.cwm_trace_grammar import parse

    repo = make_repo(tmp_path / "repo")
    assert main(["trace", FAILING, "--repo", str(repo), "--sandbox", "local", "--format", "cwm"]) == 0
    out = capsys.readouterr().out.strip()
    # as CWM reads a trace: the function's source first, then the frames
    assert out.startswith("<|trace_context_start|>def median(values):  # << START_OF_TRACE")
    parsed = parse(out)
    assert parsed.context is not None and "return ordered[middle]" in parsed.context
    frames = parsed.frames
    assert frames[0].event == "call" and frames[-1].event == "return"
    assert frames[-1].arg == "3"  # the repr of the buggy return value


def test_trace_steps_into_project_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    core = repo / "stats" / "core.py"
    core.write_text(
        core.read_text().replace("    return ordered[middle]\n", "    return _pick(ordered, middle)\n")
        + "\n\ndef _pick(ordered, at):\n    return ordered[at]\n"
    )
    assert main(["trace", FAILING, "--repo", str(repo), "--sandbox", "local"]) == 0
    flat = capsys.readouterr().out
    assert main(["trace", FAILING, "--repo", str(repo), "--sandbox", "local", "--trace-step-into", "1"]) == 0
    stepped = capsys.readouterr().out
    assert re.search(r"\n  L\d+ call  ordered=", stepped), stepped  # _pick's own frames, one level in
    assert not re.search(r"\n  L\d+ call", flat), flat


def test_trace_of_a_passing_test_shows_the_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    assert main(["trace", "tests/test_core.py::test_mean", "--repo", str(repo), "--sandbox", "local"]) == 0
    out = capsys.readouterr().out
    assert "mean" in out and re.search(r"return 2\.5\b", out), out


MEDIAN_SCRIPT = "from stats.core import median\n\nassert median([5]) == 5\nassert median([4, 1, 3, 2]) == 2.5\n"
MEDIAN_UNITTEST = """import unittest

from stats.core import median


class TestMedian(unittest.TestCase):
    def test_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)
"""


def test_trace_takes_every_test_form_the_loop_traces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain script (by its command), a unittest id and a pytest id: each traced into the failing ``median`` call,
    the form told from the text itself; what is not one Python run is a clear error naming the form."""
    repo = make_repo(tmp_path / "repo")
    (repo / "check_median.py").write_text(MEDIAN_SCRIPT)
    (repo / "tests" / "test_unit_median.py").write_text(MEDIAN_UNITTEST)
    for args in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "forms"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    local = ["--repo", str(repo), "--sandbox", "local"]
    forms = (
        "python check_median.py",
        "tests.test_unit_median.TestMedian.test_even",
        FAILING,
        f"python -m pytest {FAILING}",
    )
    for test in forms:
        assert main(["trace", test, *local]) == 0, test
        out = capsys.readouterr().out
        assert re.search(r"call .*values=\[4, 1, 3, 2\]", out) and re.search(r"return 3\b", out), (test, out)
    assert main(["trace", "python check_median.py", *local, "--form", "command", "--format", "cwm"]) == 0
    assert capsys.readouterr().out.startswith("<|trace_context_start|>def median(values):")
    refused = {
        "make test": "'make test' is not one Python run",
        "tests/test_core.py": "'tests/test_core.py' is no pytest test id: name one test",
        "python -m pytest": "'python -m pytest' runs pytest: name one test",
    }
    for test, says in refused.items():
        assert main(["trace", test, *local]) == 2, test
        assert says in capsys.readouterr().err
    assert main(["trace", "tests.test_unit_median.TestMedian.test_even", *local, "--form", "pytest"]) == 2
    assert main(["trace", "tests.test_unit_median.TestMedian.test_nothing", *local]) == 2
    assert "nothing to trace for tests.test_unit_median.TestMedian.test_nothing (unittest)" in capsys.readouterr().err
    assert main(["trace", FAILING, *local, "--form", "nose"]) == 2
    assert "unknown --form 'nose'" in capsys.readouterr().err


def test_trace_of_an_unknown_test_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    code = main(["trace", "tests/test_core.py::test_nothing_here", "--repo", str(repo), "--sandbox", "local"])
    assert code == 2
    assert "nothing to trace" in capsys.readouterr().err


def test_doctor_reports_a_working_setup_and_a_missing_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with ScriptedServer({}) as server:
        ok = main(["doctor", "--base-url", server.url, "--sandbox", "bwrap"])
    out = capsys.readouterr().out
    assert ok == 0, out
    env_before = {k: os.environ.pop(k) for k in ("MENDLOOP_BASE_URL", "OPENAI_BASE_URL") if k in os.environ}
    try:
        missing = main(["doctor", "--sandbox", "bwrap"])
    finally:
        os.environ.update(env_before)
    out = capsys.readouterr().out
    assert missing != 0
    assert "MENDLOOP_BASE_URL" in out or "--base-url" in out


@pytest.mark.docker
def test_sandbox_prune_removes_a_leftover_container() -> None:
    leftover = subprocess.run(
        ["docker", "run", "-d", "--label", "mendloop=1", "--label", "mendloop.test=prune", IMAGE, "sleep", "300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "sandbox", "prune"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert leftover[:12] in proc.stdout
    gone = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", "label=mendloop.test=prune"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert gone.stdout.strip() == ""


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", "--no-such-flag"]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["trace", FAILING, "--format", "yaml", "--sandbox", "local"]) == 2
    assert "unknown --format" in capsys.readouterr().err
