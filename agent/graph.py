"""build_graph(): the repair loop's nodes and edges, and nothing else.

    prepare -> reproduce -> write (xK via Send) -> verify -> write again | finish

Loop limits live in the state and the settings (iterations, budgets), never in LangGraph's recursion limit.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from agent.context import RunContext
from agent.nodes.common import history
from agent.nodes.finish import finish
from agent.nodes.prepare import prepare
from agent.nodes.reproduce import reproduce
from agent.nodes.verify import verify
from agent.nodes.write import write
from agent.state import RepairState


def fan_out(state: RepairState, runtime: Runtime[RunContext]) -> list[Send] | Literal["write", "finish"]:
    """One write, or K candidate writes in parallel; straight to finish when a budget already ran out."""
    if state.get("stop_reason"):
        return "finish"
    k = runtime.context.settings.candidates
    if k <= 1 or history(runtime.context) == "fresh":  # a fresh round samples its K answers in one request
        return "write"
    return [Send("write", {**state, "candidate": i}) for i in range(k)]


def after_verify(state: RepairState, runtime: Runtime[RunContext]) -> list[Send] | Literal["write", "finish"]:
    """Resolved, out of rounds or out of budget: finish. Otherwise write again with the feedback."""
    if state.get("status") == "resolved" or state.get("stop_reason"):
        return "finish"
    if state.get("iteration", 0) >= runtime.context.settings.max_iterations:
        return "finish"
    return fan_out(state, runtime)


def build_graph() -> StateGraph[RepairState, RunContext, RepairState, RepairState]:
    graph = StateGraph(RepairState, context_schema=RunContext)
    graph.add_node("prepare", prepare)
    graph.add_node("reproduce", reproduce)
    graph.add_node("write", write)
    graph.add_node("verify", verify)
    graph.add_node("finish", finish)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "reproduce")
    graph.add_conditional_edges("reproduce", fan_out, ["write", "finish"])
    graph.add_edge("write", "verify")
    graph.add_conditional_edges("verify", after_verify, ["write", "finish"])
    graph.add_edge("finish", END)
    return graph
