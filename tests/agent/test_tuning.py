"""``tuning = "auto"``: a small model behind llama.cpp's server gets the loop profile bench measured best, for every
knob the user did not set; a flag always wins; other endpoints and ``manual`` are left alone.

Through the real scripted server, which answers /props and /v1/models as llama-server does (its context, and the
model's parameter count in ``meta``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import SMALL_MODEL_PROFILE, load_settings
from agent.runner import solve
from agent.task import Task
from tests.support.example import ISSUE, make_repo
from tests.support.fake_server import RecordedRequest, ScriptedServer

FIX = (
    "```python\ndef median(values):\n"
    '    """The middle value of the sorted list; the mean of the two middle values when the count is even."""\n'
    "    if not values:\n"
    '        raise ValueError("median() of an empty list")\n'
    "    ordered = sorted(values)\n"
    "    middle = len(ordered) // 2\n"
    "    if len(ordered) % 2 == 0:\n"
    "        return (ordered[middle - 1] + ordered[middle]) / 2\n"
    "    return ordered[middle]\n```\n"
)
SMALL = 1_777_088_000  # Qwen2.5-Coder-1.5B, as llama-server reports it


def writes(server: ScriptedServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def repair(tmp_path: Path, server: ScriptedServer, **flags: Any) -> Any:
    repo = make_repo(tmp_path / "repo")
    settings = load_settings(None, {"base_url": server.url, "sandbox": "local", **flags}, environ={})
    return solve(Task(repo=repo, text=ISSUE.read_text(), title="median"), settings, tmp_path / "run")


def test_a_small_local_model_gets_the_measured_profile(tmp_path: Path) -> None:
    with ScriptedServer({"*": [FIX] * 8}, models=("*",), n_params=SMALL) as server:
        result = repair(tmp_path, server)
        first = writes(server)[0].body
    assert result.status == "resolved", result.reason
    assert first.get("n") == SMALL_MODEL_PROFILE["candidates"]
    assert first["temperature"] == SMALL_MODEL_PROFILE["sample_temperature"]
    assert first["max_tokens"] <= SMALL_MODEL_PROFILE["max_completion_tokens"]
    assert "tools" not in first  # the openai dialect's fresh rounds ask for code, not tool calls


def test_a_flag_wins_over_the_profile(tmp_path: Path) -> None:
    with ScriptedServer({"*": [FIX] * 8}, models=("*",), n_params=SMALL) as server:
        repair(tmp_path, server, candidates=1, temperature=0.1)
        first = writes(server)[0].body
    assert "n" not in first and first["temperature"] == 0.1


def test_manual_tuning_and_large_models_are_left_alone(tmp_path: Path) -> None:
    with ScriptedServer({"*": [FIX] * 8}, models=("*",), n_params=SMALL) as server:
        repair(tmp_path / "a", server, tuning="manual", dialect="openai")
        manual = writes(server)[0].body
    with ScriptedServer({"*": [FIX] * 8}, models=("*",), n_params=32_000_000_000) as server:
        repair(tmp_path / "b", server, dialect="openai")
        large = writes(server)[0].body
    for body in (manual, large):
        assert "n" not in body and body["temperature"] == 0.6  # Settings' own defaults
