"""verify: run the tests on each candidate, keep the winner, and tell the next round what still fails.

Why traces here: for each failing test the model is shown not only the error but what the code actually did - a
real execution trace of the innermost project function, in the format CWM was trained on (readable text for other
models). That is the "world model" part of mendloop.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.nodes.common import is_resolved, run_suite
from agent.nodes.selection import Scored, pick
from agent.prompts import render
from agent.state import RepairState
from tools.testing import TestReport
from tools.tracing import trace_test

MAX_TRACES = 2
TRACE_TOKENS = 1500


def _traces(ctx: RunContext, report: TestReport) -> str:
    if not ctx.settings.traces:
        return ""
    blocks = []
    for test_id in report.failed[:MAX_TRACES]:
        trace = trace_test(ctx.sandbox, test_id, timeout=ctx.settings.command_timeout)
        if trace is None:
            continue
        text = ctx.dialect.render_trace(trace, TRACE_TOKENS)
        blocks.append(f"Execution trace of {trace.function} ({trace.file}) while running {test_id}:\n{text}")
    return ("\n\n".join(blocks) + "\n\n") if blocks else ""


def verify(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    cands = state.get("candidates", [])
    several = len(cands) > 1
    reports: dict[int, TestReport] = {}
    for cand in cands:
        if several:
            ctx.workspace.reset()
            if cand["patch"].strip():
                ctx.workspace.apply(cand["patch"])
        which = f" on candidate {cand['index']}" if several else ""
        ctx.progress(f"running the tests{which}")
        reports[cand["index"]] = run_suite(ctx, state)
    scored = [
        Scored(c["index"], len(reports[c["index"]].passed), len(reports[c["index"]].failed), c["patch"], c["tokens"])
        for c in cands
    ]
    winner_score = pick(scored)
    winner = next(c for c in cands if c["index"] == winner_score.index)
    report = reports[winner["index"]]
    if several:
        ctx.workspace.reset()
        if winner["patch"].strip():
            ctx.workspace.apply(winner["patch"])
    iteration = state.get("iteration", 0) + 1
    resolved = is_resolved(report, state, ctx)
    ctx.progress(f"round {iteration}: {report.summary()}{' - resolved' if resolved else ''}")
    best = state.get("best") or {}
    if not best or len(report.passed) > best.get("passed", -1):
        best = {
            "patch": winner["patch"],
            "passed": len(report.passed),
            "failed": len(report.failed),
            "iteration": iteration,
        }
    summary = {
        "iteration": iteration,
        "tests": report.summary(),
        "passed": len(report.passed),
        "failed": len(report.failed),
        "edited": winner["applied"],
        "observations": winner["observations"][-5:],
        "candidates": [
            {
                "index": s.index,
                "passed": s.passed,
                "failed": s.failed,
                "tokens": s.tokens,
                "winner": s.index == winner["index"],
                "patch": s.patch,
            }
            for s in scored
        ],
    }
    update: dict[str, Any] = {
        "iteration": iteration,
        "rounds": [summary],
        "last_report": report.to_dict(),
        "messages": winner["messages"],
        "candidates": [{"reset": True}],
        "workspace_patch": ctx.workspace.diff(),
        "best": best,
    }
    if resolved:
        update["status"] = "resolved"
        return update
    if iteration < ctx.settings.max_iterations and not state.get("stop_reason"):
        update["feedback"] = render(
            "feedback",
            iteration=iteration,
            max_iterations=ctx.settings.max_iterations,
            tests=report.feedback(6000),
            traces=_traces(ctx, report),
        )
    return update
