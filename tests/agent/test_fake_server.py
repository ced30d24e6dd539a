"""The scripted server speaks OpenAI's protocol over real HTTP: routing, errors, streaming, CLI, log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.fake_server import NODE_HEADER, ScriptedServer, count_tokens


def chat(server: ScriptedServer, node: str | None, model: str = "facebook/cwm", **extra: object) -> httpx.Response:
    headers = {NODE_HEADER: node} if node else {}
    body = {"model": model, "messages": [{"role": "user", "content": "fix the bug please"}], **extra}
    return httpx.post(f"{server.url}/chat/completions", json=body, headers=headers, timeout=10)


def test_routes_by_node_header_and_repeats_the_last_reply(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", "first", "second")
    scripted_server.add("*", "fallback")
    contents = [
        chat(scripted_server, n).json()["choices"][0]["message"]["content"]
        for n in ("write", "reproduce", "write", "write", None)
    ]
    assert contents == ["first", "fallback", "second", "second", "fallback"]
    assert scripted_server.nodes() == ["write", "reproduce", "write", "write", ""]


def test_usage_is_computed_when_not_scripted(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", "two words", {"content": "x", "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
    first = chat(scripted_server, "write").json()["usage"]
    assert first["prompt_tokens"] == count_tokens("fix the bug please") == 4
    assert first["completion_tokens"] == 2
    assert chat(scripted_server, "write").json()["usage"] == {"prompt_tokens": 7, "completion_tokens": 3}


def test_tool_calls_status_headers_and_raw_body(scripted_server: ScriptedServer) -> None:
    scripted_server.add(
        "write",
        {"content": None, "tool_calls": [{"name": "edit", "arguments": {"path": "a.py"}}]},
        {"status": 503, "headers": {"Retry-After": "2"}},
        {"status": 200, "body": {"anything": True}},
    )
    message = chat(scripted_server, "write").json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    call = message["message"]["tool_calls"][0]
    assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {"path": "a.py"}
    failed = chat(scripted_server, "write")
    assert failed.status_code == 503 and failed.headers["retry-after"] == "2"
    assert failed.json()["error"]["type"] == "server_error"
    assert chat(scripted_server, "write").json() == {"anything": True}


def test_unknown_model_is_an_openai_shaped_404_and_models_are_listed() -> None:
    with ScriptedServer({"*": ["hi"]}, models=("a", "b")) as server:
        response = chat(server, "write", model="x")
        assert response.status_code == 404
        assert response.json()["error"] == {
            "message": "The model `x` does not exist",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
        listed = httpx.get(f"{server.url}/models", timeout=10).json()
        assert [m["id"] for m in listed["data"]] == ["a", "b"]


def test_authorization_is_not_recorded(scripted_server: ScriptedServer) -> None:
    scripted_server.add("*", "ok")
    client = openai.OpenAI(base_url=scripted_server.url, api_key="sk-top-secret", max_retries=0)
    client.chat.completions.create(model="facebook/cwm", messages=[{"role": "user", "content": "hi"}])
    recorded = scripted_server.requests[-1]
    assert recorded.body["messages"][0]["content"] == "hi"
    assert "sk-top-secret" not in json.dumps(recorded.to_dict())


def test_streaming_sends_the_whole_answer_as_one_chunk(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", "streamed answer")
    client = openai.OpenAI(base_url=scripted_server.url, api_key="k", max_retries=0)
    stream = client.chat.completions.create(
        model="facebook/cwm",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        extra_headers={NODE_HEADER: "write"},
    )
    chunks = list(stream)
    assert len(chunks) == 1
    assert chunks[0].choices[0].delta.content == "streamed answer"


def test_callable_script_sees_the_request() -> None:
    with ScriptedServer(lambda req: f"you are {req.node}") as server:
        assert chat(server, "verify").json()["choices"][0]["message"]["content"] == "you are verify"


def test_missing_script_is_a_clear_400(scripted_server: ScriptedServer) -> None:
    response = chat(scripted_server, "write")
    assert response.status_code == 400
    assert "no scripted reply for node 'write'" in response.json()["error"]["message"]


def test_cli_serves_a_script_and_logs_every_request(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"write": ["from the cli"]}))
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_server", "--script", str(script), "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        body = {"model": "facebook/cwm", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{url}/chat/completions", json=body, headers={NODE_HEADER: "write"}, timeout=10)
        assert reply.json()["choices"][0]["message"]["content"] == "from the cli"
    finally:
        proc.kill()  # the log must survive an abrupt end: every line is flushed as it is written
        proc.wait(timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["node"], r["path"]) for r in lines] == [("write", "/v1/chat/completions")]


def test_cli_rejects_a_malformed_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"write": "not a list"}))
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.fake_server", "--script", str(script)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "expected a JSON object" in done.stderr


@pytest.mark.parametrize("text,expected", [("", 0), ("a b", 2), ("x = f(1)", 6)])
def test_count_tokens(text: str, expected: int) -> None:
    assert count_tokens(text) == expected
