"""The ``solve --issue`` front door: issue -> checkout -> repair -> apply / branch + commit / push + pull request.

Why the order: everything that can fail on the user's input (the reference, the issue, the token, a dirty
tree, a branch that exists) is checked *before* anything is cloned, run or written, so an error leaves no side
effects. The repair itself is :func:`agent.runner.solve` and never sees the token: it is not in the task, not
in the settings, and hidden from this process's environment while the repair runs (a ``local`` sandbox
inherits it). It is still in ``/proc/self/environ``, which is why nothing on the host follows a repository's link
(see SECURITY.md), and the one scrubber masks it in every record, the patch, the commit and the pull request."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from agent.config import Settings
from agent.doors import gitops
from agent.doors.issue.github import (
    TOKEN_ENVS,
    GitHubClient,
    GitHubError,
    Issue,
    IssueRef,
    RepoInfo,
    api_url_from,
    parse_issue_ref,
    redact,
    resolve_token,
    web_host,
)
from agent.runner import default_run_dir
from agent.task import RunResult, Task
from tools.errors import FatalError
from tools.git import Git
from tools.secrets import scrub

__all__ = ["IssueOutcome", "IssueRequest", "Plan", "Solver", "solve_issue"]

Solver = Callable[[Task, Settings, Path], RunResult]
_PR_BODY_LIMIT = 60_000  # GitHub refuses bodies over 65,536 characters
_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")


@dataclass
class IssueRequest:
    """What the user asked for on the command line."""

    issue: str
    repo: Path | None = None
    base: str | None = None
    apply: bool = False
    branch: str | None = None
    open_pr: bool = False
    draft: bool = False
    dry_run: bool = False
    github_api_url: str | None = None
    clone_url: str | None = None
    out: Path | None = None


@dataclass
class Plan:
    """What will be done, decided before anything is done (and all that ``--dry-run`` prints)."""

    ref: IssueRef
    issue: Issue
    repo: RepoInfo
    run_dir: Path
    clone_url: str
    base: str  # the ref to check out: --base, else the default branch
    start: str  # where a new branch starts in the target: HEAD, or --base resolved in the user's clone
    pr_base: str  # the branch a pull request targets
    local: Path | None  # --repo
    checkout: Path  # where the repair reads the code
    target: Path | None  # where the patch lands (apply / branch + commit); None: run directory only
    branch: str | None
    open_pr: bool
    draft: bool

    def steps(self) -> list[str]:
        lines = [f"fetch {self.ref} ({self.issue.state}): {self.issue.title}"]
        if self.local is None or self.checkout != self.local:
            lines.append(f"clone {self.clone_url} at {self.base} into {self.checkout}")
        else:
            lines.append(f"repair the work tree of {self.local}")
        lines.append(f"repair, writing patch.diff, report.md and trajectory.jsonl in {self.run_dir}")
        if self.target is not None and self.branch is None:
            lines.append(f"apply the patch to {self.target}")
        if self.target is not None and self.branch is not None:
            lines.append(f"create branch {self.branch} at {self.base} in {self.target}, apply, commit (hooks run)")
        if self.open_pr:
            lines.append(f"push {self.branch} to {self.repo.slug} (or a fork if the token cannot push there)")
            kind = "draft pull request" if self.draft else "pull request"
            where = f"{self.branch} -> {self.pr_base} on {self.repo.slug}"
            lines.append(f"open a {kind} {where} saying Fixes #{self.ref.number}")
        return lines


@dataclass
class IssueOutcome:
    plan: Plan
    result: RunResult | None = None  # None after --dry-run
    commit: str | None = None
    pushed_to: str | None = None
    pr_url: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.result is None or self.result.resolved else 1


def solve_issue(
    request: IssueRequest,
    settings: Settings,
    *,
    solver: Solver | None = None,
    environ: Mapping[str, str] | None = None,
    console: Console | None = None,
) -> IssueOutcome:
    """Do what ``request`` asks; raise :class:`FatalError` (token masked) on anything the user must fix."""
    env = os.environ if environ is None else environ
    console = console or Console(stderr=True)
    api_url = api_url_from(request.github_api_url, env)
    token = resolve_token(env, api_url)
    try:
        with GitHubClient(api_url, token) as client:
            plan = _plan(request, client, api_url, env, console)
            if plan.open_pr:
                _check_remote_branch(plan, token)
            if request.dry_run:
                console.print("[bold]Dry run[/bold] - would:")
                for step in plan.steps():
                    console.print(f"  - {step}")
                return IssueOutcome(plan)
            return _execute(plan, settings, client, token, solver, console)
    except FatalError as exc:
        clean = redact(exc.message, [token])
        if clean != exc.message:
            raise FatalError(clean, exit_code=exc.exit_code) from None
        raise


# --- deciding -----------------------------------------------------------------------------------------------


def _plan(
    request: IssueRequest, client: GitHubClient, api_url: str, environ: Mapping[str, str], console: Console
) -> Plan:
    local = _local_repo(request.repo)
    origin = gitops.origin_url(local) if local else None
    ref = parse_issue_ref(request.issue, origin, hosts=("github.com", web_host(api_url)))
    if request.open_pr and not client.authenticated:
        raise GitHubError("--open-pr needs a GitHub token: set GITHUB_TOKEN or run `gh auth login`")
    repo = client.get_repo(ref.owner, ref.repo)
    issue = client.get_issue(ref)
    if issue.state != "open":
        console.print(f"[yellow]warning:[/yellow] {ref} is {issue.state}; solving it anyway")
    branch = request.branch or (f"mendloop/issue-{ref.number}" if request.open_pr else None)
    run_dir = (request.out or default_run_dir(ref.instance_id, environ)).expanduser().resolve()
    base = request.base or repo.default_branch
    checkout = local if local is not None and request.base is None else run_dir / "checkout"
    wants_target = request.apply or branch is not None
    target = (local or checkout) if wants_target else None
    start = "HEAD"
    if local is not None and request.base is not None:
        start = base = gitops.rev_parse(local, request.base)
    if local is not None and target is not None:
        _check_local_target(local, branch)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FatalError(f"run directory {run_dir} is not empty: pass another --out")
    return Plan(
        ref=ref,
        issue=issue,
        repo=repo,
        run_dir=run_dir,
        clone_url=request.clone_url or repo.clone_url,
        base=base,
        start=start,
        pr_base=_pr_base(request.base, repo.default_branch),
        local=local,
        checkout=checkout,
        target=target,
        branch=branch,
        open_pr=request.open_pr,
        draft=request.draft,
    )


def _local_repo(path: Path | None) -> Path | None:
    if path is None:
        return None
    resolved = path.expanduser().resolve()
    if not resolved.is_dir() or not Git(resolved).is_work_tree():
        raise FatalError(f"--repo {path} is not a git repository")
    return resolved


def _check_local_target(local: Path, branch: str | None) -> None:
    """A branch in the user's clone needs a clean tree (the commit holds the fix only) and a free name."""
    if branch is None:
        return
    gitops.ensure_clean(local, f"mendloop commits on branch {branch}")
    if gitops.branch_exists(local, branch):
        raise FatalError(f"branch {branch!r} already exists in {local}: pass another --branch")


def _check_remote_branch(plan: Plan, token: str | None) -> None:
    """A re-run would push onto last run's branch and be refused after the whole repair: say so before it."""
    assert plan.branch is not None
    if plan.repo.can_push is False:
        return  # the branch goes to a fork, which may not exist yet
    env = gitops.auth_env(token, plan.clone_url)
    if gitops.remote_branch_exists(plan.clone_url, plan.branch, plan.local or Path.cwd(), env):
        raise FatalError(f"branch {plan.branch!r} already exists on {plan.repo.slug}: pass another --branch")


def _pr_base(base: str | None, default_branch: str) -> str:
    """A pull request targets a branch: ``--base`` when it names one, else the default branch."""
    if base is None or _SHA_RE.match(base) or base == "HEAD" or base.startswith("refs/tags/"):
        return default_branch
    return base.removeprefix("refs/heads/").removeprefix("origin/")


# --- doing --------------------------------------------------------------------------------------------------


def _execute(
    plan: Plan,
    settings: Settings,
    client: GitHubClient,
    token: str | None,
    solver: Solver | None,
    console: Console,
) -> IssueOutcome:
    outcome = IssueOutcome(plan)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    auth = gitops.auth_env(token, plan.clone_url)
    if plan.checkout != plan.local:
        source = str(plan.local) if plan.local is not None else plan.clone_url
        console.print(f"Cloning {source} at {plan.base} ...")
        gitops.clone_at(source, plan.checkout, plan.base, env=auth if plan.local is None else None)
    console.print(f"Solving {plan.ref}: {plan.issue.title}")
    task = Task(
        repo=plan.checkout,
        text=plan.issue.task_text(),
        instance_id=plan.ref.instance_id,
        title=plan.issue.title,
    )
    outcome.result = _run_repair(task, settings, plan.run_dir, solver or _default_solver(console))
    result = outcome.result
    if not result.resolved:
        outcome.notes.append(f"not resolved ({result.reason or result.status}); nothing applied")
        return outcome
    if not result.patch.strip():
        outcome.notes.append("resolved with an empty patch; nothing to apply")
        return outcome
    if plan.target is None:
        return outcome
    if plan.branch is not None:
        gitops.checkout_new_branch(plan.target, plan.branch, plan.start)
    Git(plan.target).apply(result.patch, index=plan.branch is not None)
    if plan.branch is None:
        outcome.notes.append(f"applied the patch to {plan.target}")
        return outcome
    outcome.commit = gitops.commit(plan.target, commit_message(plan.issue, result))
    outcome.notes.append(f"committed {outcome.commit[:12]} on branch {plan.branch} in {plan.target}")
    if plan.open_pr:
        _publish(plan, outcome, client, token, console)
    return outcome


def _default_solver(console: Console) -> Solver:
    """:func:`agent.runner.solve` with progress lines on the console; imported late (the graph is heavy)."""
    from agent.runner import solve

    def run(task: Task, settings: Settings, run_dir: Path) -> RunResult:
        return solve(task, settings, run_dir, progress=lambda message: console.print(f"  {message}"))

    return run


def _run_repair(task: Task, settings: Settings, run_dir: Path, solver: Solver) -> RunResult:
    safe = settings.model_copy(update={"pass_env": [n for n in settings.pass_env if n not in TOKEN_ENVS]})
    with _token_hidden():
        return solver(task, safe, run_dir)


@contextmanager
def _token_hidden() -> Iterator[None]:
    """Take the token variables out of this process's environment while the repair runs (sandboxes inherit
    it)."""
    saved = {name: os.environ.pop(name) for name in TOKEN_ENVS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _publish(plan: Plan, outcome: IssueOutcome, client: GitHubClient, token: str | None, console: Console) -> None:
    """Push the branch (to a fork when the token may not push upstream) and open the pull request."""
    assert plan.target is not None and plan.branch is not None
    head_owner, url = plan.repo.owner, plan.clone_url
    pushed = False
    if plan.repo.can_push is not False:
        try:
            console.print(f"Pushing {plan.branch} to {plan.repo.slug} ...")
            gitops.push(plan.target, url, plan.branch, env=gitops.auth_env(token, url))
            pushed = True
        except gitops.PushDenied:
            console.print(f"[yellow]The token cannot push to {plan.repo.slug}; forking.[/yellow]")
    if not pushed:
        fork = client.create_fork(plan.repo.owner, plan.repo.name)
        head_owner, url = fork.owner, fork.clone_url
        console.print(f"Pushing {plan.branch} to the fork {fork.slug} ...")
        gitops.push(plan.target, url, plan.branch, env=gitops.auth_env(token, url))
    outcome.pushed_to = f"{head_owner}/{plan.repo.name}:{plan.branch}"
    head = plan.branch if head_owner == plan.repo.owner else f"{head_owner}:{plan.branch}"
    pull = client.create_pull(
        plan.repo.owner,
        plan.repo.name,
        head=head,
        base=plan.pr_base,
        title=f"Fix #{plan.ref.number}: {_one_line(plan.issue.title)}",
        body=pr_body(plan),
        draft=plan.draft,
    )
    outcome.pr_url = str(pull.get("html_url", ""))


# --- texts --------------------------------------------------------------------------------------------------


def commit_message(issue: Issue, result: RunResult) -> str:
    """``Fix #N: title``, a short summary, and a ``Fixes #N`` trailer: the commit references the issue."""
    n = issue.ref.number
    subject = f"Fix #{n}: {_one_line(issue.title)}"
    if len(subject) > 72:
        subject = subject[:71].rstrip() + "…"
    summary = (
        f"Repaired by mendloop for {issue.ref}: {result.tests_passed} tests pass, "
        f"{result.tests_failed} fail, after {result.iterations} round(s)."
    )
    return scrub(f"{subject}\n\n{summary}\n\nFixes #{n}\n")


def pr_body(plan: Plan) -> str:
    """The run's ``report.md`` (cut to what GitHub accepts) and ``Fixes #N``, closing the issue on merge."""
    report_path = plan.run_dir / "report.md"
    report = report_path.read_text(encoding="utf-8", errors="replace") if report_path.is_file() else ""
    if len(report) > _PR_BODY_LIMIT:
        report = report[:_PR_BODY_LIMIT] + "\n\n…(report cut; the full report is in the run directory)\n"
    return scrub(f"{report.rstrip()}\n\nFixes #{plan.ref.number}\n".lstrip())


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(untitled)"
