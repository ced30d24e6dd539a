"""The typed state that flows through the repair graph, and its reducers.

Why everything here is plain JSON-able data: the state is what the SQLite checkpointer saves after every node, so a
run killed at any point resumes from it. Live resources (the sandbox, the model client) are not state; they live in
the run context (``agent.context.RunContext``) and are rebuilt on resume. The workspace on disk is also rebuilt: each
node that edits files records ``workspace_patch`` so the tree can be restored exactly to the last finished node.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict


def add_candidates(old: list[dict[str, Any]] | None, new: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Candidates of the current round accumulate; an entry ``{"reset": True}`` clears them for the next round."""
    out = list(old or [])
    for item in new or []:
        if item.get("reset"):
            out = []
        else:
            out.append(item)
    return out


def append(old: list[Any] | None, new: list[Any] | None) -> list[Any]:
    return [*(old or []), *(new or [])]


def first_reason(old: str | None, new: str | None) -> str:
    """Parallel candidates may all run out of budget in one step: the first reason given stands."""
    return old or new or ""


class RepairState(TypedDict, total=False):
    """What one repair knows. Nodes return partial updates of it."""

    # set by prepare
    test_cmd: str
    baseline: dict[str, Any]  # TestReport.to_dict() of the untouched code
    protected: list[str]  # files the model may not edit (existing tests)

    # set by reproduce
    repro_files: list[str]  # accepted reproduction test files
    repro_ids: list[str]  # their test ids (must pass after the fix)
    repro_notes: Annotated[list[str], append]

    # the write/verify loop
    iteration: int
    messages: list[dict[str, Any]]  # the write conversation (the winner's, with candidates)
    candidates: Annotated[list[dict[str, Any]], add_candidates]  # this round's write results
    candidate: int  # set only in the payload of a candidate write (Send)
    rounds: Annotated[list[dict[str, Any]], append]  # one summary per verified round, for the report
    feedback: str  # what the next conversation turn is told (failing tests, traces, edit observations)
    evidence: dict[str, Any]  # what a fresh round is shown about the current code: tests, trace, files, error
    origin_evidence: dict[str, Any]  # the same about the original code (a stuck round goes back to it)
    start_patch: str  # the code the next fresh round starts from: the best so far, or the original ("")
    last_report: dict[str, Any]
    workspace_patch: str  # the diff the workspace holds after the last finished node
    best: dict[str, Any]  # the best code so far (the baseline until a round beats it): patch, passed, failed, evidence

    # accounting and outcome
    stop_reason: Annotated[str, first_reason]  # set when a budget or infrastructure limit ends the loop early
    status: str  # resolved | unresolved | error
    reason: str
    final_patch: str
