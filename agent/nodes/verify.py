"""verify: run the tests on each candidate, keep the winner, and tell the next round what still fails.

The next round starts from the best code so far: a change that made things worse is not built upon (fresh rounds),
and the evidence shown is about the code the model will see.

Why traces here: for each failing test the model is shown not only the error but what the code actually did - a
real execution trace of the innermost project function, in the format CWM was trained on (readable text for other
models). That is the "world model" part of mendloop.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.nodes.common import history, is_resolved, run_suite, test_cmd
from agent.nodes.evidence import first_error, gather_evidence
from agent.nodes.selection import Scored, drop_disagreed, pick, score_candidates
from agent.prompts import render
from agent.state import RepairState
from tools.testing import TestReport


def _run_candidates(ctx: RunContext, state: RepairState, cands: list[dict[str, Any]]) -> dict[int, TestReport]:
    """Each candidate's test report; a round that produced no change keeps the last report (nothing new to run)."""
    previous = TestReport.from_dict(state["last_report"]) if state.get("last_report") else None
    in_place = len(cands) == 1 and history(ctx) == "conversation"  # the conversation edited the workspace itself
    reports: dict[int, TestReport] = {}
    for cand in cands:
        if cand.get("no_change") and previous is not None:
            reports[cand["index"]] = previous
            continue
        if not in_place:
            _checkout(ctx, cand["patch"])
        which = f" on candidate {cand['index']}" if len(cands) > 1 else ""
        ctx.progress(f"running the tests{which}")
        reports[cand["index"]] = run_suite(ctx, state)
    return reports


def _checkout(ctx: RunContext, patch: str) -> None:
    ctx.workspace.reset()
    if patch.strip():
        ctx.workspace.apply(patch)


def _summary(iteration: int, report: TestReport, winner: dict[str, Any], scored: list[Scored]) -> dict[str, Any]:
    return {
        "iteration": iteration,
        "tests": report.summary(),
        "passed": len(report.passed),
        "failed": len(report.failed),
        "error": first_error(report),
        "edited": winner["applied"],
        "observations": winner["observations"][-5:],
        "traced": bool(winner.get("traced")),
        "no_change": bool(winner.get("no_change")),
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


def _next_start(
    ctx: RunContext, state: RepairState, report: TestReport, best: dict[str, Any], *, improved: bool, more: bool
) -> dict[str, Any]:
    """Where the next fresh round starts, with the evidence about that code.

    A round that beat the best code so far is built upon. A round that did not either goes back to the original
    code (when it started from a partial fix: that fix may be a wrong turn) or tries again from the best code (when
    it started from the original): stuck rounds alternate, so a partial fix is neither trusted for good nor lost.
    """
    if improved:
        evidence = gather_evidence(ctx, report, test_cmd(ctx, state)) if more else state.get("evidence", {})
        best["evidence"] = evidence
        return {"start_patch": best["patch"], "evidence": evidence, "best": best}
    started_from = state.get("start_patch", "")
    if started_from and started_from == best.get("patch"):
        start, evidence = "", state.get("origin_evidence") or state.get("evidence", {})
    else:
        start, evidence = best.get("patch", ""), best.get("evidence") or state.get("evidence", {})
    _checkout(ctx, start)
    return {"start_patch": start, "evidence": evidence}


def verify(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    cands = state.get("candidates", [])
    reports = _run_candidates(ctx, state, cands)
    # CWM's test-time scaling when there are generated tests to agree on: see agent/nodes/selection.py
    scored, matrix = score_candidates(cands, reports, state.get("repro_files", []), test_cmd(ctx, state))
    winner_score = pick(scored)
    winner = next(c for c in cands if c["index"] == winner_score.index)
    report = reports[winner["index"]]
    if len(cands) > 1 or history(ctx) == "fresh":
        _checkout(ctx, winner["patch"])
    agreed: dict[str, Any] = {}
    if matrix is not None:
        report, agreed = drop_disagreed(ctx.workspace.root, matrix, state, report, test_cmd(ctx, state))
        state = {**state, **agreed}  # type: ignore[typeddict-item]
        winner = {**winner, "patch": ctx.workspace.diff()} if agreed else winner
    iteration = state.get("iteration", 0) + 1
    resolved = is_resolved(report, state, ctx)
    ctx.progress(f"round {iteration}: {report.summary()}{' - resolved' if resolved else ''}")
    update: dict[str, Any] = {
        "iteration": iteration,
        "rounds": [_summary(iteration, report, winner, scored)],
        "last_report": report.to_dict(),
        "messages": winner["messages"],
        "candidates": [{"reset": True}],
        **agreed,
    }
    if matrix is not None:
        update["rounds"][0]["matrix"] = matrix.to_dict()
    best = state.get("best") or {}
    improved = not best or len(report.passed) > best.get("passed", -1)
    if improved:
        best = {"patch": winner["patch"], "passed": len(report.passed), "failed": len(report.failed)}
        best["iteration"] = iteration
    update["best"] = best
    if resolved:
        update["status"] = "resolved"
        update["workspace_patch"] = ctx.workspace.diff()
        return update
    more = iteration < ctx.settings.max_iterations and not state.get("stop_reason")
    if history(ctx) == "fresh":
        update.update(_next_start(ctx, state, report, best, improved=improved, more=more))
        update["workspace_patch"] = ctx.workspace.diff()
        return update
    update["workspace_patch"] = ctx.workspace.diff()
    if more:
        evidence = gather_evidence(ctx, report, test_cmd(ctx, state))
        trace = f"{evidence['trace']}\n\n" if evidence["trace"] else ""
        happened = (
            f"No change was made in round {iteration}; the tests give the same result"
            if winner.get("no_change") or not winner["applied"]
            else f"Your change was applied and the tests were run again (round {iteration} of "
            f"{ctx.settings.max_iterations})"
        )
        update["feedback"] = render("feedback", happened=happened, tests=report.feedback(6000), traces=trace)
    return update
