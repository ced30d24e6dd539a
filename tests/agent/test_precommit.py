"""The pre-commit front door, driven by the real ``pre-commit`` package in real git repositories.

The hook is a ``repo: local`` / ``language: system`` hook running this interpreter's ``-m agent.cli.main fix`` (no
venv to build); the model is the scripted HTTP server. What is promised: a failing commit is blocked and repaired in
the working tree, a passing one costs no model request, an unreachable endpoint blocks unless ``--fail-open``, and
unstaged work is never touched. (``test_precommit_manifest.py`` installs the hook through the real
``.pre-commit-hooks.yaml``.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_settings
from agent.doors.precommit import repair_task, run_checks
from tests.support.example import CWM_FIX, CWM_WRONG_FIX, REPLACE, ROOT, SEARCH, make_repo, tree_state
from tests.support.fake_server import ScriptedServer

STAGED = ('    """Arithmetic mean; raises ValueError on an empty list."""', '    """Arithmetic mean (staged edit)."""')
UNSTAGED = ('"""Descriptive statistics for lists of numbers."""', '"""Descriptive statistics (unstaged note)."""')
FIX_LINE = "+        return (ordered[middle - 1] + ordered[middle]) / 2"


def hook_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a developer's shell: no endpoint, not CI; pre-commit's cache and runs kept in tmp."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MENDLOOP_", "OPENAI_", "PRE_COMMIT"))}
    env.pop("CI", None)
    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid"}
    identity |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    env |= identity | {"PRE_COMMIT_HOME": str(tmp / "pre-commit-home"), "MENDLOOP_RUNS_DIR": str(tmp / "runs")}
    return env | extra


def sh(repo: Path, *args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=240)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def local_hook(hook_id: str, *args: str, verbose: bool = False) -> dict[str, Any]:
    return {
        "verbose": verbose,  # pre-commit shows a passing hook's output (the --fail-open warning) only when verbose
        "id": hook_id,
        "name": hook_id,
        "entry": f"{sys.executable} -m agent.cli.main fix",
        "language": "system",
        "types": ["python"],
        "require_serial": True,
        "args": ["--sandbox", "local", "--no-reproduce", *args],
    }


def hooked_repo(tmp: Path, env: dict[str, str], *hooks: dict[str, Any]) -> Path:
    """The example project (its median test fails) with a committed pre-commit config and the hook installed."""
    repo = make_repo(tmp / "repo")
    config = {"repos": [{"repo": "local", "hooks": list(hooks)}]}
    (repo / ".pre-commit-config.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    sh(repo, "git", "add", ".pre-commit-config.yaml", env=env)
    sh(repo, "git", "commit", "-qm", "pre-commit config", env=env)
    sh(repo, sys.executable, "-m", "pre_commit", "install", env=env)
    return repo


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def commits(repo: Path, env: dict[str, str]) -> int:
    return int(sh(repo, "git", "rev-list", "--count", "HEAD", env=env).stdout)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_failing_commit_is_blocked_repaired_and_unstaged_work_survives(tmp_path: Path) -> None:
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        env = hook_env(tmp_path)
        repo = hooked_repo(tmp_path, env, local_hook("mendloop", "--base-url", server.url))
        core = repo / "stats" / "core.py"
        edit(core, *STAGED)
        sh(repo, "git", "add", "stats/core.py", env=env)
        edit(core, *UNSTAGED)

        blocked = sh(repo, "git", "commit", "-m", "edit mean's docstring", env=env, check=False)
        output = blocked.stdout + blocked.stderr
        assert blocked.returncode != 0, output
        assert commits(repo, env) == 2
        assert "files were modified by this hook" in output
        assert FIX_LINE in output and "mendloop: fixed stats/core.py" in output
        assert server.nodes() == ["write"]
        text = core.read_text()
        assert FIX_LINE[1:] in text  # the fix is in the working tree...
        assert text.startswith(UNSTAGED[1]) and STAGED[1] in text  # ...next to the untouched unstaged note
        index = sh(repo, "git", "show", ":stats/core.py", env=env).stdout
        assert UNSTAGED[0] in index and FIX_LINE[1:] not in index  # nothing was staged behind the user's back

        sh(repo, "git", "add", "stats/core.py", env=env)
        sh(repo, "git", "commit", "-m", "edit mean's docstring", env=env)
        assert commits(repo, env) == 3
        assert server.nodes() == ["write"]  # the second run passed without asking the model
    committed = sh(repo, "git", "show", "HEAD:stats/core.py", env=env).stdout
    assert FIX_LINE[1:] in committed
    tests = sh(repo, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", env=env, check=False)
    assert tests.returncode == 0, tests.stdout[-2000:]


def test_passing_commit_makes_no_model_request(tmp_path: Path) -> None:
    log = tmp_path / "server.jsonl"
    with ScriptedServer({"*": ["nobody should ask"]}, log=log) as server:
        env = hook_env(tmp_path)
        repo = hooked_repo(tmp_path, env, local_hook("mendloop", "--base-url", server.url))
        edit(repo / "stats" / "core.py", SEARCH, REPLACE)
        sh(repo, "git", "add", "stats/core.py", env=env)
        done = sh(repo, "git", "commit", "-m", "fix median", env=env)
        assert "mendloop....." in done.stderr and "Passed" in done.stderr  # git shows hook output on stderr
        assert commits(repo, env) == 3
        assert server.requests == []
    assert log.read_text() == ""


def test_unreachable_endpoint_blocks_with_one_line_and_fail_open_lets_through(tmp_path: Path) -> None:
    env = hook_env(tmp_path)
    url = closed_port_url()
    repo = hooked_repo(
        tmp_path,
        env,
        local_hook("mendloop", "--base-url", url),
        local_hook("mendloop-open", "--base-url", url, "--fail-open", verbose=True),
    )
    edit(repo / "stats" / "core.py", *STAGED)
    sh(repo, "git", "add", "stats/core.py", env=env)
    before = tree_state(repo)

    blocked = sh(repo, "git", "commit", "-m", "x", env=env | {"SKIP": "mendloop-open"}, check=False)
    assert blocked.returncode != 0
    assert f"mendloop: error: the model endpoint {url} is unreachable: ConnectError" in blocked.stderr
    assert "tests/test_core.py::test_median_even" in blocked.stderr  # what fails is named too
    assert commits(repo, env) == 2 and tree_state(repo) == before

    passed = sh(repo, "git", "commit", "-m", "x", env=env | {"SKIP": "mendloop"})
    assert f"mendloop: warning: the model endpoint {url} is unreachable" in passed.stderr
    assert "--fail-open: not blocking" in passed.stderr
    assert commits(repo, env) == 3 and tree_state(repo) == before


def run_fix(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return sh(repo, sys.executable, "-m", "agent.cli.main", "fix", "--sandbox", "local", *args, env=env, check=False)


def test_direct_run_refuses_unstaged_files_unless_forced(tmp_path: Path) -> None:
    env = hook_env(tmp_path)
    repo = make_repo(tmp_path / "repo")
    core = repo / "stats" / "core.py"
    edit(core, *STAGED)
    sh(repo, "git", "add", "stats/core.py", env=env)
    edit(core, *UNSTAGED)
    before = tree_state(repo)
    with ScriptedServer({"write": [CWM_FIX]}) as server:
        refused = run_fix(repo, env, "stats/core.py", "--base-url", server.url)
        assert refused.returncode == 1, refused.stderr
        assert "stats/core.py has unstaged changes" in refused.stdout and "--force" in refused.stdout
        assert server.requests == [] and tree_state(repo) == before
    # --force gets past the refusal; here it next meets a CI runner without an endpoint (the repair itself is
    # covered under pre-commit above).
    in_ci = run_fix(repo, env | {"CI": "true"}, "stats/core.py", "--force")
    assert in_ci.returncode == 2, in_ci.stderr
    assert "mendloop: error: no model endpoint in this CI environment (CI is set" in in_ci.stderr
    assert "unstaged" not in in_ci.stdout + in_ci.stderr
    assert tree_state(repo) == before


def test_not_fixed_within_budget_says_what_still_fails_and_writes_nothing(tmp_path: Path) -> None:
    env = hook_env(tmp_path)
    repo = make_repo(tmp_path / "repo")
    edit(repo / "stats" / "core.py", *STAGED)
    sh(repo, "git", "add", "stats/core.py", env=env)
    before = tree_state(repo)
    with ScriptedServer({"write": [CWM_WRONG_FIX]}) as server:
        done = run_fix(repo, env, "stats/core.py", "--max-iterations", "1", "--no-traces", "--base-url", server.url)
        assert server.nodes() == ["write"]
    assert done.returncode == 1, done.stderr
    assert "mendloop: not fixed (not resolved after 1 round(s)" in done.stdout
    assert "Still failing: tests/test_core.py::test_median_even" in done.stdout
    assert tree_state(repo) == before


def test_lint_failures_are_run_in_the_sandbox_and_become_part_of_the_repair(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    lint = "python -c \"print('stats/core.py:1: E999 style is off'); raise SystemExit(1)\""
    settings = load_settings(repo, {"sandbox": "local", "lint_cmds": [lint]}, environ={})
    checks = run_checks(repo, settings, tmp_path / "scratch")
    assert [(c.kind, c.passed) for c in checks] == [("lint", False), ("test", False)]
    assert "E999 style is off" in checks[0].feedback
    assert checks[1].failed_tests == ["tests/test_core.py::test_median_even"]

    task = repair_task(repo, checks, ["stats/core.py"], settings)
    assert "E999 style is off" in task.text and "test_median_even" in task.text
    assert task.test_cmd == f"{lint} && python -m pytest -q"  # resolved only when the linter passes too
    assert task.fail_to_pass == ["tests/test_core.py::test_median_even"]
    assert task.editable == ["stats/core.py"]


@pytest.mark.parametrize("name", ["mendloop", "mendloop-manual"])
def test_the_hook_manifest_declares_what_the_issue_asks(name: str) -> None:
    import yaml

    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    hook = hooks[name]
    assert hook["entry"] == "mendloop fix" and hook["language"] == "python"
    assert hook["require_serial"] is True and hook["pass_filenames"] is True and hook["types"] == ["python"]
    assert hook.get("stages") == (["manual"] if name == "mendloop-manual" else None)
