"""Finding 8: inputs are checked before any work - one line on stderr, exit 2, no model call, nothing run.

Before: ``--max-iterations 0`` / ``-3`` ran one round and exited 0, ``--command-timeout -5`` timed out every test,
``notaurl`` / ``ftp://...`` / ``http://[::1`` failed late or as internal errors, a batch ``repo`` path that does not
exist passed the up-front check, and an empty repository still spent model calls.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.security.robust_support import error_lines, run_cli
from tests.support.example import make_repo
from tests.support.fake_server import ScriptedServer

CWM_NO_EDIT = "I am not sure.\n</think>\nNothing to do."


@pytest.fixture
def server() -> ScriptedServer:
    srv = ScriptedServer({"*": [CWM_NO_EDIT]}).start()
    yield srv  # type: ignore[misc]
    srv.stop()


def solve(repo: Path, out: Path, *extra: str, url: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "solve", "--repo", str(repo), "--task", "median is wrong", "--sandbox", "local", "--out", str(out),
        "--base-url", url, *extra,
    )  # fmt: skip


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr[-2000:]
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--max-iterations", "0", ("max_iterations", "at least 1", "got 0")),
        ("--max-iterations", "-3", ("max_iterations", "at least 1")),
        ("--command-timeout", "-5", ("command_timeout", "greater than 0")),
        ("--command-timeout", "0", ("command_timeout", "greater than 0")),
        ("--request-timeout", "-1", ("request_timeout", "greater than 0")),
        ("--max-time", "0", ("max_wall_time", "greater than 0")),
        ("--max-file-size", "lots", ("max_file_size",)),
    ],
)
def test_bad_numbers_are_refused_before_any_work(
    flag: str, value: str, words: tuple[str, ...], tmp_path: Path, server: ScriptedServer
) -> None:
    repo = make_repo(tmp_path / "repo")
    done = solve(repo, tmp_path / "run", f"{flag}={value}", url=server.url)
    assert_refused(done, *words)
    assert server.requests == []  # not one model call
    assert not (tmp_path / "run").exists()  # and no run directory


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("notaurl", ("not an http(s) URL",)),
        ("ftp://x", ("not an http(s) URL",)),
        ("http://[::1", ("not a valid URL",)),
        ("http://", ("names no host",)),
        ("http://localhost:99999/v1", ("not a valid URL",)),
        ("http://user:hunter2-secret@[::1", ("not a valid URL",)),
    ],
)
def test_bad_base_urls_are_one_line(url: str, words: tuple[str, ...], tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    line = assert_refused(solve(repo, tmp_path / "run", url=url), "base_url", *words)
    assert "hunter2-secret" not in line  # a password in the URL is never repeated
    assert not (tmp_path / "run").exists()


def test_a_bad_url_from_the_environment_is_refused_too(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    done = run_cli(
        "solve", "--repo", str(repo), "--task", "x", "--sandbox", "local", "--out", str(tmp_path / "run"),
        env={"MENDLOOP_BASE_URL": "ftp://example.org/v1"},
    )  # fmt: skip
    assert_refused(done, "base_url", "ftp://example.org/v1")


@pytest.mark.parametrize("kind", ["git", "plain"])
def test_an_empty_repository_is_refused_before_any_model_call(
    kind: str, tmp_path: Path, server: ScriptedServer
) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    (repo / "src").mkdir()  # directories, but not one file
    if kind == "git":
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        (repo / "build").mkdir()
        (repo / "build" / "out.o").write_bytes(b"\0")  # untracked and ignored: the workspace would copy nothing
        (repo / ".git" / "info" / "exclude").write_text("build/\n")
    done = solve(repo, tmp_path / "run", url=server.url)
    assert_refused(done, "is empty")
    assert server.requests == []
    assert not (tmp_path / "run").exists()


def write_tasks(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("missing", ["./no-such-repo", "../nowhere/repo", "/no/such/place", "repos/typo/inner"])
def test_a_batch_repo_path_that_does_not_exist_fails_the_upfront_check(
    missing: str, tmp_path: Path, server: ScriptedServer
) -> None:
    good = make_repo(tmp_path / "good")
    tasks = write_tasks(
        tmp_path / "tasks.jsonl",
        [
            {"instance_id": "ok", "repo": str(good), "task": "median is wrong"},
            {"instance_id": "typo", "repo": missing, "task": "median is wrong"},
        ],
    )
    done = run_cli(
        "batch", str(tasks), "--out", str(tmp_path / "out"), "--base-url", server.url, "--sandbox", "local",
        "--no-progress",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{tasks}:2: repo {missing!r} looks like a path" in done.stderr
    assert "nothing was run" in done.stderr
    assert server.requests == [] and not (tmp_path / "out").exists()


def test_owner_name_slugs_still_pass_the_check(tmp_path: Path) -> None:
    from agent.doors.batch.tasks import parse_line

    task = parse_line(json.dumps({"instance_id": "a", "repo": "astropy/astropy", "task": "t"}), base_dir=tmp_path)
    assert task.repo_kind == "slug"
