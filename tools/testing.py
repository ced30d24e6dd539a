"""Run any test command in a sandbox and turn its result into a :class:`TestReport` of per-test cases.

Three forms, told apart by the command (:func:`command_form`), so callers never guess:

* **pytest** - the JUnit XML, pytest's stable machine interface (ids, outcome, message and long traceback per test),
  so the report does not depend on verbosity flags or plugins. We ask for ``xunit1`` because it carries a ``file``
  attribute, which turns ``classname`` back into real node ids that can be passed to pytest again.
* **unittest** (``python -m unittest ...``) - its own verbose output: ``-v`` is appended so every test is listed as
  ``test_x (mod.Class.test_x) ... ok`` (Python 3.11+; ``test_x (mod.Class)`` on 3.10), and the ``FAIL:``/``ERROR:``
  sections give each failure's traceback. Ids are ``mod.Class.test_x``, what ``python -m unittest`` takes back.
* **command** - anything else (``python test_gcd.py``, ``make test``, ``./run_tests.sh``): one case named after the
  command, passed iff it exits 0, its message the last meaningful line(s) of the output (the exception of a Python
  traceback) and its traceback the output's tail. A command that cannot start at all (not found, no such script or
  module) gives no case and status ``error``: there is nothing to repair yet.

What the model sees is :meth:`TestReport.feedback`: failing ids, messages and tracebacks trimmed to project frames
(pytest's, importlib's and the standard library's internals only cost tokens), whatever the form.
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

__all__ = [
    "Form",
    "Outcome",
    "PyError",
    "PyFrame",
    "Status",
    "TestCase",
    "TestReport",
    "case_in_file",
    "command_form",
    "merge_reports",
    "parse_junit",
    "parse_python_error",
    "parse_unittest",
    "python_of",
    "run_tests",
    "script_target",
    "trim_traceback",
    "unittest_top",
]

Outcome = Literal["passed", "failed", "error", "skipped"]
Status = Literal["passed", "failed", "collection_error", "no_tests", "timeout", "crashed", "error"]
Form = Literal["pytest", "unittest", "command"]

JUNIT_DIR = ".mendloop"
OUTPUT_KEEP = 40_000  # characters of output kept in the report (head and tail); it lives in the graph state
COMMAND_TAIL = 6_000  # characters of a command's output kept as its case's traceback
CASE_KEEP = 8_000  # characters of one test's message and of its traceback kept (head and tail): the same reason
JUNIT_LIMIT = 32 * 1024 * 1024  # a JUnit report larger than this is not read (a runaway, or a test writing it)
_OUTCOME_RANK: dict[str, int] = {"passed": 0, "skipped": 1, "error": 2, "failed": 3}
_COLLECTION_MARKERS = ("ERROR collecting", "errors during collection", "error during collection")


@dataclass
class TestCase:
    """One test and how it ended. ``kind`` says which form ran it, and so what ``id`` is: a pytest node id
    (``tests/test_x.py::TestK::test_m[1]``), a unittest id (``tests.test_x.TestK.test_m``) or, for any other
    command, the command itself (``python test_gcd.py``)."""

    __test__ = False  # not a pytest test class, despite the name

    id: str
    outcome: Outcome
    message: str = ""
    traceback: str = ""
    duration: float = 0.0
    kind: Form = "pytest"


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
        # one command's one case says no more than "1 failed"; its exit code says more
        alone = len(self.cases) == 1 and self.cases[0].kind == "command"
        tally = "" if alone else ", ".join(parts)
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

        When there are no per-test results (a crash, a timeout, a command that could not start) the tail of the
        output stands in for them. A failing command's case carries its output's tail, Python tracebacks trimmed.
        """
        head = f"Test run: {self.summary()} - `{shown_command(self.command)}`"
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
    """Run ``test_cmd`` in ``sandbox`` and report per-test results, whatever the command's form.

    ``tests`` narrows the run the way the form runs single tests: pytest node ids or paths appended to the command;
    unittest ids or test files (``tests/test_x.py``) run by ``python -m unittest`` alone (discovery arguments
    dropped); for any other command, each entry is a script run as ``python FILE`` (one case each). ``extra_args``
    are pytest options and only reach pytest.
    """
    form = command_form(test_cmd)
    if form == "pytest":
        return _run_pytest(sandbox, test_cmd, tests, timeout, extra_args)
    if form == "unittest":
        return _run_unittest(sandbox, test_cmd, tests, timeout)
    if tests:
        python = python_of(test_cmd)
        reports = [_run_command(sandbox, f"{python} {shlex.quote(t)}", timeout) for t in tests]
        merged = reports[0]
        for report in reports[1:]:
            merged = merge_reports(merged, report)
        return merged
    return _run_command(sandbox, test_cmd, timeout)


_OWN_OPTIONS = re.compile(r" --junitxml=\S+| -o junit_family=\S+| -o faulthandler_timeout=\S+| -p no:\S+")


def shown_command(command: str) -> str:
    """The command as the user wrote it: without the options mendloop adds to read pytest's results."""
    return _OWN_OPTIONS.sub("", command)


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


def case_in_file(case: TestCase, path: str, test_cmd: str = "") -> bool:
    """Whether ``case`` comes from the test file ``path`` (relative to the workspace), for the form that ran it.

    pytest: the node id's path. unittest: the id starts with the file's module, dotted relative to the workspace or
    to the command's top-level directory (``discover -s tests`` names ``tests/test_x.py`` ``test_x``). A command's
    case: the command runs that file (``python tests/test_x.py``).
    """
    if case.kind == "pytest":
        return case.id.split("::", 1)[0] == path
    if case.kind == "unittest":
        return any(case.id == m or case.id.startswith(m + ".") for m in _module_names(path, unittest_top(test_cmd)))
    return path in _split(case.id)


# -- the command line ----------------------------------------------------------------------------------------------
_SEPARATORS = {"&&", "||", ";", "|", "(", ")", "&"}
_RUNNERS = {"run", "exec", "time", "env", "nice", "xvfb-run"}  # `uv run pytest`, `env X=1 pytest`...
_PYTHON = re.compile(r"(^|/)python(\d+(\.\d+)?)?$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
# python options that take a value: `python -W ignore x.py`, `python -X dev x.py`
_PYTHON_VALUE_OPTIONS = {"-W", "-X", "--check-hash-based-pycs"}


def _split(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd)
    except ValueError:  # an unbalanced quote: words are still a fair guess
        return cmd.split()


def _starts_program(tokens: list[str], index: int) -> bool:
    """Whether ``tokens[index]`` is where a program name stands (not an argument of another program)."""
    previous = tokens[index - 1] if index else None
    return (
        previous is None
        or previous in _SEPARATORS
        or previous in _RUNNERS
        or previous == "-m"
        or bool(_ASSIGNMENT.match(previous))
        or previous.isdigit()  # `timeout 60 pytest`
    )


def command_form(test_cmd: str) -> Form:
    """``pytest`` (``pytest``, ``python -m pytest``, ``uv run pytest``...), ``unittest`` (``python -m unittest``)
    or ``command`` (anything else)."""
    tokens = _split(test_cmd)
    for index, token in enumerate(tokens):
        name = token.rsplit("/", 1)[-1]
        if re.fullmatch(r"py\.?test(-?\d[\d.]*)?", name) and _starts_program(tokens, index):
            return "pytest"
        if token == "-mpytest":
            return "pytest"
        if (token == "-m" and index + 1 < len(tokens) and tokens[index + 1] == "unittest") or token == "-munittest":
            return "unittest"
    return "command"


def python_of(test_cmd: str) -> str:
    """The Python interpreter the command names (``python3``, ``.venv/bin/python``), else ``python``."""
    tokens = _split(test_cmd)
    for index, token in enumerate(tokens):
        if _PYTHON.search(token) and _starts_program(tokens, index):
            return token
    return "python"


def script_target(test_cmd: str) -> tuple[str, str, str, list[str]] | None:
    """``(python, "script" | "module", target, args)`` for a command that is one Python run (``python X.py args``,
    ``python3 -u X.py``, ``python -m module args``, ``ENV=1 python X.py``); None for anything else (``make``, a
    shell script, a chain of commands, ``python -c``)."""
    tokens = _split(test_cmd)
    index = 0
    while index < len(tokens) and _ASSIGNMENT.match(tokens[index]):
        index += 1
    if index >= len(tokens) or not _PYTHON.search(tokens[index]):
        return None
    if any(token in _SEPARATORS for token in tokens):
        return None
    python = tokens[index]
    index += 1
    while index < len(tokens) and tokens[index].startswith("-") and tokens[index] != "-":
        option = tokens[index]
        if option == "-m":
            if index + 1 >= len(tokens):
                return None
            return python, "module", tokens[index + 1], tokens[index + 2 :]
        if option.startswith("-m") and len(option) > 2:
            return python, "module", option[2:], tokens[index + 1 :]
        if option.startswith("-c"):
            return None
        index += 2 if option in _PYTHON_VALUE_OPTIONS else 1
    if index >= len(tokens) or not tokens[index].endswith(".py"):
        return None
    return python, "script", tokens[index], tokens[index + 1 :]


def _unittest_call(test_cmd: str) -> re.Match[str] | None:
    return re.search(r"(?:^|\s)-m\s*unittest(?=\s|$)", test_cmd)


def unittest_top(test_cmd: str) -> str:
    """The top-level directory unittest names modules from: ``-t``, else ``-s`` of ``discover``, else ``.``."""
    match = _unittest_call(test_cmd)
    if match is None:
        return "."
    words = _split(test_cmd[match.end() :])
    if not words or words[0] != "discover":
        return "."
    start, top, positional = ".", "", []
    rest = iter(words[1:])
    for word in rest:
        if word in ("-s", "--start-directory"):
            start = next(rest, ".")
        elif word in ("-t", "--top-level-directory"):
            top = next(rest, "")
        elif word in ("-p", "--pattern", "-k"):
            next(rest, None)
        elif word.startswith("-"):
            continue
        elif word in _SEPARATORS:
            break
        else:
            positional.append(word)
    if positional:
        start = positional[0]
    if len(positional) >= 3:
        top = positional[2]
    return (top or start).rstrip("/") or "."


def _module_names(path: str, top: str) -> list[str]:
    """Dotted module names a test file may go by: relative to ``top`` (when under it) and to the workspace."""
    if not path.endswith(".py"):
        return []
    rel = path[:-3].removeprefix("./")
    names = []
    prefix = top.removeprefix("./").rstrip("/")
    if prefix not in ("", ".") and rel.startswith(prefix + "/"):
        names.append(rel[len(prefix) + 1 :].replace("/", "."))
    names.append(rel.replace("/", "."))
    return names


# -- pytest --------------------------------------------------------------------------------------------------------
def _run_pytest(
    sandbox: Sandbox, test_cmd: str, tests: Sequence[str], timeout: float | None, extra_args: Sequence[str]
) -> TestReport:
    """The JUnit XML is written under ``.mendloop/`` in the workspace (relative to the command's working
    directory), read back with ``sandbox.get`` and deleted."""
    xml_path = f"{JUNIT_DIR}/junit-{uuid.uuid4().hex}.xml"
    command = f"{test_cmd} --junitxml={xml_path} -o junit_family=xunit1 -p no:cacheprovider {FOREIGN_PLUGINS}"
    if timeout:
        # a test that hangs gets its stack dumped (pytest's faulthandler) well before the run is killed: the only
        # way a timed-out run can still say which test hung, and where
        command += f" -o faulthandler_timeout={max(2, int(timeout / 3))}"
    if extra_args:
        command += " " + " ".join(shlex.quote(a) for a in extra_args)
    if tests:
        command += " " + " ".join(shlex.quote(t) for t in tests)
    started = time.monotonic()
    result = sandbox.run(command, timeout=timeout)
    duration = result.duration or (time.monotonic() - started)
    xml_text = _fetch(sandbox, xml_path)
    cases = parse_junit(xml_text or "")
    status = _pytest_status(result, have_xml=xml_text is not None, cases=cases)
    return TestReport(status, cases, _clip_middle(result.output, OUTPUT_KEEP), result.exit_code, duration, command)


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
    """Keep project frames of a traceback, drop pytest/importlib/stdlib/site-packages frames.

    Both pytest's long form (``path.py:12: in helper`` locations) and Python's own (``File "path.py", line 12, in
    helper``) are trimmed. An internal pytest frame keeps its ``E`` lines (the error itself is often raised there, a
    SyntaxError in ``ast.parse`` for one); runs of hidden frames become one ``[... N internal frames hidden ...]``
    line.
    """
    kept: list[str] = []
    hidden = 0
    for chunk in _chunks(_trim_python_frames(text.splitlines())):
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
    return TestCase(first.id, worst, message, traceback, first.duration + second.duration, first.kind)


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


def _pytest_status(result: ExecResult, *, have_xml: bool, cases: list[TestCase]) -> Status:
    code = result.exit_code
    if result.timed_out:
        return "timeout"
    if result.oom or code < 0 or code > 5:
        return "crashed"
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


# -- unittest ------------------------------------------------------------------------------------------------------
def _run_unittest(sandbox: Sandbox, test_cmd: str, tests: Sequence[str], timeout: float | None) -> TestReport:
    command = f"{test_cmd} -v"
    if tests:
        command = _unittest_selection(test_cmd, tests)
    started = time.monotonic()
    result = sandbox.run(command, timeout=timeout)
    duration = result.duration or (time.monotonic() - started)
    cases = parse_unittest(result.output)
    status = _unittest_status(result, cases)
    return TestReport(status, cases, _clip_middle(result.output, OUTPUT_KEEP), result.exit_code, duration, command)


def _unittest_selection(test_cmd: str, tests: Sequence[str]) -> str:
    """``python -m unittest -v`` on the given ids or files, with the command's top-level directory importable."""
    match = _unittest_call(test_cmd)
    prefix = test_cmd[: match.end()] if match else "python -m unittest"
    top = unittest_top(test_cmd)
    names = []
    for test in tests:
        modules = _module_names(test, top) if test.endswith(".py") else [test]
        names.append(modules[0] if modules else test)
    env = f'export PYTHONPATH={shlex.quote(top)}"${{PYTHONPATH:+:$PYTHONPATH}}"; ' if top != "." else ""
    return f"{env}{prefix} " + " ".join(shlex.quote(n) for n in names) + " -v"


# `test_x (mod.Class.test_x) ... ok` (3.11+), `test_x (mod.Class) ... ok` (3.10), a subtest `  test_x (...) (i=1) ...`,
# a docstring's first line on a line of its own before ` ... `; 3.10 may run two tests into one line.
_UT_START = re.compile(
    r"(?:^|(?<=\.\.\. ))[ \t]*(?P<name>\w+) \((?P<where>[\w.]+)\)(?P<params> \([^\n]*?\))?(?:\n(?P<doc>[^\n]*?))?"
    r" \.\.\. ",
    re.MULTILINE,
)
_UT_STATUS = re.compile(r"(ok|FAIL|ERROR|skipped\b.*|expected failure|unexpected success)[ \t]*$", re.MULTILINE)
_UT_RULE = re.compile(r"^(={70}|-{70})$", re.MULTILINE)
_UT_HEADER = re.compile(
    r"^(?P<kind>FAIL|ERROR|UNEXPECTED SUCCESS): (?P<name>\w+) \((?P<where>[\w.]+)\)(?P<params> \(.*\))?$"
)
_UT_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UT_FAILED_IMPORT = ("unittest.loader._FailedTest", "unittest.loader.ModuleImportFailure")
_UT_OUTCOMES: dict[str, Outcome] = {
    "ok": "passed",
    "FAIL": "failed",
    "ERROR": "error",
    "expected failure": "passed",
    "unexpected success": "failed",
}


def _unittest_id(name: str, where: str) -> tuple[str, bool]:
    """The test's id, and whether it stands for a module that failed to import (the id is then the module)."""
    if where in _UT_FAILED_IMPORT or where.removesuffix("." + name) in _UT_FAILED_IMPORT:
        return name, True
    return (where if where.endswith("." + name) else f"{where}.{name}"), False


def parse_unittest(output: str) -> list[TestCase]:
    """Test cases from ``python -m unittest -v`` output (Python 3.10 to 3.13 formats).

    Each listed test gives a case; ``FAIL:``/``ERROR:`` sections give messages and tracebacks (and cases the list
    does not name, like ``setUpClass``). Subtests fold into their test, keeping the worst outcome; a module that
    failed to import is an ``error`` case named after the module. A test that never got its verdict (the run was
    killed during it) is an ``error``.
    """
    cases: dict[str, TestCase] = {}
    sections_at = _UT_RULE.search(output)
    listing = output[: sections_at.start()] if sections_at else output
    starts = list(_UT_START.finditer(listing))
    finished = _UT_RAN.search(output) is not None
    for number, start in enumerate(starts):
        case_id, import_failure = _unittest_id(start["name"], start["where"])
        end = starts[number + 1].start() if number + 1 < len(starts) else len(listing)
        region = listing[start.end() : end]
        verdict = _UT_STATUS.match(region) or _UT_STATUS.search(region)
        outcome: Outcome
        message = ""
        if verdict is None:
            outcome = "passed" if finished else "error"
            message = "" if finished else "the test run ended during this test (no verdict)"
        elif verdict.group(1).startswith("skipped"):
            outcome, message = "skipped", verdict.group(1)[len("skipped") :].strip().strip("'\"")
        else:
            outcome = _UT_OUTCOMES[verdict.group(1)]
            if verdict.group(1) == "unexpected success":
                message = "unexpected success (the test is marked as an expected failure)"
        if import_failure:
            outcome = "error"
        _add_case(cases, TestCase(case_id, outcome, message, kind="unittest"))
    for kind, name, where, params, body in _unittest_sections(output):
        case_id, import_failure = _unittest_id(name, where)
        outcome = "failed" if kind in ("FAIL", "UNEXPECTED SUCCESS") else "error"
        if kind == "UNEXPECTED SUCCESS":
            continue  # the listing said so already
        else:
            error = parse_python_error(body)
            message = error.text if error else _last_lines(body, 3)
            if import_failure:
                first = body.strip().splitlines()[:1]
                message = "\n".join(dict.fromkeys([*first, message]))
        if params:
            message = f"subtest{params}: {message}"
        _add_case(cases, TestCase(case_id, outcome, message, body.strip("\n"), kind="unittest"))
    return list(cases.values())


def _add_case(cases: dict[str, TestCase], case: TestCase) -> None:
    known = cases.get(case.id)
    cases[case.id] = case if known is None else _merge(known, case)


def _unittest_sections(output: str) -> list[tuple[str, str, str, str, str]]:
    """``(kind, name, where, params, body)`` of each ``FAIL:``/``ERROR:``/``UNEXPECTED SUCCESS:`` section."""
    sections = []
    for block in re.split(r"^={70}\n", output, flags=re.MULTILINE)[1:]:
        head, _, body = block.partition("\n" + "-" * 70 + "\n")
        header = _UT_HEADER.match(head.split("\n", 1)[0])
        if header is None:
            continue
        body = re.split(r"^-{70}\nRan \d+ tests? in ", body, maxsplit=1, flags=re.MULTILINE)[0]
        sections.append((header["kind"], header["name"], header["where"], header["params"] or "", body))
    return sections


def _unittest_status(result: ExecResult, cases: list[TestCase]) -> Status:
    code = result.exit_code
    if result.timed_out:
        return "timeout"
    if result.oom or code < 0 or code > 128:
        return "crashed"
    ran = _UT_RAN.search(result.output)
    if any(c.outcome == "error" and "." not in c.id.rsplit(".", 1)[-1] and _is_import_failure(c) for c in cases):
        return "collection_error"
    if ran is None:
        return "crashed" if cases else "error"  # died during a test, or never started (a usage error)
    if any(c.outcome in ("failed", "error") for c in cases):
        return "failed"  # a setUpClass error fails with "Ran 0 tests"
    if ran.group(1) == "0" or "NO TESTS RAN" in result.output:
        return "no_tests"
    return "passed" if code == 0 else "error"


def _is_import_failure(case: TestCase) -> bool:
    return "Failed to import test module" in case.message or "Failed to import test module" in case.traceback


# -- any other command ---------------------------------------------------------------------------------------------
_CANNOT_OPEN = re.compile(r"can't open file .*\[Errno \d+\]")


def _run_command(sandbox: Sandbox, test_cmd: str, timeout: float | None) -> TestReport:
    started = time.monotonic()
    result = sandbox.run(test_cmd, timeout=timeout)
    duration = result.duration or (time.monotonic() - started)
    output = _clip_middle(result.output, OUTPUT_KEEP)
    status = _command_status(result, test_cmd)
    if status == "error":  # it never ran: nothing to judge, and nothing a code change could repair
        return TestReport(status, [], output, result.exit_code, duration, test_cmd)
    outcome: Outcome = "passed" if status == "passed" else "failed"
    message = "" if outcome == "passed" else _command_message(result, str(getattr(sandbox, "root", "")))
    traceback = "" if outcome == "passed" else _tail_lines(result.output.rstrip(), COMMAND_TAIL)
    case = TestCase(test_cmd, outcome, message, traceback, duration, kind="command")
    return TestReport(status, [case], output, result.exit_code, duration, test_cmd)


def _command_status(result: ExecResult, test_cmd: str) -> Status:
    code = result.exit_code
    if result.timed_out:
        return "timeout"
    if code in (126, 127):  # the shell could not find or execute it
        return "error"
    if result.oom or code < 0 or code > 128:
        return "crashed"
    if code == 0:
        return "passed"
    target = script_target(test_cmd)
    if target is not None:
        text = result.output.replace("'", "")
        if target[1] == "script" and code == 2 and _CANNOT_OPEN.search(result.output):
            return "error"
        if target[1] == "module" and f"No module named {target[2]}" in text and "Traceback" not in text:
            return "error"
    return "failed"


def _command_message(result: ExecResult, root: str) -> str:
    """Why the command failed, in a line or three: the exception of a Python traceback (with where it was raised
    when it carries no text, like a bare ``assert``), else the last meaningful lines of the output."""
    prefix = ""
    if result.timed_out:
        prefix = f"timed out after {result.duration:.0f}s"
    elif result.oom:
        prefix = "killed for exceeding the memory limit"
    elif result.exit_code > 128 or result.exit_code < 0:
        prefix = f"killed ({_describe_exit(result.exit_code)})"
    tail = result.output[-COMMAND_TAIL:]
    error = parse_python_error(tail)
    if error is not None:
        text = "\n".join(error.text.splitlines()[:5])
        if ":" not in error.text.split("\n", 1)[0] and error.frames:
            frame = error.frames[-1]
            path = frame.path.removeprefix(root.rstrip("/") + "/") if root else frame.path
            text += f" at {path}:{frame.line}" + (f": {frame.source}" if frame.source else "")
    else:
        text = _last_lines(tail, 3)
    text = "\n".join(part for part in (prefix, text) if part)
    return text or f"failed ({_describe_exit(result.exit_code)})"


# make's own complaint after a failing recipe, and lines that are only decoration
_NOISE = re.compile(r"^(make(\[\d+\])?: (\*\*\*|Leaving directory|Entering directory).*|[\s=*#~^-]*)$")


def _last_lines(text: str, count: int) -> str:
    lines = [line.rstrip() for line in text.splitlines() if not _NOISE.match(line.strip())]
    return "\n".join(_clip(line, 300) for line in lines[-count:])


def _tail_lines(text: str, limit: int) -> str:
    """The end of ``text``, cut at a line start."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    return cut[cut.find("\n") + 1 :] if "\n" in cut else cut


# -- Python tracebacks (scripts, unittest) -------------------------------------------------------------------------
@dataclass
class PyFrame:
    """One ``File "path", line N, in function`` frame and its source line (empty when Python did not show one)."""

    path: str
    line: int
    function: str
    source: str


@dataclass
class PyError:
    """The last Python traceback in some output: its frames (outermost first) and the exception it ended with."""

    frames: list[PyFrame]
    exception: str  # the exception's class name, unqualified: "AssertionError", "JSONDecodeError"
    text: str  # the exception lines as printed: "AssertionError: 1 != 2"


_TRACEBACK_HEADER = "Traceback (most recent call last):"
_PY_FRAME = re.compile(r'^(?P<indent>[ \t]*)File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')
_PY_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::(?: .*)?)?$")


def parse_python_error(text: str) -> PyError | None:
    """The last Python traceback in ``text`` (``Traceback (most recent call last):`` and its frames, or a bare
    ``SyntaxError`` report), or None when there is none."""
    lines = text.splitlines()
    header = max((i for i, line in enumerate(lines) if line.strip() == _TRACEBACK_HEADER), default=-1)
    first_frame = next((i for i in range(header + 1, len(lines)) if _PY_FRAME.match(lines[i])), None)
    if first_frame is None:
        return None
    frames: list[PyFrame] = []
    index = first_frame
    while index < len(lines):
        match = _PY_FRAME.match(lines[index])
        if match is None:
            break
        indent = len(match["indent"])
        block_end = index + 1
        while block_end < len(lines) and _indent(lines[block_end]) > indent and not _PY_FRAME.match(lines[block_end]):
            block_end += 1
        source = next((ln.strip() for ln in lines[index + 1 : block_end] if ln.strip().strip("^~ ")), "")
        frames.append(PyFrame(match["path"], int(match["line"]), (match["func"] or "").strip(), source))
        index = block_end
    # the exception starts at the first unindented line after the frames ("[Previous line repeated ...]" and
    # chained-exception notes are skipped); it may go on for several lines (an assertEqual diff)
    start = next((i for i in range(index, len(lines)) if lines[i][:1].strip() and _PY_EXCEPTION.match(lines[i])), None)
    if start is None:
        return None
    found = _PY_EXCEPTION.match(lines[start])
    assert found is not None
    rest = [lines[start].rstrip()]
    for line in lines[start + 1 :]:
        if not line.strip() or _NOISE.match(line.strip()):
            break
        rest.append(line.rstrip())
    return PyError(frames, found["type"].rsplit(".", 1)[-1], "\n".join(rest))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip()) if line.strip() else 1_000  # blank lines stay inside a block


def _trim_python_frames(lines: list[str]) -> list[str]:
    """Drop the standard library's, site-packages' and frozen frames of Python tracebacks (``File "..."``)."""
    kept: list[str] = []
    hidden = 0
    index = 0
    while index < len(lines):
        match = _PY_FRAME.match(lines[index])
        if match is None:
            if hidden:
                kept.append(f"  [... {hidden} internal frames hidden ...]")
                hidden = 0
            kept.append(lines[index])
            index += 1
            continue
        indent = len(match["indent"])
        end = index + 1
        while end < len(lines) and lines[end].strip() and _indent(lines[end]) > indent:
            if _PY_FRAME.match(lines[end]):
                break
            end += 1
        if _is_internal(match["path"]):
            hidden += 1
        else:
            if hidden:
                kept.append(f"{match['indent']}[... {hidden} internal frames hidden ...]")
                hidden = 0
            kept.extend(lines[index:end])
        index = end
    if hidden:
        kept.append(f"  [... {hidden} internal frames hidden ...]")
    return kept


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
