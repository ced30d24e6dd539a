"""ModelClient on a real HTTP server: node tags, retries, Retry-After, one-line errors, budgets, secrets."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agent.budget import Budget, BudgetExceeded, Usage
from agent.config import ConfigError, Settings
from agent.model import NODE_HEADER, Completion, EndpointError, ModelClient
from tests.support.fake_server import ScriptedServer
from tools.errors import FatalError

KEY = "sk-mendloop-test-4f9a8c7e2b"
HELLO = [{"role": "user", "content": "hello there"}]


def client_for(url: str, records: list[dict[str, Any]] | None = None, **settings: Any) -> ModelClient:
    settings.setdefault("api_key", SecretStr(KEY))
    client = ModelClient(
        Settings(base_url=url, **settings), on_exchange=records.append if records is not None else None
    )
    client.backoff_base = 0.01  # keep retry tests fast; Retry-After is still honoured as sent
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_request_is_tagged_with_its_node(scripted_server: ScriptedServer) -> None:
    scripted_server.add("reproduce", "a test")
    scripted_server.add("write", "a fix")
    client = client_for(scripted_server.url)
    assert client.complete(HELLO, node="reproduce").content == "a test"
    assert client.complete(HELLO, node="write").content == "a fix"
    assert scripted_server.nodes() == ["reproduce", "write"]
    headers = {k.lower(): v for k, v in scripted_server.requests[-1].headers.items()}
    assert headers[NODE_HEADER.lower()] == "write"


def test_request_parameters_are_sent_and_n_never_is(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", "ok")
    client = client_for(scripted_server.url, temperature=0.3, max_completion_tokens=77, extra_body={"seed": 5})
    client.complete(HELLO, node="write", tools=[{"type": "function", "function": {"name": "submit"}}])
    body = scripted_server.requests[-1].body
    assert body["temperature"] == 0.3 and body["top_p"] == 0.95
    assert body["max_tokens"] == 77 and body["seed"] == 5
    assert body["tool_choice"] == "auto" and body["tools"][0]["function"]["name"] == "submit"
    assert "n" not in body
    client.complete(HELLO, node="write", temperature=1.0)
    assert scripted_server.requests[-1].body["temperature"] == 1.0
    assert "tools" not in scripted_server.requests[-1].body


def test_a_500_is_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", {"status": 500}, "recovered")
    records: list[dict[str, Any]] = []
    client = client_for(scripted_server.url, records)
    assert client.complete(HELLO, node="write").content == "recovered"
    assert len(scripted_server.requests) == 2
    assert records[-1]["attempts"] == 2
    assert client.usage.calls == 1  # a failed attempt is not a call


def test_retry_after_is_honoured_on_429(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", {"status": 429, "headers": {"Retry-After": "1"}}, "after the wait")
    client = client_for(scripted_server.url)
    assert client.complete(HELLO, node="write").content == "after the wait"
    first, second = scripted_server.requests
    assert second.received_at - first.received_at >= 1.0


def test_retry_after_is_capped(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", {"status": 429, "headers": {"Retry-After": "3600"}}, "ok")
    client = client_for(scripted_server.url)
    client.retry_after_cap = 0.2
    started = time.monotonic()
    assert client.complete(HELLO, node="write").content == "ok"
    assert time.monotonic() - started < 5


def test_retries_exhausted_is_one_endpoint_error(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", {"status": 502})
    client = client_for(scripted_server.url, max_retries=2)
    with pytest.raises(EndpointError) as caught:
        client.complete(HELLO, node="write")
    message = caught.value.message
    assert "\n" not in message
    assert "kept failing: HTTP 502" in message and "(3 attempts)" in message
    assert len(scripted_server.requests) == 3
    assert caught.value.exit_code == 2


def test_unreachable_endpoint_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = client_for(url, max_retries=1)
    with pytest.raises(EndpointError) as caught:
        client.complete(HELLO, node="write")
    message = caught.value.message
    assert message.startswith(f"cannot reach the model endpoint at {url}: connection refused")
    assert "\n" not in message and KEY not in message


def test_no_base_url_says_how_to_set_one() -> None:
    with pytest.raises(EndpointError, match="no model endpoint configured: pass --base-url or set MENDLOOP_BASE_URL"):
        ModelClient(Settings())


def test_unknown_model_lists_what_the_endpoint_offers() -> None:
    with ScriptedServer({"*": ["hi"]}, models=("qwen2.5-coder", "facebook/cwm-q4")) as server:
        client = client_for(server.url, model="facebook/cwm")
        with pytest.raises(EndpointError) as caught:
            client.complete(HELLO, node="write")
    assert caught.value.message == (
        f"model 'facebook/cwm' not found at {server.url}; the endpoint offers: qwen2.5-coder, facebook/cwm-q4"
    )
    assert [r.path for r in server.requests] == ["/v1/chat/completions", "/v1/models"]


def test_auth_failure_names_the_key_setting_without_the_key(scripted_server: ScriptedServer) -> None:
    message = f"Incorrect API key provided: {KEY}"
    scripted_server.add("write", {"status": 401, "body": {"error": {"message": message, "type": "auth"}}})
    records: list[dict[str, Any]] = []
    client = client_for(scripted_server.url, records)
    with pytest.raises(EndpointError) as caught:
        client.complete(HELLO, node="write")
    text = caught.value.message
    assert "rejected the API key (HTTP 401" in text and "MENDLOOP_API_KEY" in text
    assert KEY not in text and KEY not in str(caught.value)
    assert len(scripted_server.requests) == 1  # never retried
    assert records and KEY not in json.dumps(records)


def test_the_key_never_reaches_exchange_records(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", f"the server echoes {KEY} back")
    records: list[dict[str, Any]] = []
    client = client_for(scripted_server.url, records)
    client.complete([{"role": "user", "content": f"my key is {KEY}"}], node="write")
    (record,) = records
    assert set(record) >= {"node", "messages", "params", "response", "usage", "duration"}
    assert record["node"] == "write" and record["response"]["content"] == "the server echoes *** back"
    assert KEY not in json.dumps(record)
    assert "headers" not in json.dumps(record).lower()


def test_budget_of_two_calls_stops_the_third_before_any_request(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", "one", "two", "three")
    client = client_for(scripted_server.url, max_model_calls=2)
    client.complete(HELLO, node="write")
    client.complete(HELLO, node="write")
    with pytest.raises(BudgetExceeded, match="2 of 2 calls"):
        client.complete(HELLO, node="write")
    assert len(scripted_server.requests) == 2


def test_token_and_cost_budgets(scripted_server: ScriptedServer) -> None:
    scripted_server.add("*", {"content": "x", "usage": {"prompt_tokens": 600, "completion_tokens": 400}})
    client = client_for(scripted_server.url, max_total_tokens=1500, price_prompt=1.0, price_completion=2.0)
    client.complete(HELLO, node="write")
    assert client.usage.cost == pytest.approx((600 * 1.0 + 400 * 2.0) / 1e6)
    client.complete(HELLO, node="write")
    with pytest.raises(BudgetExceeded, match="token budget spent: 2000 of 1500"):
        client.complete(HELLO, node="write")
    assert len(scripted_server.requests) == 2


def test_usage_is_summed_per_node_and_survives_a_resume(scripted_server: ScriptedServer) -> None:
    scripted_server.add("reproduce", {"content": "t", "usage": {"prompt_tokens": 10, "completion_tokens": 1}})
    scripted_server.add("write", {"content": "w", "usage": {"prompt_tokens": 20, "completion_tokens": 2}})
    client = client_for(scripted_server.url)
    for node in ("reproduce", "write", "write"):
        client.complete(HELLO, node=node)
    usage = client.usage
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.cost) == (3, 50, 5, None)
    assert usage.per_node == {
        "reproduce": {"calls": 1, "prompt_tokens": 10, "completion_tokens": 1},
        "write": {"calls": 2, "prompt_tokens": 40, "completion_tokens": 4},
    }
    resumed = ModelClient(
        Settings(base_url=scripted_server.url, max_model_calls=4),
        Usage.from_dict(json.loads(json.dumps(usage.to_dict()))),
    )
    resumed.complete(HELLO, node="write")
    with pytest.raises(BudgetExceeded):
        resumed.complete(HELLO, node="write")
    assert resumed.usage.per_node["write"]["calls"] == 3


def test_wall_time_budget_counts_from_started_at(scripted_server: ScriptedServer) -> None:
    scripted_server.add("*", "never sent")
    client = ModelClient(Settings(base_url=scripted_server.url, max_wall_time=60), started_at=time.time() - 61)
    with pytest.raises(BudgetExceeded, match="time budget"):
        client.complete(HELLO, node="write")
    assert scripted_server.requests == []


def test_max_cost_without_prices_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_cost needs a price"):
        Budget(max_cost=1.0)
    assert Budget().cost_of(1000, 1000) is None
    assert not issubclass(BudgetExceeded, FatalError)  # the graph finishes; the run does not crash


def test_usage_merge_and_round_trip() -> None:
    a, b = Usage(), Usage()
    a.add("write", 5, 1, 0.5)
    b.add("write", 3, 2)
    b.add("verify", 1, 1)
    merged = a.merged(b)
    assert (merged.calls, merged.total_tokens, merged.cost) == (3, 13, 0.5)
    assert merged.per_node["write"] == {"calls": 2, "prompt_tokens": 8, "completion_tokens": 3}
    assert Usage.from_dict(merged.to_dict()) == merged
    assert a.calls == 1  # merged() changes neither side


def test_tool_calls_and_reasoning_come_back(scripted_server: ScriptedServer) -> None:
    scripted_server.add(
        "write",
        {"content": None, "tool_calls": [{"id": "c1", "name": "edit", "arguments": {"path": "a.py"}}]},
    )
    completion = client_for(scripted_server.url).complete(HELLO, node="write")
    assert completion.content == "" and completion.finish_reason == "tool_calls"
    assert [(c.id, c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("c1", "edit", {"path": "a.py"})
    ]
    assert Completion.from_dict(completion.to_dict()) == completion


def test_mock_transport_fakes_the_endpoint_at_the_http_layer() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        message = {"role": "assistant", "content": "<think>\nhm\n</think>\ndone", "reasoning_content": None}
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "facebook/cwm",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                # no usage: the client estimates it so token budgets still mean something
            },
        )

    http_client = httpx.Client(transport=httpx.MockTransport(handler))
    client = ModelClient(Settings(base_url="http://model.test/v1", api_key=SecretStr(KEY)), http_client=http_client)
    completion = client.complete(HELLO, node="verify")
    assert completion.content.endswith("done")
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    assert seen[0].headers[NODE_HEADER] == "verify"
    assert seen[0].url.path == "/v1/chat/completions"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_slow_endpoint_times_out_and_is_retried_then_reported(scripted_server: ScriptedServer) -> None:
    scripted_server.add("write", {"content": "too late", "delay": 1.0})
    client = client_for(scripted_server.url, request_timeout=0.2, max_retries=1)
    with pytest.raises(EndpointError) as caught:
        client.complete(HELLO, node="write")
    assert "kept failing: timed out after 0.2 s (2 attempts)" in caught.value.message
    assert scripted_server.nodes() == ["write", "write"]
