"""finish: settle on the final patch, re-check it on a pristine copy, and write it out.

Why the pristine re-check: a workspace can pass for reasons the patch does not carry (a file a command wrote, a
cache). The final patch is applied to a fresh export of the base commit and tested there before it is reported as
resolved. Without a resolution, the best attempt (most tests passed) is what is kept.
"""

from __future__ import annotations

import shutil
from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.nodes.common import is_resolved, run_suite
from agent.state import RepairState
from tools.errors import FatalError
from tools.testing import TestReport


def _recheck(ctx: RunContext, state: RepairState, patch: str) -> tuple[bool, str]:
    dest = ctx.run_dir / "pristine"
    if dest.exists():
        shutil.rmtree(dest)
    pristine = ctx.workspace.export_base(dest)
    try:
        pristine.apply(patch)
    except FatalError as exc:
        return False, f"the patch does not apply to a pristine copy: {exc}"
    sandbox = ctx.sandbox_for(pristine.root)
    try:
        report = run_suite(ctx, state, sandbox)
    finally:
        sandbox.close()
    if is_resolved(report, state, ctx):
        return True, report.summary()
    return False, f"on a pristine copy the tests gave: {report.summary()}"


def _reason(state: RepairState) -> str:
    if state.get("stop_reason"):
        return f"stopped early: {state['stop_reason']}"
    last = TestReport.from_dict(state["last_report"]) if state.get("last_report") else None
    rounds = state.get("iteration", 0)
    return f"not resolved after {rounds} round(s); last test run: {last.summary() if last else 'none'}"


def finish(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    status = state.get("status") or "unresolved"
    reason = ""
    best = state.get("best") or {}
    full = ctx.workspace.diff()
    if status != "resolved":
        reason = _reason(state)
        if best and best.get("patch", "") != full:
            ctx.workspace.reset()
            if best["patch"].strip():
                ctx.workspace.apply(best["patch"])
            full = ctx.workspace.diff()
    exclude = [] if ctx.settings.keep_tests else list(state.get("repro_files", []))
    patch = ctx.workspace.diff(exclude=exclude)
    if status == "resolved":
        if not patch.strip():
            status, reason = "unresolved", "the tests pass but the patch is empty: nothing was changed"
        else:
            ctx.progress("re-checking the patch on a pristine copy")
            ok, detail = _recheck(ctx, state, full)
            reason = f"all tests pass ({detail})" if ok else detail
            status = "resolved" if ok else "unresolved"
    (ctx.run_dir / "patch.diff").write_text(patch, encoding="utf-8")
    return {"status": status, "reason": reason, "final_patch": patch, "workspace_patch": full}
