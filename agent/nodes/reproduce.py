"""reproduce: ask the model for a test that fails now for the reason the task describes, and keep it only then.

Why before the fix: a failing test that the model itself wrote turns "I think it's fixed" into "the check passes";
CWM's own pipeline kept a reproduction test only if it reproduced the issue on the unpatched code. Rejected tests go
back to the model with the reason, a bounded number of times; a run without an accepted test goes on without one.

The test takes the form of the project's own tests, told by the test command: pytest functions, a unittest
``TestCase``, or - for any other command (``python test_gcd.py``, ``make test``) - a standalone script
``test_mendloop_repro.py`` at the top of the repository, run as ``python test_mendloop_repro.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from agent.budget import BudgetExceeded
from agent.context import RunContext
from agent.nodes.common import add_user, ask, hypothesis_args, observe, protection, system_message, test_cmd
from agent.nodes.repo_context import gather, is_test_file
from agent.prompts import render
from agent.state import RepairState
from tools.edits import CreateFile, Edit, WholeFile
from tools.patching import apply_edit
from tools.testgen import expected_exceptions, judge
from tools.testing import Form, TestReport, command_form, merge_reports, python_of, run_tests

NODE = "reproduce"


def _repro_path(root: Path, form: Form) -> str:
    """Where the test goes: beside the project's tests; a script at the top, where ``python FILE`` imports from."""
    if form != "command" and (root / "tests").is_dir():
        return "tests/test_mendloop_repro.py"
    return "test_mendloop_repro.py"


def form_instructions(form: Form, cmd: str, path: str) -> dict[str, str]:
    """The prompt's words for the test's form: what to write (``how``) and what else may help (``extra``)."""
    if form == "pytest":
        how = (
            f"The tests here run with pytest (`{cmd}`): create the file `{path}` with one or a few small test "
            "functions named `test_*`. Import the project's code as its own tests do."
        )
        extra = (
            " Where the task is about a function with a clear contract (a property that must hold for every input), "
            "you may add a Hypothesis property test (`from hypothesis import given, strategies as st`) next to the "
            "example-based one."
        )
        return {"how": how, "extra": extra}
    if form == "unittest":
        how = (
            f"The tests here run with unittest (`{cmd}`), not pytest: create the file `{path}` with a "
            "`unittest.TestCase` subclass whose test methods are named `test_*` and check with `self.assertEqual` "
            "and friends. Import the project's code as its own tests do."
        )
        return {"how": how, "extra": ""}
    python = python_of(cmd)
    how = (
        f"The tests here run as a command (`{cmd}`), not with pytest or unittest: create `{path}`, a standalone "
        f"Python script that is run as `{python} {path}` from the top of the repository. It imports the project's "
        "code, calls it and checks the results with plain `assert` statements (at module level, or in functions the "
        "script itself calls), so that it exits with an AssertionError while the problem is there and exits 0 once "
        "it is fixed."
    )
    return {"how": how, "extra": ""}


def _test_files(actions: list[Any]) -> tuple[list[Edit], list[str]]:
    """The new test files in an answer; anything else is refused here (this is not the time to fix)."""
    keep: list[Edit] = []
    refused: list[str] = []
    for action in actions:
        if isinstance(action, CreateFile | WholeFile) and is_test_file(action.path):
            keep.append(action)
        else:
            refused.append(f"Ignored {type(action).__name__}: only new test files are wanted at this step.")
    return keep, refused


def reproduce(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    if not ctx.settings.reproduce or state.get("stop_reason"):
        return {}
    root = ctx.workspace.root
    cmd = test_cmd(ctx, state)
    form = command_form(cmd)
    path = _repro_path(root, form)
    words = form_instructions(form, cmd, path)
    prompt = render(NODE, task=ctx.task.text, context=gather(root, ctx.task.text), **words)
    messages = [system_message(ctx), {"role": "user", "content": prompt}]
    notes: list[str] = []
    guard = protection(ctx, state)
    for attempt in range(1, ctx.settings.reproduce_attempts + 1):
        ctx.progress(f"asking for a reproduction test (attempt {attempt})")
        try:
            answer = ask(ctx, messages, NODE)
        except BudgetExceeded as exc:
            return {"stop_reason": str(exc), "repro_notes": notes}
        parsed = answer.parsed
        edits, observations = _test_files(parsed.actions)
        observations = [*parsed.problems, *observations]
        written: list[str] = []
        for edit in edits:
            outcome = apply_edit(root, edit, protected=guard)
            observations.append(outcome.message)
            if outcome.ok:
                written.extend(outcome.changed)
        if written:
            args = hypothesis_args(root, written)
            first = run_tests(ctx.sandbox, cmd, tests=written, timeout=ctx.settings.command_timeout, extra_args=args)
            second = run_tests(ctx.sandbox, cmd, tests=written, timeout=ctx.settings.command_timeout, extra_args=args)
            verdict = judge(first, second, written, expected_exceptions(ctx.task.text))
            notes.append(f"attempt {attempt}: {'kept' if verdict.accepted else 'rejected'}: {verdict.reason}")
            if verdict.accepted:
                ctx.progress(f"reproduction test kept: {verdict.reason}")
                baseline = TestReport.from_dict(state["baseline"]) if state.get("baseline") else None
                shown = merge_reports(baseline, first) if baseline else first
                return {
                    "last_report": shown.to_dict(),
                    "repro_files": written,
                    "repro_ids": verdict.failing,
                    "repro_notes": notes,
                    "workspace_patch": ctx.workspace.diff(),
                }
            for rel in written:
                (root / rel).unlink(missing_ok=True)
            observations.append(f"The test was rejected: {verdict.reason}\n{first.feedback(2000)}")
        else:
            notes.append(f"attempt {attempt}: no test file in the answer")
            observations.append(f"No new test file was created. Create `{path}` with a <tool: create> block.")
        text = "\n".join(o for o in observations if o)
        messages = add_user(observe(ctx, answer, text), "Write the reproduction test again, fixing what was wrong.")
    ctx.progress("no reproduction test was kept; going on without one")
    return {
        "repro_notes": [*notes, "no reproduction test kept"],
        "workspace_patch": ctx.workspace.diff(),
        "repro_files": [],
        "repro_ids": [],
    }
