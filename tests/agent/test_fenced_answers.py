"""The answer small models give - the fixed function in a ```python block, no path - repairs through the whole loop.

Through the real scripted HTTP server (replies routed by the X-Mendloop-Node header; the write node's is "write"),
a real git repository in tmp and the local sandbox running pytest, with ``dialect="openai"`` (fresh rounds). A
fenced function is placed by name and touches nothing else; at round 1 it resolves a one-file task in one model
call; a block that matches no definition, or several, is an observation naming what was looked for, nothing is
written, and the next request of the same round (at a higher temperature) says so in one line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.runner import solve
from agent.task import Task
from tests.support.example import ISSUE, assert_patch_repairs, make_repo
from tests.support.fake_server import RecordedRequest, ScriptedServer

TASK = ISSUE.read_text()
CORE = Path(__file__).resolve().parents[2] / "examples" / "buggy_project" / "stats" / "core.py"
MEDIAN_BUGGY = CORE.read_text()[CORE.read_text().index("def median") :]
MEDIAN_FIXED = '''def median(values):
    """The middle value of the sorted list; the mean of the two middle values when the count is even."""
    if not values:
        raise ValueError("median() of an empty list")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2 == 0:
        return (ordered[middle - 1] + ordered[middle]) / 2
    return ordered[middle]
'''


def fenced(code: str, prose: str = "The even case must average the two middle values. Here is the fixed code:") -> str:
    return f"{prose}\n\n```python\n{code}```\n"


def settings(url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "base_url": url,
        "sandbox": "local",
        "dialect": "openai",
        "reproduce": False,
        "max_iterations": 2,
        **extra,
    }
    return Settings.model_validate(values)


def chat(server: ScriptedServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def last_user(request: RecordedRequest) -> str:
    content: Any = request.body["messages"][-1]["content"]
    assert isinstance(content, str)
    return content


@pytest.mark.parametrize(
    "prose",
    [
        "The even case must average the two middle values. Here is the fixed function:",
        "`stats/core.py`:",  # the prompt's own way of showing a file, mimicked: still only median is replaced
    ],
    ids=["no-path", "after-the-path"],
)
def test_a_fenced_function_repairs_a_two_function_module_and_leaves_the_other_alone(tmp_path: Path, prose: str) -> None:
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"write": [fenced(MEDIAN_FIXED, prose)]}) as server:
        result = solve(Task(repo=repo, text=TASK, title="median"), settings(server.url), tmp_path / "run")
    assert result.status == "resolved", result.reason
    patch_file = tmp_path / "fix.patch"
    patch_file.write_text(result.patch)
    assert_patch_repairs(patch_file, tmp_path)
    # byte for byte: the module is the original with median replaced, mean and the docstring untouched
    pristine = make_repo(tmp_path / "pristine")
    subprocess.run(["git", "apply", str(patch_file)], cwd=pristine, check=True)
    original = CORE.read_text()
    assert (pristine / "stats" / "core.py").read_text() == original.replace(MEDIAN_BUGGY, MEDIAN_FIXED)
    assert "def mean" not in result.patch and "stats/__init__.py" not in result.patch


GCD = '''"""Greatest common divisor."""


def gcd(a, b):
    if b == 0:
        return a
    return gcd(a % b, b)
'''
GCD_TEST = """from gcd import gcd


def test_gcd_of_coprime_numbers():
    assert gcd(35, 21) == 7


def test_gcd_with_zero():
    assert gcd(5, 0) == 5
"""
GCD_FIXED = """def gcd(a, b):
    if b == 0:
        return a
    return gcd(b, a % b)
"""


def make_one_file_repo(dest: Path) -> Path:
    dest.mkdir(parents=True)
    (dest / "gcd.py").write_text(GCD)
    (dest / "test_gcd.py").write_text(GCD_TEST)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "initial"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def test_a_fenced_function_at_round_one_resolves_a_one_file_task_in_one_model_call(tmp_path: Path) -> None:
    repo = make_one_file_repo(tmp_path / "repo")
    task = Task(repo=repo, text="gcd(35, 21) recurses forever instead of returning 7.", title="gcd")
    with ScriptedServer({"write": [fenced(GCD_FIXED, "The arguments of the recursive call are swapped.")]}) as server:
        result = solve(task, settings(server.url, max_iterations=3), tmp_path / "run")
        requests = chat(server)
    assert result.status == "resolved", result.reason
    assert server.nodes() == ["write"]  # one model call, the write node's
    assert len(requests) == 1
    assert "gcd(b, a % b)" in result.patch and "test_gcd.py" not in result.patch
    assert "```python" in last_user(requests[0]) and "def gcd(a, b):" in last_user(requests[0])


NO_MATCH = fenced("def middle(values):\n    ordered = sorted(values)\n    return ordered[len(ordered) // 2]\n")


def assert_refused_then_repaired(requests: list[RecordedRequest], names: tuple[str, ...]) -> None:
    """The second request is the first again (same round) at a higher temperature, plus one line naming what the
    block held and where it was looked for."""
    first, second = requests[0], requests[1]
    assert second.body["temperature"] > first.body["temperature"]
    assert second.body["messages"][:-1] == first.body["messages"][:-1]
    before, after = last_user(first), last_user(second)
    assert after.startswith(before.rstrip())
    note = after[len(before.rstrip()) :].strip()
    assert "\n" not in note, note
    assert "nothing was written" in note
    for name in names:
        assert name in note, note


def test_a_block_matching_no_definition_is_an_observation_and_nothing_is_written(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with ScriptedServer({"write": [NO_MATCH, fenced(MEDIAN_FIXED)]}) as server:
        result = solve(Task(repo=repo, text=TASK, title="median"), settings(server.url), tmp_path / "run")
        requests = chat(server)
    assert len(requests) == 2
    assert_refused_then_repaired(requests, ("looked for middle", "stats/core.py"))
    assert result.status == "resolved", result.reason
    assert "def middle" not in result.patch  # the refused block was never written
    assert "ordered[middle - 1]" in result.patch


HELPER = "def _clean(values):\n    return [v for v in values if v is not None]\n"


def test_a_block_several_files_define_is_an_observation_naming_them(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    for name in ("extra.py", "more.py"):
        (repo / "stats" / name).write_text(HELPER)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "helpers"],
        cwd=repo,
        check=True,
    )
    ambiguous = fenced("def _clean(values):\n    return [v for v in values if v]\n")
    with ScriptedServer({"write": [ambiguous, fenced(MEDIAN_FIXED)]}) as server:
        result = solve(Task(repo=repo, text=TASK, title="median"), settings(server.url), tmp_path / "run")
        requests = chat(server)
    assert len(requests) == 2
    assert_refused_then_repaired(requests, ("_clean", "stats/extra.py", "stats/more.py"))
    assert result.status == "resolved", result.reason
    assert "extra.py" not in result.patch and "more.py" not in result.patch
