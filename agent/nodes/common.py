"""What the nodes share: one model turn (``ask``), message building, protected-file checks, the test suite run and
the definition of "resolved".

Why here and not in each node: the write and reproduce nodes talk to the model the same way, both must refuse the
same edits, and verify and finish must agree on what counts as resolved; one definition keeps them from drifting.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.context import RunContext
from agent.dialects.base import Parsed, observation_body
from agent.model import Completion
from agent.state import RepairState
from sandboxes.base import Sandbox
from tools.testing import TestReport, case_in_file, merge_reports, run_tests


def system_message(ctx: RunContext, *, tools: bool = True) -> dict[str, Any]:
    """The dialect's system prompt, with the tool description (``tools``) or without (a fresh round asks for code)."""
    dialect = ctx.dialect
    return {"role": "system", "content": dialect.system_prompt(dialect.tool_description() if tools else "")}


def history(ctx: RunContext) -> str:
    """ "fresh" (each round a new request) or "conversation" (one growing exchange, tools included).

    ``auto``: CWM keeps the conversation it was trained on; other models get fresh rounds.
    """
    if ctx.settings.history != "auto":
        return ctx.settings.history
    return "conversation" if ctx.dialect.name == "cwm" else "fresh"


@dataclass
class Turn:
    """One model turn: the answer, what it asked for, and the conversation with the answer appended."""

    completion: Completion
    parsed: Parsed
    messages: list[dict[str, Any]]

    @property
    def tokens(self) -> int:
        return self.completion.prompt_tokens + self.completion.completion_tokens


def ask(ctx: RunContext, messages: list[dict[str, Any]], node: str) -> Turn:
    """Send ``messages``, parse the answer in the run's dialect, and append it. Raises ``BudgetExceeded``."""
    completion = ctx.model.complete(messages, node=node, tools=ctx.dialect.tools())
    parsed = ctx.dialect.parse(completion)
    return Turn(completion, parsed, [*messages, ctx.dialect.assistant_message(completion)])


def observe(ctx: RunContext, turn: Turn, text: str, *, remaining_turns: int | None = None) -> list[dict[str, Any]]:
    """The conversation after ``turn`` with the observation ``text`` appended the way the dialect wants it."""
    body = observation_body(text, remaining_turns=remaining_turns, remaining_tokens=None)
    return [*turn.messages, *ctx.dialect.observation_messages(turn.completion, body)]


def is_resolved(report: TestReport, state: RepairState, ctx: RunContext) -> bool:
    """All tests pass, and every test that must pass (reproduction, FAIL_TO_PASS, PASS_TO_PASS) was seen passing."""
    if report.status != "passed":
        return False
    required = [*state.get("repro_ids", []), *ctx.task.fail_to_pass, *ctx.task.pass_to_pass]
    passed = set(report.passed)
    return all(test in passed for test in required)


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
    """Property tests run derandomized (a fixed seed) so that a kept test fails the same way on every run.

    These are pytest options: ``run_tests`` passes them to pytest only (unittest and scripts never see them).
    """
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
    """The test command as configured, plus any accepted reproduction test it did not run by itself.

    Why two runs at most and not one with the files appended: naming a file on pytest's command line narrows the run to
    that file, so the regression suite would silently stop being checked. The second run takes the command's form
    (``run_tests`` with ``tests=``): pytest on the files, unittest on their modules, and for any other command
    ``python FILE`` - its own case in the merged report, so a kept script counts like any test.
    """
    box = sandbox or ctx.sandbox
    cmd = test_cmd(ctx, state)
    timeout = ctx.settings.command_timeout * 5
    repro = list(state.get("repro_files", []))
    args = hypothesis_args(ctx.workspace.root, repro)
    report = run_tests(box, cmd, timeout=timeout, extra_args=args)
    missing = [f for f in repro if not any(case_in_file(case, f, cmd) for case in report.cases)]
    present = {case.id for case in report.cases}
    if not missing and any(test not in present for test in state.get("repro_ids", [])):
        missing = repro  # the suite ran the file under other ids than the ones that must pass: run it as they were
    if not missing:
        return report
    return merge_reports(report, run_tests(box, cmd, tests=missing, timeout=timeout, extra_args=args))
