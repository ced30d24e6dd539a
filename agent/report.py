"""report.md: what was tried, the tests per round, the candidates, tokens, and why the run ended.

Why markdown: the same text is the body of a pull request (GitHub front door) and the per-task report of a batch.
It is built only from the state and the usage, never from the settings' secret.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agent.budget import Usage
from agent.nodes.selection import normalize_patch
from agent.state import RepairState
from agent.task import Task


def _fence(text: str, lang: str = "") -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def render_report(task: Task, state: RepairState, usage: Usage, duration: float, model: str) -> str:
    status = state.get("status", "unresolved")
    lines = [
        f"# mendloop: {task.title or task.instance_id}",
        "",
        f"**Status:** {status}  ",
        f"**Why:** {state.get('reason', '')}  ",
        f"**Model:** {model}  ",
        f"**Rounds:** {state.get('iteration', 0)} · **model calls:** {usage.calls} · "
        f"**tokens:** {usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
        + (f" · **cost:** ${usage.cost:.4f}" if usage.cost is not None else "")
        + f" · **time:** {duration:.1f}s",
        "",
        "## Task",
        "",
        task.text.strip(),
        "",
    ]
    baseline = state.get("baseline") or {}
    if baseline:
        lines += ["## Baseline", "", f"`{state.get('test_cmd', '')}`: {_summary(baseline)}", ""]
    notes = state.get("repro_notes") or []
    if notes:
        lines += ["## Reproduction test", ""]
        lines += [f"- {note}" for note in notes]
        if state.get("repro_files"):
            lines.append(f"- kept: {', '.join(state['repro_files'])} ({', '.join(state.get('repro_ids', []))})")
        lines.append("")
    rounds = state.get("rounds") or []
    if rounds:
        lines += ["## Rounds", "", "| round | tests | files edited | candidates |", "|---|---|---|---|"]
        for r in rounds:
            cands = ", ".join(
                f"#{c['index']}: {c['passed']} passed/{c['failed']} failed, {c['tokens']} tok"
                + (" (winner)" if c.get("winner") and len(r["candidates"]) > 1 else "")
                for c in r["candidates"]
            )
            lines.append(f"| {r['iteration']} | {r['tests']} | {', '.join(r['edited']) or '-'} | {cands} |")
        lines.append("")
        lines += _matrices(rounds)
        for r in rounds:
            if r.get("observations"):
                lines += [f"<details><summary>Round {r['iteration']} observations</summary>", ""]
                lines.append(_fence("\n".join(r["observations"])[-4000:]))
                lines += ["", "</details>", ""]
    per_node = usage.per_node or {}
    if per_node:
        lines += ["## Tokens per node", "", "| node | calls | prompt | completion |", "|---|---|---|---|"]
        for node, n in sorted(per_node.items()):
            lines.append(
                f"| {node} | {n.get('calls', 0)} | {n.get('prompt_tokens', 0)} | {n.get('completion_tokens', 0)} |"
            )
        lines.append("")
    patch = state.get("final_patch", "")
    lines += ["## Patch", "", _fence(patch, "diff") if patch.strip() else "(empty)", ""]
    return "\n".join(lines)


def _matrices(rounds: list[dict[str, Any]]) -> list[str]:
    """CWM's test-time scaling, per round that had it: each candidate against each generated test (the agreed ones
    count), its existing tests passed, its score, how many candidates wrote the same patch, its tokens."""
    lines: list[str] = []
    for r in rounds:
        matrix = r.get("matrix")
        if not matrix:
            continue
        tests, agreed = list(matrix["tests"]), set(matrix["agreed"])
        cands = {str(c["index"]): c for c in r["candidates"]}
        votes = Counter(normalize_patch(c.get("patch", "")) for c in r["candidates"] if c.get("patch", "").strip())
        lines += [f"## Candidates × generated tests (round {r['iteration']})", ""]
        lines += [
            f"- t{j + 1}: `{t}`{'' if t in agreed else ' (not agreed: does not count)'}" for j, t in enumerate(tests)
        ]
        head = " | ".join(f"t{j + 1}" + ("" if t in agreed else " ✗") for j, t in enumerate(tests))
        lines += [
            "",
            f"| candidate | existing passed | {head} | score | same patch | tokens |",
            "|---" * (len(tests) + 5) + "|",
        ]
        for index, row in sorted(matrix["passed"].items(), key=lambda item: int(item[0])):
            cand = cands.get(index, {})
            cells = " | ".join("pass" if ok else "fail" for ok in row)
            score = int(matrix["existing"][index]) + sum(ok for t, ok in zip(tests, row, strict=True) if t in agreed)
            same = votes.get(normalize_patch(cand.get("patch", "")), 0)
            mark = " (chosen)" if cand.get("winner") else ""
            tokens = cand.get("tokens", 0)
            lines.append(f"| #{index}{mark} | {matrix['existing'][index]} | {cells} | {score} | {same} | {tokens} |")
        lines += [
            "",
            "Chosen by score, then the most candidates with the same (normalised) patch, then fewest tokens.",
            "",
        ]
    return lines


def _summary(report: dict[str, Any]) -> str:
    cases = report.get("cases", [])
    passed = sum(1 for c in cases if c.get("outcome") == "passed")
    failed = sum(1 for c in cases if c.get("outcome") in ("failed", "error"))
    return f"{report.get('status', '?')} ({passed} passed, {failed} failed)"
