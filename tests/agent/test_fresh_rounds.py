"""Fresh rounds: each round rebuilt from the code and the latest evidence, re-asked hotter after an unusable answer,
K samples from one request, and every request fitted to the endpoint's context.

Through the real scripted HTTP server (routed by the X-Mendloop-Node header), a real git repository and pytest in the
local sandbox, ``dialect="openai"`` (whose ``history`` is fresh).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.runner import solve
from agent.task import Task
from tests.support.example import ISSUE, make_repo
from tests.support.fake_server import RecordedRequest, ScriptedServer

TASK = ISSUE.read_text()
HEAD = '''def median(values):
    """The middle value of the sorted list; the mean of the two middle values when the count is even."""
    if not values:
        raise ValueError("median() of an empty list")
    ordered = sorted(values)
    middle = len(ordered) // 2
'''
FIXED = HEAD + "    if len(ordered) % 2 == 0:\n        return (ordered[middle - 1] + ordered[middle]) / 2\n"
FIXED += "    return ordered[middle]\n"
WRONG = HEAD + "    return ordered[middle - 1]\n"  # passes the odd tests? no: a different wrong answer
UNCHANGED = HEAD + "    return ordered[middle]\n"


def block(code: str) -> str:
    return f"Here is the fixed function:\n\n```python\n{code}```\n"


def settings(url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "base_url": url,
        "sandbox": "local",
        "dialect": "openai",
        "reproduce": False,
        "traces": False,
        "max_iterations": 3,
        "temperature": 0.2,
        "retry_temperatures": [0.7, 1.0],
        **extra,
    }
    return Settings.model_validate(values)


def chats(server: ScriptedServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def user_text(request: RecordedRequest) -> str:
    content: Any = request.body["messages"][-1]["content"]
    assert isinstance(content, str)
    return content


def run(tmp_path: Path, server: ScriptedServer, **extra: object) -> Any:
    repo = make_repo(tmp_path / "repo")
    return solve(Task(repo=repo, text=TASK, title="median"), settings(server.url, **extra), tmp_path / "run")


def test_later_rounds_are_rebuilt_with_one_line_per_earlier_attempt(tmp_path: Path) -> None:
    with ScriptedServer({"write": [block(WRONG), block(FIXED)]}) as server:
        result = run(tmp_path, server)
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert len(requests) == 2
    first, second = (r.body["messages"] for r in requests)
    assert len(first) == len(second) == 2  # system + one user turn: rebuilt, not a growing pile
    text = user_text(requests[1])
    assert "Earlier attempts" in text and "- round 1:" in text and "`return ordered[middle - 1]`" in text
    assert "ordered[middle - 1]" not in user_text(requests[0])
    # round 2 starts from the best code so far: the wrong change passed no more tests, so the code shown is the original
    assert "    return ordered[middle]\n```" in text


def test_an_answer_without_a_change_is_asked_again_hotter_and_the_feedback_says_so(tmp_path: Path) -> None:
    with ScriptedServer({"write": ["I think the code is fine.", block(UNCHANGED), block(FIXED)]}) as server:
        result = run(tmp_path, server)
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert [r.body["temperature"] for r in requests] == [0.2, 0.7, 1.0]
    assert result.iterations == 1  # all three asks were one round
    assert "held no code block with a change" in user_text(requests[1])
    assert "did not change the code" in user_text(requests[2])


def test_a_patch_already_tried_is_not_verified_again(tmp_path: Path) -> None:
    with ScriptedServer({"write": [block(WRONG), block(WRONG), block(FIXED)]}) as server:
        result = run(tmp_path, server)
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert result.iterations == 2
    assert "repeated a change that was already tried" in user_text(requests[2])
    assert requests[2].body["temperature"] == 0.7


def test_best_of_k_samples_in_one_request_and_the_passing_candidate_wins(tmp_path: Path) -> None:
    with ScriptedServer({"write": [block(WRONG), block(UNCHANGED), block(FIXED)]}) as server:
        result = run(tmp_path, server, candidates=3, sample_temperature=0.8)
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert len(requests) == 1 and requests[0].body["n"] == 3 and requests[0].body["temperature"] == 0.8
    assert "(ordered[middle - 1] + ordered[middle]) / 2" in result.patch


def test_best_of_k_on_a_server_that_ignores_n_asks_again_for_the_rest(tmp_path: Path) -> None:
    with ScriptedServer({"write": [block(WRONG), block(FIXED), block(UNCHANGED)]}, n_choices=False) as server:
        result = run(tmp_path, server, candidates=3)
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert [r.body.get("n") for r in requests] == [3, None, None]  # after one answer, one request per sample


def test_more_samples_than_the_server_has_slots_are_queued_not_an_error(tmp_path: Path) -> None:
    script = {"write": [block(WRONG), block(UNCHANGED), block(FIXED)]}
    with ScriptedServer(script, max_n=2) as server:
        result = run(tmp_path, server, candidates=3)
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert [r.body.get("n") for r in requests] == [3, 2, None]  # refused, then as many as it takes, then the rest


def test_a_request_is_fitted_to_the_context_the_server_reports(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "stats" / "big.py").write_text("".join(f'"""padding {i}"""\nX{i} = {i}\n' for i in range(2000)))
    with ScriptedServer({"write": [block(FIXED)]}, n_ctx=1500) as server:
        result = solve(Task(repo=repo, text=TASK, title="median"), settings(server.url), tmp_path / "run")
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert len(requests) == 1  # fitted before it was sent: never refused
    text = user_text(requests[0])
    assert "def median" in text and len(text) < 1500 * 3


def test_a_refusal_for_length_is_answered_by_sending_less(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "stats" / "big.py").write_text("".join(f"X{i} = {i}  # padding\n" for i in range(3000)))
    # the server does not say its context size (no /props) but refuses more than 1200 tokens
    with ScriptedServer({"write": [block(FIXED)]}, n_ctx=None, refuse_above=1200) as server:
        result = solve(Task(repo=repo, text=TASK, title="median"), settings(server.url), tmp_path / "run")
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert len(requests) >= 2
    sizes = [len(json.dumps(r.body["messages"])) for r in requests]
    assert sizes[-1] < sizes[0]
    trajectory = (tmp_path / "run" / "trajectory.jsonl").read_text()
    assert "exceeds the available context size" in trajectory


def test_a_test_that_hangs_is_named_and_traced_in_round_one(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "bits.py").write_text(
        "def bitcount(n):\n    count = 0\n    while n:\n        n ^= n - 1\n        count += 1\n    return count\n"
    )
    (repo / "test_bits.py").write_text(
        "from bits import bitcount\n\n\ndef test_127():\n    assert bitcount(127) == 7\n"
    )
    fixed = "def bitcount(n):\n    count = 0\n    while n:\n        n &= n - 1\n        count += 1\n    return count\n"
    with ScriptedServer({"write": [block(fixed)]}) as server:
        task = Task(repo=repo, text="bitcount(127) never returns; it must count the 1-bits.", title="bitcount")
        result = solve(task, settings(server.url, traces=True, command_timeout=2), tmp_path / "run")
        text = user_text(chats(server)[0])
    assert result.status == "resolved", result.reason
    assert "it hung in test_bits.py::test_127, in bitcount (bits.py)" in text  # from pytest's stack dump
    assert "Execution trace of `bitcount`" in text and "endless loop" in text


def test_a_stuck_round_after_a_partial_fix_goes_back_to_the_original_code(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "grade.py").write_text("def grade(score):\n    if score > 90:\n        return 'A'\n    return 'B'\n")
    tests = "from grade import grade\n\n\n"
    for i, (score, want) in enumerate([(95, "A"), (90, "A"), (80, "B"), (50, "C"), (10, "C")]):
        tests += f"def test_{i}():\n    assert grade({score}) == {want!r}\n\n\n"
    (repo / "test_grade.py").write_text(tests)
    partial = "def grade(score):\n    if score >= 90:\n        return 'A'\n    return 'B'\n"  # 3 of 5 pass (2 before)
    worse = "def grade(score):\n    if score >= 90:\n        return 'B'\n    return 'A'\n"  # 0 of 5 pass: no progress
    fixed = "def grade(score):\n    if score >= 90:\n        return 'A'\n    if score >= 60:\n        return 'B'\n"
    fixed += "    return 'C'\n"
    with ScriptedServer({"write": [block(partial), block(worse), block(fixed)]}) as server:
        task = Task(repo=repo, text="grade() is wrong: 90 is an A, below 60 is a C.", title="grade")
        result = solve(task, settings(server.url), tmp_path / "run")
        requests = chats(server)
    assert result.status == "resolved", result.reason
    assert len(requests) == 3
    shown = [user_text(r).split("# Code", 1)[1].split("# ", 1)[0] for r in requests]
    assert "score > 90" in shown[0]  # round 1: the original
    assert "score >= 90" in shown[1]  # round 2: built on the partial fix (it passed more tests)
    assert "score > 90" in shown[2]  # round 3: round 2 made no progress, so back to the original
    assert "- round 1:" in user_text(requests[2]) and "- round 2:" in user_text(requests[2])


def test_an_exception_raised_in_project_code_is_shown_with_where_it_was_raised(tmp_path: Path) -> None:
    """The failing test's line alone (``detected = detect_cycle(node7)``) does not say what went wrong: the request
    also shows the project line that raised and pytest's ``E`` line with the exception."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cycle.py").write_text(
        "def detect_cycle(node):\n    hare = node\n    while True:\n        if hare.next is None:\n"
        "            return False\n        hare = hare.next.next\n"
    )
    (repo / "test_cycle.py").write_text(
        "from cycle import detect_cycle\n\n\nclass Node:\n    def __init__(self, nxt=None):\n        self.next = nxt\n"
        "\n\ndef test_two_nodes():\n    assert detect_cycle(Node(Node())) is False\n"
    )
    fixed = (
        "def detect_cycle(node):\n    hare = node\n    while True:\n        if hare is None or hare.next is None:\n"
        "            return False\n        hare = hare.next.next\n"
    )
    with ScriptedServer({"write": [block(fixed)]}) as server:
        task = Task(repo=repo, text="detect_cycle crashes on a list of two nodes.", title="cycle")
        result = solve(task, settings(server.url), tmp_path / "run")
        text = user_text(chats(server)[0])
    assert result.status == "resolved", result.reason
    assert "FAILED test_cycle.py::test_two_nodes\n  >       assert detect_cycle(Node(Node())) is False\n" in text
    assert "  raised at cycle.py:4:\n  >           if hare.next is None:\n" in text
    assert "  E           AttributeError: 'NoneType' object has no attribute 'next'" in text
