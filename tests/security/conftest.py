"""What the attack tests share: hostile repositories, the real CLI in a controlled environment, canaries, and a search
of everything a run wrote or sent.

Why the CLI in a subprocess: ``/proc/self/environ`` holds a process's environment as it was started, so a canary
variable only gets there when a fresh process starts with it - exactly the production situation the attacks use.
The environment is the test's own: no ``MENDLOOP_*`` or token variables of the developer's, a private HOME and
``XDG_CONFIG_HOME`` (so no user config file of theirs applies), and ``DOCKER_HOST`` pointing nowhere unless a test
wants Docker (so ``--sandbox auto`` means bubblewrap).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from tests.support.example import ROOT, make_repo
from tests.support.fake_server import ScriptedServer

TEST_IMAGE = os.environ.get("MENDLOOP_TEST_IMAGE", "mendloop-base:bookworm")
_DROPPED = ("MENDLOOP_", "OPENAI_", "GITHUB_TOKEN", "GH_TOKEN", "XDG_CONFIG_HOME", "DOCKER_HOST")


def canary(label: str) -> str:
    """A unique value that must never show up in anything a run writes or sends."""
    return f"{label}-{uuid.uuid4().hex}"


def commit_all(repo: Path, message: str = "more") -> None:
    for args in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", message]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def example_repo(dest: Path, *, links: Mapping[str, str] | None = None, files: Mapping[str, str] | None = None) -> Path:
    """The example project as a real git repository, plus committed ``files`` and symbolic ``links``."""
    repo = make_repo(dest)
    for rel, text in (files or {}).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    for rel, target in (links or {}).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo / rel)
    if files or links:
        commit_all(repo, "hostile additions")
    return repo


def outside_secret(tmp_path: Path) -> tuple[Path, str]:
    """A private-key-like file outside any repository, holding a canary."""
    value = canary("OUTSIDE-KEY")
    path = tmp_path / "home" / ".ssh" / "id_rsa"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{value}\n-----END OPENSSH PRIVATE KEY-----\n")
    return path, value


def cli_env(tmp_path: Path, extra: Mapping[str, str] | None = None, *, docker: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(ROOT)})
    if not docker:
        env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    env.update(extra or {})
    return env


def run_cli(args: Iterable[str], env: Mapping[str, str], *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args],
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def written(run_dir: Path, server: ScriptedServer | None = None, *extra: str) -> dict[str, bytes]:
    """Everything a run wrote (every file of the run directory but the scratch trees) and every request the model
    endpoint received, by name."""
    out: dict[str, bytes] = {}
    for path in sorted(run_dir.rglob("*")) if run_dir.is_dir() else []:
        rel = path.relative_to(run_dir)
        if path.is_file() and not path.is_symlink() and not _scratch(rel):
            out[str(rel)] = path.read_bytes()
    if server is not None:
        out["requests to the endpoint"] = json.dumps([r.body for r in server.requests]).encode()
    for i, text in enumerate(extra):
        out[f"extra #{i}"] = text.encode()
    return out


def _scratch(rel: Path) -> bool:
    """The scratch trees hold the repository's own files (its links included) by design; records are elsewhere."""
    top = rel.parts[0]
    return top in ("workspace", "pristine", "candidates", "checkout") or top.startswith(".")


def assert_nowhere(records: Mapping[str, bytes], *needles: str) -> None:
    assert records, "nothing was recorded: the check would prove nothing"
    for name, data in records.items():
        for needle in needles:
            assert needle.encode() not in data, f"{needle!r} leaked into {name}"
