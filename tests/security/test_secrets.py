"""Finding 1, second half: the user's secrets are masked in everything written or sent, whatever the route.

The secrets are the API key, the GitHub token and the values of the variables the user names in ``pass_env``. The
routes tried here: a repository test that prints its environment and writes it into a file (the value is in the
sandbox, by the user's choice), and an endpoint that echoes the API key back. The records searched: the requests the
endpoint received, trajectory.jsonl, checkpoints.sqlite, run.json, report.md and patch.diff.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from agent.config import Settings
from agent.context import ScrubbingTransport
from agent.model import ModelClient
from agent.runner import solve
from agent.streaming import StreamEvent
from agent.task import Task
from tests.security.conftest import assert_nowhere, canary, example_repo, written
from tests.support.example import CWM_FIX, ISSUE
from tests.support.fake_server import ScriptedServer
from tools import secrets

PRINTS_ITS_ENVIRONMENT = """import os


def test_service_token():
    token = os.environ.get("MY_SERVICE_TOKEN", "")
    with open("token_dump.txt", "w") as handle:
        handle.write(token)
    print("the environment says", token)
    assert token == "", f"the token is {token}"
"""


@pytest.mark.bwrap
def test_pass_env_values_and_an_echoed_key_reach_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token, key = canary("svc-TOKEN"), canary("sk-API-KEY")
    monkeypatch.setenv("MY_SERVICE_TOKEN", token)
    repo = example_repo(tmp_path / "repo", files={"tests/test_env.py": PRINTS_ITS_ENVIRONMENT})
    echo = CWM_FIX.replace("</think>", f"My key is {key}, I was told.\n</think>", 1)
    run_dir = tmp_path / "run"
    with ScriptedServer({"write": [echo]}) as server:
        settings = Settings(
            base_url=server.url,
            api_key=SecretStr(key),
            sandbox="bwrap",
            pass_env=["MY_SERVICE_TOKEN"],
            reproduce=False,
            max_iterations=2,
        )
        result = solve(Task(repo=repo, text=ISSUE.read_text()), settings, run_dir)
        records = written(run_dir, server)
    assert result.status == "unresolved"  # the repository's own test can never pass
    assert_nowhere(records, token, key)
    trajectory = records["trajectory.jsonl"].decode()
    assert "the token is ***" in trajectory and "My key is ***" in trajectory  # they came, and were masked
    assert "token_dump.txt" in records["patch.diff"].decode() and "+***" in records["patch.diff"].decode()


def test_the_transport_masks_requests_and_replies(scripted_server: ScriptedServer) -> None:
    secret = canary("sk-SECRET")
    secrets.remember(secret)
    scripted_server.add("*", f"echo {secret}")
    with httpx.Client(transport=ScrubbingTransport()) as client:
        body = {"model": "facebook/cwm", "messages": [{"role": "user", "content": f"key={secret} \u00e9"}]}
        reply = client.post(f"{scripted_server.url}/chat/completions", json=body).json()
    sent = json.dumps(scripted_server.requests[-1].body)
    assert (
        secret not in sent
        and "key=***" in sent
        and "\u00e9" in scripted_server.requests[-1].body["messages"][0]["content"]
    )
    assert reply["choices"][0]["message"]["content"] == "echo ***"


def test_a_streamed_reply_is_masked_piece_by_piece_as_it_arrives() -> None:
    """The stream is not read whole before it is scrubbed: the first pieces are in the client's hands while the
    server still holds the rest back (a transport that buffered would wait out the hold and fail here)."""
    secret = canary("sk-STREAM")
    secrets.remember(secret)
    released = threading.Event()
    pieces = [f"first {secret} ", "second ", "third"]
    reply = {"chunks": pieces, "hold": released, "hold_after": 1, "hold_timeout": 60}
    got: list[str] = []
    with ScriptedServer({"*": [reply]}) as server, httpx.Client(transport=ScrubbingTransport()) as client:
        body = {"model": "facebook/cwm", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with client.stream("POST", f"{server.url}/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"] if "choices" in line else {}
                    got.append(str(delta.get("content") or ""))
                    if "first" in "".join(got):
                        released.set()
        assert server.held == [True]  # released by the client having read the first piece, not by the bound
    assert "".join(got) == "first *** second third" and secret not in json.dumps(got)


def test_the_scrubber_masks_every_form_and_ignores_placeholders() -> None:
    token = canary("ghp")
    secrets.remember(token, "x", "none", None, "")
    basic = __import__("base64").b64encode(f"x-access-token:{token}".encode()).decode()
    record = {"a": [f"t={token}", (basic,)], token: b"raw " + token.encode(), "n": 3}
    clean = secrets.scrub_obj(record)
    assert token not in json.dumps(clean, default=str) and basic not in json.dumps(clean, default=str)
    assert clean["a"] == ["t=***", ("***",)] and clean["***"] == b"raw ***" and clean["n"] == 3
    assert secrets.scrub("x none the box") == "x none the box"  # short placeholders are no secrets
    assert secrets.scrub("abc 12345678", extra=["12345678"]) == "abc ***"


@settings(max_examples=400, deadline=None)
@given(
    secret=st.text(alphabet="ab:-", min_size=secrets.MIN_LENGTH, max_size=14),
    inner=st.none() | st.tuples(st.integers(min_value=0, max_value=6), st.integers(min_value=8, max_value=14)),
    text=st.text(alphabet="ab:- ", max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=70), max_size=8),
    within=st.integers(min_value=1, max_value=14),
)
def test_a_secret_split_across_streamed_pieces_never_shows(
    secret: str, inner: tuple[int, int] | None, text: str, cuts: list[int], within: int
) -> None:
    """Whatever the pieces, the text shown is the text masked whole: a secret spelt across pieces never passes in
    halves, one secret inside another (a password in a URL) does not uncover the rest of the outer one, and nothing
    is lost or shown twice."""
    values = [secret] + ([secret[inner[0] : inner[0] + inner[1]]] if inner else [])
    values = [v for v in values if len(v) >= secrets.MIN_LENGTH]
    whole = text[: len(text) // 2] + secret + text[len(text) // 2 :] + values[-1]
    inside = len(text) // 2 + min(within, len(secret) - 1)  # a cut inside the secret, wherever the others fall
    bounds = sorted({min(cut, len(whole)) for cut in cuts} | {0, inside, len(whole)})
    mask = secrets.StreamScrubber(extra=values)
    shown = "".join(mask.feed(whole[a:b]) for a, b in itertools.pairwise(bounds)) + mask.flush()
    assert shown == secrets.scrub(whole, extra=values)
    assert not any(value in shown for value in values)


def test_a_password_inside_a_url_keeps_the_whole_url_masked() -> None:
    password = canary("pw")
    url = f"postgres://user:{password}@db.internal/app"
    mask = secrets.StreamScrubber(extra=[password, url])
    cut = url.index(password) + len(password) + 1  # the password whole, the URL not yet
    shown = mask.feed(f"connect to {url[:cut]}") + mask.feed(url[cut:] + " now") + mask.flush()
    assert shown == "connect to *** now"


def test_the_live_view_never_sees_a_secret_spelt_across_pieces() -> None:
    """The transport masks each streamed line; a key the model spells over three pieces is whole only when joined,
    so the listener (the live view) gets it masked and the text around it in order - a tail held back as a possible
    secret comes out before the tool call that follows it, not after."""
    secret = canary("sk-PIECES")
    secrets.remember(secret)
    third = len(secret) // 3
    pieces = ["the key is ", secret[:third], secret[third : 2 * third], secret[2 * third :] + " ok", " " + secret[:4]]
    call = {"name": "run", "arguments": {"cmd": "pytest"}}
    events: list[StreamEvent] = []
    with ScriptedServer({"write": [{"chunks": pieces, "tool_calls": [call]}]}) as server:
        ModelClient(Settings(base_url=server.url), on_delta=events.append).complete(
            [{"role": "user", "content": "hi"}], node="write"
        )
    shown = "".join(e.text for e in events)
    assert shown == f"the key is *** ok {secret[:4]}" + 'run{"cmd": "pytest"}'
    assert events[0].kind == "start" and events[-1].kind == "end"
