"""Turn QuixBugs or HumanEvalFix JSONL into a ``mendloop batch`` tasks file: one tiny git repo per task.

    python examples/batch/convert.py quixbugs ../shared/bench/data/quixbugs_python.jsonl --dest /tmp/qb
    mendloop batch /tmp/qb/tasks.jsonl --out /tmp/qb-run --base-url URL --workers 2 --command-timeout 20
    python examples/batch/grade.py /tmp/qb /tmp/qb-run/preds.jsonl

Why a repo per task: that is what ``mendloop batch`` repairs, so any endpoint can be measured with the product's own
front door. Why a separate grader: the agent sees only the *visible* test; grading runs the *hidden* one on the
patched program. For HumanEvalFix the visible test is ``example_test`` and the hidden one is ``test`` (showing
``test`` to the model would make grading circular); for QuixBugs both are the shipped tests (weak in a few tasks).
Both datasets have programs that loop forever when buggy (QuixBugs bitcount, sqrt, find_first_in_sorted;
HumanEvalFix Python/10): always run with ``--command-timeout`` and grade with a timeout.

Two forms of the visible test (``--form``), the task text naming the command that runs it:

* ``pytest`` (the default): one test function per assertion line (``test_1`` ... in file order), so a round that
  fixes some cases shows as partial progress; test functions the dataset defines and calls itself (QuixBugs'
  graph tasks) stay functions and their calls go. Run with ``python -m pytest -q``.
* ``script``: the dataset's own form, the program's tests as plain statements, run as ``python test_NAME.py``: one
  pass/fail for the whole file (mendloop repairs it all the same: the test's traceback is traced into the program).

The hidden grader is the script form either way.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "convert",
    "GIT_AUTHOR_EMAIL": "convert@localhost",
    "GIT_COMMITTER_NAME": "convert",
    "GIT_COMMITTER_EMAIL": "convert@localhost",
}


Form = Literal["pytest", "script"]
FORMS: tuple[Form, ...] = ("pytest", "script")
PYTEST_CMD = "python -m pytest -q"


@dataclass
class Converted:
    """One task: the files of its repo, the hidden grader, and the batch line."""

    instance_id: str
    program_file: str
    files: dict[str, str]  # the repo the agent repairs (program + visible test)
    hidden_test: str  # run as a script next to the patched program; exit 0 = correct
    reference: str  # the fixed program, to check the conversion itself
    task: str
    test_cmd: str


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


# -- the pytest form ----------------------------------------------------------------------------------------------
def _segment(lines: list[str], node: ast.stmt, dedent: int = 0) -> str:
    """A statement's source lines (decorators included), ``dedent`` columns removed."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    chunk = lines[first - 1 : node.end_lineno]
    return "\n".join(line[dedent:] if line[:dedent].isspace() else line for line in chunk)


def _has_assert(node: ast.stmt) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _test_function(name: str, body: list[str]) -> str:
    text = "\n".join(body)
    return f"def {name}():\n" + "\n".join(f"    {line}" if line.strip() else "" for line in text.splitlines())


def _is_block(node: ast.stmt) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)


def _join(parts: list[tuple[str, bool]]) -> str:
    """Statements one per line; two blank lines around functions and classes (PEP 8)."""
    out = ""
    for index, (text, block) in enumerate(parts):
        if index:
            out += "\n\n\n" if block or parts[index - 1][1] else "\n"
        out += text
    return out + "\n"


def _case_names(taken: set[str]) -> Iterator[str]:
    number = 0
    while True:
        number += 1
        if f"test_{number}" not in taken:
            yield f"test_{number}"


def quixbugs_pytest(tests: str) -> str:
    """QuixBugs' test statements as a pytest module body: each module-level ``assert`` its own test function; test
    functions the statements define stay (pytest collects ``test1``), the module-level calls of them go; everything
    else (a ``Node`` class, shared graphs) stays at module level, in order."""
    tree = ast.parse(tests)
    lines = tests.splitlines()
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")}
    names = _case_names(defined)
    parts: list[tuple[str, bool]] = []
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in defined:
            continue  # pytest calls the test function itself
        if isinstance(node, ast.Assert):
            parts.append((_test_function(next(names), [_segment(lines, node)]), True))
        else:
            parts.append((_segment(lines, node), _is_block(node)))
    return _join(parts)


def humanevalfix_pytest(example: str, entry: str) -> str:
    """HumanEvalFix's ``def check(candidate): assert ...`` + ``check(entry)`` as one test function per assertion.

    The statements before an assertion that are not assertions themselves (``import random``, a helper value) come
    along into each later test; a compound statement holding assertions (a loop) is one test of its own.
    """
    tree = ast.parse(example)
    lines = example.splitlines()
    parts: list[tuple[str, bool]] = []
    names = _case_names(set())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            param = node.args.args[0].arg if node.args.args else entry
            preamble = [] if param == entry else [f"{param} = {entry}"]
            for statement in node.body:
                text = _segment(lines, statement, statement.col_offset)
                if _has_assert(statement):
                    parts.append((_test_function(next(names), [*preamble, text]), True))
                else:
                    preamble.append(text)
            continue
        call = node.value if isinstance(node, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check":
            continue
        parts.append((_segment(lines, node), _is_block(node)))
    return _join(parts)


# -- the datasets -------------------------------------------------------------------------------------------------
def quixbugs(row: dict[str, Any], form: Form = "pytest") -> Converted:
    name = row["name"]
    program = f"{name}.py"
    # The shipped tests are plain statements run after the program, in its namespace: import it wholesale.
    header = f"from {name} import *  # noqa: F403\n\n"
    script = f"{header}{row['tests']}\n"
    test = script if form == "script" else f"{header}\n{quixbugs_pytest(row['tests'])}"
    command = f"python test_{name}.py" if form == "script" else PYTEST_CMD
    where = "" if form == "script" else f" (the tests are in `test_{name}.py`)"
    docstring = row.get("docstring", "").strip().strip('"').strip()
    text = (
        f"The function `{name}` in `{program}` has a one-line bug. It should do what this says:\n\n"
        f"{docstring}\n\nFix the bug; `{command}` must pass{where}."
    )
    return Converted(
        instance_id=f"quixbugs/{name}",
        program_file=program,
        files={program: row["buggy_program"].rstrip() + "\n", f"test_{name}.py": test},
        hidden_test=script,
        reference=row["solution"].rstrip() + "\n",
        task=text,
        test_cmd=command,
    )


def humanevalfix(row: dict[str, Any], form: Form = "pytest") -> Converted:
    entry = row["entry_point"]
    program = "solution.py"
    visible = row.get("example_test", "").strip()
    header = "from solution import *  # noqa: F403\n\n"
    if form == "script":
        visible_test = f"{header}{visible}\n" if visible else "import solution  # noqa\n"
    elif visible:
        visible_test = f"{header}\n{humanevalfix_pytest(visible, entry)}"
    else:  # no example test: nothing to check but that the program imports (no signal, as in the script form)
        visible_test = "import solution\n\n\ndef test_solution_imports():\n    assert solution\n"
    hidden = f"{header}{row['test']}\n"
    command = "python test_example.py" if form == "script" else PYTEST_CMD
    where = "" if form == "script" else " (the tests are in `test_example.py`)"
    text = (
        f"Fix the bug in `{entry}` in `{program}`. It should do what its docstring says:\n\n"
        f"{row.get('docstring', '').strip()}\n\n`{command}` must pass{where}."
    )
    return Converted(
        instance_id=f"humanevalfix/{row['task_id']}",
        program_file=program,
        files={program: row["declaration"] + row["buggy_solution"], "test_example.py": visible_test},
        hidden_test=hidden,
        reference=row["declaration"] + row["canonical_solution"],
        task=text,
        test_cmd=command,
    )


CONVERTERS: dict[str, Callable[..., Converted]] = {"quixbugs": quixbugs, "humanevalfix": humanevalfix}


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **_GIT_ENV}, check=True, capture_output=True)


def write_task(item: Converted, dest: Path) -> dict[str, Any]:
    """Create the repo and the hidden grader; return the batch line (``repo`` relative to the tasks file)."""
    slug = _slug(item.instance_id)
    repo = dest / "repos" / slug
    repo.mkdir(parents=True)
    for name, text in item.files.items():
        (repo / name).write_text(text, encoding="utf-8")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "buggy program")
    grader = dest / "graders" / slug
    grader.mkdir(parents=True)
    (grader / "hidden_test.py").write_text(item.hidden_test, encoding="utf-8")
    (grader / "reference.py").write_text(item.reference, encoding="utf-8")
    (grader / "meta.json").write_text(json.dumps({"instance_id": item.instance_id, "program": item.program_file}))
    return {"instance_id": item.instance_id, "repo": f"repos/{slug}", "task": item.task, "test_cmd": item.test_cmd}


def read_rows(path: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for count, line in enumerate(handle):
            if limit is not None and count >= limit:
                return
            if line.strip():
                yield json.loads(line)


def convert(kind: str, source: Path, dest: Path, limit: int | None = None, form: Form = "pytest") -> Path:
    """Write ``dest/tasks.jsonl``, ``dest/repos/*`` and ``dest/graders/*``; returns the tasks file."""
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} is not empty; choose a new --dest")
    dest.mkdir(parents=True, exist_ok=True)
    lines = [write_task(CONVERTERS[kind](row, form), dest) for row in read_rows(source, limit)]
    tasks = dest / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(CONVERTERS))
    parser.add_argument("source", type=Path, help="the dataset's JSONL file")
    parser.add_argument("--dest", type=Path, required=True, help="new directory for tasks.jsonl, repos/, graders/")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N tasks")
    parser.add_argument(
        "--form",
        choices=FORMS,
        default="pytest",
        help="the visible test: pytest functions, one per assertion (default), or the dataset's plain script",
    )
    args = parser.parse_args(argv)
    tasks = convert(args.kind, args.source, args.dest, args.limit, args.form)
    print(f"wrote {sum(1 for _ in tasks.open())} tasks to {tasks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
