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
from agent.nodes.repo_context import is_test_file
from tools.testing import TestCase, TestReport, shown_command
from tools.tracing import TraceOptions, trace_failure

FEEDBACK_CHARS = 3000
SANDBOX_ROOT = "/workspace"  # where the bwrap and Docker sandboxes mount the workspace
MAX_TRACES = 2
TRACE_TOKENS = 1200
DETAILED = 2  # failing tests told in full (their assertion and pytest's explanation)
MAX_LISTED = 8  # failing tests named at all
TRACE_SECONDS = 10.0  # at least this long for a trace
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


_DUMP_FRAME = re.compile(r"""File "([^"]+\.py)", line \d+ in (\w+)""")


def hung_test(ctx: RunContext, report: TestReport) -> tuple[str, list[str]] | None:
    """Where a timed-out run hung, from the stack pytest's faulthandler dumped: the test's pytest id and the project
    frames (innermost first), or None."""
    frames: list[str] = []
    for path, name in _DUMP_FRAME.findall(report.output):
        rel = relative_paths(ctx, path)
        if rel.startswith("/") or not (ctx.workspace.root / rel).is_file():
            continue  # the standard library, pytest, site-packages
        frames.append(f"{name} ({rel})")
        if name.startswith("test") and is_test_file(rel):
            return f"{rel}::{name}", frames
    return None


def _hang_note(hung: tuple[str, list[str]]) -> str:
    test, frames = hung
    return f"The run was stopped: it hung in {test}, in " + " <- ".join(frames) + "."


_NOISE = re.compile(r"^\s*(\|\s*)?(E\s*)?(Use -v to get more diff|Full diff:.*)?\s*$")
_WHERE = re.compile(r"^([\w./-]+\.py):(\d+): ?")  # "test_x.py:5: AssertionError": where a frame ends
_SAID = 8  # lines a failure is told in


def _said(frame: list[str]) -> list[str]:
    """A frame's ``>`` line and its ``E`` lines (pytest's own explanation), without blanks and "use -v" hints."""
    return ["  " + t for t in frame if t.startswith(">") or (t.startswith("E ") and not _NOISE.match(t))]


def _failing_line(case: TestCase) -> list[str]:
    """The lines of a pytest failure that say what was asserted and what came out: the test's ``>`` line and, when
    the failure was raised deeper (an exception in the project's code), where and what it was - the last frame's
    ``>`` and ``E`` lines. Without them a small model sees the call but not the ``AttributeError`` it raised."""
    frames: list[tuple[list[str], str]] = []
    lines: list[str] = []
    for line in case.traceback.splitlines():
        text = line.rstrip()
        where = _WHERE.match(text)
        if where:
            frames.append((lines, f"{where.group(1)}:{where.group(2)}"))
            lines = []
        else:
            lines.append(text)
    if not frames:
        return _said(lines)[:_SAID]
    out = _said(frames[0][0])
    if len(frames) > 1:
        last, place = frames[-1]
        out += [f"  raised at {place}:", *_said(last)]
    if not any(t.startswith("  E ") for t in out) and case.message.strip():
        out.append("  E   " + case.message.strip().splitlines()[0][:200])
    return out[:_SAID]


def compact_tests(report: TestReport) -> str | None:
    """pytest failures told briefly - the assertion and what came out, for the first few; one line for the rest - or
    None when the report is of another form (its own feedback is then as short as it gets). A small model reads
    this on every request of a round: pytest's full report repeats each failure three times."""
    bad = [c for c in report.cases if c.outcome in ("failed", "error")]
    if not bad or any(c.kind != "pytest" for c in bad):
        return None
    lines = [f"Test run: {report.summary()} - `{shown_command(report.command)}`"]
    for case in bad[:DETAILED]:
        detail = _failing_line(case)
        if not detail:
            return None  # no assertion to show (an error in a fixture, say): the full feedback says more
        lines += [f"FAILED {case.id}", *detail]
    for case in bad[DETAILED:MAX_LISTED]:
        asserted = next((ln.strip()[1:].strip() for ln in case.traceback.splitlines() if ln.startswith(">")), "")
        lines.append(f"FAILED {case.id}" + (f": `{asserted[:140]}`" if asserted else ""))
    if len(bad) > MAX_LISTED:
        lines.append(f"... and {len(bad) - MAX_LISTED} more failing")
    return "\n".join(lines)


def gather_evidence(ctx: RunContext, report: TestReport, test_cmd: str) -> dict[str, Any]:
    """The evidence about ``report`` (a run of the workspace as it is now): tests, trace, files, first error.

    ``asserts`` says whether the tests section shows the failing assertions themselves (then the test files need
    not be shown as well)."""
    hung = hung_test(ctx, report) if report.status == "timeout" else None
    compact = compact_tests(report)
    tests = compact or report.feedback(FEEDBACK_CHARS)
    if hung:  # the dumped stack is mostly pytest's own frames: name where it hung instead
        tests = tests.split("\nOutput (tail):", 1)[0] + "\n" + _hang_note(hung)
    evidence: dict[str, Any] = {
        "tests": relative_paths(ctx, tests),
        "trace": "",
        "files": failing_files(ctx, report),
        "error": relative_paths(ctx, first_error(report)),
        "asserts": compact is not None,
    }
    if not ctx.settings.traces or report.status == "passed":
        return evidence
    blocks = []
    failing = [c for c in report.cases if c.outcome in ("failed", "error")]
    if not failing and hung:
        failing = [TestCase(hung[0], "failed", "timed out", kind="pytest")]
    # the tracer stops an endless loop itself; it needs the time to start the test runner first
    timeout = max(ctx.settings.command_timeout, TRACE_SECONDS)
    options = TraceOptions(timeout=timeout, step_into=ctx.settings.trace_step_into)
    for case in failing[:MAX_TRACES]:
        trace = trace_failure(ctx.sandbox, case, test_cmd, options=options)
        if trace is None:
            continue
        context = ctx.model.context_size()
        # a trace may take a sixth of a small window: it is read, token by token, on every request of the round
        text = ctx.dialect.render_trace(trace, min(TRACE_TOKENS, context // 6) if context else TRACE_TOKENS)
        blocks.append(f"Execution trace of `{trace.function}` ({trace.file}) while running {case.id}:\n{text}")
        break  # one trace is what a small context can hold; the first failure is the one to explain
    evidence["trace"] = "\n\n".join(blocks)
    return evidence
