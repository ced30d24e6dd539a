"""``mendloop show DIR`` in the terminal: a run's rounds, diffs, tests, traces and tokens; a batch's table.

Why the same words as everywhere: the rounds are :mod:`agent.rounds`' and the batch table is the one ``mendloop
batch`` ends with, so the terminal, report.md and the HTML page never tell a run two ways. Colour only on a terminal
(the console decides); long texts are cut to their ends, the page and the files hold them whole.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from agent.doors.batch.report import render_table, totals
from agent.rounds import diff_stat, rich_diff, rich_round
from agent.show.load import BatchData, Exchange, RunData

__all__ = ["print_batch", "print_run"]

TEXT_LINES = 25


def _clip(text: str, lines: int = TEXT_LINES) -> str:
    rows = text.rstrip().splitlines()
    if len(rows) <= lines:
        return "\n".join(rows)
    return "\n".join([*rows[:lines], f"… {len(rows) - lines} more lines"])


def _indent(text: str, style: str = "") -> Text:
    """``text`` four spaces in, as it is (no padding to the width: piped output stays copyable)."""
    return Text("\n".join("    " + line for line in text.splitlines()), style=style)


def _exchange_line(e: Exchange) -> Text:
    return Text.assemble(
        ("    ↳ ", "dim"),
        (e.node, "cyan"),
        (f" · {e.prompt_tokens:,} + {e.completion_tokens:,} tok · {e.duration:.1f}s · ", "dim"),
        e.gist,
    )


def print_run(run: RunData, console: Console) -> None:
    style = {"resolved": "green", "error": "red"}.get(run.status, "yellow")
    console.print(Text(run.title, style="bold"))
    console.print(Text.assemble((run.status, f"bold {style}"), f" - {run.reason}"))
    usage = run.usage
    facts = [
        run.instance_id,
        *([f"model {run.model}"] if run.model else []),
        f"{len(run.rounds)} round(s)",
        f"{usage.calls} model call(s)",
        f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion tokens",
    ]
    cost = run.budget.cost_of(usage.prompt_tokens, usage.completion_tokens)
    if cost is not None:
        facts.append(f"${cost:.4f}")
    if run.elapsed is not None:
        facts.append(f"{run.elapsed:.1f}s")
    console.print(Text(" · ".join(facts), style="dim"))
    for warning in [*([run.trajectory_cut] if run.trajectory_cut else []), *run.notes]:
        console.print(Text(f"! {warning}", style="yellow"))
    console.print()
    if run.task_text:
        console.print(Text("Task", style="bold underline"))
        console.print(_indent(_clip(run.task_text, 12)))
    if run.baseline:
        console.print(Text(f"Before any change, {run.test_cmd}: {run.baseline}", style="dim"))
    for note in run.repro_notes:
        console.print(Text(f"Reproduction test: {note}", style="dim"))
    for e in run.before:
        console.print(_exchange_line(e))
    console.print()
    for detail in run.rounds:
        parts: list[RenderableType] = [rich_round(detail.round, diff=True)]
        failing = [t for t in detail.tests if t.outcome != "passed"]
        for test in failing[:8]:
            parts.append(
                Text(
                    f"    {test.outcome} {test.id}" + (f": {test.message.splitlines()[0]}" if test.message else ""),
                    style="red",
                )
            )
        if len(failing) > 8:
            parts.append(Text(f"    … {len(failing) - 8} more failing", style="red"))
        if detail.trace:
            parts.append(Text("    execution trace shown next:", style="dim"))
            parts.append(_indent(_clip(detail.trace, 15), "dim"))
        parts.extend(_exchange_line(e) for e in detail.exchanges)
        console.print(Group(*parts))
        console.print()
    console.print(Text(f"The change ({diff_stat(run.patch)})", style="bold underline"))
    if run.patch.strip():
        console.print(rich_diff(run.patch))
    if usage.per_node:
        table = Table("node", "calls", "prompt", "completion", box=None, title="Tokens per node", title_justify="left")
        for node, n in sorted(usage.per_node.items()):
            table.add_row(
                node, str(n.get("calls", 0)), f"{n.get('prompt_tokens', 0):,}", f"{n.get('completion_tokens', 0):,}"
            )
        console.print(table)
    console.print(Text(f"run directory: {run.dir}", style="dim"))


def print_batch(batch: BatchData, console: Console) -> None:
    t = totals(batch.rows)
    rate = f"{100 * t.resolved / t.total:.1f}%" if t.total else "n/a"
    console.print(Text(f"Batch {batch.label}: {t.total} tasks, {rate} resolved", style="bold"))
    for note in batch.notes:
        console.print(Text(f"! {note}", style="yellow"))
    console.print(render_table(batch.rows, max_rows=200))
    console.print(Text(f"a task's run: mendloop show {batch.dir / 'runs' / 'ID'}", style="dim"))
