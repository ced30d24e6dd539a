"""Finding 7: the endpoint's bytes are not trusted - a reply that is not a chat completion is retried like a 5xx and
then stops the run with one line naming the endpoint and what came back; a hung endpoint is bounded by
``--request-timeout`` and ``--max-time``.

Before: a 200 reply that was not JSON, not UTF-8 or the wrong shape was an "internal error", never retried; a hung
endpoint was still being waited on at 90 s with ``--max-time 20`` (600 s x 5 attempts by default, and no flag).

The endpoint here is a real HTTP server on 127.0.0.1 that answers every chat request with the same bytes, or never.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.model import EndpointError, ModelClient
from tests.security.robust_support import error_lines, run_cli
from tests.support.example import make_repo


class GarbageEndpoint:
    """Answers POST .../chat/completions with ``body`` (status 200), or holds the request open (``hang``)."""

    def __init__(self, body: bytes = b"", *, hang: bool = False, content_type: str = "application/json") -> None:
        self.body = body
        self.hang = hang
        self.content_type = content_type
        self.posts = 0
        self._release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:  # /props, /models: the context probe gets nothing useful
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint.posts += 1
                if endpoint.hang:
                    endpoint._release.wait(600)
                    return
                self.send_response(200)
                self.send_header("Content-Type", endpoint.content_type)
                self.send_header("Content-Length", str(len(endpoint.body)))
                self.end_headers()
                self.wfile.write(endpoint.body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client that gave up on a hung request

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> GarbageEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def client(url: str, **settings: Any) -> ModelClient:
    model = ModelClient(Settings(base_url=url, **settings))
    model.backoff_base = 0.01  # retries without the production waits
    return model


GARBAGE = [
    pytest.param(b"<html><body>502 Bad Gateway</body></html>", "not JSON", "<html><body>502 Bad Gateway", id="html"),
    pytest.param(b"\xff\xfe\xfd\x00garbage", "not JSON", "\\xff\\xfe\\xfd\\x00garbage", id="not-utf8"),
    pytest.param(b"", "not JSON", "0 bytes", id="empty"),
    pytest.param(b'{"id": "x", "object": "chat.completion"}', "no choices", '{"id": "x"', id="no-choices"),
    pytest.param(b'{"choices": "nope"}', "no choices", '{"choices": "nope"}', id="choices-not-a-list"),
    pytest.param(b'{"choices": [{"message": "hi"}]}', "a choice without a message", "message", id="message-str"),
    pytest.param(b'{"choices": [{"message": {"content": 7}}]}', "wrong type", "content", id="content-int"),
    pytest.param(b"[1, 2, 3]", "a JSON list", "[1, 2, 3]", id="a-list"),
    pytest.param(b'{"error": {"message": "model is loading"}}', "model is loading", "error", id="error-object"),
]


@pytest.mark.parametrize(("body", "why", "shown"), GARBAGE)
def test_a_reply_that_is_not_a_chat_completion_is_retried_then_one_line(body: bytes, why: str, shown: str) -> None:
    with GarbageEndpoint(body) as endpoint:
        model = client(endpoint.url, max_retries=2)
        with pytest.raises(EndpointError) as err:
            model.complete([{"role": "user", "content": "hi"}], node="write")
        posts = endpoint.posts
    message = err.value.message
    assert posts == 3  # retried like a 5xx: 1 + max_retries attempts
    assert message.startswith(f"the model endpoint at {endpoint.url} kept failing: the reply is not ")
    assert why in message and shown in message and "(3 attempts)" in message
    assert "\n" not in message and len(message) < 400


def test_a_long_garbage_reply_shows_only_its_first_bytes() -> None:
    with GarbageEndpoint(b"<html>" + b"x" * 100_000) as endpoint, pytest.raises(EndpointError) as err:
        client(endpoint.url, max_retries=0).complete([{"role": "user", "content": "hi"}], node="write")
    assert "100006 bytes" in err.value.message and "..." in err.value.message and len(err.value.message) < 400


def test_garbage_ends_a_run_with_one_line_naming_the_endpoint(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with GarbageEndpoint(b"\x89PNG\r\n\x1a\n not a completion") as endpoint:
        done = run_cli(
            "solve", "--repo", str(repo), "--task", "median is wrong", "--sandbox", "local", "--no-reproduce",
            "--out", str(tmp_path / "run"), "--base-url", endpoint.url, env={"MENDLOOP_MAX_RETRIES": "1"},
        )  # fmt: skip
        posts = endpoint.posts
    assert done.returncode == 2, done.stderr[-2000:]
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "internal error" not in done.stderr, done.stderr[-2000:]
    assert endpoint.url in lines[0] and "the reply is not JSON" in lines[0] and "\\x89PNG\\r\\n\\x1a\\n" in lines[0]
    assert posts == 2
    # the failed exchange is on record, and the record is whole
    records = [json.loads(line) for line in (tmp_path / "run" / "trajectory.jsonl").read_text().splitlines()]
    assert records and "the reply is not JSON" in records[-1]["error"]


def test_max_time_bounds_a_hung_endpoint_and_the_run_ends_unresolved(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with GarbageEndpoint(hang=True) as endpoint:
        started = time.monotonic()
        done = run_cli(
            "solve", "--repo", str(repo), "--task", "median is wrong", "--sandbox", "local", "--no-reproduce",
            "--out", str(tmp_path / "run"), "--base-url", endpoint.url, "--max-time", "15",
        )  # fmt: skip
        took = time.monotonic() - started
        posts = endpoint.posts
    assert done.returncode == 1, done.stderr[-2000:]  # unresolved, with the best attempt: not an error
    assert took < 60, f"the run waited {took:.0f}s on a hung endpoint with --max-time 15"
    assert posts == 1  # the budget is checked before a retry: no second wait
    report = (tmp_path / "run" / "report.md").read_text()
    assert "time budget spent" in report
    assert (tmp_path / "run" / "patch.diff").is_file()


def test_request_timeout_bounds_each_request(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    with GarbageEndpoint(hang=True) as endpoint:
        started = time.monotonic()
        done = run_cli(
            "solve", "--repo", str(repo), "--task", "median is wrong", "--sandbox", "local", "--no-reproduce",
            "--out", str(tmp_path / "run"), "--base-url", endpoint.url, "--request-timeout", "2",
            env={"MENDLOOP_MAX_RETRIES": "1"},
        )  # fmt: skip
        took = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and "timed out after 2 s (2 attempts)" in lines[0], done.stderr[-2000:]
    assert took < 60


@pytest.fixture
def hung() -> Iterator[GarbageEndpoint]:
    with GarbageEndpoint(hang=True) as endpoint:
        yield endpoint


def test_a_request_never_waits_past_the_wall_time(hung: GarbageEndpoint) -> None:
    from agent.budget import BudgetExceeded

    model = client(hung.url, max_wall_time=3.0, max_retries=4)  # request_timeout stays at its 600 s default
    started = time.monotonic()
    with pytest.raises(BudgetExceeded, match="time budget spent"):
        model.complete([{"role": "user", "content": "hi"}], node="write")
    assert time.monotonic() - started < 10
