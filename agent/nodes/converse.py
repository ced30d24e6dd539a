"""write, as one conversation with tools: the model looks (``<tool: bash>``), edits, and gets each result back.

Why a few turns inside one round: a model often looks before it edits or writes an edit that does not apply. Those
are observations it gets back at once, within the same round, instead of costing a whole test run. With
``--candidates K`` this runs K times in parallel (LangGraph ``Send``), each in its own copy of the workspace;
``verify`` then picks the winner. The conversation is cut to the endpoint's context before each request (the first
request and the latest turns stay); a refusal for length is answered by sending less.
"""

from __future__ import annotations

from typing import Any

from agent.budget import BudgetExceeded
from agent.context import RunContext
from agent.dialects.base import BashCall, Submit
from agent.model import ContextOverflow
from agent.nodes.common import Turn, add_user, ask, observe, protection, system_message
from agent.nodes.prompting import fit_conversation, prompt_budget
from agent.nodes.repo_context import gather
from agent.prompts import render
from agent.state import RepairState
from tools.patching import apply_edit, check_syntax
from tools.testing import TestReport
from tools.workspace import Workspace

NODE = "write"
TURNS_PER_ROUND = 3
MAX_SHRINKS = 3


def _ask_fitted(ctx: RunContext, messages: list[dict[str, Any]]) -> tuple[Turn, list[dict[str, Any]]]:
    """One turn with the conversation cut to fit the context; smaller again after each refusal for length."""
    budget = prompt_budget(ctx.model.context_size(), ctx.settings.max_completion_tokens, 0)
    for shrink in range(MAX_SHRINKS + 1):
        sent = fit_conversation(messages, None if budget is None else int(budget * 0.7**shrink))
        try:
            return ask(ctx, sent, NODE), sent
        except ContextOverflow:
            if shrink == MAX_SHRINKS:
                raise
            budget = prompt_budget(ctx.model.context_size(), ctx.settings.max_completion_tokens, 0) or 8192
    raise AssertionError("unreachable")


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


def write_conversation(ctx: RunContext, state: RepairState) -> dict[str, Any]:
    """One round of the conversation: up to ``TURNS_PER_ROUND`` turns until an edit applies cleanly."""
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
            answer, messages = _ask_fitted(ctx, messages)
        except BudgetExceeded as exc:
            stop_reason = str(exc)
            break
        except ContextOverflow as exc:
            stop_reason = f"the conversation cannot be made to fit the model's context: {exc.message}"
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
        "traced": "Execution trace of" in str(state.get("feedback") or ""),
    }
    update: dict[str, Any] = {"candidates": [candidate]}
    if stop_reason:
        update["stop_reason"] = stop_reason
    if not private:
        update["workspace_patch"] = patch
    return update
