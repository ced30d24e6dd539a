"""A fake GitHub REST API on 127.0.0.1, backed by real bare git repositories, for the issue front door's
tests.

Why a real server: the client's job is HTTP - headers, status codes, ``Link`` pagination, rate-limit headers -
so only a real socket tests it. Responses carry the fields and error bodies GitHub's do (``{"message": ...,
"documentation_url": ...}``, 404 for a private repo seen anonymously, 403 + ``X-RateLimit-Remaining: 0`` when
the limit is spent, 422 with ``errors`` for a bad pull request). ``clone_url`` is a ``file://`` URL of a bare
repository, so clones and pushes are real git too; a fork is a real ``git clone --bare`` of its parent."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeGitHub", "FakeRepo", "RecordedCall", "init_bare_repo", "run_git"]

DOCS = "https://docs.github.com/rest"


def run_git(*args: str, cwd: Path, input: str | None = None) -> str:
    """Plain git for test fixtures (the code under test uses tools.proc; fixtures should not depend on it)."""
    env_cfg = [
        "-c",
        "user.name=Fixture",
        "-c",
        "user.email=fixture@example.com",
        "-c",
        "init.defaultBranch=main",
    ]
    done = subprocess.run(["git", *env_cfg, *args], cwd=cwd, input=input, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def init_bare_repo(path: Path, files: Mapping[str, str], *, branch: str = "main", message: str = "initial") -> Path:
    """A bare repository at ``path`` whose ``branch`` holds ``files`` in one commit."""
    work = path.with_name(path.name + ".work")
    work.mkdir(parents=True)
    run_git("init", "-q", "-b", branch, cwd=work)
    for name, text in files.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    run_git("add", "-A", cwd=work)
    run_git("commit", "-q", "-m", message, cwd=work)
    run_git("clone", "-q", "--bare", str(work), str(path), cwd=work.parent)
    run_git("symbolic-ref", "HEAD", f"refs/heads/{branch}", cwd=path)
    return path


@dataclass
class RecordedCall:
    """One request as the fake saw it. ``authorized`` says whether a token came; the token is not kept."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    authorized: bool


@dataclass
class FakeRepo:
    owner: str
    name: str
    bare: Path
    default_branch: str = "main"
    private: bool = False
    can_push: bool = True
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    parent: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def branch_head(self, branch: str) -> str | None:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            cwd=self.bare,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() if done.returncode == 0 else None


class FakeGitHub:
    """The fake API. ``token`` is the one valid token (``None``: any token is accepted); ``login`` is its
    user."""

    def __init__(self, root: Path, *, token: str | None = None, login: str = "mendloop-bot") -> None:
        self.root = root
        self.token = token
        self.login = login
        self.repos: dict[str, FakeRepo] = {}
        self.calls: list[RecordedCall] = []
        self.rate_limited = False
        self.rate_reset = int(time.time()) + 1800
        self.fork_ready_after = 0  # GETs of a new fork answered 404 first, like GitHub's async forks
        self._pending_forks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- set-up ---------------------------------------------------------------------------------------------

    def add_repo(self, owner: str, name: str, bare: Path, **options: Any) -> FakeRepo:
        repo = FakeRepo(owner, name, bare, **options)
        self.repos[repo.full_name] = repo
        return repo

    def add_issue(
        self,
        full_name: str,
        number: int,
        title: str,
        body: str = "",
        *,
        state: str = "open",
        comments: Sequence[tuple[str, str]] = (),
        pull_request: bool = False,
    ) -> None:
        repo = self.repos[full_name]
        issue: dict[str, Any] = {
            "url": f"{self.url}/repos/{full_name}/issues/{number}",
            "html_url": f"https://github.com/{full_name}/issues/{number}",
            "number": number,
            "title": title,
            "body": body,
            "state": state,
            "state_reason": "completed" if state == "closed" else None,
            "user": {"login": "reporter", "type": "User"},
            "labels": [],
            "comments": len(comments),
            "locked": False,
        }
        if pull_request:
            issue["pull_request"] = {"url": f"{self.url}/repos/{full_name}/pulls/{number}", "merged_at": None}
        repo.issues[number] = issue
        repo.comments[number] = [
            {
                "id": 1000 + i,
                "user": {"login": who, "type": "User"},
                "body": text,
                "author_association": "NONE",
            }
            for i, (who, text) in enumerate(comments)
        ]

    def pulls(self) -> list[dict[str, Any]]:
        return [pull for repo in self.repos.values() for pull in repo.pulls]

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            return "http://127.0.0.1:0"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- answers --------------------------------------------------------------------------------------------

    def repo_json(self, repo: FakeRepo, authorized: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": abs(hash(repo.full_name)) % 10**8,
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": {"login": repo.owner, "type": "User"},
            "private": repo.private,
            "html_url": f"https://github.com/{repo.full_name}",
            "clone_url": repo.bare.resolve().as_uri(),
            "default_branch": repo.default_branch,
            "fork": repo.parent is not None,
        }
        if authorized:
            data["permissions"] = {"admin": False, "push": repo.can_push, "pull": True}
        if repo.parent:
            data["parent"] = {"full_name": repo.parent}
        return data

    def answer(self, call: RecordedCall, token: str | None) -> tuple[int, dict[str, str], Any]:
        if self.rate_limited:
            headers = {
                "X-RateLimit-Limit": "60",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(self.rate_reset),
            }
            message = (
                "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                "Authenticated requests get a higher rate limit.)"
            )
            return 403, headers, {"message": message, "documentation_url": DOCS}
        if token is not None and self.token is not None and token != self.token:
            return 401, {}, {"message": "Bad credentials", "documentation_url": DOCS}
        authorized = token is not None
        parts = [p for p in call.path.split("/") if p]
        if parts == ["user"]:
            if not authorized:
                return 401, {}, {"message": "Requires authentication", "documentation_url": DOCS}
            return 200, {}, {"login": self.login, "type": "User"}
        if len(parts) < 3 or parts[0] != "repos":
            return 404, {}, _not_found()
        full_name = f"{parts[1]}/{parts[2]}"
        with self._lock:
            pending = self._pending_forks.get(full_name, 0)
            if pending > 0:
                self._pending_forks[full_name] = pending - 1
                return 404, {}, _not_found()
        repo = self.repos.get(full_name)
        if repo is None or (repo.private and not authorized):
            return 404, {}, _not_found()
        rest = parts[3:]
        if call.method == "GET" and not rest:
            return 200, {}, self.repo_json(repo, authorized)
        if call.method == "GET" and len(rest) == 2 and rest[0] == "issues":
            issue = repo.issues.get(int(rest[1])) if rest[1].isdigit() else None
            return (200, {}, issue) if issue else (404, {}, _not_found())
        if call.method == "GET" and len(rest) == 3 and rest[0] == "issues" and rest[2] == "comments":
            return self._comments(repo, int(rest[1]), call)
        if call.method == "POST" and rest == ["forks"]:
            return self._fork(repo, authorized)
        if call.method == "POST" and rest == ["pulls"]:
            return self._pull(repo, call, authorized)
        return 404, {}, _not_found()

    def _comments(self, repo: FakeRepo, number: int, call: RecordedCall) -> tuple[int, dict[str, str], Any]:
        if number not in repo.issues:
            return 404, {}, _not_found()
        per_page = int(call.query.get("per_page", ["30"])[0])
        page = int(call.query.get("page", ["1"])[0])
        everything = repo.comments.get(number, [])
        chunk = everything[(page - 1) * per_page : page * per_page]
        headers: dict[str, str] = {}
        if page * per_page < len(everything):
            base = f"{self.url}/repos/{repo.full_name}/issues/{number}/comments"
            headers["Link"] = f'<{base}?per_page={per_page}&page={page + 1}>; rel="next"'
        return 200, headers, chunk

    def _fork(self, repo: FakeRepo, authorized: bool) -> tuple[int, dict[str, str], Any]:
        if not authorized:
            return 401, {}, {"message": "Requires authentication", "documentation_url": DOCS}
        full_name = f"{self.login}/{repo.name}"
        fork = self.repos.get(full_name)
        if fork is None:
            bare = self.root / "forks" / self.login / f"{repo.name}.git"
            bare.parent.mkdir(parents=True, exist_ok=True)
            run_git("clone", "-q", "--bare", str(repo.bare), str(bare), cwd=bare.parent)
            fork = self.add_repo(self.login, repo.name, bare, default_branch=repo.default_branch, parent=repo.full_name)
            with self._lock:
                self._pending_forks[full_name] = self.fork_ready_after
        return 202, {}, self.repo_json(fork, True)

    def _pull(self, repo: FakeRepo, call: RecordedCall, authorized: bool) -> tuple[int, dict[str, str], Any]:
        if not authorized:
            return 401, {}, {"message": "Requires authentication", "documentation_url": DOCS}
        body = call.body if isinstance(call.body, dict) else {}
        head, base = str(body.get("head", "")), str(body.get("base", ""))
        owner, _, branch = head.rpartition(":")
        head_repo = self.repos.get(f"{owner}/{repo.name}") if owner else repo
        errors = []
        if head_repo is None or not branch or head_repo.branch_head(branch) is None:
            errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if repo.branch_head(base) is None:
            errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if errors:
            return 422, {}, {"message": "Validation Failed", "errors": errors, "documentation_url": DOCS}
        number = max([*repo.issues, *(p["number"] for p in repo.pulls), 0]) + 1
        pull = {
            "number": number,
            "html_url": f"https://github.com/{repo.full_name}/pull/{number}",
            "state": "open",
            "title": body.get("title"),
            "body": body.get("body"),
            "draft": bool(body.get("draft", False)),
            "head": {"ref": branch, "label": head if owner else f"{repo.owner}:{branch}"},
            "base": {"ref": base},
        }
        repo.pulls.append(pull)
        return 201, {}, pull


def _not_found() -> dict[str, str]:
    return {"message": "Not Found", "documentation_url": DOCS, "status": "404"}


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet; tests read fake.calls
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            auth = self.headers.get("Authorization", "")
            token = auth.split(None, 1)[1] if auth.lower().startswith(("bearer ", "token ")) else None
            split = urlsplit(self.path)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
            call = RecordedCall(self.command, split.path, parse_qs(split.query), headers, body, token is not None)
            fake.calls.append(call)
            status, extra, payload = fake.answer(call, token)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999", **extra}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

    return Handler
