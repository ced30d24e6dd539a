"""How big are real CWM traces of failing tests? Measured over the 40 QuixBugs tasks.

For each task: build a tiny project (the buggy program as a module + a pytest file whose test functions wrap the
task's plain asserts), find the first failing test (per-test timeout: some buggy programs loop forever), trace it with
``tools.tracing.trace_test`` in a LocalSandbox, and record frames, CWM-rendered tokens and tracing time.

    python bench/trace_size.py [--data PATH] [--limit N] [--append bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandboxes.base import SandboxSpec
from sandboxes.local import LocalSandbox
from tools.tracing import TraceOptions, estimate_tokens, render_cwm, trace_test

DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "data" / "quixbugs_python.jsonl"  # ../shared
ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the host's unrelated pytest plugins (langsmith) cost seconds
FAILED = re.compile(r"^FAILED (\S+?)(?: - .*)?$", re.MULTILINE)


@dataclass
class Row:
    name: str
    test: str
    function: str
    frames: int
    tokens: int
    seconds: float
    note: str


def build_tests(tests: str) -> str:
    """A pytest file: module-level definitions stay; every top-level assert/call becomes its own test function
    (calls of the task's own ``test*`` functions are dropped: pytest collects those itself)."""
    tree = ast.parse(tests)
    own_tests = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")}
    keep: list[str] = []
    cases: list[str] = []
    for node in tree.body:
        source = ast.get_source_segment(tests, node) or ""
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name) and func.id in own_tests:
                continue
        if isinstance(node, ast.Assert | ast.Expr):
            body = "\n".join("    " + line for line in source.splitlines())
            cases.append(f"def test_case_{len(cases)}():\n{body}\n")
        else:
            keep.append(source + "\n")
    return "\n\n".join(["from prog import *\n", *keep, *cases])


def first_failing(box: LocalSandbox) -> str | None:
    cmd = "python -m pytest -q -x -rf -p no:cacheprovider -p pytest_timeout --timeout 10 tests/test_task.py"
    result = box.run(cmd, timeout=120, env=ENV)
    found = FAILED.findall(result.output)
    return found[0] if found else None


def measure(task: dict[str, str], workdir: Path, max_frames: int) -> Row:
    root = workdir / task["name"]
    (root / "tests").mkdir(parents=True)
    (root / "prog.py").write_text(task["buggy_program"] + "\n")
    (root / "tests" / "test_task.py").write_text(build_tests(task["tests"]))
    box = LocalSandbox(root, SandboxSpec(kind="local"))
    try:
        test = first_failing(box)
        if test is None:
            return Row(task["name"], "-", "-", 0, 0, 0.0, "no failing test")
        start = time.monotonic()
        trace = trace_test(box, test, options=TraceOptions(max_frames=max_frames, timeout=20, env=ENV))
        seconds = time.monotonic() - start
    finally:
        box.close()
    short = test.split("::")[-1]
    if trace is None:
        return Row(task["name"], short, "-", 0, 0, seconds, "no trace")
    note = "endless loop stopped" if "likely endless loop" in trace.summary else ""
    if not note and trace.truncated:
        note = "shortened"
    tokens = estimate_tokens(render_cwm(trace))
    return Row(task["name"], short, trace.function, len(trace.frames), tokens, seconds, note)


def table(rows: list[Row], command: str) -> str:
    traced = [r for r in rows if r.frames]
    lines = [
        "## Trace size (QuixBugs)",
        "",
        f"Command: `{command}` (LocalSandbox, max_frames=200, max_repr=200, per-test timeout 10 s to find the",
        "first failing test, 20 s per trace; tokens = `estimate_tokens(render_cwm(trace))`, ~3.5 chars/token,",
        "special tokens 1). Machine: 2 shared cores, Python 3.11.",
        "",
        "| task | first failing test | traced function | frames | CWM tokens | trace time (s) | note |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r.name} | {r.test} | {r.function} | {r.frames} | {r.tokens} | {r.seconds:.1f} | {r.note} |")
    if traced:
        lines += [
            "",
            f"Traced {len(traced)}/{len(rows)} tasks. "
            f"Medians: frames {statistics.median(r.frames for r in traced):.0f}, "
            f"CWM tokens {statistics.median(r.tokens for r in traced):.0f}, "
            f"trace time {statistics.median(r.seconds for r in traced):.1f} s. "
            f"Max tokens {max(r.tokens for r in traced)}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-frames", type=int, default=200)
    parser.add_argument("--append", type=Path, default=None, help="append the table to this markdown file")
    options = parser.parse_args(argv)
    tasks = [json.loads(line) for line in options.data.read_text().splitlines() if line.strip()]
    tasks = tasks[: options.limit] if options.limit else tasks
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="trace-size-") as tmp:
        for task in tasks:
            row = measure(task, Path(tmp), options.max_frames)
            print(
                f"{row.name:28} {row.frames:4} frames {row.tokens:6} tokens {row.seconds:5.1f}s {row.note}", flush=True
            )
            rows.append(row)
    command = "python bench/trace_size.py" + (f" --limit {options.limit}" if options.limit else "")
    text = table(rows, command)
    print(text)
    if options.append:
        with options.append.open("a", encoding="utf-8") as handle:
            handle.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
