"""Repair rate of the loop against one endpoint: QuixBugs and HumanEvalFix, in three settings.

    python bench/repair_rate.py --out /tmp/rr [--base-url URL --model ID | --local [--local-model NAME]]
        [--dataset quixbugs|humanevalfix|both] [--tasks a,b,...] [--limit N]
        [--settings oneshot,feedback,traces] [--sandbox local] [--resume]

Settings: ``oneshot`` - one write, no feedback (1 round); ``feedback`` - the loop with test feedback (3 rounds, no
traces); ``traces`` - the loop with test feedback and CWM execution traces of the failing calls (3 rounds). The model
sees the visible test only (HumanEvalFix: ``example_test`` or nothing); grading runs the hidden one (``test``) on a
pristine copy with the final patch, with a wall timeout (some buggy programs loop forever). Repos and graders come
from ``examples/batch/convert.py`` and ``grade.py`` (imported, not copied).

Reported per setting: resolved % (hidden test), mean model calls, tokens and wall seconds per task, and the share of
wall time spent outside model calls (the harness's own overhead: sandbox, tests, tracing, git, graph). Each finished
task is one line of ``results.jsonl``; an infrastructure failure (endpoint down, server died) stops with exit 2, and
``--resume`` continues with the tasks not yet recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import Settings, load_settings  # noqa: E402
from agent.runner import solve  # noqa: E402
from agent.task import Task  # noqa: E402
from tools.errors import FatalError  # noqa: E402

DATA = ROOT.parent / "shared" / "bench" / "data"
FILES = {"quixbugs": "quixbugs_python.jsonl", "humanevalfix": "humanevalfix_python_0-99.jsonl"}
SETTINGS: dict[str, dict[str, Any]] = {
    "oneshot": {"max_iterations": 1, "traces": False, "reproduce": False},
    "feedback": {"max_iterations": 3, "traces": False, "reproduce": False},
    "traces": {"max_iterations": 3, "traces": True, "reproduce": False},
}
GRADE_TIMEOUT = 20.0


def _load(name: str) -> ModuleType:
    """examples/batch is not a package: load its converter and grader by path."""
    path = ROOT / "examples" / "batch" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_batch_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


convert = _load("convert")
grade = _load("grade")


def select_rows(dataset: str, data_dir: Path, names: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
    rows = list(convert.read_rows(data_dir / FILES[dataset], None))
    key = "name" if dataset == "quixbugs" else "task_id"
    if names:
        wanted = set(names)
        rows = [r for r in rows if r[key] in wanted or r[key].split("/")[-1] in wanted]
    return rows[:limit] if limit else rows


def build_repos(dataset: str, rows: list[dict[str, Any]], dest: Path) -> list[dict[str, Any]]:
    """One git repo + hidden grader per task (kept across --resume; rebuilt only if missing)."""
    lines = []
    for row in rows:
        item = convert.CONVERTERS[dataset](row)
        slug = convert._slug(item.instance_id)
        if (dest / "repos" / slug).is_dir():
            line = {"instance_id": item.instance_id, "repo": f"repos/{slug}", "task": item.task}
            lines.append({**line, "test_cmd": item.test_cmd, "slug": slug})
            continue
        lines.append({**convert.write_task(item, dest), "slug": slug})
    return lines


def model_seconds(run_dir: Path) -> float:
    """Wall time spent inside model requests, from the trajectory's per-exchange durations."""
    path = run_dir / "trajectory.jsonl"
    if not path.is_file():
        return 0.0
    total = 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            total += float(json.loads(line).get("duration") or 0.0)
    return total


def run_one(line: dict[str, Any], dest: Path, settings: Settings, run_dir: Path) -> dict[str, Any]:
    task = Task(
        repo=dest / line["repo"],
        text=line["task"],
        instance_id=line["instance_id"],
        title=line["instance_id"],
        test_cmd=line["test_cmd"],
    )
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a run cut short by a failure starts over
    started = time.monotonic()
    result = solve(task, settings, run_dir)
    wall = time.monotonic() - started
    graded = grade.grade_one(dest, line["slug"], result.patch or None, GRADE_TIMEOUT)
    return {
        "instance_id": line["instance_id"],
        "agent_status": result.status,
        "passed": bool(graded["passed"]),
        "why": graded["why"][-200:],
        "model_calls": result.model_calls,
        "tokens": result.prompt_tokens + result.completion_tokens,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "wall": round(wall, 2),
        "model_wall": round(model_seconds(run_dir), 2),
        "rounds": result.iterations,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows) or 1
    wall = sum(r["wall"] for r in rows)
    return {
        "tasks": len(rows),
        "resolved_pct": 100.0 * sum(r["passed"] for r in rows) / n,
        "calls": sum(r["model_calls"] for r in rows) / n,
        "tokens": sum(r["tokens"] for r in rows) / n,
        "wall": wall / n,
        "overhead_pct": 100.0 * (wall - sum(r["model_wall"] for r in rows)) / wall if wall else 0.0,
        "per_min": sum(r["passed"] for r in rows) / (wall / 60.0) if wall else 0.0,
    }


def render(results: list[dict[str, Any]]) -> str:
    out = [
        "| dataset | setting | tasks | resolved | model calls/task | tokens/task | wall s/task | outside model "
        "| resolved/min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["dataset"], r["setting"]) for r in results}, key=lambda k: (k[0], list(SETTINGS).index(k[1])))
    for dataset, setting in keys:
        s = summarize([r for r in results if r["dataset"] == dataset and r["setting"] == setting])
        out.append(
            f"| {dataset} | {setting} | {s['tasks']:.0f} | {s['resolved_pct']:.0f}% | {s['calls']:.1f} "
            f"| {s['tokens']:.0f} | {s['wall']:.1f} | {s['overhead_pct']:.0f}% | {s['per_min']:.2f} |"
        )
    return "\n".join(out) + "\n"


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextlib.contextmanager
def endpoint(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The flags that point at the model: as given, or a local llama-server started for the run."""
    if not args.local:
        yield {"base_url": args.base_url, "model": args.model}
        return
    from agent.doors.local.server import LOCAL_SETTINGS, start_local

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    with start_local(args.local_model, threads=args.threads, progress=say) as server:
        yield {**LOCAL_SETTINGS, "base_url": server.base_url, "model": server.model_id}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--base-url")
    p.add_argument("--model")
    p.add_argument("--local", action="store_true", help="start the local llama-server for the run")
    p.add_argument("--local-model", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dataset", choices=["quixbugs", "humanevalfix", "both"], default="quixbugs")
    p.add_argument("--tasks", default="", help="comma-separated names (QuixBugs name or HumanEvalFix number)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--sandbox", default="local")
    p.add_argument("--dialect", default=None)
    p.add_argument("--max-completion-tokens", type=int, default=None)
    p.add_argument("--command-timeout", type=float, default=6.0, help="x5 for a whole test run")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    if not args.local and not args.base_url:
        p.error("give --base-url URL (and --model ID), or --local")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings_names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in settings_names if s not in SETTINGS]
    if unknown:
        print(f"repair_rate: error: unknown setting {unknown[0]!r}: choose from {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    results_path = args.out / "results.jsonl"
    if results_path.exists() and not args.resume:
        print(f"repair_rate: error: {args.out} holds results: pass --resume or choose another --out", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    done = {(r["dataset"], r["setting"], r["instance_id"]) for r in read_results(results_path)}
    datasets = ["quixbugs", "humanevalfix"] if args.dataset == "both" else [args.dataset]
    names = [n.strip() for n in args.tasks.split(",") if n.strip()] or None
    try:
        with endpoint(args) as model_flags:
            for dataset in datasets:
                dest = args.out / dataset
                lines = build_repos(dataset, select_rows(dataset, args.data, names, args.limit), dest)
                for setting in settings_names:
                    flags = {
                        **model_flags,
                        **SETTINGS[setting],
                        "sandbox": args.sandbox,
                        "command_timeout": args.command_timeout,
                    }
                    flags.update({k: v for k, v in (("dialect", args.dialect),) if v})
                    if args.max_completion_tokens:
                        flags["max_completion_tokens"] = args.max_completion_tokens
                    settings = load_settings(None, flags, environ={})
                    for line in lines:
                        if (dataset, setting, line["instance_id"]) in done:
                            continue
                        run_dir = args.out / "runs" / setting / line["slug"]
                        row = {"dataset": dataset, "setting": setting, **run_one(line, dest, settings, run_dir)}
                        with results_path.open("a", encoding="utf-8") as fh:
                            fh.write(json.dumps(row) + "\n")
                        mark = "PASS" if row["passed"] else "fail"
                        print(
                            f"{setting:9} {row['instance_id']:32} {mark} calls={row['model_calls']} "
                            f"tok={row['tokens']} wall={row['wall']:.1f}s model={row['model_wall']:.1f}s",
                            file=sys.stderr,
                        )
    except FatalError as exc:
        print(f"repair_rate: error: {exc.message}", file=sys.stderr)
        print(f"continue with: python bench/repair_rate.py --resume --out {args.out} ...", file=sys.stderr)
        return exc.exit_code
    table = render(read_results(results_path))
    stamp = datetime.date.today().isoformat()
    (args.out / "summary.md").write_text(f"{stamp}, model {model_flags['model']}\n\n{table}", encoding="utf-8")
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
