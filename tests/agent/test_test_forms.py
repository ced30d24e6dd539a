"""Repairs whose test command is not pytest: a script (``python test_stats.py``) and ``python -m unittest``.

Through the real scripted server (answers routed by the X-Mendloop-Node header), a real local sandbox and a real git
repository: the failing test is traced into the project function (a CWM trace in round 2's request), a reproduction
test in the command's form is kept, and best-of-K picks the candidate whose tests pass over two that agree on a
wrong patch - which a score of ``passed = failed = 0`` for every candidate would not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.runner import solve
from agent.task import RunResult, Task
from tests.support.fake_server import ScriptedServer
from tests.tools import cwm_trace_grammar as grammar

PY = sys.executable
STATS = """def mean(values):
    return sum(values) / len(values)


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle]
"""
SCRIPT_TEST = "from stats import median\n\nassert median([3, 1, 2]) == 2\nassert median([4, 1, 3, 2]) == 2.5\n"
UNITTEST_TEST = """import unittest

from stats import median


class TestMedian(unittest.TestCase):
    def test_odd(self):
        self.assertEqual(median([3, 1, 2]), 2)

    def test_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)
"""
TASK = "median() is wrong for lists with an even number of values: it must be the mean of the two middle values."


class Form:
    """One test form: the project's files, its test command, and the reproduction test in that form."""

    def __init__(self, name: str, files: dict[str, str], cmd: str, repro_path: str, repro: str, wrong_repro: str):
        self.name, self.files, self.cmd = name, files, cmd
        self.repro_path, self.repro, self.wrong_repro = repro_path, repro, wrong_repro


SCRIPT = Form(
    "script",
    {"stats.py": STATS, "test_stats.py": SCRIPT_TEST},
    f"{PY} test_stats.py",
    "test_mendloop_repro.py",
    "from stats import median\n\nassert median([1, 2, 3, 4]) == 2.5\n",
    # pytest's form: a function nobody calls, so the script exits 0 - rejected for that, truly
    "from stats import median\n\n\ndef test_even():\n    assert median([1, 2, 3, 4]) == 2.5\n",
)
UNITTEST = Form(
    "unittest",
    {"stats.py": STATS, "tests/test_stats.py": UNITTEST_TEST},
    f"{PY} -m unittest discover -s tests",
    "tests/test_mendloop_repro.py",
    "import unittest\n\nfrom stats import median\n\n\nclass TestRepro(unittest.TestCase):\n"
    "    def test_even(self):\n        self.assertEqual(median([1, 2, 3, 4]), 2.5)\n",
    # pytest's form again: unittest finds no test in it
    "from stats import median\n\n\ndef test_even():\n    assert median([1, 2, 3, 4]) == 2.5\n",
)
FORMS = [pytest.param(SCRIPT, id="script"), pytest.param(UNITTEST, id="unittest")]


def cwm(body: str) -> str:
    return f"Looking at median.\n</think>\n{body}"


def edit(search: str, replace: str, submit: bool = False) -> str:  # one tool per answer, as CWM was trained
    block = f"<tool: edit>\nstats.py\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n</tool>"
    return cwm(block + ("\n\n<tool: submit>\n</tool>" if submit else ""))


def create(path: str, content: str) -> str:
    return cwm(f"<tool: create>\n{path}\n{content}</tool>")


RIGHT = edit(
    "    middle = len(ordered) // 2\n    return ordered[middle]\n",
    "    middle = len(ordered) // 2\n    if len(ordered) % 2 == 0:\n"
    "        return (ordered[middle - 1] + ordered[middle]) / 2\n    return ordered[middle]\n",
)
# still wrong: odd lists stay right, the even one gives 2 (reversed order, the upper middle)
REVERSED = edit("    ordered = sorted(values)\n", "    ordered = sorted(values, reverse=True)\n")
# wrong too, and the same patch twice in a best-of-3: two votes against one
LOWER_MIDDLE = edit(
    "    return ordered[middle]\n", "    return ordered[middle - 1] if len(ordered) > 2 else ordered[0]\n"
)


def make_repo(dest: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@x.invalid", "commit", "-qm", "i"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def repair(tmp_path: Path, form: Form, server: ScriptedServer, **extra: Any) -> RunResult:
    repo = make_repo(tmp_path / "repo", form.files)
    values: dict[str, Any] = {
        "base_url": server.url,
        "sandbox": "local",
        "dialect": "cwm",
        "max_iterations": 3,
        "command_timeout": 60,
        **extra,
    }
    task = Task(repo=repo, text=TASK, title="median", test_cmd=form.cmd)
    return solve(task, Settings.model_validate(values), tmp_path / "run")


def exchanges(tmp_path: Path, node: str) -> list[dict[str, Any]]:
    lines = (tmp_path / "run" / "trajectory.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record.get("node") == node]


def last_user(record: dict[str, Any]) -> str:
    return str(next(m["content"] for m in reversed(record["messages"]) if m["role"] == "user"))


@pytest.mark.parametrize("form", FORMS)
def test_round_two_shows_a_cwm_trace_of_the_failing_function(tmp_path: Path, form: Form) -> None:
    with ScriptedServer({"write": [REVERSED, RIGHT]}) as server:
        result = repair(tmp_path, form, server, reproduce=False)
    assert result.status == "resolved", result.reason
    writes = exchanges(tmp_path, "write")
    assert len(writes) == 2
    assert "<|call_sep|>" not in last_user(writes[0])  # round 1 shows the failure, not yet a trace
    feedback = last_user(writes[1])
    assert "Execution trace of `median` (stats.py)" in feedback
    trace = feedback[feedback.index("<|call_sep|>") : feedback.rindex("<|frame_sep|>") + len("<|frame_sep|>")]
    parsed = grammar.parse(trace)  # CWM's own trace format, by the grammar in docs/CWM.md
    assert parsed.frames[0].source_line.startswith("def median(values):  # << START_OF_TRACE")
    assert parsed.frames[0].locals == {"values": "[4, 1, 3, 2]"}  # the call the failing check judged
    assert '"ordered": "[4, 3, 2, 1]"' in trace and parsed.frames[-1].arg == "2"


FIXED_MEDIAN = (
    "Here is the fixed function:\n\n```python\ndef median(values):\n    ordered = sorted(values)\n"
    "    middle = len(ordered) // 2\n    if len(ordered) % 2 == 0:\n"
    "        return (ordered[middle - 1] + ordered[middle]) / 2\n    return ordered[middle]\n```\n"
)


@pytest.mark.parametrize("form", FORMS)
def test_fresh_rounds_show_the_trace_of_a_failing_script_or_unittest_from_round_one(tmp_path: Path, form: Form) -> None:
    """The other way of asking (``history=fresh``): round 1 is built from the baseline's evidence, trace included."""
    with ScriptedServer({"write": [FIXED_MEDIAN]}) as server:
        result = repair(tmp_path, form, server, reproduce=False, history="fresh")
    assert result.status == "resolved", result.reason
    (first,) = exchanges(tmp_path, "write")
    request = last_user(first)
    trace = request[request.index("<|call_sep|>") : request.rindex("<|frame_sep|>") + len("<|frame_sep|>")]
    assert grammar.parse(trace).frames[0].locals == {"values": "[4, 1, 3, 2]"}
    assert result.traced_rounds == 1


HELPED = (
    STATS.replace("    middle = len(ordered) // 2\n    return ordered[middle]\n", "    return _middle(ordered)\n")
    + "\n\ndef _middle(ordered):\n    at = len(ordered) // 2\n    return ordered[at]\n"
)


@pytest.mark.parametrize("depth", [0, 1])
def test_the_trace_steps_into_project_calls_when_asked(tmp_path: Path, depth: int) -> None:
    """``trace_step_into`` reaches the loop: the helper the failing function calls has its own frames (CWM's
    debugger steps into calls), and without the setting the call is one line."""
    form = Form("script", {**SCRIPT.files, "stats.py": HELPED}, SCRIPT.cmd, "", "", "")
    with ScriptedServer({"write": [FIXED_MEDIAN]}) as server:
        repair(tmp_path, form, server, reproduce=False, history="fresh", trace_step_into=depth, max_iterations=1)
    request = last_user(exchanges(tmp_path, "write")[0])
    trace = request[request.index("<|call_sep|>") : request.rindex("<|frame_sep|>") + len("<|frame_sep|>")]
    frames = grammar.parse(trace).frames
    assert frames[0].source_line.startswith("def median(values):")
    stepped = [f for f in frames if f.source_line.startswith("def _middle(ordered):")]
    assert len(stepped) == depth  # a call frame of the helper, between median's lines
    assert (frames[-1].arg == "3") and (frames[-1].event == "return")


@pytest.mark.parametrize("form", FORMS)
def test_a_reproduction_test_in_the_commands_form_is_kept(tmp_path: Path, form: Form) -> None:
    script = {
        "reproduce": [create(form.repro_path, form.wrong_repro), create(form.repro_path, form.repro)],
        "write": [RIGHT],
    }
    with ScriptedServer(script) as server:
        result = repair(tmp_path, form, server, reproduce_attempts=2)
        nodes = server.nodes()
    assert nodes == ["reproduce", "reproduce", "write"]
    asked = exchanges(tmp_path, "reproduce")
    first_ask, second_ask = last_user(asked[0]), last_user(asked[1])
    if form is SCRIPT:
        assert f"a standalone Python script that is run as `{PY} test_mendloop_repro.py`" in first_ask
        assert "exits 0 on the current code" in second_ask
    else:
        assert "a `unittest.TestCase` subclass" in first_ask
        assert "unittest found no test in it; define a unittest.TestCase subclass" in second_ask
    assert "name the functions test_*" not in second_ask  # the reason pytest would give is not true here
    report = (tmp_path / "run" / "report.md").read_text()
    assert "attempt 1: rejected" in report and "attempt 2: kept" in report
    assert result.status == "resolved", result.reason
    # the kept test ran with the suite at the end: its own case next to the suite's
    assert result.tests_passed == (2 if form is SCRIPT else 3) and result.tests_failed == 0
    assert "test_mendloop_repro" not in result.patch


@pytest.mark.parametrize("form", FORMS)
def test_best_of_three_picks_the_candidate_whose_tests_pass(tmp_path: Path, form: Form) -> None:
    with ScriptedServer({"write": [LOWER_MIDDLE, RIGHT, LOWER_MIDDLE]}) as server:
        result = repair(tmp_path, form, server, reproduce=False, candidates=3, max_iterations=1)
        nodes = server.nodes()
    assert nodes == ["write", "write", "write"]
    assert result.status == "resolved", result.reason
    assert "(ordered[middle - 1] + ordered[middle]) / 2" in result.patch and "ordered[0]" not in result.patch
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.count("(winner)") == 1
