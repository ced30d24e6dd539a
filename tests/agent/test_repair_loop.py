"""The repair loop's judgement, through the real scripted HTTP server and real pytest runs in a local sandbox.

Reproduction tests are kept only for the right reason, protected tests stay protected, and best-of-K picks the
passing candidate.
"""

from __future__ import annotations

from pathlib import Path

from agent.config import Settings
from agent.runner import solve
from agent.task import Task
from tests.support.example import CWM_FIX, CWM_REPRODUCE, CWM_WRONG_FIX, ISSUE, make_repo
from tests.support.fake_server import RecordedRequest, ScriptedServer

TASK = ISSUE.read_text()


def cwm_create(path: str, content: str) -> str:
    return f"Writing the test.\n</think>\n<tool: create>\n{path}\n{content}</tool>"


REPRO_PASSES = cwm_create(
    "tests/test_mendloop_repro.py", "from stats import median\n\n\ndef test_odd():\n    assert median([3, 1, 2]) == 2\n"
)
REPRO_IMPORT_ERROR = cwm_create(
    "tests/test_mendloop_repro.py",
    "from stats.nowhere import median\n\n\ndef test_even():\n    assert median([4, 1, 3, 2]) == 2.5\n",
)
REPRO_HYPOTHESIS = cwm_create(
    "tests/test_mendloop_repro.py",
    "from hypothesis import given, strategies as st\n\nfrom stats import median\n\n\n"
    "@given(st.lists(st.integers(-50, 50), min_size=2, max_size=8).filter(lambda xs: len(xs) % 2 == 0))\n"
    "def test_median_of_even_lists(xs):\n"
    "    s = sorted(xs)\n"
    "    assert median(xs) == (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2\n",
)
WEAKEN_TEST = (
    "The test expects the wrong value.\n</think>\n<tool: edit>\ntests/test_core.py\n<<<<<<< SEARCH\n"
    "    assert median([4, 1, 3, 2]) == 2.5\n=======\n    assert median([4, 1, 3, 2]) == 3\n>>>>>>> REPLACE\n</tool>"
)


def chats(server: ScriptedServer) -> list[RecordedRequest]:
    """The chat requests, in order (the run also asks the server about itself: GET /v1/models)."""
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def settings(url: str, **extra: object) -> Settings:
    values: dict[str, object] = {"base_url": url, "sandbox": "local", "max_iterations": 3, **extra}
    return Settings.model_validate(values)


def run(tmp_path: Path, server: ScriptedServer, **extra: object) -> tuple[object, Path]:
    repo = make_repo(tmp_path / "repo")
    task = Task(repo=repo, text=TASK, title="median")
    result = solve(task, settings(server.url, **extra), tmp_path / "run")
    return result, tmp_path / "run"


def test_reproduction_tests_are_kept_only_for_the_right_reason(tmp_path: Path) -> None:
    script = {"reproduce": [REPRO_PASSES, REPRO_IMPORT_ERROR, CWM_REPRODUCE], "write": [CWM_FIX]}
    with ScriptedServer(script) as server:
        result, run_dir = run(tmp_path, server, reproduce_attempts=3)
        nodes = server.nodes()
        second_ask = chats(server)[1].body["messages"][-1]["content"]
        third_ask = chats(server)[2].body["messages"][-1]["content"]
    assert nodes == ["reproduce", "reproduce", "reproduce", "write"]
    assert "passes on the current code" in second_ask
    assert "cannot import" in third_ask
    assert result.status == "resolved"  # type: ignore[attr-defined]
    report = (run_dir / "report.md").read_text()
    assert "attempt 1: rejected" in report and "attempt 2: rejected" in report and "attempt 3: kept" in report
    # The kept test was part of the final check (5 = 4 existing + 1 reproduction) and is not in the patch.
    assert result.tests_passed == 5  # type: ignore[attr-defined]
    assert "test_mendloop_repro" not in result.patch  # type: ignore[attr-defined]


def test_keep_tests_puts_the_reproduction_test_in_the_patch(tmp_path: Path) -> None:
    with ScriptedServer({"reproduce": [CWM_REPRODUCE], "write": [CWM_FIX]}) as server:
        result, _ = run(tmp_path, server, keep_tests=True)
    assert result.status == "resolved"  # type: ignore[attr-defined]
    assert "tests/test_mendloop_repro.py" in result.patch  # type: ignore[attr-defined]


def test_hypothesis_property_test_shows_the_shrunk_example(tmp_path: Path) -> None:
    with ScriptedServer({"reproduce": [REPRO_HYPOTHESIS], "write": [CWM_FIX]}) as server:
        result, _ = run(tmp_path, server)
        write_prompt = chats(server)[1].body["messages"][-1]["content"]
    assert result.status == "resolved"  # type: ignore[attr-defined]
    assert "Falsifying example" in write_prompt and "test_median_of_even_lists" in write_prompt


def test_edit_to_a_protected_test_is_refused_and_the_run_still_resolves(tmp_path: Path) -> None:
    with ScriptedServer({"write": [WEAKEN_TEST, CWM_FIX]}) as server:
        result, _ = run(tmp_path, server, reproduce=False)
        follow_up = chats(server)[1].body["messages"][-1]["content"]
    assert "protected" in follow_up and "tests/test_core.py" in follow_up
    assert result.status == "resolved"  # type: ignore[attr-defined]
    assert "tests/test_core.py" not in result.patch  # type: ignore[attr-defined]
    assert "ordered[middle - 1]" in result.patch  # type: ignore[attr-defined]


def test_candidates_pick_the_passing_patch(tmp_path: Path) -> None:
    with ScriptedServer({"write": [CWM_FIX, CWM_WRONG_FIX, CWM_FIX]}) as server:
        result, run_dir = run(tmp_path, server, reproduce=False, candidates=3, max_iterations=1)
        nodes = server.nodes()
    assert nodes == ["write", "write", "write"]
    assert result.status == "resolved"  # type: ignore[attr-defined]
    assert "ordered[middle - 1]" in result.patch and "reverse=True" not in result.patch  # type: ignore[attr-defined]
    report = (run_dir / "report.md").read_text()
    assert report.count("(winner)") == 1
    assert "#0:" in report and "#1:" in report and "#2:" in report


BASH_WEAKEN = (
    "Easier to change the expectation.\n</think>\n<tool: bash>\n"
    "sed -i 's/2\\]) == 2.5/2]) == 3/' tests/test_core.py\n</tool>"
)
CONFTEST_SKIP = (
    "Skip the failing test.\n</think>\n<tool: create>\nconftest.py\nimport pytest\n\n\n"
    "def pytest_collection_modifyitems(items):\n    for item in items:\n"
    "        item.add_marker(pytest.mark.skip())\n</tool>"
)


def test_a_shell_command_cannot_weaken_a_protected_test(tmp_path: Path) -> None:
    with ScriptedServer({"write": [BASH_WEAKEN]}) as server:
        result, run_dir = run(tmp_path, server, reproduce=False, max_iterations=2)
    assert result.status == "unresolved"  # type: ignore[attr-defined]
    assert "tests/test_core.py" not in result.patch  # type: ignore[attr-defined]
    assert "== 2.5" in (run_dir / "workspace" / "tests" / "test_core.py").read_text()
    assert "Undone: your commands changed tests/test_core.py" in (run_dir / "report.md").read_text()


def test_a_new_conftest_is_refused(tmp_path: Path) -> None:
    with ScriptedServer({"write": [CONFTEST_SKIP, CWM_FIX]}) as server:
        result, _ = run(tmp_path, server, reproduce=False)
        follow_up = chats(server)[1].body["messages"][-1]["content"]
    assert "conftest.py" in follow_up and "Refused" in follow_up
    assert result.status == "resolved"  # type: ignore[attr-defined]
    assert "conftest" not in result.patch  # type: ignore[attr-defined]


def test_candidates_that_all_run_out_of_budget_finish_cleanly(tmp_path: Path) -> None:
    """Several parallel candidates hitting the budget in the same step must not crash the graph."""
    with ScriptedServer({"write": [CWM_WRONG_FIX]}) as server:
        result, run_dir = run(tmp_path, server, reproduce=False, candidates=3, max_model_calls=1)
    assert result.status == "unresolved"  # type: ignore[attr-defined]
    assert "budget" in result.reason.lower() or "calls" in result.reason.lower()  # type: ignore[attr-defined]
    assert (run_dir / "report.md").is_file()
