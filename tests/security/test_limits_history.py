"""Finding 9 (history): what a request sends again is bounded, whatever the answers and observations were.

Before: every turn of the conversation resent the whole history; three 10 MB answers went out again on every call.
The cut keeps the system prompt, the first request and the latest turns, and says what was left out.

``bounded_history`` is the function a model turn is to call before sending (``agent.nodes.common.ask``, where the
conversation goes out; that call is left to the rewrite of the nodes).
"""

from __future__ import annotations

from typing import Any

from agent.config import Settings
from agent.nodes.prompting import bounded_history


def conversation(answer_chars: int, turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful programmer."},
        {"role": "user", "content": "median() is wrong for even-sized lists. Fix it."},
    ]
    for turn in range(turns):
        messages.append({"role": "assistant", "content": f"answer {turn} " + "x" * answer_chars})
        messages.append({"role": "user", "content": f"observation {turn}: the tests still fail"})
    return messages


def size(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages)


def test_ten_megabyte_answers_are_not_sent_again_whole() -> None:
    messages = conversation(10_000_000, 3)
    sent = bounded_history(messages, Settings(), None)
    assert size(messages) > 30_000_000
    assert size(sent) <= Settings().max_history_chars + 2_000
    assert sent[0] == messages[0] and sent[1]["content"].startswith(messages[1]["content"])
    assert sent[-1]["content"] == "observation 2: the tests still fail"  # the latest turn is what matters


def test_the_endpoint_window_wins_when_it_is_known() -> None:
    messages = conversation(50_000, 6)
    sent = bounded_history(messages, Settings(max_completion_tokens=1024), 8192)
    assert size(sent) < 8192 * 3
    assert "left out to fit the model's context" in sent[1]["content"]
    assert sent[-1] == messages[-1]


def test_a_short_conversation_goes_out_as_it_is() -> None:
    messages = conversation(1_000, 2)
    assert bounded_history(messages, Settings(), None) == messages
