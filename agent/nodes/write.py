"""write: ask the model for the change - a fresh request each round, or one conversation with tools.

``fresh`` (``agent/nodes/fresh.py``): the code and the latest evidence in, the fixed code out, K samples at once.
``conversation`` (``agent/nodes/converse.py``): the model works with tools over several turns, as CWM was trained.
Which one is ``history`` (``agent/nodes/common.py``).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.nodes.common import history, test_cmd
from agent.nodes.converse import write_conversation
from agent.nodes.evidence import gather_evidence
from agent.nodes.fresh import write_fresh
from agent.state import RepairState
from tools.testing import TestReport


def write(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One round of writing: fresh (code in, fixed code out; K samples at once) or a turn of the conversation."""
    ctx = runtime.context
    if state.get("stop_reason"):
        return {}
    if history(ctx) == "conversation":
        return write_conversation(ctx, state)
    if state.get("evidence"):
        return write_fresh(ctx, state)
    # round 1: the evidence is the last test run before any change (the baseline, with a reproduction test)
    report = TestReport.from_dict(state["last_report"]) if state.get("last_report") else None
    evidence = gather_evidence(ctx, report, test_cmd(ctx, state)) if report else {}
    return {**write_fresh(ctx, {**state, "evidence": evidence}), "evidence": evidence, "origin_evidence": evidence}
