"""GitHub for the ``solve --issue`` front door: issue references, the token, and a small REST client.

Why so small and hand-written: the front door needs six endpoints (repo, issue, comments, fork, pull request,
the user), and every failure on them must become a one-line :class:`~tools.errors.FatalError` a person can act
on (which issue does not exist, when the rate limit resets, that a private repo needs a token). A thin
``httpx`` client keeps those messages in one place, and the API base is a plain URL so GitHub Enterprise and
the tests' fake server work the same way.

The token is a secret: it lives only in :class:`GitHubClient` (whose ``repr`` hides it), goes out only in the
``Authorization`` header, and every message built from a response passes through :func:`redact`."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tools.errors import FatalError
from tools.proc import run
from tools.secrets import remember, scrub

__all__ = [
    "DEFAULT_API_URL",
    "Comment",
    "GitHubClient",
    "GitHubError",
    "Issue",
    "IssueRef",
    "IssueRefError",
    "RepoInfo",
    "api_url_from",
    "parse_issue_ref",
    "parse_remote_url",
    "redact",
    "resolve_token",
    "web_host",
]

DEFAULT_API_URL = "https://api.github.com"
API_URL_ENV = "MENDLOOP_GITHUB_API_URL"
TOKEN_ENVS = ("GITHUB_TOKEN", "GH_TOKEN")
_MAX_COMMENT_PAGES = 20

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_NAME = r"[A-Za-z0-9_.-]+"
_URL_RE = re.compile(
    rf"^(?:https?://)?(?P<host>[^/\s]+)/(?P<owner>{_OWNER})/(?P<repo>{_NAME})/(?P<kind>issues|pull|pulls)/"
    rf"(?P<number>\d+)/?(?:[?#].*)?$"
)
_SLUG_RE = re.compile(rf"^(?P<owner>{_OWNER})/(?P<repo>{_NAME})#(?P<number>\d+)$")
_NUMBER_RE = re.compile(r"^#?(?P<number>\d+)$")
_SCP_RE = re.compile(rf"^(?:[^@/\s]+@)?(?P<host>[^:/\s]+):(?P<path>{_OWNER}/{_NAME})$")


class GitHubError(FatalError):
    """A GitHub request failed in a way the user has to fix (missing issue, token, rate limit...)."""


class IssueRefError(GitHubError):
    """``--issue`` is not a reference we understand."""


@dataclass(frozen=True)
class IssueRef:
    """``owner/repo#number``: which issue to solve."""

    owner: str
    repo: str
    number: int

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def instance_id(self) -> str:
        return f"{self.owner}__{self.repo}-{self.number}"

    def __str__(self) -> str:
        return f"{self.slug}#{self.number}"


@dataclass(frozen=True)
class Comment:
    """One comment on the issue: its author's login and its Markdown body, which the model reads after the issue's."""

    author: str
    body: str


@dataclass(frozen=True)
class Issue:
    """The parts of an issue a repair needs."""

    ref: IssueRef
    title: str
    body: str
    state: str
    html_url: str
    is_pull_request: bool
    comments: list[Comment] = field(default_factory=list)

    def task_text(self) -> str:
        """Title, body and comments as one text: what the model reads as "the issue"."""
        comments = "\n\n".join(f"Comment by @{c.author}:\n{c.body.strip()}" for c in self.comments if c.body.strip())
        return f"{self.title}\n\n{self.body.strip()}\n\n{comments}".rstrip() + "\n"


@dataclass(frozen=True)
class RepoInfo:
    """A repository as the API describes it. ``can_push`` is ``None`` when the API did not say (anonymous)."""

    owner: str
    name: str
    clone_url: str
    default_branch: str
    private: bool
    can_push: bool | None
    html_url: str

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RepoInfo:
        permissions = data.get("permissions")
        can_push = bool(permissions.get("push")) if isinstance(permissions, Mapping) else None
        owner = data.get("owner") or {}
        return cls(
            owner=str(owner.get("login", "")),
            name=str(data.get("name", "")),
            clone_url=str(data.get("clone_url", "")),
            default_branch=str(data.get("default_branch") or "main"),
            private=bool(data.get("private", False)),
            can_push=can_push,
            html_url=str(data.get("html_url", "")),
        )


# --- references ---------------------------------------------------------------------------------------------


def web_host(api_url: str) -> str:
    """The web host of an API base: ``api.github.com`` -> ``github.com``; GHE serves both on one host."""
    host = (urlsplit(api_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


def parse_remote_url(url: str, hosts: Iterable[str] = ("github.com",)) -> tuple[str, str] | None:
    """``(owner, repo)`` of a git remote on one of ``hosts`` (https, ssh://, or ``git@host:o/r.git``)."""
    url = url.strip()
    allowed = {h.lower() for h in hosts}
    scp = _SCP_RE.match(url)
    if scp and "://" not in url:
        host, path = scp["host"], scp["path"]
    else:
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
    if host.lower() not in allowed:
        return None
    pieces = [p for p in path.strip("/").split("/") if p]
    if len(pieces) != 2:
        return None
    owner, repo = pieces[0], pieces[1].removesuffix(".git")
    if not re.fullmatch(_OWNER, owner) or not re.fullmatch(_NAME, repo):
        return None
    return owner, repo


def parse_issue_ref(text: str, origin_url: str | None = None, hosts: Iterable[str] = ("github.com",)) -> IssueRef:
    """Parse ``--issue``: an issue URL, ``OWNER/REPO#N``, or ``#N`` / ``N`` with ``origin_url`` (the local
    clone's ``origin``) naming the repository. Raise :class:`IssueRefError` with what was expected otherwise.
    """
    raw = text.strip()
    url = _URL_RE.match(raw)
    if url:
        if url["kind"] != "issues":
            raise IssueRefError(f"{raw} is a pull request, not an issue: pass the issue it fixes")
        return IssueRef(url["owner"], url["repo"].removesuffix(".git"), _positive(url["number"], raw))
    slug = _SLUG_RE.match(raw)
    if slug:
        return IssueRef(slug["owner"], slug["repo"], _positive(slug["number"], raw))
    number = _NUMBER_RE.match(raw)
    if number:
        n = _positive(number["number"], raw)
        if origin_url is None:
            raise IssueRefError(
                f"--issue {raw} names no repository: use OWNER/REPO#{n} or the issue URL, "
                "or pass --repo with a clone whose origin is on GitHub"
            )
        owner_repo = parse_remote_url(origin_url, hosts)
        if owner_repo is None:
            raise IssueRefError(
                f"--issue {raw} needs a GitHub origin, but the clone's origin is {_safe_url(origin_url)}: "
                f"use OWNER/REPO#{n}"
            )
        return IssueRef(owner_repo[0], owner_repo[1], n)
    raise IssueRefError(
        f"--issue {raw!r} is not an issue reference: expected https://github.com/OWNER/REPO/issues/N, "
        "OWNER/REPO#N, or #N with --repo"
    )


def _positive(number: str, raw: str) -> int:
    n = int(number)
    if n <= 0:
        raise IssueRefError(f"--issue {raw!r}: issue numbers start at 1")
    return n


def _safe_url(url: str) -> str:
    """A remote URL without any credentials it might embed (``https://user:secret@host/...``)."""
    parts = urlsplit(url)
    if parts.password or parts.username:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()
    return url


# --- the token ----------------------------------------------------------------------------------------------


def api_url_from(flag: str | None, environ: Mapping[str, str]) -> str:
    """``--github-api-url`` > ``MENDLOOP_GITHUB_API_URL`` > api.github.com; trailing slashes dropped."""
    return (flag or environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


def resolve_token(environ: Mapping[str, str], api_url: str = DEFAULT_API_URL) -> str | None:
    """``GITHUB_TOKEN`` (or ``GH_TOKEN``), else ``gh auth token`` when gh is installed, else ``None``
    (anonymous)."""
    token = _find_token(environ, api_url)
    remember(token)  # masked from here on in every record and message (see tools/secrets.py)
    return token


def _find_token(environ: Mapping[str, str], api_url: str) -> str | None:
    for name in TOKEN_ENVS:
        value = environ.get(name, "").strip()
        if value:
            return value
    if shutil.which("gh") is None:
        return None
    args = ["gh", "auth", "token"]
    host = web_host(api_url)
    if host and host != "github.com":
        args += ["--hostname", host]
    done = run(args, check=False, timeout=30)
    token = done.stdout.strip()
    return token if done.returncode == 0 and token and "\n" not in token else None


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret masked, also in the base64 ``x-access-token:`` form git's header carries (the one
    scrubber, :func:`tools.secrets.scrub`, with ``secrets`` besides the ones it knows)."""
    return scrub(text, secrets)


# --- the client ---------------------------------------------------------------------------------------------


class GitHubClient:
    """The REST calls the issue front door makes; every failure is a one-line :class:`GitHubError`."""

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "mendloop",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"GitHubClient({self.api_url!r}, token={'***' if self._token else None})"

    @property
    def authenticated(self) -> bool:
        return bool(self._token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- endpoints ------------------------------------------------------------------------------------------

    def get_repo(self, owner: str, repo: str) -> RepoInfo:
        what = f"repository {owner}/{repo}"
        response = self._request("GET", f"/repos/{owner}/{repo}", what=what)
        if response.status_code == 404:
            hint = (
                "check the name, and that the token can read it"
                if self._token
                else "if it is private, set GITHUB_TOKEN (or run `gh auth login`)"
            )
            raise GitHubError(f"{what} not found on {self.api_url}: {hint}")
        return RepoInfo.from_api(self._json(response, what))

    def get_issue(self, ref: IssueRef) -> Issue:
        """The issue with its comments. A pull request number is refused here, not by the caller, so that no
        code path can go on to "solve" a PR."""
        what = f"issue {ref}"
        response = self._request("GET", f"/repos/{ref.slug}/issues/{ref.number}", what=what)
        if response.status_code in (404, 410):
            raise GitHubError(f"{what} does not exist (HTTP {response.status_code}: {self._message(response)})")
        data = self._json(response, what)
        if data.get("pull_request"):
            raise GitHubError(f"{ref.slug}#{ref.number} is a pull request, not an issue: pass the issue it fixes")
        return Issue(
            ref=ref,
            title=str(data.get("title") or ""),
            body=str(data.get("body") or ""),
            state=str(data.get("state") or "open"),
            html_url=str(data.get("html_url") or ""),
            is_pull_request=False,
            comments=self.get_comments(ref) if int(data.get("comments") or 0) > 0 else [],
        )

    def get_comments(self, ref: IssueRef) -> list[Comment]:
        """All comments, following the ``Link: rel="next"`` pages (bounded, so a huge thread cannot loop
        forever)."""
        what = f"comments of issue {ref}"
        url: str | None = f"/repos/{ref.slug}/issues/{ref.number}/comments?per_page=100"
        comments: list[Comment] = []
        for _ in range(_MAX_COMMENT_PAGES):
            if url is None:
                break
            response = self._request("GET", url, what=what)
            for item in self._json(response, what, expect=list):
                user = item.get("user") or {}
                comments.append(Comment(author=str(user.get("login", "ghost")), body=str(item.get("body") or "")))
            url = response.links.get("next", {}).get("url")
        return comments

    def get_user(self) -> str:
        """The login the token belongs to (the owner of a fork we create)."""
        response = self._request("GET", "/user", what="the authenticated user")
        return str(self._json(response, "the authenticated user").get("login", ""))

    def create_fork(self, owner: str, repo: str, *, wait: float = 60.0) -> RepoInfo:
        """Fork ``owner/repo`` for the token's user and wait until GitHub serves it (forks are async)."""
        what = f"a fork of {owner}/{repo}"
        response = self._request("POST", f"/repos/{owner}/{repo}/forks", what=what, json={})
        fork = RepoInfo.from_api(self._json(response, what))
        deadline = time.monotonic() + wait
        delay = 0.5
        while True:
            probe = self._request("GET", f"/repos/{fork.slug}", what=what)
            if probe.status_code == 200:
                return RepoInfo.from_api(self._json(probe, what))
            if time.monotonic() > deadline:
                raise GitHubError(f"{what} was requested but {fork.slug} is not ready after {wait:g}s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def create_pull(
        self, owner: str, repo: str, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> dict[str, Any]:
        what = f"a pull request on {owner}/{repo}"
        payload = {
            "title": title,
            "head": head,
            "base": base,
            "body": body,
            "draft": draft,
            "maintainer_can_modify": True,
        }
        response = self._request("POST", f"/repos/{owner}/{repo}/pulls", what=what, json=payload)
        pull: dict[str, Any] = self._json(response, what)
        return pull

    # --- plumbing -------------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, *, what: str, json: Any = None) -> httpx.Response:
        """Send; turn transport errors, bad credentials and rate limits into messages. 404s go to the caller,
        which knows what was missing."""
        try:
            response = self._http.request(method, url, json=json)
        except httpx.HTTPError as exc:
            raise GitHubError(f"cannot reach GitHub at {self.api_url} for {what}: {self._clean(str(exc))}") from None
        if response.status_code == 401:
            raise GitHubError(
                f"GitHub refused the token for {what} (401 {self._message(response)}): check GITHUB_TOKEN"
            )
        if response.status_code in (403, 429) and _rate_limited(response):
            raise GitHubError(f"GitHub API rate limit exhausted while fetching {what}; {_reset_text(response)}")
        return response

    def _json(self, response: httpx.Response, what: str, expect: type = dict) -> Any:
        if response.status_code >= 400:
            detail = self._message(response)
            if response.status_code == 403:
                raise GitHubError(f"GitHub forbids {what} (403 {detail}): the token lacks the permission")
            raise GitHubError(f"GitHub could not give {what} (HTTP {response.status_code}: {detail})")
        try:
            data = response.json()
        except ValueError:
            raise GitHubError(f"GitHub answered {what} with something that is not JSON") from None
        if not isinstance(data, expect):
            raise GitHubError(f"GitHub answered {what} with an unexpected {type(data).__name__}")
        return data

    def _message(self, response: httpx.Response) -> str:
        """GitHub's own ``message`` plus any validation ``errors`` (a 422 says *why* a PR was refused)."""
        try:
            data = response.json()
        except ValueError:
            return self._clean(response.reason_phrase or "no message")
        if not isinstance(data, dict):
            return self._clean(response.reason_phrase or "no message")
        text = str(data.get("message") or response.reason_phrase or "no message")
        details = [str(e.get("message") or e.get("code")) for e in data.get("errors") or [] if isinstance(e, dict)]
        if details:
            text += ": " + "; ".join(details)
        return self._clean(text)

    def _clean(self, text: str) -> str:
        return redact(text, [self._token])


def _rate_limited(response: httpx.Response) -> bool:
    if response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers:
        return True
    return "rate limit" in response.text.lower()


def _reset_text(response: httpx.Response) -> str:
    """When the limit lifts, in UTC and as a wait, from ``X-RateLimit-Reset`` (epoch) or ``Retry-After``
    (secs)."""
    now = time.time()
    reset: float | None = None
    if response.headers.get("x-ratelimit-reset", "").isdigit():
        reset = float(response.headers["x-ratelimit-reset"])
    elif response.headers.get("retry-after", "").isdigit():
        reset = now + float(response.headers["retry-after"])
    if reset is None:
        return "try again later, or set GITHUB_TOKEN for a higher limit"
    wait = max(0, round(reset - now))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(reset))
    return f"it resets at {stamp} (in {wait // 60} min {wait % 60} s)"
