"""The pre-commit front door: run the configured checks, and when they fail, repair the staged files in place.

Why this shape: pre-commit's convention is that a hook which modifies files exits 1, and the user reviews the change,
``git add``s it and commits again. So ``fix`` never commits: it writes the resolved patch to the working tree, prints
the diff and returns 1. Passing checks return 0 before any model client exists, so a green commit costs no request.

Only staged content is repaired. Under pre-commit (env ``PRE_COMMIT=1``) the unstaged changes are already stashed by
pre-commit, so the working tree *is* the staged content. Run directly, a file with unstaged changes is refused unless
``force``: the repair would otherwise mix the fix into work the user has not staged.

Infrastructure failures (no endpoint, an unreachable one, a CI runner without network, no sandbox) raise
:class:`Unavailable`, a ``FatalError``; with ``fail_open`` they become a one-line warning and exit 0, because a hook
that blocks every commit whenever a server is down would be uninstalled by the next morning.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agent.config import Settings
from agent.model import EndpointError
from agent.task import RunResult, Task
from sandboxes.base import SandboxError
from sandboxes.select import open_sandbox
from tools.errors import FatalError
from tools.git import Git
from tools.testing import run_tests
from tools.workspace import Workspace, apply_patch

__all__ = [
    "CheckResult",
    "FixOutcome",
    "Unavailable",
    "endpoint_problem",
    "repair_task",
    "run_checks",
    "run_fix",
    "unstaged_files",
]

PROBE_TIMEOUT = 5.0
FEEDBACK_CHARS = 6000  # per failing check, in the task text
CI_VARS = ("PRE_COMMIT_CI", "CI")

Progress = Callable[[str], None]
Solver = Callable[[Task, Settings, Path], RunResult]


class Unavailable(FatalError):
    """The repair cannot run here (no endpoint, no network, no sandbox): what ``--fail-open`` lets through.

    ``failures`` names the checks that failed (empty when the checks themselves could not run).
    """

    def __init__(self, message: str, *, failures: str = "") -> None:
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class CheckResult:
    """One configured check (a lint command or the test command) and how it ended on the staged tree."""

    kind: str  # "lint" or "test"
    command: str
    passed: bool
    summary: str  # one line
    feedback: str = ""  # what the model is shown when it failed
    failed_tests: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FixOutcome:
    """What ``run_fix`` did; ``exit_code`` follows pre-commit's convention (1 = files modified or still failing)."""

    exit_code: int
    message: str  # one line for the user
    diff: str = ""  # the change written to the working tree
    checks: list[CheckResult] = field(default_factory=list)
    result: RunResult | None = None


# --- git ------------------------------------------------------------------------------------------------------------


def git_root(path: Path) -> Path:
    """The top of the work tree containing ``path``; pre-commit runs hooks there, a user may run from anywhere."""
    done = Git(path).run("rev-parse", "--show-toplevel", check=False)
    if done.returncode != 0:
        raise FatalError(f"{path} is not inside a git repository: mendloop fix repairs staged changes")
    return Path(done.stdout.strip()).resolve()


def repo_relative(repo: Path, files: Sequence[str], cwd: Path) -> list[str]:
    """File arguments (relative to ``cwd``, as pre-commit and shells pass them) as ``/``-paths relative to ``repo``."""
    out: list[str] = []
    for name in files:
        path = (cwd / name).resolve()
        try:
            out.append(path.relative_to(repo).as_posix())
        except ValueError:
            raise FatalError(f"{name} is outside the repository {repo}") from None
    return out


def unstaged_files(repo: Path, files: Sequence[str] = ()) -> list[str]:
    """Tracked files among ``files`` (all when empty) whose working-tree content differs from the index."""
    done = Git(repo).run("diff", "--name-only", "-z", "--no-renames", "--", *files)
    return sorted(p for p in done.stdout.split("\0") if p)


# --- checks ---------------------------------------------------------------------------------------------------------


def run_checks(repo: Path, settings: Settings, scratch: Path) -> list[CheckResult]:
    """Run every lint command, then the test command, in the configured sandbox over a scratch copy of ``repo``.

    A suite that collects no tests counts as passing: there is nothing a repair could make pass.
    """
    workspace = Workspace.create(repo, scratch)
    box = open_sandbox(settings.sandbox_spec(), workspace.root)
    results: list[CheckResult] = []
    try:
        for cmd in settings.lint_cmds:
            done = box.run(cmd, timeout=settings.command_timeout)
            ok = done.exit_code == 0 and not done.timed_out
            summary = "passed" if ok else ("timed out" if done.timed_out else f"failed (exit {done.exit_code})")
            output = _tail(done.output.strip(), FEEDBACK_CHARS)
            results.append(CheckResult("lint", cmd, ok, summary, "" if ok else output))
        report = run_tests(box, settings.test_cmd, timeout=settings.command_timeout * 5)
        ok = report.status in ("passed", "no_tests")
        feedback = "" if ok else report.feedback(FEEDBACK_CHARS)
        # a plain command's one case is named after the command, which the repair runs joined to the lint commands:
        # only real test ids can be required to pass by name
        named = [c.id for c in report.cases if c.outcome in ("failed", "error") and c.kind != "command"]
        results.append(CheckResult("test", settings.test_cmd, ok, report.summary(), feedback, named))
    finally:
        box.close()
    return results


def describe_failures(checks: Sequence[CheckResult]) -> str:
    """Short lines naming what fails, for the user (the model gets :func:`repair_task`'s fuller text)."""
    lines = []
    for check in checks:
        if check.passed:
            continue
        lines.append(f"  {check.kind} `{check.command}`: {check.summary}")
        lines.extend(f"    {test}" for test in check.failed_tests[:10])
    return "\n".join(lines)


def repair_task(repo: Path, checks: Sequence[CheckResult], files: Sequence[str], settings: Settings) -> Task:
    """The task for the repair loop: what failed, and the one command that must pass afterwards.

    Lint commands are chained before the test command, so a fix is only "resolved" when the linters pass too (the
    loop itself knows a single test command). The failing tests are required to pass, like SWE-bench's FAIL_TO_PASS.
    """
    failing = [c for c in checks if not c.passed]
    parts = ["The pre-commit checks fail on the staged changes. Make them pass by fixing the code."]
    if files:
        parts.append("Files being committed: " + ", ".join(files))
    for check in failing:
        parts.append(f"## {check.kind} check `{check.command}` {check.summary}\n\n{check.feedback}".rstrip())
    command = " && ".join([*settings.lint_cmds, settings.test_cmd]) if settings.lint_cmds else None
    failed_tests = [t for c in failing if c.kind == "test" for t in c.failed_tests]
    return Task(
        repo=repo,
        text="\n\n".join(parts) + "\n",
        instance_id=f"precommit-{repo.name}",
        title="pre-commit checks fail",
        test_cmd=command,
        fail_to_pass=failed_tests,
        editable=list(files),
    )


# --- the endpoint ---------------------------------------------------------------------------------------------------


def endpoint_problem(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """Why no model can be asked from here, in one line; ``None`` when the endpoint answers at all.

    Any HTTP answer counts as reachable (CWM's own server has no ``/models`` route); only a transport failure
    (refused, no route, DNS, timeout) means the network or the server is not there.
    """
    ci = next((name for name in CI_VARS if environ.get(name)), None)
    if not settings.base_url:
        if ci:
            return (
                f"no model endpoint in this CI environment ({ci} is set, and such runners usually block the "
                "network): set MENDLOOP_BASE_URL, or skip the hook here"
            )
        return "no model endpoint configured: pass --base-url URL or set MENDLOOP_BASE_URL"
    url = settings.base_url.rstrip("/") + "/models"
    try:
        httpx.get(url, timeout=PROBE_TIMEOUT)
    except httpx.TransportError as exc:
        where = f" ({ci} is set: is the network blocked?)" if ci else ""
        return f"the model endpoint {settings.base_url} is unreachable: {type(exc).__name__}{where}"
    return None


# --- the whole hook -------------------------------------------------------------------------------------------------


def run_fix(
    repo: Path,
    files: Sequence[str],
    settings: Settings,
    *,
    run_dir: Path,
    solver: Solver,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> FixOutcome:
    """Check, and repair if needed; raises :class:`Unavailable` for infrastructure failures (the caller decides
    whether ``--fail-open`` lets them pass). ``files`` are repo-relative; they bound what the model may edit.
    """
    env = os.environ if environ is None else environ
    say = progress or (lambda _m: None)
    say("running the checks: " + ", ".join([*settings.lint_cmds, settings.test_cmd]))
    with tempfile.TemporaryDirectory(prefix="mendloop-fix-") as tmp:
        try:
            checks = run_checks(repo, settings, Path(tmp) / "ws")
        except SandboxError as exc:
            raise Unavailable(f"cannot run the checks: {exc.message}") from None
    if all(c.passed for c in checks):
        return FixOutcome(0, "mendloop: all checks pass", checks=checks)
    failures = describe_failures(checks)
    if env.get("PRE_COMMIT") != "1" and not force:
        dirty = unstaged_files(repo, files)
        if dirty:
            message = (
                f"mendloop: checks fail, but {', '.join(dirty)} has unstaged changes; only staged content is "
                "repaired: stage or stash them first, or pass --force"
            )
            return FixOutcome(1, message + "\n" + failures, checks=checks)
    problem = endpoint_problem(settings, env)
    if problem:
        raise Unavailable(problem, failures=failures)
    task = repair_task(repo, checks, files, settings)
    try:
        result = solver(task, settings, run_dir)
    except (SandboxError, EndpointError) as exc:
        raise Unavailable(exc.message, failures=failures) from None
    if not result.resolved or not result.patch.strip():
        still = ", ".join(result.still_failing[:10]) or result.reason
        message = f"mendloop: not fixed ({result.reason}); nothing was written. Still failing: {still}"
        return FixOutcome(1, message, checks=checks, result=result)
    apply_patch(repo, result.patch)
    changed = ", ".join(_patched_files(result.patch))
    message = f"mendloop: fixed {changed}; review the diff, `git add` it and commit again (run: {result.run_dir})"
    return FixOutcome(1, message, diff=result.patch, checks=checks, result=result)


def _patched_files(patch: str) -> list[str]:
    return [line.split(" b/", 1)[-1] for line in patch.splitlines() if line.startswith("diff --git a/")]


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "[...]\n" + text[-limit:]
