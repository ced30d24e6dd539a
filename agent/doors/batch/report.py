"""How a batch reads to a person: result rows, the summary numbers, report.md and the end-of-run table.

Why separate from the orchestration: the same rows (from results.jsonl, across reruns) feed the markdown file,
the terminal table and the progress line, and none of that needs to know how tasks were run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

__all__ = ["Totals", "render_markdown", "render_table", "result_row", "totals"]


def result_row(instance_id: str, model: str, run_dir: Path, outcome: dict[str, Any]) -> dict[str, Any]:
    """Flatten a worker outcome into one results.jsonl row (plus ``model_patch`` for preds.jsonl)."""
    result = outcome.get("result") or {}
    ok = outcome.get("kind") == "ok"
    prompt = int(result.get("prompt_tokens", 0))
    completion = int(result.get("completion_tokens", 0))
    return {
        "instance_id": instance_id,
        "status": result.get("status", "error") if ok else "error",
        "model_name_or_path": model,
        "iterations": int(result.get("iterations", 0)),
        "model_calls": int(result.get("model_calls", 0)),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": prompt + completion,
        "cost": result.get("cost"),
        "duration": round(float(outcome.get("wall", result.get("duration", 0.0))), 3),
        "tests_passed": int(result.get("tests_passed", 0)),
        "tests_failed": int(result.get("tests_failed", 0)),
        "reason": str(result.get("reason", "")),
        "error": "" if ok else f"{outcome.get('kind')}: {outcome.get('error', '')}",
        "attempts": int(outcome.get("attempts", 1)),
        "started_at": outcome.get("started_at"),
        "finished_at": outcome.get("finished_at"),
        "run_dir": str(run_dir),
        "model_patch": str(result.get("patch", "")) if ok else "",
    }


@dataclass
class Totals:
    """Counts and sums over result rows."""

    resolved: int = 0
    unresolved: int = 0
    error: int = 0
    tokens: int = 0
    cost: float = 0.0
    priced: bool = False
    duration: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.resolved + self.unresolved + self.error

    def add(self, row: dict[str, Any]) -> None:
        status = row.get("status")
        if status == "resolved":
            self.resolved += 1
        elif status == "unresolved":
            self.unresolved += 1
        else:
            self.error += 1
        self.tokens += int(row.get("tokens") or 0)
        if row.get("cost") is not None:
            self.cost += float(row["cost"])
            self.priced = True
        self.duration += float(row.get("duration", 0.0))
        self.rows.append(row)

    def line(self) -> str:
        cost = f" ${self.cost:.4f}" if self.priced else ""
        return (
            f"resolved {self.resolved}  unresolved {self.unresolved}  error {self.error}  tokens {self.tokens:,}{cost}"
        )


def totals(rows: list[dict[str, Any]]) -> Totals:
    out = Totals()
    for row in rows:
        out.add(row)
    return out


def _cell(text: str, width: int = 80) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render_markdown(rows: list[dict[str, Any]], model: str) -> str:
    """report.md: totals, then one table row per task."""
    t = totals(rows)
    rate = f"{100 * t.resolved / t.total:.1f}%" if t.total else "n/a"
    cost = f"${t.cost:.4f}" if t.priced else "unknown (no prices set)"
    lines = [
        "# Batch report",
        "",
        f"- model: `{model}`",
        f"- tasks: {t.total} (resolved {t.resolved}, unresolved {t.unresolved}, error {t.error}); resolved rate {rate}",
        f"- tokens: {t.tokens:,}; cost: {cost}; task time summed: {t.duration:.1f}s",
        "",
        "| instance_id | status | iterations | tokens | tests passed/failed | duration (s) | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        note = row.get("error") or row.get("reason") or ""
        lines.append(
            f"| {_cell(str(row['instance_id']))} | {row.get('status')} | {row.get('iterations', 0)} | "
            f"{row.get('tokens', 0):,} | {row.get('tests_passed', 0)}/{row.get('tests_failed', 0)} | "
            f"{float(row.get('duration', 0.0)):.1f} | {_cell(str(note))} |"
        )
    return "\n".join(lines) + "\n"


_STYLE = {"resolved": "green", "unresolved": "yellow", "error": "red"}


def render_table(rows: list[dict[str, Any]], *, max_rows: int = 50) -> Table:
    """The end-of-run terminal table (the first ``max_rows`` tasks; report.md has them all)."""
    t = totals(rows)
    table = Table(title=f"Batch: {t.line()}", show_lines=False)
    for name, justify in (
        ("instance_id", "left"),
        ("status", "left"),
        ("iter", "right"),
        ("tokens", "right"),
        ("tests", "right"),
        ("s", "right"),
        ("note", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows[:max_rows]:
        status = str(row.get("status"))
        table.add_row(
            str(row["instance_id"]),
            f"[{_STYLE.get(status, 'white')}]{status}[/]",
            str(row.get("iterations", 0)),
            f"{row.get('tokens', 0):,}",
            f"{row.get('tests_passed', 0)}/{row.get('tests_failed', 0)}",
            f"{float(row.get('duration', 0.0)):.1f}",
            _cell(str(row.get("error") or row.get("reason") or ""), 60),
        )
    if len(rows) > max_rows:
        table.caption = f"... {len(rows) - max_rows} more in report.md"
    return table
