"""``report.html``: one self-contained page for a run, and one for a batch (or several, compared) that links to a page
per run.

Why this shape: a page is attached to a pull request or kept as a CI artifact and opened offline, so it carries its
style, its one small script and its charts inline and fetches nothing; a Content-Security-Policy says so to the
browser too (no request may leave; only the page's own script, by hash, may run). Everything a model or a repository
wrote - answers, file names, test output - goes through Jinja2 with autoescaping on, so it shows as text. A round
reads as it does in report.md and the terminal (:mod:`agent.rounds`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from agent.doors.batch.report import totals
from agent.rounds import Candidate, candidate_label, diff_stat, headline
from agent.show.load import BatchData, Exchange, RunData, load_batch, load_run
from agent.show.plots import Chart, per_batch_box, per_task_bars, resolved_rate

__all__ = ["PAGE", "render_batch_page", "render_run_page", "write_batch_pages", "write_run_page"]

PAGE = "report.html"


def _template_text(name: str) -> str:
    return resources.files("agent.show").joinpath("templates", name).read_text(encoding="utf-8")


def _diff_lines(patch: str) -> list[tuple[str, str]]:
    """Each line of a unified diff with its kind (a CSS class): file, hunk, add, del or context."""
    out = []
    for line in patch.rstrip("\n").splitlines():
        if line.startswith(("diff --git", "--- ", "+++ ", "index ", "new file", "deleted file")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append((kind, line))
    return out


def _split_answer(exchange: Exchange) -> tuple[str, str]:
    """(reasoning, answer): a server-split reasoning, else what comes before the last ``</think>``."""
    content = exchange.content
    if "</think>" in content:
        thought, answer = content.rsplit("</think>", 1)
        thought = thought.strip().removeprefix("<think>").strip()
        return "\n\n".join(t for t in (exchange.reasoning.strip(), thought) if t), answer.strip()
    return exchange.reasoning.strip(), content.strip()


def _candidate_label(candidate: Candidate, of: int) -> str:
    return candidate_label(candidate, of)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agent.show", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        diff_lines=_diff_lines,
        diff_stat=diff_stat,
        headline=headline,
        candidate_label=_candidate_label,
        split_answer=_split_answer,
    )
    return env


def _page(template: str, *, script: str = "", **context: Any) -> str:
    """A whole page: the template with the shared style, and ``script`` allowed by its hash alone."""
    if script:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        source = f"'sha256-{digest}'"
    else:
        source = "'none'"
    return (
        environment()
        .get_template(template)
        .render(
            css=Markup(_template_text("page.css")),  # package data, not input: no escaping wanted inside <style>
            script=Markup(script),  # package data too; the CSP hash is over exactly this text
            script_source=Markup(source),  # a hash in base64 or 'none': ours, quotes kept readable
            generated=time.strftime("%Y-%m-%d %H:%M"),
            **context,
        )
    )


# --- a run ----------------------------------------------------------------------------------------------------------


def _budget_rows(run: RunData) -> list[tuple[str, str, str]]:
    """The budget table: (what, used, limit) per row, "–" where there is no limit."""
    b, u = run.budget, run.usage
    max_rounds = run.settings.get("max_iterations")
    cost = b.cost_of(u.prompt_tokens, u.completion_tokens)
    rows = [
        ("rounds", str(sum(1 for d in run.rounds if d.verified)), str(max_rounds or "–")),
        ("model calls", str(u.calls), str(b.max_calls or "–")),
        (
            "tokens",
            f"{u.total_tokens:,} ({u.prompt_tokens:,} + {u.completion_tokens:,})",
            f"{b.max_total_tokens:,}" if b.max_total_tokens else "–",
        ),
        (
            "time",
            f"{run.elapsed:.1f} s" if run.elapsed is not None else "?",
            f"{b.max_wall_time:g} s" if b.max_wall_time else "–",
        ),
    ]
    if cost is not None:
        rows.append(("cost", f"${cost:.4f}", f"${b.max_cost:.2f}" if b.max_cost else "–"))
    return rows


def render_run_page(run: RunData, *, back: str | None = None) -> str:
    cost = run.budget.cost_of(run.usage.prompt_tokens, run.usage.completion_tokens)
    return _page("run.html.j2", run=run, back=back, budget=_budget_rows(run), cost=cost)


def write_run_page(run_dir: Path, *, out: Path | None = None, back: Path | None = None) -> Path:
    """Write the run's page (default ``RUN_DIR/report.html``); ``back`` is a batch page to link back to (and then
    the directory is read as a batch task's, whatever it holds)."""
    target = out or run_dir / PAGE
    link = _relative(back, target.parent) if back is not None else None
    run = load_run(run_dir, strict=back is None)
    target.write_text(render_run_page(run, back=link), encoding="utf-8")
    return target


# --- a batch (or several) -------------------------------------------------------------------------------------------

_COLUMNS = (
    ("task", "text"),
    ("status", "text"),
    ("rounds", "num"),
    ("tokens", "num"),
    ("cost", "num"),
    ("wall time (s)", "num"),
    ("tests passed/failed", "num"),
    ("note", "text"),
)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _summary(batch: BatchData) -> dict[str, Any]:
    t = totals(batch.rows)
    return {
        "label": batch.label,
        "total": t.total,
        "resolved": t.resolved,
        "unresolved": t.unresolved,
        "error": t.error,
        "rate": f"{100 * t.resolved / t.total:.1f}%" if t.total else "n/a",
        "tokens": t.tokens,
        "cost": f"${t.cost:.4f}" if t.priced else "–",
        "duration": t.duration,
    }


def _charts(batches: Sequence[BatchData]) -> list[Chart]:
    charts: list[Chart] = []
    rows = [(b, r) for b in batches for r in b.rows]
    if not rows:
        return charts
    if len(batches) > 1:
        rates = [100 * totals(b.rows).resolved / max(1, len(b.rows)) for b in batches]
        charts.append(resolved_rate([b.label for b in batches], rates))
        for title, unit, key in (
            ("Wall time per task", "seconds", "duration"),
            ("Tokens per task", "tokens", "tokens"),
        ):
            groups = [(b.label, [float(r.get(key) or 0) for r in b.rows]) for b in batches]
            charts.append(per_batch_box(f"{title}, per batch", unit, groups))
        return charts
    for title, unit, key in (("Wall time per task", "seconds", "duration"), ("Tokens per task", "tokens", "tokens")):
        values = [(str(r.get("instance_id")), str(r.get("status")), float(r.get(key) or 0)) for _, r in rows]
        charts.append(per_task_bars(title, unit, values))
    return charts


def render_batch_page(batches: Sequence[BatchData], links: dict[tuple[int, str], str]) -> str:
    several = len(batches) > 1
    rows = []
    for i, batch in enumerate(batches):
        for row in batch.rows:
            instance = str(row.get("instance_id"))
            rows.append(
                {
                    "batch": batch.label,
                    "instance_id": instance,
                    "link": links.get((i, instance)),
                    "status": str(row.get("status", "error")),
                    "iterations": int(row.get("iterations") or 0),
                    "tokens": int(row.get("tokens") or 0),
                    "cost": float(row["cost"]) if row.get("cost") is not None else None,
                    "duration": float(row.get("duration") or 0.0),
                    "tests_passed": int(row.get("tests_passed") or 0),
                    "tests_failed": int(row.get("tests_failed") or 0),
                    "note": str(row.get("error") or row.get("reason") or ""),
                }
            )
    columns = [{"title": t, "type": k} for t, k in ((("batch", "text"),) if several else ()) + _COLUMNS]
    title = "Batches compared" if several else f"Batch {batches[0].label}"
    return _page(
        "batch.html.j2",
        script=_template_text("batch.js"),
        title=title,
        several=several,
        summaries=[_summary(b) for b in batches],
        charts=_charts(batches),
        columns=columns,
        rows=rows,
        statuses=sorted({r["status"] for r in rows}),
        notes=[n for b in batches for n in b.notes],
    )


def write_batch_pages(dirs: Iterable[Path], out: Path | None = None) -> tuple[Path, list[str]]:
    """Write a page for every run of the batches in ``dirs`` and the batch page linking them (default
    ``FIRST_DIR/report.html``); returns the batch page and the runs whose page could not be written."""
    batches = [load_batch(d) for d in dirs]
    target = out or batches[0].dir / PAGE
    links: dict[tuple[int, str], str] = {}
    failed: list[str] = []
    for i, batch in enumerate(batches):
        for row in batch.rows:
            instance = str(row.get("instance_id"))
            run_dir = batch.run_dir(row)
            if not run_dir.is_dir():
                continue
            try:
                page = write_run_page(run_dir, back=target, out=run_dir / PAGE)
            except (OSError, ValueError) as exc:
                failed.append(f"{instance}: {exc}")
                continue
            links[(i, instance)] = _relative(page, target.parent)
    target.write_text(render_batch_page(batches, links), encoding="utf-8")
    return target, failed
