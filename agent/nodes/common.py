"""Small helpers the nodes share: message building, protected-file checks, test ids of files.

Why here and not in each node: the write and reproduce nodes talk to the model the same way, and both must refuse
the same edits; one definition keeps them from drifting apart.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.context import RunContext
from agent.prompts import template
from agent.state import RepairState
from sandboxes.base import Sandbox
from tools.testing import TestReport, merge_reports, run_tests


def system_message(ctx: RunContext) -> dict[str, Any]:
    """The dialect's system prompt with the tool description for that dialect."""
    dialect = ctx.dialect
    environment = template("tools_cwm" if dialect.name == "cwm" else "tools_openai").strip()
    return {"role": "system", "content": dialect.system_prompt(environment)}


def add_user(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Append a user turn, merging into a trailing user turn so roles keep alternating (some templates insist)."""
    out = list(messages)
    if out and out[-1].get("role") == "user" and isinstance(out[-1].get("content"), str):
        out[-1] = {**out[-1], "content": f"{out[-1]['content'].rstrip()}\n\n{text}"}
    else:
        out.append({"role": "user", "content": text})
    return out


def protection(ctx: RunContext, state: RepairState) -> Callable[[str], str | None]:
    """The rule the patcher applies: existing tests and accepted reproduction tests may not be edited."""
    protected = set(state.get("protected", [])) if ctx.settings.protect_tests else set()
    repro = set(state.get("repro_files", []))
    editable = [*ctx.settings.editable, *ctx.task.editable]

    def check(path: str) -> str | None:
        rel = path.removeprefix("./")
        if rel in repro:
            return f"{rel} is an accepted reproduction test; a fix may not weaken the check. Change the code instead."
        if rel in protected:
            return f"{rel} is one of the repository's tests, which are protected; a fix may not weaken them."
        if ctx.settings.protect_tests and rel.rsplit("/", 1)[-1] == "conftest.py":
            return f"{rel}: a new conftest.py could skip or rewrite tests; fix the code under test instead."
        if editable and not any(fnmatch.fnmatch(rel, pat) for pat in editable):
            return f"{rel} is outside the files this run may edit ({', '.join(editable)})."
        return None

    return check


def hypothesis_args(root: Path, files: Sequence[str]) -> list[str]:
    """Property tests run derandomized (a fixed seed) so that a kept test fails the same way on every run."""
    for rel in files:
        try:
            if "hypothesis" in (root / rel).read_text(encoding="utf-8"):
                return ["--hypothesis-seed=0"]
        except (OSError, UnicodeDecodeError):
            continue
    return []


def test_cmd(ctx: RunContext, state: RepairState) -> str:
    return state.get("test_cmd") or ctx.task.test_cmd or ctx.settings.test_cmd


def run_suite(ctx: RunContext, state: RepairState, sandbox: Sandbox | None = None) -> TestReport:
    """The test command as configured, plus any accepted reproduction test it did not collect by itself.

    Why two runs at most and not one with the files appended: naming a file on pytest's command line narrows the run to
    that file, so the regression suite would silently stop being checked.
    """
    box = sandbox or ctx.sandbox
    cmd = test_cmd(ctx, state)
    timeout = ctx.settings.command_timeout * 5
    args = hypothesis_args(ctx.workspace.root, state.get("repro_files", []))
    report = run_tests(box, cmd, timeout=timeout, extra_args=args)
    collected = {case.id.split("::", 1)[0] for case in report.cases}
    missing = [f for f in state.get("repro_files", []) if f not in collected]
    if not missing:
        return report
    return merge_reports(report, run_tests(box, cmd, tests=missing, timeout=timeout, extra_args=args))
