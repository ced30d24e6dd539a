"""reproduce: ask the model for a test that fails now for the reason the task describes, and keep it only then.

Why before the fix: a failing test that the model itself wrote turns "I think it's fixed" into "the check passes";
CWM's own pipeline kept a reproduction test only if it reproduced the issue on the unpatched code. Rejected tests go
back to the model with the reason, a bounded number of times; a run without an accepted test goes on without one.

The test takes the form of the project's own tests, told by the test command: pytest functions, a unittest
``TestCase``, or - for any other command (``python test_gcd.py``, ``make test``) - a standalone script
``test_mendloop_repro.py`` at the top of the repository, run as ``python test_mendloop_repro.py``.

It is a conversation of its own in the protocol the write step speaks (``agent/nodes/protocol.py``): the environment
text states its turns (``reproduce_attempts``), every observation is ``<output>`` with a ``<budget>``, and (cwm,
strict) an answer CWM's environment would have refused gets its format error and runs nothing.

``generated_tests`` M > 1 is the test half of CWM's test-time scaling: M tests sampled independently (one request
with ``n=M``), each written to its own file (``test_mendloop_repro_1.py``...) and judged on its own; every one that
reproduces the problem is kept, the others are dropped with their reason (in the report). ``verify`` later runs each
candidate patch against them (``agent/nodes/selection.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from agent.budget import BudgetExceeded
from agent.context import RunContext
from agent.nodes.common import Turn, hypothesis_args, protection, test_cmd
from agent.nodes.protocol import (
    Episode,
    environment_message,
    format_message,
    observation,
    reasoning_on,
    strict,
    without_marks,
)
from agent.nodes.repo_context import gather, is_test_file
from agent.prompts import render
from agent.state import RepairState
from tools.edits import CreateFile, Edit, WholeFile
from tools.patching import apply_edit
from tools.testgen import Verdict, expected_exceptions, judge
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


def _indexed(path: str, number: int) -> str:
    """Where the ``number``-th of several sampled tests goes: ``tests/test_mendloop_repro_2.py``."""
    stem, dot, ext = path.rpartition(".")
    return f"{stem}_{number}.{ext}" if dot else f"{path}_{number}"


@dataclass
class _Sample:
    """One answer judged: kept or not, why, the files it wrote (kept), and what the model is told."""

    verdict: Verdict | None
    note: str
    observation: str
    written: list[str]
    first: TestReport | None = None
    format_error: bool = False  # CWM's environment refused the answer: told as a bare message, nothing ran


def _judge(ctx: RunContext, state: RepairState, turn: Turn, *, path: str, number: int | None, guard: Any) -> _Sample:
    """Write the test an answer holds (at its own numbered path when several are sampled), run it twice on the
    unpatched code, and keep it only when it fails for the reason the task describes."""
    root = ctx.workspace.root
    cmd = test_cmd(ctx, state)
    parsed = turn.parsed
    error = ""
    if strict(ctx):
        error = (parsed.think_error if reasoning_on(ctx) else "") or parsed.format_error
    if error:
        return _Sample(None, error, error, [], format_error=True)
    edits, refused = _test_files(parsed.actions)
    observations = [*parsed.problems, *refused]
    if number is not None:
        edits = [
            replace(e, path=_indexed(e.path, number)) if isinstance(e, CreateFile | WholeFile) else e for e in edits
        ]
    written: list[str] = []
    for edit in edits:
        outcome = apply_edit(root, edit, protected=guard)
        observations.append(outcome.message)
        if outcome.ok:
            written.extend(outcome.changed)
    if not written:
        observations.append(f"No new test file was created. Create `{path}` with a <tool: create> block.")
        return _Sample(None, "no test file in the answer", "\n".join(o for o in observations if o), [])
    args = hypothesis_args(root, written)
    first = run_tests(ctx.sandbox, cmd, tests=written, timeout=ctx.settings.command_timeout, extra_args=args)
    second = run_tests(ctx.sandbox, cmd, tests=written, timeout=ctx.settings.command_timeout, extra_args=args)
    verdict = judge(first, second, written, expected_exceptions(ctx.task.text))
    if not verdict.accepted:
        for rel in written:
            (root / rel).unlink(missing_ok=True)
        observations.append(f"The test was rejected: {verdict.reason}\n{first.feedback(2000)}")
    return _Sample(verdict, verdict.reason, "\n".join(o for o in observations if o), written, first)


def _label(attempt: int, number: int | None) -> str:
    return f"attempt {attempt}" if number is None else f"attempt {attempt}, test {number}"


def reproduce(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Ask for a reproduction test; with ``generated_tests`` M > 1, M of them sampled independently in one request
    (CWM's test-time scaling: each is judged on its own, all that reproduce the problem are kept). A run that keeps
    none after the first request goes on with the first sample's conversation, one answer per attempt."""
    ctx = runtime.context
    if not ctx.settings.reproduce or state.get("stop_reason"):
        return {}
    root = ctx.workspace.root
    cmd = test_cmd(ctx, state)
    form = command_form(cmd)
    path = _repro_path(root, form)
    words = form_instructions(form, cmd, path)
    prompt = render(NODE, task=ctx.task.text, context=gather(root, ctx.task.text), **words)
    episode = Episode(ctx, ctx.settings.reproduce_attempts)
    messages = [environment_message(ctx, episode.turns), {"role": "user", "content": prompt}]
    wanted = max(1, ctx.settings.generated_tests)
    notes: list[str] = []
    guard = protection(ctx, state)
    kept: list[_Sample] = []
    numbered = 0
    for attempt in range(1, ctx.settings.reproduce_attempts + 1):
        n = wanted if attempt == 1 else 1
        ctx.progress(f"asking for {'a reproduction test' if n == 1 else f'{n} reproduction tests'} (attempt {attempt})")
        try:
            completions = ctx.model.sample(without_marks(messages), node=NODE, n=n)
        except BudgetExceeded as exc:
            return {"stop_reason": str(exc), "repro_notes": notes}
        followed: tuple[Turn, _Sample] | None = None
        for completion in completions:
            answered = [*messages, ctx.dialect.assistant_message(completion)]
            turn = Turn(completion, ctx.dialect.parse(completion), answered)
            number = None
            if wanted > 1:
                numbered += 1
                number = numbered
            sample = _judge(ctx, state, turn, path=path, number=number, guard=guard)
            accepted = sample.verdict is not None and sample.verdict.accepted
            verb = ("kept" if accepted else "rejected") if number is None else ("kept" if accepted else "dropped")
            notes.append(f"{_label(attempt, number)}: {verb}: {sample.note}")
            if accepted:
                kept.append(sample)
            followed = followed or (turn, sample)
        if kept:
            return _kept(ctx, state, kept, notes)
        if followed is None:
            break
        turn, sample = followed
        if sample.format_error:
            messages = format_message(turn.messages, turn.completion, sample.observation)
        else:
            text = f"{sample.observation}\n\nWrite the reproduction test again, fixing what was wrong."
            messages = observation(ctx, episode, turn.messages, turn.completion, text)
    ctx.progress("no reproduction test was kept; going on without one")
    return {
        "repro_notes": [*notes, "no reproduction test kept"],
        "workspace_patch": ctx.workspace.diff(),
        "repro_files": [],
        "repro_ids": [],
    }


def _kept(ctx: RunContext, state: RepairState, kept: list[_Sample], notes: list[str]) -> dict[str, Any]:
    files = [rel for sample in kept for rel in sample.written]
    ids = [test for sample in kept if sample.verdict is not None for test in sample.verdict.failing]
    reasons = "; ".join(sample.note for sample in kept)
    ctx.progress(f"reproduction test{'s' if len(kept) > 1 else ''} kept: {reasons}")
    shown = TestReport.from_dict(state["baseline"]) if state.get("baseline") else None
    for sample in kept:
        if sample.first is not None:
            shown = merge_reports(shown, sample.first) if shown else sample.first
    update: dict[str, Any] = {
        "repro_files": files,
        "repro_ids": ids,
        "repro_notes": notes,
        "workspace_patch": ctx.workspace.diff(),
    }
    if shown is not None:
        update["last_report"] = shown.to_dict()
    return update
