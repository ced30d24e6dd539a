"""Repair rate against one endpoint, every setting side by side in one run: QuixBugs and HumanEvalFix.

    python bench/repair_rate.py --out /tmp/rr --local [--dataset quixbugs|humanevalfix|both] [--sample N]
        [--settings bare,oneshot,feedback,traces,best-of-4] [--tasks a,b,...] [--resume]
    python bench/repair_rate.py --out /tmp/rr --base-url URL --model ID ...

Settings:
* ``bare`` - the baseline every agent must beat: one prompt (the task and the buggy file), the code block back,
  written over the file (its imports kept), no loop, no tests run. Not mendloop: a few lines in this script.
* ``oneshot`` - mendloop, one round (the failing test output is in its request).
* ``feedback`` - mendloop, up to ``--rounds`` rounds, each rebuilt from the code, the latest failure and a line per
  earlier attempt; no traces.
* ``traces`` - as ``feedback``, with an execution trace of the failing call in the request (counted: rounds whose
  request really carried one).
* ``best-of-K`` - as ``traces``, with K samples per round (one request, ``n=K``), scored by the tests.

Tasks run one after the other and, for each task, every setting in turn, so a change of load on this shared machine
falls on all settings alike. The model sees only the visible test (HumanEvalFix: ``example_test``); grading runs the
hidden one on a pristine copy (examples/batch/grade.py), with a wall timeout. Each result is one line of
``results.jsonl``; an infrastructure failure stops with exit 2 and ``--resume`` continues. ``summary.md`` holds the
per-setting table (resolved %, ratio to bare, tokens, wall time), the cost of a best-of-K round against one sample,
and the per-task table.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib.util
import json
import random
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import Settings, load_settings  # noqa: E402
from agent.runner import solve  # noqa: E402
from agent.task import Task  # noqa: E402
from tools.errors import FatalError  # noqa: E402

DATA = ROOT.parent / "shared" / "bench" / "data"
FILES = {"quixbugs": "quixbugs_python.jsonl", "humanevalfix": "humanevalfix_python_0-99.jsonl"}
GRADE_TIMEOUT = 20.0
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL)


def setting_flags(name: str, rounds: int) -> dict[str, Any] | None:
    """The mendloop flags of a setting; ``None`` for ``bare`` (not mendloop)."""
    base = {"reproduce": False, "history": "fresh", "candidates": 1}
    if name == "bare":
        return None
    if name == "oneshot":
        return {**base, "max_iterations": 1, "traces": False}
    if name == "feedback":
        return {**base, "max_iterations": rounds, "traces": False}
    if name == "traces":
        return {**base, "max_iterations": rounds, "traces": True}
    match = re.fullmatch(r"best-of-(\d+)", name)
    if match and int(match.group(1)) >= 2:
        return {**base, "max_iterations": rounds, "traces": True, "candidates": int(match.group(1))}
    raise ValueError(f"unknown setting {name!r}: choose bare, oneshot, feedback, traces or best-of-K")


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


def select_rows(
    dataset: str, data_dir: Path, names: list[str] | None, limit: int | None, sample: int | None, seed: int
) -> list[dict[str, Any]]:
    rows = list(convert.read_rows(data_dir / FILES[dataset], None))
    key = "name" if dataset == "quixbugs" else "task_id"
    if names:
        wanted = set(names)
        rows = [r for r in rows if r[key] in wanted or r[key].split("/")[-1] in wanted]
    if sample and sample < len(rows):
        picked = sorted(random.Random(seed).sample(range(len(rows)), sample))
        rows = [rows[i] for i in picked]
    return rows[:limit] if limit else rows


def build_repos(dataset: str, rows: list[dict[str, Any]], dest: Path) -> list[dict[str, Any]]:
    """One git repo + hidden grader per task (kept across --resume; rebuilt only if missing)."""
    lines = []
    for row in rows:
        item = convert.CONVERTERS[dataset](row)
        slug = convert._slug(item.instance_id)
        base = {"slug": slug, "program": item.program_file}
        if (dest / "repos" / slug).is_dir():
            lines.append({"instance_id": item.instance_id, "repo": f"repos/{slug}", "task": item.task, **base})
            lines[-1]["test_cmd"] = item.test_cmd
            continue
        lines.append({**convert.write_task(item, dest), **base})
    return lines


def trajectory(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "trajectory.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_request_seconds(records: list[dict[str, Any]]) -> list[float]:
    """Wall seconds of each write request (one per request, however many samples it asked for)."""
    seen: dict[tuple[float, str], float] = {}
    for r in records:
        if r.get("node") == "write" and "duration" in r:
            seen[(round(float(r.get("time", 0.0)), 1), str(r.get("params", {}).get("temperature")))] = r["duration"]
    return list(seen.values())


def run_mendloop(line: dict[str, Any], dest: Path, settings: Settings, run_dir: Path) -> dict[str, Any]:
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
    records = trajectory(run_dir)
    return {
        "agent_status": result.status,
        "passed": bool(graded["passed"]),
        "why": graded["why"][-200:],
        "model_calls": result.model_calls,
        "tokens": result.prompt_tokens + result.completion_tokens,
        "wall": round(wall, 2),
        "model_wall": round(sum(float(r.get("duration") or 0.0) for r in records), 2),
        "write_requests": write_request_seconds(records),
        "rounds": result.iterations,
        "traced_rounds": result.traced_rounds,
    }


# --- bare: the ten-line baseline ------------------------------------------------------------------------------
def bare_prompt(task: str, program: str, code: str) -> str:
    return (
        f"{task.strip()}\n\n`{program}`:\n```python\n{code.rstrip()}\n```\n\n"
        "Fix the bug. Answer with the whole fixed code in one ```python block."
    )


def place_bare(original: str, block: str) -> str:
    """The block written over the file, with the file's imports the block lacks put back on top."""
    have = {line.strip() for line in block.splitlines()}
    try:
        tree = ast.parse(original)
    except SyntaxError:
        return block
    lines = original.splitlines()
    imports = [
        lines[i].strip()
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for i in range(node.lineno - 1, node.end_lineno or node.lineno)
    ]
    missing = [line for line in imports if line not in have]
    return "\n".join([*missing, block.rstrip()]) + "\n" if missing else block.rstrip() + "\n"


def run_bare(line: dict[str, Any], dest: Path, endpoint: dict[str, Any], settings: Settings) -> dict[str, Any]:
    repo = dest / line["repo"]
    program = line["program"]
    original = (repo / program).read_text(encoding="utf-8")
    body = {
        "model": endpoint["model"],
        "messages": [{"role": "user", "content": bare_prompt(line["task"], program, original)}],
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_completion_tokens,
    }
    started = time.monotonic()
    reply = httpx.post(f"{endpoint['base_url'].rstrip('/')}/chat/completions", json=body, timeout=900).json()
    wall = time.monotonic() - started
    text = reply["choices"][0]["message"].get("content") or ""
    usage = reply.get("usage") or {}
    found = _FENCE.findall(text)
    patch = ""
    if found:
        patch = _file_patch(program, original, place_bare(original, found[0]))
    graded = grade.grade_one(dest, line["slug"], patch or None, GRADE_TIMEOUT)
    return {
        "agent_status": "answered" if found else "no code block",
        "passed": bool(graded["passed"]),
        "why": graded["why"][-200:],
        "model_calls": 1,
        "tokens": int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)),
        "wall": round(wall, 2),
        "model_wall": round(wall, 2),
        "write_requests": [round(wall, 2)],
        "rounds": 1,
        "traced_rounds": 0,
    }


def _file_patch(program: str, old: str, new: str) -> str:
    import difflib

    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{program}", f"b/{program}"
    )
    text = "".join(d if d.endswith("\n") else d + "\n\\ No newline at end of file\n" for d in diff)
    return f"diff --git a/{program} b/{program}\n{text}" if text else ""


# --- summary ---------------------------------------------------------------------------------------------------
def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows) or 1
    wall = sum(r["wall"] for r in rows)
    return {
        "tasks": len(rows),
        "resolved": sum(r["passed"] for r in rows),
        "resolved_pct": 100.0 * sum(r["passed"] for r in rows) / n,
        "calls": sum(r["model_calls"] for r in rows) / n,
        "tokens": sum(r["tokens"] for r in rows) / n,
        "wall": wall / n,
        "traced": sum(r.get("traced_rounds", 0) for r in rows),
        "rounds": sum(r.get("rounds", 0) for r in rows),
    }


def _median(values: list[float]) -> float:
    values = sorted(values)
    if not values:
        return 0.0
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def render(results: list[dict[str, Any]], settings_order: list[str]) -> str:
    out: list[str] = []
    for dataset in [d for d in FILES if any(r["dataset"] == d for r in results)]:
        rows = [r for r in results if r["dataset"] == dataset]
        tasks = sorted({r["instance_id"] for r in rows})
        order = [s for s in settings_order if any(r["setting"] == s for r in rows)]
        bare = summarize([r for r in rows if r["setting"] == "bare"]) if "bare" in order else None
        out += [
            f"### {dataset} ({len(tasks)} tasks)",
            "",
            "| setting | resolved | vs bare | model calls/task | tokens/task | wall s/task | rounds with a trace |",
            "|---|---|---|---|---|---|---|",
        ]
        for setting in order:
            s = summarize([r for r in rows if r["setting"] == setting])
            versus = f"{s['resolved_pct'] - bare['resolved_pct']:+.0f} pts" if bare else "-"
            traced = f"{s['traced']:.0f} of {s['rounds']:.0f}" if setting not in ("bare",) else "-"
            out.append(
                f"| {setting} | {s['resolved']:.0f}/{s['tasks']:.0f} ({s['resolved_pct']:.0f}%) | {versus} "
                f"| {s['calls']:.1f} | {s['tokens']:.0f} | {s['wall']:.1f} | {traced} |"
            )
        single = _median([x for r in rows if r["setting"] == "oneshot" for x in r.get("write_requests", [])])
        for setting in order:
            if setting.startswith("best-of-") and single:
                many = _median([x for r in rows if r["setting"] == setting for x in r.get("write_requests", [])])
                out.append("")
                out.append(
                    f"A {setting} request (all samples) took {many:.1f} s median against {single:.1f} s for one "
                    f"sample (oneshot): {many / single:.2f}x."
                )
        out += ["", "| task | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
        for task in tasks:
            marks = []
            for setting in order:
                hit = next((r for r in rows if r["instance_id"] == task and r["setting"] == setting), None)
                marks.append("-" if hit is None else ("PASS" if hit["passed"] else "fail"))
            out.append(f"| {task.split('/', 1)[-1]} | " + " | ".join(marks) + " |")
        out.append("")
    return "\n".join(out)


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextlib.contextmanager
def endpoint(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The flags that point at the model: as given, or a local llama-server started for the run."""
    from agent.doors.local.server import LOCAL_SETTINGS, start_local

    if not args.local:
        defaults = LOCAL_SETTINGS if args.small_model else {}
        yield {**defaults, "base_url": args.base_url, "model": args.model or "default"}
        return

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    with start_local(args.local_model, threads=args.threads, progress=say, parallel=args.parallel) as server:
        yield {**LOCAL_SETTINGS, "base_url": server.base_url, "model": server.model_id}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--base-url")
    p.add_argument("--model")
    p.add_argument("--local", action="store_true", help="start the local llama-server for the run")
    p.add_argument("--local-model", default=None)
    p.add_argument("--small-model", action="store_true", help="with --base-url: the settings --local uses")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--parallel", type=int, default=4, help="llama-server slots (--local)")
    p.add_argument("--dataset", choices=["quixbugs", "humanevalfix", "both"], default="quixbugs")
    p.add_argument("--tasks", default="", help="comma-separated names (QuixBugs name or HumanEvalFix number)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--sample", type=int, default=None, help="a fixed random sample of N tasks per dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--settings", default="bare,oneshot,feedback,traces,best-of-4")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the looping settings")
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
    order = [s for s in args.settings.split(",") if s]
    try:
        flags_of = {s: setting_flags(s, args.rounds) for s in order}
    except ValueError as exc:
        print(f"repair_rate: error: {exc}", file=sys.stderr)
        return 2
    results_path = args.out / "results.jsonl"
    if results_path.exists() and not args.resume:
        print(f"repair_rate: error: {args.out} holds results: pass --resume or choose another --out", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    done = {(r["dataset"], r["setting"], r["instance_id"]) for r in read_results(results_path)}
    datasets = list(FILES) if args.dataset == "both" else [args.dataset]
    names = [n.strip() for n in args.tasks.split(",") if n.strip()] or None
    model = args.model or ""
    try:
        with endpoint(args) as model_flags:
            model = model_flags["model"]
            for dataset in datasets:
                dest = args.out / dataset
                rows = select_rows(dataset, args.data, names, args.limit, args.sample, args.seed)
                for line in build_repos(dataset, rows, dest):
                    for setting in order:
                        if (dataset, setting, line["instance_id"]) in done:
                            continue
                        common = {**model_flags, "sandbox": args.sandbox, "command_timeout": args.command_timeout}
                        common.update({k: v for k, v in (("dialect", args.dialect),) if v})
                        if args.max_completion_tokens:
                            common["max_completion_tokens"] = args.max_completion_tokens
                        settings = load_settings(None, {**common, **(flags_of[setting] or {})}, environ={})
                        if flags_of[setting] is None:
                            outcome = run_bare(line, dest, model_flags, settings)
                        else:
                            run_dir = args.out / "runs" / setting / line["slug"]
                            outcome = run_mendloop(line, dest, settings, run_dir)
                        row = {"dataset": dataset, "setting": setting, "instance_id": line["instance_id"], **outcome}
                        with results_path.open("a", encoding="utf-8") as fh:
                            fh.write(json.dumps(row) + "\n")
                        mark = "PASS" if row["passed"] else "fail"
                        print(
                            f"{setting:10} {row['instance_id']:32} {mark} calls={row['model_calls']} "
                            f"tok={row['tokens']} wall={row['wall']:.1f}s traced={row['traced_rounds']}",
                            file=sys.stderr,
                        )
    except FatalError as exc:
        print(f"repair_rate: error: {exc.message}", file=sys.stderr)
        print(f"continue with: python bench/repair_rate.py --resume --out {args.out} ...", file=sys.stderr)
        return exc.exit_code
    table = render(read_results(results_path), order)
    stamp = datetime.date.today().isoformat()
    command = "python bench/repair_rate.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (args.out / "summary.md").write_text(f"{stamp}, model {model}\n\n    {command}\n\n{table}", encoding="utf-8")
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
