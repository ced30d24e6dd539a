"""doctor and sandbox selection, against a real HTTP server on 127.0.0.1 and the real sandbox probes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

import sandboxes.select as select
from agent.config import Settings
from agent.doors.doctor import Check, check_endpoint, render_doctor, run_doctor
from sandboxes.base import SandboxError, SandboxSpec
from sandboxes.local import LocalSandbox


class _Models(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"object": "list", "data": [{"id": "facebook/cwm"}]}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Models]]]:
    handler = type("Handler", (_Models,), {"status": 200, "seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", handler
    httpd.shutdown()
    httpd.server_close()


def test_endpoint_ok_sends_key_to_models(server: tuple[str, type[_Models]]):
    url, handler = server
    check = check_endpoint(Settings(base_url=url + "/", api_key="sk-test"))
    assert check.ok, check.detail
    assert handler.seen == [("/v1/models", "Bearer sk-test")]


def test_endpoint_unauthorized_and_down(server: tuple[str, type[_Models]]):
    url, handler = server
    handler.status = 401
    check = check_endpoint(Settings(base_url=url))
    assert not check.ok and "401" in check.detail and "API_KEY" in check.fix
    down = check_endpoint(Settings(base_url="http://127.0.0.1:9/v1"))
    assert not down.ok and "ConnectError" in down.detail


def test_endpoint_missing_base_url():
    check = check_endpoint(Settings())
    assert not check.ok and "MENDLOOP_BASE_URL" in check.fix


def test_local_setup_needs_only_endpoint_and_sandbox(server: tuple[str, type[_Models]]):
    url, _ = server
    checks = run_doctor(Settings(base_url=url, sandbox="local", image="no-such-image:never"))
    by_name = {c.name: c for c in checks}
    assert {"model endpoint", "docker daemon", "docker image", "bubblewrap", "sandbox"} <= set(by_name)
    assert by_name["local runs a command"].ok and by_name["local runs a command"].required  # a real command ran
    assert not by_name["docker image"].ok and not by_name["docker image"].required
    text, code = render_doctor(checks)
    assert code == 0, text
    assert "[warn] docker image" in text and "all required checks passed" in text


@pytest.mark.bwrap
def test_bwrap_setup_requires_bubblewrap(server: tuple[str, type[_Models]]):
    url, _ = server
    checks = run_doctor(Settings(base_url=url, sandbox="bwrap"))
    bwrap = next(c for c in checks if c.name == "bubblewrap")
    assert bwrap.ok and bwrap.required
    assert render_doctor(checks)[1] == 0


def test_render_fails_on_a_required_check():
    checks = [Check("model endpoint", False, "no base_url configured", "set --base-url"), Check("x", True, "fine")]
    text, code = render_doctor(checks)
    assert code == 1
    assert "[FAIL] model endpoint" in text and "fix: set --base-url" in text and "failed: model endpoint" in text


# --- sandbox selection ---------------------------------------------------------------------------------------


def test_explicit_kinds_resolve_as_given_and_unknown_fails():
    assert select.resolve_kind("local") == "local"
    with pytest.raises(SandboxError, match="unknown sandbox"):
        select.resolve_kind("chroot")


def test_auto_prefers_docker_then_bwrap_then_fails(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(select, "docker_works", lambda: True)
    assert select.resolve_kind("auto") == "docker"
    monkeypatch.setattr(select, "docker_works", lambda: False)
    monkeypatch.setattr(select, "bwrap_works", lambda: True)
    assert select.resolve_kind("auto") == "bwrap"
    monkeypatch.setattr(select, "bwrap_works", lambda: False)
    with pytest.raises(SandboxError, match="no sandbox available") as err:
        select.resolve_kind("auto")
    assert "--sandbox local" in str(err.value)


@pytest.mark.bwrap
def test_bwrap_probe_really_runs_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    select.bwrap_works.cache_clear()
    assert select.bwrap_works()
    select.bwrap_works.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    try:
        assert not select.bwrap_works()  # present but broken counts as missing
    finally:
        select.bwrap_works.cache_clear()


def test_docker_probe_treats_import_errors_as_unavailable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(__import__("sys").modules, "sandboxes.docker", None)
    assert select.docker_works() is False


def test_open_sandbox_opens_the_named_backend(tmp_path: Path):
    box = select.open_sandbox(SandboxSpec(kind="local"), tmp_path)
    try:
        assert isinstance(box, LocalSandbox)
        assert box.run("echo opened").output == "opened\n"
    finally:
        box.close()
