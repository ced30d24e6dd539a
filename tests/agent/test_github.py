"""The GitHub side of ``solve --issue``: references, the token, the REST client against a real local fake API, and
the git operations against real repositories (a bare remote, hooks, a real HTTP listener for the auth header)."""

from __future__ import annotations

import base64
import os
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agent.doors import gitops
from agent.doors.issue.github import (
    GitHubClient,
    GitHubError,
    IssueRef,
    IssueRefError,
    api_url_from,
    parse_issue_ref,
    parse_remote_url,
    redact,
    resolve_token,
    web_host,
)
from tests.support.fake_github import FakeGitHub, init_bare_repo, run_git
from tools.git import Git

TOKEN = "ghp_TestTokenDoNotLeak0123456789abcdef"


# --- issue references -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "origin", "expected"),
    [
        ("https://github.com/acme/widgets/issues/42", None, ("acme", "widgets", 42)),
        ("https://github.com/acme/widgets/issues/42/", None, ("acme", "widgets", 42)),
        ("https://github.com/acme/widgets/issues/42#issuecomment-1", None, ("acme", "widgets", 42)),
        ("github.com/acme/my.repo/issues/7", None, ("acme", "my.repo", 7)),
        ("  acme/widgets#42 ", None, ("acme", "widgets", 42)),
        ("#42", "https://github.com/acme/widgets.git", ("acme", "widgets", 42)),
        ("42", "git@github.com:acme/widgets.git", ("acme", "widgets", 42)),
        ("#5", "ssh://git@github.com/acme/widgets", ("acme", "widgets", 5)),
    ],
)
def test_parse_issue_ref_accepts_the_documented_forms(
    text: str, origin: str | None, expected: tuple[str, str, int]
) -> None:
    ref = parse_issue_ref(text, origin)
    assert (ref.owner, ref.repo, ref.number) == expected
    assert ref.instance_id == f"{expected[0]}__{expected[1]}-{expected[2]}"


@pytest.mark.parametrize(
    ("text", "origin", "needle"),
    [
        ("widgets", None, "not an issue reference"),
        ("acme/widgets", None, "not an issue reference"),
        ("acme/widgets#x", None, "not an issue reference"),
        ("https://github.com/acme/widgets/issues/abc", None, "not an issue reference"),
        ("acme/widgets#0", None, "start at 1"),
        ("#3", None, "names no repository"),
        ("#3", "https://gitlab.com/acme/widgets.git", "needs a GitHub origin"),
        ("https://github.com/acme/widgets/pull/3", None, "is a pull request"),
    ],
)
def test_parse_issue_ref_rejects_malformed_references(text: str, origin: str | None, needle: str) -> None:
    with pytest.raises(IssueRefError, match=needle) as info:
        parse_issue_ref(text, origin)
    assert info.value.exit_code == 2


def test_origin_with_credentials_is_not_echoed() -> None:
    with pytest.raises(IssueRefError) as info:
        parse_issue_ref("#1", f"https://x:{TOKEN}@gitlab.com/a/b.git")
    assert TOKEN not in info.value.message


def test_enterprise_hosts_come_from_the_api_url() -> None:
    assert web_host("https://api.github.com") == "github.com"
    assert web_host("https://ghe.example.com/api/v3") == "ghe.example.com"
    assert parse_remote_url("https://ghe.example.com/acme/w.git") is None
    assert parse_remote_url("https://ghe.example.com/acme/w.git", ["ghe.example.com"]) == ("acme", "w")
    assert parse_remote_url("https://github.com/acme/w/extra") is None


def test_api_url_flag_beats_env_beats_default() -> None:
    env = {"MENDLOOP_GITHUB_API_URL": "http://env.example/api/"}
    assert api_url_from("http://flag.example/", env) == "http://flag.example"
    assert api_url_from(None, env) == "http://env.example/api"
    assert api_url_from(None, {}) == "https://api.github.com"


# --- the token --------------------------------------------------------------------------------------------------


def _fake_gh(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text("#!/bin/sh\n" + script + "\n", encoding="utf-8")
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)


def test_token_from_env_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gh(tmp_path / "bin", "echo from-gh")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert resolve_token({"GITHUB_TOKEN": " env-token\n"}) == "env-token"
    assert resolve_token({"GH_TOKEN": "gh-env"}) == "gh-env"


def test_token_from_gh_auth_token_with_enterprise_hostname(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gh(tmp_path / "bin", 'echo "$@" > "$(dirname "$0")/args"; echo from-gh')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert resolve_token({}) == "from-gh"
    assert (tmp_path / "bin" / "args").read_text().split() == ["auth", "token"]
    assert resolve_token({}, "https://ghe.example.com/api/v3") == "from-gh"
    assert (tmp_path / "bin" / "args").read_text().split() == ["auth", "token", "--hostname", "ghe.example.com"]


def test_anonymous_when_gh_is_missing_or_logged_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert resolve_token({}) is None
    _fake_gh(tmp_path / "bin", "echo 'not logged in' >&2; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert resolve_token({}) is None


def test_redact_masks_the_token_and_its_basic_auth_form() -> None:
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    text = redact(f"a {TOKEN} b {basic} c", [None, TOKEN])
    assert TOKEN not in text and basic not in text and text == "a *** b *** c"
    assert TOKEN not in repr(GitHubClient("http://127.0.0.1:9", TOKEN))


# --- the REST client against the fake API -----------------------------------------------------------------------


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGitHub]:
    bare = init_bare_repo(tmp_path / "remote" / "widgets.git", {"README.md": "hi\n"})
    with FakeGitHub(tmp_path / "gh", token=TOKEN) as server:
        server.add_repo("acme", "widgets", bare)
        server.add_repo("acme", "secret", bare, private=True)
        yield server


def test_issue_with_paginated_comments_and_bearer_token(fake: FakeGitHub) -> None:
    comments = [(f"user{i}", f"comment {i}") for i in range(130)]
    fake.add_issue("acme/widgets", 7, "Adding is broken", "add(2, 2) returns 0", comments=comments)
    with GitHubClient(fake.url, TOKEN) as client:
        issue = client.get_issue(IssueRef("acme", "widgets", 7))
    assert issue.title == "Adding is broken" and issue.state == "open"
    assert [c.body for c in issue.comments] == [f"comment {i}" for i in range(130)]
    text = issue.task_text()
    assert text.startswith("Adding is broken\n\nadd(2, 2) returns 0\n\n")
    assert "Comment by @user129:\ncomment 129" in text
    pages = [c for c in fake.calls if c.path.endswith("/comments")]
    assert len(pages) == 2 and all(c.authorized for c in fake.calls)
    assert fake.calls[0].headers["Accept"] == "application/vnd.github+json"


def test_anonymous_requests_send_no_authorization(fake: FakeGitHub) -> None:
    fake.add_issue("acme/widgets", 1, "t", "b")
    with GitHubClient(fake.url, None) as client:
        assert client.get_repo("acme", "widgets").can_push is None
        client.get_issue(IssueRef("acme", "widgets", 1))
    assert fake.calls and not any(c.authorized for c in fake.calls)


def test_missing_issue_is_a_clear_error(fake: FakeGitHub) -> None:
    with GitHubClient(fake.url, TOKEN) as client, pytest.raises(GitHubError, match=r"acme/widgets#99 does not exist"):
        client.get_issue(IssueRef("acme", "widgets", 99))


def test_private_repo_without_token_says_to_set_one(fake: FakeGitHub) -> None:
    with GitHubClient(fake.url, None) as client, pytest.raises(GitHubError) as info:
        client.get_repo("acme", "secret")
    assert "acme/secret not found" in info.value.message and "GITHUB_TOKEN" in info.value.message
    with GitHubClient(fake.url, TOKEN) as client:
        assert client.get_repo("acme", "secret").private


def test_pull_request_number_is_refused(fake: FakeGitHub) -> None:
    fake.add_issue("acme/widgets", 3, "A PR", pull_request=True)
    with GitHubClient(fake.url, TOKEN) as client, pytest.raises(GitHubError, match="is a pull request, not an issue"):
        client.get_issue(IssueRef("acme", "widgets", 3))


def test_exhausted_rate_limit_says_when_it_resets(fake: FakeGitHub) -> None:
    fake.rate_limited = True
    with GitHubClient(fake.url, None) as client, pytest.raises(GitHubError) as info:
        client.get_repo("acme", "widgets")
    message = info.value.message
    assert "rate limit exhausted" in message
    import time

    assert time.strftime("%Y-%m-%d %H:%M", time.gmtime(fake.rate_reset)) in message
    assert "(in 29 min" in message or "(in 30 min" in message


def test_bad_token_is_named_but_not_shown(fake: FakeGitHub) -> None:
    with GitHubClient(fake.url, "wrong-" + TOKEN) as client, pytest.raises(GitHubError) as info:
        client.get_repo("acme", "widgets")
    assert "401 Bad credentials" in info.value.message and TOKEN not in info.value.message


def test_unreachable_api_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with GitHubClient(f"http://127.0.0.1:{port}", TOKEN, timeout=5) as client, pytest.raises(GitHubError) as info:
        client.get_repo("acme", "widgets")
    assert "cannot reach GitHub" in info.value.message


def test_fork_waits_until_github_serves_it(fake: FakeGitHub) -> None:
    fake.fork_ready_after = 2
    with GitHubClient(fake.url, TOKEN) as client:
        fork = client.create_fork("acme", "widgets", wait=10)
    assert fork.slug == "mendloop-bot/widgets" and fork.clone_url.startswith("file://")
    probes = [c for c in fake.calls if c.method == "GET" and c.path == "/repos/mendloop-bot/widgets"]
    assert len(probes) == 3


def test_refused_pull_request_reports_githubs_reasons(fake: FakeGitHub) -> None:
    with GitHubClient(fake.url, TOKEN) as client, pytest.raises(GitHubError) as info:
        client.create_pull("acme", "widgets", head="no-such-branch", base="main", title="t", body="b", draft=False)
    assert "HTTP 422: Validation Failed: invalid" in info.value.message


# --- git operations -------------------------------------------------------------------------------------------


class _HeaderRecorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).seen.append({"path": self.path, "authorization": self.headers.get("Authorization", "")})
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_token_reaches_git_as_a_header_for_that_host_only(tmp_path: Path) -> None:
    """A real git talks to a real HTTP listener: the header arrives, scoped to 127.0.0.1, never via argv/URL."""
    _HeaderRecorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HeaderRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        repo = tmp_path / "r"
        repo.mkdir()
        run_git("init", "-q", cwd=repo)
        env = gitops.auth_env(TOKEN, f"http://127.0.0.1:{port}/acme/widgets.git")
        assert env["GIT_CONFIG_KEY_0"] == f"http.http://127.0.0.1:{port}/.extraheader"
        assert TOKEN not in " ".join(env)
        for host in ("127.0.0.1", "localhost"):
            done = Git(repo).run("ls-remote", f"http://{host}:{port}/acme/widgets.git", env=env, check=False)
            assert done.returncode != 0 and TOKEN not in done.stderr
    finally:
        server.shutdown()
        server.server_close()
    expected = "basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    by_host = [h["authorization"].lower() for h in _HeaderRecorder.seen]
    assert by_host[0] == expected.lower()
    assert by_host[-1] == ""  # the localhost request got no header
    assert TOKEN not in (repo / ".git" / "config").read_text()


def test_auth_env_numbers_after_existing_config_and_skips_non_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_COUNT", "2")
    env = gitops.auth_env(TOKEN, "https://github.com/acme/widgets.git")
    assert env["GIT_CONFIG_COUNT"] == "3" and "GIT_CONFIG_KEY_2" in env
    assert gitops.auth_env(TOKEN, "file:///tmp/x.git") == {}
    assert gitops.auth_env(None, "https://github.com/a/b.git") == {}


def _hooked_remote(tmp_path: Path, message: str) -> Path:
    bare = init_bare_repo(tmp_path / "hooked.git", {"a.txt": "1\n"})
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\necho '{message}' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    return bare


def _work_clone(tmp_path: Path, bare: Path) -> Path:
    work = tmp_path / "work"
    gitops.clone_at(bare.as_uri(), work, "main")
    gitops.checkout_new_branch(work, "fix", "HEAD")
    (work / "a.txt").write_text("2\n", encoding="utf-8")
    run_git("add", "a.txt", cwd=work)
    gitops.commit(work, "change\n\nFixes #1\n")
    return work


def test_push_permission_refusal_is_push_denied(tmp_path: Path) -> None:
    bare = _hooked_remote(tmp_path, "Permission to acme/widgets.git denied to mendloop-bot.")
    with pytest.raises(gitops.PushDenied, match="denied"):
        gitops.push(_work_clone(tmp_path, bare), bare.as_uri(), "fix")


def test_other_push_refusal_is_push_refused_with_the_remotes_words(tmp_path: Path) -> None:
    bare = _hooked_remote(tmp_path, "GH006: Protected branch update failed")
    with pytest.raises(gitops.PushRefused) as info:
        gitops.push(_work_clone(tmp_path, bare), bare.as_uri(), "fix")
    assert not isinstance(info.value, gitops.PushDenied)
    assert "GH006: Protected branch update failed" in info.value.message


def test_clone_is_shallow_and_resolves_bases(tmp_path: Path) -> None:
    bare = init_bare_repo(tmp_path / "r.git", {"a.txt": "1\n"})
    head = run_git("rev-parse", "HEAD", cwd=bare).strip()
    assert gitops.clone_at(bare.as_uri(), tmp_path / "c1", "main") == head
    assert run_git("rev-parse", "--is-shallow-repository", cwd=tmp_path / "c1").strip() == "true"
    assert gitops.clone_at(str(bare), tmp_path / "c2", head[:8]) == head
    with pytest.raises(gitops.GitOpsError, match="--base 'nope' is not a branch, tag or commit"):
        gitops.clone_at(bare.as_uri(), tmp_path / "c3", "nope")


def test_commit_runs_the_repositorys_hooks(tmp_path: Path) -> None:
    bare = init_bare_repo(tmp_path / "r.git", {"a.txt": "1\n"})
    work = tmp_path / "w"
    gitops.clone_at(bare.as_uri(), work, "main")
    hooks = work / ".git" / "hooks"
    (hooks / "pre-commit").write_text('#!/bin/sh\ntouch "$(git rev-parse --git-dir)/pre-commit-ran"\n')
    (hooks / "commit-msg").write_text("#!/bin/sh\ngrep -q 'Fixes #' \"$1\" || { echo 'needs Fixes' >&2; exit 1; }\n")
    for hook in hooks.iterdir():
        hook.chmod(0o755)
    gitops.checkout_new_branch(work, "b", "HEAD")
    Git(work).apply("--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-1\n+2\n", index=True)
    with pytest.raises(gitops.GitOpsError, match="needs Fixes"):
        gitops.commit(work, "no reference\n")
    sha = gitops.commit(work, "# heading kept\n\nFixes #4\n")
    assert (work / ".git" / "pre-commit-ran").exists()
    assert run_git("log", "-1", "--format=%B", sha, cwd=work).startswith("# heading kept\n\nFixes #4")
    with pytest.raises(gitops.GitOpsError, match="already exists"):
        gitops.checkout_new_branch(work, "b", "HEAD")
    (work / "a.txt").write_text("dirty\n")
    with pytest.raises(gitops.GitOpsError, match="uncommitted changes"):
        gitops.ensure_clean(work, "testing")
