"""Run a test command in a sandbox and turn its result into a :class:`TestReport`.

Why JUnit XML and not pytest's terminal output: the XML is pytest's stable machine interface (ids,
outcome, message and long traceback per test), so the report does not depend on verbosity flags or
plugins. We ask for ``xunit1`` because it carries a ``file`` attribute, which turns ``classname`` back into
real node ids that can be passed to pytest again. What the model sees is :meth:`TestReport.feedback`:
failing ids, messages and tracebacks trimmed to project frames, because pytest's and importlib's internals
only cost tokens.
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sandboxes.base import ExecResult, Sandbox

__all__ = ["Outcome", "Status", "TestCase", "TestReport", "parse_junit", "run_tests", "trim_traceback"]

Outcome = Literal["passed", "failed", "error", "skipped"]
Status = Literal["passed", "failed", "collection_error", "no_tests", "timeout", "crashed", "error"]

JUNIT_DIR = ".mendloop"
OUTPUT_KEEP = 40_000  # characters of output kept in the report (head and tail); it lives in the graph state
CASE_KEEP = 8_000  # characters of one test's message and of its traceback kept (head and tail): the same reason
JUNIT_LIMIT = 32 * 1024 * 1024  # a JUnit report larger than this is not read (a runaway, or a test writing it)
_OUTCOME_RANK: dict[str, int] = {"passed": 0, "skipped": 1, "error": 2, "failed": 3}
_COLLECTION_MARKERS = ("ERROR collecting", "errors during collection", "error during collection")


@dataclass
class TestCase:
    """One test: its pytest node id (``tests/test_x.py::TestK::test_m[1]``) and how it ended."""

    __test__ = False  # not a pytest test class, despite the name

    id: str
    outcome: Outcome
    message: str = ""
    traceback: str = ""
    duration: float = 0.0


@dataclass
class TestReport:
    """The result of one test run, JSON-able (:meth:`to_dict`) because it lives in the graph state."""

    __test__ = False

    status: Status
    cases: list[TestCase] = field(default_factory=list)
    output: str = ""
    exit_code: int = 0
    duration: float = 0.0
    command: str = ""

    @property
    def passed(self) -> list[str]:
        return [c.id for c in self.cases if c.outcome == "passed"]

    @property
    def failed(self) -> list[str]:
        """Ids that failed or errored (setup/teardown errors and collection errors included)."""
        return [c.id for c in self.cases if c.outcome in ("failed", "error")]

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(_OUTCOME_RANK, 0)
        for case in self.cases:
            counts[case.outcome] += 1
        return counts

    def summary(self) -> str:
        """One line: ``3 passed, 1 failed`` or why there are no results (``timed out after 2s``)."""
        counts = self.counts
        labels = {"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped"}
        parts = [f"{counts[k]} {label}" for k, label in labels.items() if counts[k]]
        tally = ", ".join(parts)
        if self.status == "collection_error":
            where = ", ".join(c.id for c in self.cases if c.outcome == "error") or "the test files"
            return f"collection error in {where}"
        if self.status == "no_tests":
            return "no tests ran"
        if self.status == "timeout":
            return f"timed out after {int(self.duration)}s" + (f" ({tally} before)" if tally else "")
        if self.status == "crashed":
            crashed = f"test process crashed ({_describe_exit(self.exit_code)})"
            return crashed + (f"; {tally}" if tally else "")
        if self.status == "error":
            return f"test command error ({_describe_exit(self.exit_code)})"
        if tally:
            return tally
        return "passed" if self.status == "passed" else f"failed ({_describe_exit(self.exit_code)})"

    def feedback(self, max_chars: int = 6000) -> str:
        """What the model needs to fix things: each failing test with its message and trimmed traceback.

        When there are no per-test results (crash, timeout, a non-pytest command) the tail of the output
        stands in for them.
        """
        head = f"Test run: {self.summary()} - `{self.command}`"
        bad = [c for c in self.cases if c.outcome in ("failed", "error")]
        if not bad:
            if self.status == "passed":
                return head
            tail = _tail(self.output.rstrip(), max(200, max_chars - len(head) - 20))
            return f"{head}\nOutput (tail):\n{tail}"
        budget = max_chars - len(head) - 1
        # Room kept for naming the failures that get no section of their own.
        reserve = min(len(", ".join(c.id for c in bad)) + 40, budget // 4)
        per_case = max(600, (budget - reserve) // min(len(bad), 5))
        parts = [head]
        for i, case in enumerate(bad):
            section = _case_section(case, per_case)
            if len(section) + 1 > budget - (reserve if i < len(bad) - 1 else 0):
                rest = [c.id for c in bad[i:]]
                parts.append(_clip(f"... and {len(rest)} more failing: " + ", ".join(rest), max(budget, 60)))
                break
            parts.append(section)
            budget -= len(section) + 1
        return "\n".join(parts)[:max_chars]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestReport:
        fields = dict(data)
        fields["cases"] = [TestCase(**case) for case in data.get("cases", [])]
        return cls(**fields)


# Why: where the sandbox runs mendloop's own interpreter (local, bwrap), mendloop's dependency tree (langgraph ->
# langsmith) registers a pytest plugin the target project never asked for. It costs seconds of import per run and
# reports to a tracing service when configured. ``-p no:NAME`` is a no-op where the plugin is absent.
FOREIGN_PLUGINS = "-p no:langsmith_plugin"


def run_tests(
    sandbox: Sandbox,
    test_cmd: str,
    *,
    tests: Sequence[str] = (),
    timeout: float | None = None,
    extra_args: Sequence[str] = (),
) -> TestReport:
    """Run ``test_cmd`` (plus the given test ids) in ``sandbox`` and report per-test results.

    For pytest commands the JUnit XML is written under ``.mendloop/`` in the workspace (relative to the
    command's working directory), read back with ``sandbox.get`` and deleted. Any other command is judged
    by its exit code alone and its output is the feedback.
    """
    is_pytest = "pytest" in test_cmd
    xml_path = f"{JUNIT_DIR}/junit-{uuid.uuid4().hex}.xml"
    command = test_cmd
    if is_pytest:
        command += f" --junitxml={xml_path} -o junit_family=xunit1 -p no:cacheprovider {FOREIGN_PLUGINS}"
    if is_pytest and extra_args:
        command += " " + " ".join(shlex.quote(a) for a in extra_args)
    if tests:
        command += " " + " ".join(shlex.quote(t) for t in tests)
    started = time.monotonic()
    result = sandbox.run(command, timeout=timeout)
    duration = result.duration or (time.monotonic() - started)
    cases: list[TestCase] = []
    have_xml = False
    if is_pytest:
        xml_text = _fetch(sandbox, xml_path)
        have_xml = xml_text is not None
        cases = parse_junit(xml_text or "")
    status = _status(result, is_pytest=is_pytest, have_xml=have_xml, cases=cases)
    output = _clip_middle(result.output, OUTPUT_KEEP)
    return TestReport(status, cases, output, result.exit_code, duration, command)


def merge_reports(first: TestReport, second: TestReport) -> TestReport:
    """One report for two runs (the suite, then tests it did not collect): the worse status, all cases."""
    status = first.status if first.status != "passed" else second.status
    seen = {case.id for case in first.cases}  # a command that names paths runs them again in the second run
    return TestReport(
        status,
        [*first.cases, *(case for case in second.cases if case.id not in seen)],
        f"{first.output}\n{second.output}",
        first.exit_code or second.exit_code,
        first.duration + second.duration,
        f"{first.command} ; {second.command}",
    )


def parse_junit(xml_text: str, *, root_hint: str = "") -> list[TestCase]:
    """Test cases from JUnit XML (pytest's xunit1 or xunit2, or other tools'), with pytest node ids.

    ``root_hint`` is a directory prefixed to every id, for when pytest's rootdir is below the directory the
    ids will be used from. Repeated ids (a test whose call failed and whose teardown errored) are merged,
    keeping the worst outcome. Unparseable XML gives an empty list: the caller falls back on the output.
    """
    if not xml_text.strip() or "<!ENTITY" in xml_text:  # entities: never expand what untrusted code wrote
        return []
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return []
    merged: dict[str, TestCase] = {}
    for element in root.iter("testcase"):
        case = _case(element, root_hint)
        if case.id in merged:
            merged[case.id] = _merge(merged[case.id], case)
        else:
            merged[case.id] = case
    return list(merged.values())


def trim_traceback(text: str, *, max_lines: int = 60) -> str:
    """Keep project frames of a pytest traceback, drop pytest/importlib/stdlib/site-packages frames.

    An internal frame keeps its ``E`` lines (the error itself is often raised there, a SyntaxError in
    ``ast.parse`` for one); runs of hidden frames become one ``[... N internal frames hidden ...]`` line.
    """
    kept: list[str] = []
    hidden = 0
    for chunk in _chunks(text.splitlines()):
        location = next((m for line in chunk if (m := _LOCATION.match(line))), None)
        if location is None or not _is_internal(location.group(1)):
            if hidden:
                kept.append(f"[... {hidden} internal frames hidden ...]")
                hidden = 0
            kept.extend(chunk)
            continue
        errors = [line for line in chunk if line.startswith("E ")]
        if errors:
            if hidden:
                kept.append(f"[... {hidden} internal frames hidden ...]")
                hidden = 0
            kept.append(chunk[0] if _LOCATION.match(chunk[0]) else location.group(0))
            kept.extend(errors)
        else:
            hidden += 1
    if hidden:
        kept.append(f"[... {hidden} internal frames hidden ...]")
    while kept and not kept[-1].strip():
        kept.pop()
    if len(kept) > max_lines:
        head = max_lines // 4
        tail = max_lines - head - 1
        kept = [*kept[:head], f"[... {len(kept) - head - tail} lines ...]", *kept[-tail:]]
    return "\n".join(kept)


# A frame's location line: "tests/test_x.py:12: in helper" (short) or "tests/test_x.py:12: AssertionError".
_LOCATION = re.compile(r"^(\S[^:\n]*|<frozen [^>]+>):(\d+): ?(.*)$")
_SEPARATOR = re.compile(r"^(_ )+_\s*$")
_INTERNAL = re.compile(
    r"(^<frozen )|(/|^)(site-packages|dist-packages)/"  # frozen importlib, installed packages
    r"|/lib/python\d\.\d+/|(^|/)(_pytest|pluggy)/"  # the standard library, pytest itself
)


def _is_internal(path: str) -> bool:
    return bool(_INTERNAL.search(path))


def _chunks(lines: list[str]) -> list[list[str]]:
    """Split a traceback into frames: at ``_ _ _`` separators and before each short-form location line."""
    chunks: list[list[str]] = [[]]
    for line in lines:
        if _SEPARATOR.match(line):
            chunks.append([])
            continue
        short = _LOCATION.match(line)
        if short and short.group(3).startswith("in ") and chunks[-1]:
            chunks.append([])
        chunks[-1].append(line)
    return [c for c in chunks if c]


def _case(element: ET.Element, root_hint: str) -> TestCase:
    outcome: Outcome = "passed"
    messages: list[str] = []
    texts: list[str] = []
    for child in element:
        tag = child.tag
        if tag in ("failure", "error", "skipped"):
            found: Outcome = "failed" if tag == "failure" else tag  # type: ignore[assignment]
            if _OUTCOME_RANK[found] > _OUTCOME_RANK[outcome]:
                outcome = found
            if child.get("message"):
                messages.append(child.get("message", ""))
            if child.text and child.text.strip():
                texts.append(child.text.strip("\n"))
    try:
        duration = float(element.get("time", "0") or 0)
    except ValueError:
        duration = 0.0
    node_id = _node_id(element.get("classname", ""), element.get("name", ""), element.get("file"))
    if root_hint:
        node_id = f"{root_hint.rstrip('/')}/{node_id}"
    message = _clip_middle("\n".join(messages), CASE_KEEP)
    return TestCase(node_id, outcome, message, _clip_middle("\n\n".join(texts), CASE_KEEP), duration)


def _node_id(classname: str, name: str, file: str | None) -> str:
    """pytest's node id back from JUnit's (classname, name[, file]); see pytest's ``mangle_test_address``."""
    if not classname:  # a collection error: the name is the module, dotted
        return file or (name.replace(".", "/") + ".py")
    if file and file.endswith(".py"):
        module = file[:-3].replace("/", ".")
        if classname == module:
            return f"{file}::{name}"
        if classname.startswith(module + "."):
            return "::".join([file, *classname[len(module) + 1 :].split("."), name])
        return f"{file}::{name}"
    parts = classname.split(".")
    classes: list[str] = []
    while len(parts) > 1 and parts[-1][:1].isupper():
        classes.insert(0, parts.pop())
    path = file or "/".join(parts) + ".py"
    return "::".join([path, *classes, name])


def _merge(first: TestCase, second: TestCase) -> TestCase:
    worst = first.outcome if _OUTCOME_RANK[first.outcome] >= _OUTCOME_RANK[second.outcome] else second.outcome
    message = "\n".join(m for m in (first.message, second.message) if m)
    traceback = "\n\n".join(t for t in (first.traceback, second.traceback) if t)
    return TestCase(first.id, worst, message, traceback, first.duration + second.duration)


def _fetch(sandbox: Sandbox, rel: str) -> str | None:
    """Read the XML back and delete it; ``None`` when the run never wrote it (crash, usage error) or it is larger
    than ``JUNIT_LIMIT`` (the output then stands in for it)."""
    host_copy = Path(sandbox.root) / rel
    try:
        if host_copy.is_file() and host_copy.stat().st_size > JUNIT_LIMIT:
            host_copy.unlink()
            return None
        data = sandbox.get(rel)
    except Exception:  # backends raise FileNotFoundError or SandboxError; either way there is no XML
        return None
    if host_copy.exists():
        host_copy.unlink(missing_ok=True)
    else:  # a backend with its own copy of the workspace (Docker): delete it there
        sandbox.run(f"rm -f {shlex.quote(rel)}", timeout=30)
    return data.decode("utf-8", "replace")


def _status(result: ExecResult, *, is_pytest: bool, have_xml: bool, cases: list[TestCase]) -> Status:
    code = result.exit_code
    if result.timed_out:
        return "timeout"
    if result.oom or code < 0 or code > 128 or (is_pytest and code > 5):
        return "crashed"
    if not is_pytest:
        return "passed" if code == 0 else "failed"
    if code == 0:
        return "passed"
    if code == 4:
        return "error"
    if code == 5:
        return "no_tests"
    if not have_xml:  # pytest always writes the XML when it finishes, so it died on the way
        return "crashed"
    if code == 2 and (
        any(c.message == "collection failure" for c in cases)
        or any(marker in result.output for marker in _COLLECTION_MARKERS)
    ):
        return "collection_error"
    if code == 1:
        return "failed"
    return "error"  # 2: interrupted, 3: internal error


def _case_section(case: TestCase, max_chars: int) -> str:
    label = "FAILED" if case.outcome == "failed" else "ERROR"
    lines = [f"{label} {case.id}"]
    if case.message:
        lines += ["  " + line for line in case.message.splitlines()[:6]]
    if case.traceback:
        trimmed = trim_traceback(case.traceback)
        lines += ["  | " + line if line else "  |" for line in trimmed.splitlines()]
    return _clip_middle("\n".join(lines), max_chars)


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    if code > 128:
        return f"exit code {code}, likely signal {code - 128}"
    return f"exit code {code}"


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _clip_middle(text: str, limit: int) -> str:
    """Keep the start (what ran) and the end (how it ended) of long text."""
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head - 40
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"
