"""What the next request is shown about the current code: the failing tests, an execution trace of the failure, the
project files the failure went through, and a one-line gist of the first error.

Why one function for every round and every test form: round 1 (the baseline) and each later round must show the
same kind of evidence, whatever the test command is (pytest, unittest, a plain script); the trace is the "world
model" part - what the code actually did, in CWM's own format for CWM and readable text for other models.
"""

from __future__ import annotations

import re
from typing import Any

from agent.context import RunContext
from tools.testing import TestReport
from tools.tracing import trace_failure

FEEDBACK_CHARS = 3000
SANDBOX_ROOT = "/workspace"  # where the bwrap and Docker sandboxes mount the workspace
MAX_TRACES = 2
TRACE_TOKENS = 1200
_FILE_IN_TRACEBACK = re.compile(r"""(?:File "|^\s*)([\w./-]+\.py)(?:", line |:)\d+""", re.MULTILINE)


def first_error(report: TestReport) -> str:
    """The gist of the first failure in one line (an assertion, an exception), for the summary of an attempt."""
    for case in report.cases:
        if case.outcome in ("failed", "error"):
            text = case.message.strip() or case.traceback.strip()
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if lines:
                return lines[-1][:160] if not case.message.strip() else lines[0][:160]
    tail = [ln.strip() for ln in report.output.strip().splitlines() if ln.strip()]
    return tail[-1][:160] if tail and report.status != "passed" else ""


def failing_files(ctx: RunContext, report: TestReport) -> list[str]:
    """Project files named in the failures' tracebacks, in order of appearance (they are shown first)."""
    root = ctx.workspace.root
    seen: dict[str, None] = {}
    texts = [f"{c.message}\n{c.traceback}" for c in report.cases if c.outcome in ("failed", "error")]
    for text in [*texts, report.output[-8000:]]:
        for match in _FILE_IN_TRACEBACK.finditer(text):
            rel = relative_paths(ctx, match.group(1)).removeprefix("./")
            if not rel.startswith("/") and (root / rel).is_file():
                seen.setdefault(rel, None)
    return list(seen)


def relative_paths(ctx: RunContext, text: str) -> str:
    """Tracebacks name files by where the sandbox saw them (the host path, or /workspace inside a container):
    shown relative to the repository, they are shorter, and they say nothing about the host."""
    for prefix in (f"{ctx.workspace.root}/", f"{SANDBOX_ROOT}/"):
        text = text.replace(prefix, "")
    return text


def gather_evidence(ctx: RunContext, report: TestReport, test_cmd: str) -> dict[str, Any]:
    """The evidence about ``report`` (a run of the workspace as it is now): tests, trace, files, first error."""
    evidence: dict[str, Any] = {
        "tests": relative_paths(ctx, report.feedback(FEEDBACK_CHARS)),
        "trace": "",
        "files": failing_files(ctx, report),
        "error": relative_paths(ctx, first_error(report)),
    }
    if not ctx.settings.traces or report.status == "passed":
        return evidence
    blocks = []
    for case in [c for c in report.cases if c.outcome in ("failed", "error")][:MAX_TRACES]:
        trace = trace_failure(ctx.sandbox, case, test_cmd, timeout=ctx.settings.command_timeout)
        if trace is None:
            continue
        text = ctx.dialect.render_trace(trace, TRACE_TOKENS)
        blocks.append(f"Execution trace of `{trace.function}` ({trace.file}) while running {case.id}:\n{text}")
        break  # one trace is what a small context can hold; the first failure is the one to explain
    evidence["trace"] = "\n\n".join(blocks)
    return evidence
