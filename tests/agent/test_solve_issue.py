"""``solve --issue`` end to end: a fake GitHub API (real HTTP), bare git repositories as remotes, real clones,
commits with hooks and pushes. The repair is a recorded fake here (its own tests live with the runner), except in the
last test, which runs the real CLI in a subprocess against the scripted model server."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console

from agent.config import Settings
from agent.doors.issue.flow import IssueOutcome, IssueRequest, solve_issue
from agent.task import RunResult, Task
from tests.support.fake_github import FakeGitHub, init_bare_repo, run_git
from tools.errors import FatalError

TOKEN = "ghp_SolveIssueSecret0123456789abcdefXYZ"
TOKEN_B64 = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
REPO_ROOT = Path(__file__).resolve().parents[2]

PROJECT = {
    "pyproject.toml": '[tool.pytest.ini_options]\npythonpath = ["src"]\n',
    "src/calc.py": "def add(a, b):\n    return a - b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}
FIX = (
    "diff --git a/src/calc.py b/src/calc.py\n--- a/src/calc.py\n+++ b/src/calc.py\n"
    "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
)
WRITE_REPLY = (
    "I see the bug.\n</think>\n<tool: edit>\nsrc/calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n"
    "    return a + b\n>>>>>>> REPLACE\n</tool>"
)


@dataclass
class FakeRepair:
    """Stands in for agent.runner.solve: writes the run files and returns a fixed patch; records what it saw."""

    status: str = "resolved"
    tasks: list[Task] = field(default_factory=list)
    settings: list[Settings] = field(default_factory=list)
    token_in_env: list[bool] = field(default_factory=list)

    def __call__(self, task: Task, settings: Settings, run_dir: Path) -> RunResult:
        self.tasks.append(task)
        self.settings.append(settings)
        self.token_in_env.append(any(n in os.environ for n in ("GITHUB_TOKEN", "GH_TOKEN")))
        assert (task.repo / "src" / "calc.py").read_text().endswith("return a - b\n")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "patch.diff").write_text(FIX)
        (run_dir / "report.md").write_text(f"# Report\n\nFixed `add` for {task.instance_id}.\n")
        (run_dir / "trajectory.jsonl").write_text(json.dumps({"task": task.to_dict()}) + "\n")
        return RunResult(status=self.status, patch=FIX, run_dir=run_dir, iterations=1, tests_passed=1)  # type: ignore[arg-type]


@dataclass
class World:
    tmp: Path
    fake: FakeGitHub
    upstream: Path
    repair: FakeRepair
    out: Path
    console_text: io.StringIO

    def run(self, issue: str = "acme/widgets#7", *, token: str | None = TOKEN, **options: object) -> IssueOutcome:
        environ = {"GITHUB_TOKEN": token} if token else {}
        request = IssueRequest(issue=issue, github_api_url=self.fake.url, out=self.out, **options)  # type: ignore[arg-type]
        console = Console(file=self.console_text, width=300, force_terminal=False)
        return solve_issue(
            request, Settings(pass_env=["GITHUB_TOKEN", "HOME"]), solver=self.repair, environ=environ, console=console
        )

    def posts(self) -> list[str]:
        return [c.path for c in self.fake.calls if c.method == "POST"]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)  # the repair must not see it, even in os.environ
    no_gh = tmp_path / "bin"  # a logged-in `gh` on the developer's machine must not lend its token to the tests
    no_gh.mkdir()
    (no_gh / "gh").write_text("#!/bin/sh\nexit 1\n")
    (no_gh / "gh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{no_gh}{os.pathsep}{os.environ['PATH']}")
    upstream = init_bare_repo(tmp_path / "remotes" / "acme" / "widgets.git", PROJECT)
    with FakeGitHub(tmp_path / "gh", token=TOKEN) as fake:
        fake.add_repo("acme", "widgets", upstream)
        fake.add_repo("acme", "secret", upstream, private=True)
        fake.add_issue(
            "acme/widgets",
            7,
            "add() subtracts",
            "add(2, 3) returns -1.\n\n# Expected\n5",
            comments=[("maintainer", "Confirmed, see src/calc.py")],
        )
        fake.add_issue("acme/widgets", 8, "Fixed already", "old", state="closed")
        fake.add_issue("acme/widgets", 9, "A pull request", pull_request=True)
        fake.add_issue("acme/secret", 1, "private bug")
        yield World(tmp_path, fake, upstream, FakeRepair(), tmp_path / "run", io.StringIO())


def _local_clone(world: World) -> Path:
    local = world.tmp / "local"
    run_git("clone", "-q", str(world.upstream), str(local), cwd=world.tmp)
    run_git("remote", "set-url", "origin", "https://github.com/acme/widgets.git", cwd=local)
    return local


def _all_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def _assert_no_token(root: Path) -> int:
    seen = 0
    for path in _all_files(root):
        data = path.read_bytes()
        assert TOKEN.encode() not in data and TOKEN_B64.encode() not in data, path
        seen += 1
    return seen


# --- the whole way: issue -> clone -> repair -> branch -> push -> pull request -------------------------------------


def test_issue_to_pull_request(world: World) -> None:
    outcome = world.run(open_pr=True)
    assert outcome.exit_code == 0
    (task,) = world.repair.tasks
    assert task.instance_id == "acme__widgets-7" and task.title == "add() subtracts"
    assert task.text.startswith("add() subtracts\n\nadd(2, 3) returns -1.")
    assert "Comment by @maintainer:\nConfirmed, see src/calc.py" in task.text
    assert task.repo == world.out / "checkout"
    assert world.repair.token_in_env == [False] and os.environ["GITHUB_TOKEN"] == TOKEN
    assert "GITHUB_TOKEN" not in world.repair.settings[0].pass_env

    (pull,) = world.fake.pulls()
    request = next(c for c in world.fake.calls if c.method == "POST" and c.path.endswith("/pulls"))
    assert request.path == "/repos/acme/widgets/pulls" and request.authorized
    assert request.body["head"] == "mendloop/issue-7" and request.body["base"] == "main"
    assert request.body["draft"] is False and request.body["title"] == "Fix #7: add() subtracts"
    assert request.body["body"].startswith("# Report\n\nFixed `add` for acme__widgets-7.")
    assert request.body["body"].rstrip().endswith("Fixes #7")
    assert outcome.pr_url == pull["html_url"]

    message = run_git("log", "-1", "--format=%B", "refs/heads/mendloop/issue-7", cwd=world.upstream)
    assert message.startswith("Fix #7: add() subtracts\n") and "Fixes #7" in message
    fixed = run_git("show", "mendloop/issue-7:src/calc.py", cwd=world.upstream)
    assert fixed.endswith("return a + b\n")
    parent = run_git("rev-parse", "mendloop/issue-7^", cwd=world.upstream).strip()
    assert parent == run_git("rev-parse", "main", cwd=world.upstream).strip()
    assert {p.name for p in world.out.iterdir()} >= {"patch.diff", "report.md", "trajectory.jsonl", "checkout"}


def test_fork_when_the_token_cannot_push_and_draft(world: World) -> None:
    world.fake.repos["acme/widgets"].can_push = False
    outcome = world.run(open_pr=True, draft=True, branch="fix-add")
    assert world.posts() == ["/repos/acme/widgets/forks", "/repos/acme/widgets/pulls"]
    (pull,) = world.fake.pulls()
    assert pull["head"]["label"] == "mendloop-bot:fix-add" and pull["draft"] is True
    fork = world.fake.repos["mendloop-bot/widgets"]
    assert fork.branch_head("fix-add") is not None
    assert world.fake.repos["acme/widgets"].branch_head("fix-add") is None
    assert outcome.pushed_to == "mendloop-bot/widgets:fix-add"


def test_fork_when_the_push_is_denied(world: World) -> None:
    hook = world.upstream / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'Permission to acme/widgets.git denied to mendloop-bot.' >&2\nexit 1\n")
    hook.chmod(0o755)
    world.run(open_pr=True)
    assert world.posts() == ["/repos/acme/widgets/forks", "/repos/acme/widgets/pulls"]
    assert world.fake.pulls()[0]["head"]["label"] == "mendloop-bot:mendloop/issue-7"
    assert "forking" in world.console_text.getvalue()


def test_refused_push_is_an_error_and_opens_no_pull_request(world: World) -> None:
    hook = world.upstream / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'GH006: Protected branch update failed for refs/heads/x.' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(FatalError) as info:
        world.run(open_pr=True)
    assert "was refused" in info.value.message and "GH006: Protected branch update failed" in info.value.message
    assert world.fake.pulls() == [] and world.posts() == []


def test_unresolved_repair_changes_nothing(world: World) -> None:
    world.repair.status = "unresolved"
    outcome = world.run(open_pr=True)
    assert outcome.exit_code == 1
    assert world.posts() == [] and world.fake.repos["acme/widgets"].branch_head("mendloop/issue-7") is None
    assert any("not resolved" in note for note in outcome.notes)


# --- a local clone -----------------------------------------------------------------------------------------------


def test_number_with_local_clone_and_apply(world: World) -> None:
    local = _local_clone(world)
    outcome = world.run("#7", repo=local, apply=True)
    assert outcome.exit_code == 0 and world.repair.tasks[0].repo == local
    assert (local / "src" / "calc.py").read_text().endswith("return a + b\n")
    assert run_git("branch", "--show-current", cwd=local).strip() == "main"
    assert not (world.out / "checkout").exists()
    assert world.posts() == []


def test_local_clone_branch_commit_runs_hooks(world: World) -> None:
    local = _local_clone(world)
    hook = local / ".git" / "hooks" / "pre-commit"
    hook.write_text('#!/bin/sh\ntouch "$(git rev-parse --git-dir)/hook-ran"\n')
    hook.chmod(0o755)
    outcome = world.run("7", repo=local, branch="fix/add")
    assert (local / ".git" / "hook-ran").exists()
    assert run_git("branch", "--show-current", cwd=local).strip() == "fix/add"
    assert run_git("log", "-1", "--format=%H", cwd=local).strip() == outcome.commit
    assert "Fixes #7" in run_git("log", "-1", "--format=%B", cwd=local)
    assert run_git("status", "--porcelain", cwd=local).strip() == ""


def test_local_clone_at_another_base_is_cloned_not_touched(world: World) -> None:
    local = _local_clone(world)
    first = run_git("rev-parse", "HEAD", cwd=local).strip()
    (local / "NEWS").write_text("later\n")
    run_git("add", "NEWS", cwd=local)
    run_git("commit", "-q", "-m", "later", cwd=local)
    world.run("#7", repo=local, base=first[:10])
    task_repo = world.repair.tasks[0].repo
    assert task_repo == world.out / "checkout" and not (task_repo / "NEWS").exists()
    assert run_git("rev-parse", "HEAD", cwd=task_repo).strip() == first


# --- errors: clear, and nothing happens -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issue", "token", "options", "needle"),
    [
        ("acme/widgets#x", TOKEN, {}, "not an issue reference"),
        ("acme/widgets#404", TOKEN, {}, "issue acme/widgets#404 does not exist"),
        ("acme/secret#1", None, {}, "if it is private, set GITHUB_TOKEN"),
        ("acme/widgets#9", TOKEN, {}, "is a pull request, not an issue"),
        ("acme/widgets#7", None, {"open_pr": True}, "--open-pr needs a GitHub token"),
        ("#7", TOKEN, {}, "names no repository"),
    ],
)
def test_errors_are_clear_and_have_no_side_effects(
    world: World, issue: str, token: str | None, options: dict[str, object], needle: str
) -> None:
    with pytest.raises(FatalError, match=needle.replace("(", r"\(")) as info:
        world.run(issue, token=token, **options)
    assert info.value.exit_code == 2
    assert world.repair.tasks == [] and not world.out.exists() and world.posts() == []


def test_rate_limit_error_says_when_it_resets(world: World) -> None:
    world.fake.rate_limited = True
    with pytest.raises(FatalError, match=r"rate limit exhausted .*resets at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"):
        world.run()
    assert world.repair.tasks == [] and not world.out.exists()


def test_dirty_clone_or_taken_branch_is_refused_before_the_repair(world: World) -> None:
    local = _local_clone(world)
    run_git("branch", "mendloop/issue-7", cwd=local)
    with pytest.raises(FatalError, match="branch 'mendloop/issue-7' already exists"):
        world.run("#7", repo=local, open_pr=True)
    (local / "src" / "calc.py").write_text("mine\n")
    with pytest.raises(FatalError, match=r"uncommitted changes \(src/calc.py\)"):
        world.run("#7", repo=local, branch="other")
    assert (local / "src" / "calc.py").read_text() == "mine\n"
    assert world.repair.tasks == [] and not world.out.exists() and world.posts() == []


def test_branch_taken_on_the_remote_is_refused_before_the_repair(world: World) -> None:
    run_git("branch", "mendloop/issue-7", "main", cwd=world.upstream)
    with pytest.raises(FatalError, match="branch 'mendloop/issue-7' already exists on acme/widgets"):
        world.run(open_pr=True)
    assert world.repair.tasks == [] and not world.out.exists() and world.posts() == []


def test_closed_issue_warns_and_continues(world: World) -> None:
    outcome = world.run("acme/widgets#8")
    assert "warning: acme/widgets#8 is closed; solving it anyway" in world.console_text.getvalue()
    assert outcome.exit_code == 0 and len(world.repair.tasks) == 1


def test_dry_run_prints_the_plan_and_does_nothing(world: World) -> None:
    outcome = world.run(open_pr=True, draft=True, dry_run=True)
    text = world.console_text.getvalue()
    assert outcome.exit_code == 0 and outcome.result is None
    assert "Dry run" in text and "clone file://" in text and "draft pull request mendloop/issue-7 -> main" in text
    assert world.repair.tasks == [] and not world.out.exists() and world.posts() == []


def test_the_token_is_in_no_file_the_run_wrote(world: World) -> None:
    world.fake.repos["acme/widgets"].can_push = False
    world.run(open_pr=True)
    assert _assert_no_token(world.tmp) > 20
    assert TOKEN not in world.console_text.getvalue()
    assert all(TOKEN not in json.dumps(c.headers) + json.dumps(c.body) for c in world.fake.calls)


# --- the real CLI, the real runner, the scripted model ----------------------------------------------------------


@pytest.mark.slow  # the real runner runs pytest three times in the local sandbox: tens of seconds on a busy machine
def test_cli_solves_an_issue_end_to_end(world: World) -> None:
    from tests.support.fake_server import ScriptedServer

    home = world.tmp / "home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MENDLOOP_", "OPENAI_", "GH_"))},
        "GITHUB_TOKEN": TOKEN,
        "HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
    }
    server = ScriptedServer({"write": [WRITE_REPLY]}).start()
    try:
        args = [
            sys.executable, "-m", "agent.cli.main", "solve", "--issue", "https://github.com/acme/widgets/issues/7",
            "--github-api-url", world.fake.url, "--base-url", server.url, "--sandbox", "local", "--no-reproduce",
            "--open-pr", "--out", str(world.out), "--max-iterations", "2",
        ]  # fmt: skip
        done = subprocess.run(args, cwd=world.tmp, env=env, capture_output=True, text=True, timeout=240, check=False)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(r.node == "write" for r in server.requests)
    request = next(c for c in world.fake.calls if c.method == "POST" and c.path.endswith("/pulls"))
    assert request.body["head"] == "mendloop/issue-7" and request.body["base"] == "main"
    assert "Fixes #7" in request.body["body"]
    assert run_git("show", "mendloop/issue-7:src/calc.py", cwd=world.upstream).endswith("return a + b\n")
    assert "Fixes #7" in run_git("log", "-1", "--format=%B", "mendloop/issue-7", cwd=world.upstream)
    for name in ("patch.diff", "report.md", "trajectory.jsonl"):
        assert (world.out / name).is_file()
    assert TOKEN not in done.stdout + done.stderr
    assert _assert_no_token(world.tmp) > 20
