"""The issue front door's writes to repositories and remotes: clone at a base, branch, commit, push with a token.

Why its own module: these are the only places a front door writes to a user's repository or a remote, so the rules
live here once - every command goes through :class:`tools.git.Git`; a commit runs the repository's own hooks (never
``--no-verify``); and the token reaches git only through ``GIT_CONFIG_COUNT/KEY/VALUE`` environment variables that
add an ``http.<origin>.extraheader`` for that one host - never in a URL, an argument list or a file.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from tools.errors import FatalError
from tools.git import Git

__all__ = [
    "GitOpsError",
    "PushDenied",
    "PushRefused",
    "auth_env",
    "branch_exists",
    "checkout_new_branch",
    "clone_at",
    "commit",
    "ensure_clean",
    "origin_url",
    "push",
    "remote_branch_exists",
    "rev_parse",
]

_DENIED = re.compile(
    r"permission to \S+ denied|returned error: 403|403 forbidden|write access to repository not granted"
    r"|permission denied \(publickey\)",
    re.IGNORECASE,
)


class GitOpsError(FatalError):
    """A git step of the issue flow failed; the message says which and why."""


class PushRefused(GitOpsError):
    """The remote refused the push (a hook, a protected branch, a non-fast-forward...)."""


class PushDenied(PushRefused):
    """The remote refused the push because the credentials may not write there: the caller may fork."""


def auth_env(token: str | None, url: str) -> dict[str, str]:
    """Environment that makes git send ``token`` to ``url``'s host, and only there.

    The header is scoped to ``scheme://host[:port]/``, numbered after any ``GIT_CONFIG_COUNT`` the user
    already has, and lives only in the child's environment. ``file://`` and ssh remotes get nothing (no HTTP,
    no header)."""
    parts = urlsplit(url)
    if not token or parts.scheme not in ("http", "https") or not parts.hostname:
        return {}
    start = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": str(start + 1),
        f"GIT_CONFIG_KEY_{start}": f"http.{parts.scheme}://{parts.netloc}/.extraheader",
        f"GIT_CONFIG_VALUE_{start}": f"AUTHORIZATION: basic {basic}",
    }


def origin_url(repo: Path) -> str | None:
    done = Git(repo).run("remote", "get-url", "origin", check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


def rev_parse(repo: Path, ref: str) -> str:
    commit_id = Git(repo).commit_of(ref)
    if commit_id is None:
        raise GitOpsError(f"{ref!r} is not a commit in {repo}")
    return commit_id


def branch_exists(repo: Path, name: str) -> bool:
    return Git(repo).ok("show-ref", "--verify", "--quiet", f"refs/heads/{name}")


def remote_branch_exists(url: str, branch: str, cwd: Path, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``url`` already has ``branch``; ``False`` when the remote cannot be asked (the push will say why)."""
    done = Git(cwd).run("ls-remote", "--heads", url, f"refs/heads/{branch}", env=env, check=False, timeout=60)
    return done.returncode == 0 and bool(done.stdout.strip())


def ensure_clean(repo: Path, why: str) -> None:
    """Refuse to go on when tracked files have changes: a commit must hold only the fix."""
    done = Git(repo).run("status", "--porcelain", "--untracked-files=no")
    if done.stdout.strip():
        changed = ", ".join(line[3:] for line in done.stdout.splitlines()[:5])
        raise GitOpsError(f"{repo} has uncommitted changes ({changed}); commit or stash them before {why}")


def clone_at(url: str, dest: Path, ref: str, env: Mapping[str, str] | None = None) -> str:
    """Fetch ``ref`` of ``url`` into a new repository at ``dest`` and check it out detached; return the commit.

    Shallow first (``--depth 1`` of just that ref: a branch, a tag or a full SHA the server allows); when the
    server will not serve the ref shallowly (an abbreviated SHA, an old commit), fetch everything and resolve
    it locally. Local paths become ``file://`` URLs, where git honours ``--depth``."""
    if "://" not in url and not re.match(r"^[^/\s]+@[^:/\s]+:", url) and Path(url).exists():
        url = Path(url).resolve().as_uri()
    dest.mkdir(parents=True, exist_ok=True)
    git = Git(dest)
    git.run("init", "--quiet")
    git.run("remote", "add", "origin", url)
    shallow = git.run("fetch", "--quiet", "--depth", "1", "--no-tags", "origin", ref, env=env, check=False)
    commit_id = "FETCH_HEAD" if shallow.returncode == 0 else _fetch_all(git, url, ref, env)
    git.run("checkout", "--quiet", "--detach", commit_id)
    return rev_parse(dest, "HEAD")


def _fetch_all(git: Git, url: str, ref: str, env: Mapping[str, str] | None) -> str:
    """Fetch every branch and tag of ``url`` and resolve ``ref`` among them."""
    done = git.run("fetch", "--quiet", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*", env=env, check=False)
    if done.returncode != 0:
        raise GitOpsError(f"cannot fetch from {url}: {_tail(done.stderr)}")
    for candidate in (ref, f"origin/{ref}", f"refs/tags/{ref}"):
        found = git.commit_of(candidate)
        if found is not None:
            return found
    raise GitOpsError(f"--base {ref!r} is not a branch, tag or commit of the repository")


def checkout_new_branch(repo: Path, name: str, start: str) -> None:
    if branch_exists(repo, name):
        raise GitOpsError(f"branch {name!r} already exists in {repo}: pass another --branch")
    done = Git(repo).run("switch", "--quiet", "-c", name, start, check=False)
    if done.returncode != 0:
        raise GitOpsError(f"cannot create branch {name!r} at {start}: {_tail(done.stderr)}")


def commit(repo: Path, message: str) -> str:
    """Commit what is staged, running the repository's hooks; return the new commit.

    ``--cleanup=whitespace`` keeps lines that start with ``#`` (an issue body may have Markdown headings) even
    when the user's ``commit.cleanup`` would strip them."""
    done = Git(repo).run("commit", "--quiet", "--cleanup=whitespace", "-F", "-", input=message, check=False)
    if done.returncode != 0:
        output = _tail(done.stderr + "\n" + done.stdout)
        raise GitOpsError(f"git commit in {repo} failed (a hook may have refused it): {output}")
    return rev_parse(repo, "HEAD")


def push(repo: Path, url: str, branch: str, env: Mapping[str, str] | None = None) -> None:
    """Push ``HEAD`` to ``refs/heads/<branch>`` at ``url``. A permission refusal is :class:`PushDenied` (fork
    and retry); any other refusal is :class:`PushRefused` with the remote's own words."""
    done = Git(repo).run("push", "--porcelain", url, f"HEAD:refs/heads/{branch}", env=env, check=False)
    if done.returncode == 0:
        return
    words = _tail(done.stderr + "\n" + done.stdout)
    if _DENIED.search(done.stderr):
        raise PushDenied(f"push of {branch!r} to {url} was denied: {words}")
    raise PushRefused(f"push of {branch!r} to {url} was refused: {words}")


def _tail(text: str, lines: int = 6) -> str:
    """The last few meaningful lines of git's output, on one line: enough to say why, short enough to read."""
    kept = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("To ")]
    return " | ".join(kept[-lines:]) or "no output"
