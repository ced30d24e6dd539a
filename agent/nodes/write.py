"""write: ask the model for the change, apply every edit through the tolerant ladder, gate on syntax.

Two ways to ask (``history``): a fresh request each round (``agent/nodes/fresh.py``: the code and the latest evidence
in, the fixed code out), or one conversation with tools, below.

Why a few turns inside one round of the conversation: a model often looks before it edits (``<tool: bash>``) or
writes an edit that does not apply. Those are observations it gets back at once, within the same round, instead of
costing a whole test run.
With ``--candidates K`` this node runs K times in parallel (LangGraph ``Send``), each in its own copy of the
workspace; ``verify`` then picks the winner.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.budget import BudgetExceeded
from agent.context import RunContext
from agent.dialects.base import BashCall, Submit
from agent.nodes.common import add_user, ask, history, observe, protection, system_message, test_cmd
from agent.nodes.evidence import gather_evidence
from agent.nodes.fresh import write_fresh
from agent.nodes.repo_context import gather
from agent.prompts import render
from agent.state import RepairState
from tools.patching import apply_edit, check_syntax
from tools.testing import TestReport
from tools.workspace import Workspace

NODE = "write"
TURNS_PER_ROUND = 3


def _first_prompt(ctx: RunContext, state: RepairState) -> str:
    report = TestReport.from_dict(state["last_report"]) if state.get("last_report") else None
    tests = report.feedback(6000) if report else "(not run)"
    repro = state.get("repro_files") or []
    note = f" nor the reproduction test {', '.join(repro)}" if repro else ""
    hints = report.output[-4000:] if report else ""
    return render(
        NODE,
        task=ctx.task.text,
        context=gather(ctx.workspace.root, ctx.task.text, hints),
        tests=tests,
        protected_note=note,
    )


def _candidate_workspace(ctx: RunContext, state: RepairState) -> tuple[Workspace, bool]:
    """Where this write edits: the workspace itself, or a private copy when sampling several candidates."""
    index = state.get("candidate")
    if index is None or ctx.settings.candidates <= 1:
        return ctx.workspace, False
    dest = ctx.run_dir / "candidates" / f"round{state.get('iteration', 0) + 1}-{index}"
    return ctx.workspace.copy_to(dest), True


def write(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One round of writing: fresh (code in, fixed code out; K samples at once) or a turn of the conversation."""
    ctx = runtime.context
    if state.get("stop_reason"):
        return {}
    if history(ctx) == "fresh":
        if state.get("evidence"):
            return write_fresh(ctx, state)
        # round 1: the evidence is the last test run before any change (the baseline, with a reproduction test)
        report = TestReport.from_dict(state["last_report"]) if state.get("last_report") else None
        evidence = gather_evidence(ctx, report, test_cmd(ctx, state)) if report else {}
        return {**write_fresh(ctx, {**state, "evidence": evidence}), "evidence": evidence}
    return _write_conversation(ctx, state)


def _write_conversation(ctx: RunContext, state: RepairState) -> dict[str, Any]:
    workspace, private = _candidate_workspace(ctx, state)
    root = workspace.root
    messages = list(state.get("messages") or [])
    if not messages:
        messages = [system_message(ctx), {"role": "user", "content": _first_prompt(ctx, state)}]
    else:
        messages = add_user(messages, state.get("feedback") or "The tests still fail. Fix the code.")
    guard = protection(ctx, state)
    snap = workspace.snapshot()
    tokens = 0
    applied: list[str] = []
    log: list[str] = []
    stop_reason = ""
    for turn in range(TURNS_PER_ROUND):
        ctx.progress(f"asking for a change (round {state.get('iteration', 0) + 1}, turn {turn + 1})")
        try:
            answer = ask(ctx, messages, NODE)
        except BudgetExceeded as exc:
            stop_reason = str(exc)
            break
        tokens += answer.tokens
        parsed = answer.parsed
        observations = list(parsed.problems)
        looked = submitted = False
        changed: list[str] = []
        for action in parsed.actions:
            if isinstance(action, Submit):
                submitted = True
            elif isinstance(action, BashCall):
                looked = True
                if private:
                    observations.append("bash is not available while sampling candidates; edit the files directly.")
                    continue
                result = ctx.sandbox.run(action.command, timeout=ctx.settings.command_timeout)
                observations.append(f"$ {action.command}\n{result.output}\n({result.describe()})")
            else:
                outcome = apply_edit(root, action, protected=guard)
                observations.append(outcome.message)
                changed.extend(outcome.changed)
        syntax = check_syntax(root, changed)
        observations.extend(syntax)
        applied.extend(changed)
        if not parsed.actions:
            observations.append(ctx.dialect.no_edit_hint())
        log.extend(o for o in observations if o)
        text = "\n\n".join(o for o in observations if o) or "Done."
        messages = observe(ctx, answer, text, remaining_turns=TURNS_PER_ROUND - turn - 1)
        done = applied and not syntax and (submitted or not looked)
        if done:
            break
    # Edits are checked before they apply; a shell command is not, so what it did to protected files is undone here.
    reverted = [rel for rel in workspace.changed_since(snap) if guard(rel)]
    if reverted:
        workspace.restore_paths(snap, reverted)
        note = f"Undone: your commands changed {', '.join(reverted)}, which this run may not change."
        log.append(note)
        messages = add_user(messages, note)
    patch = workspace.diff()
    candidate = {
        "index": state.get("candidate", 0),
        "patch": patch,
        "messages": messages,
        "tokens": tokens,
        "applied": sorted(set(applied)),
        "observations": log[-20:],
    }
    update: dict[str, Any] = {"candidates": [candidate]}
    if stop_reason:
        update["stop_reason"] = stop_reason
    if not private:
        update["workspace_patch"] = patch
    return update
