"""examples/batch: the converters make valid batch tasks in both test forms, and the grader tells a right fix from
the bug.

The slow check converts every task of the shared benchmark data (40 QuixBugs, 100 HumanEvalFix) in both forms and
runs the tests on the buggy program and on the reference fix, with timeouts: four buggy programs loop forever.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

from agent.doors.batch.tasks import read_tasks
from sandboxes.base import SandboxSpec
from sandboxes.local import LocalSandbox
from tests.agent.test_batch_support import git
from tools.testing import run_tests

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "batch"
DATA = ROOT.parent / "shared" / "bench" / "data"
FAST_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def load(name: str) -> ModuleType:
    """examples/batch is not a package: its modules are loaded by path."""
    spec = importlib.util.spec_from_file_location(f"_examples_batch_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


convert = load("convert")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, check=False)


def graded(done: subprocess.CompletedProcess[str]) -> dict[str, bool]:
    assert done.returncode == 0, done.stderr
    return {row["instance_id"]: row["passed"] for row in map(json.loads, done.stdout.splitlines())}


@pytest.mark.parametrize("form", ["pytest", "script"])
@pytest.mark.parametrize(
    ("kind", "sample", "ids"),
    [
        ("quixbugs", "quixbugs_sample.jsonl", ["quixbugs/flatten", "quixbugs/gcd", "quixbugs/to_base"]),
        ("humanevalfix", "humanevalfix_sample.jsonl", ["humanevalfix/Python/0", "humanevalfix/Python/2"]),
    ],
)
def test_convert_then_grade(tmp_path: Path, kind: str, sample: str, ids: list[str], form: str) -> None:
    dest = tmp_path / kind
    args = [str(EXAMPLES / "convert.py"), kind, str(EXAMPLES / "sample" / sample), "--dest", str(dest)]
    done = run(*args, *(["--form", form] if form == "script" else []))  # pytest is the default
    assert done.returncode == 0, done.stderr
    tasks = read_tasks(dest / "tasks.jsonl")  # the batch front door accepts them
    assert sorted(t.instance_id for t in tasks) == ids
    assert all(t.repo_kind == "path" and t.test_cmd and (Path(t.repo) / ".git").is_dir() for t in tasks)
    for task in tasks:  # the task text names the command that runs the visible test
        assert task.test_cmd is not None and f"`{task.test_cmd}` must pass" in task.text
        assert task.test_cmd == "python -m pytest -q" if form == "pytest" else task.test_cmd.endswith(".py")

    assert set(graded(run(str(EXAMPLES / "grade.py"), str(dest), "--reference")).values()) == {True}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert set(graded(run(str(EXAMPLES / "grade.py"), str(dest), str(empty), "--timeout", "5")).values()) == {False}

    # A prediction made the way mendloop makes one (a git diff of the repo) is applied and graded.
    preds = []
    for task in tasks:
        repo = Path(task.repo)
        program = next(p for p in repo.glob("*.py") if not p.name.startswith("test_"))
        slug = repo.name
        program.write_text((dest / "graders" / slug / "reference.py").read_text())
        preds.append({"instance_id": task.instance_id, "model_patch": git(repo, "diff") + "\n"})
        git(repo, "checkout", "--", ".")
    preds[0]["model_patch"] = "not a patch"
    pred_file = tmp_path / "preds.jsonl"
    pred_file.write_text("".join(json.dumps(p) + "\n" for p in preds))
    result = graded(run(str(EXAMPLES / "grade.py"), str(dest), str(pred_file)))
    assert result == {t.instance_id: i != 0 for i, t in enumerate(tasks)}


@pytest.mark.parametrize("form", ["pytest", "script"])
def test_visible_test_fails_on_the_bug_but_hidden_test_is_not_in_the_repo(tmp_path: Path, form: str) -> None:
    dest = tmp_path / "he"
    sample = EXAMPLES / "sample" / "humanevalfix_sample.jsonl"
    run(str(EXAMPLES / "convert.py"), "humanevalfix", str(sample), "--dest", str(dest), "--form", form)
    repo = dest / "repos" / "humanevalfix_Python_0"
    assert sorted(p.name for p in repo.iterdir() if p.name != ".git") == ["solution.py", "test_example.py"]
    hidden = (dest / "graders" / "humanevalfix_Python_0" / "hidden_test.py").read_text()
    assert hidden not in (repo / "test_example.py").read_text()
    (line,) = [json.loads(x) for x in (dest / "tasks.jsonl").read_text().splitlines()][:1]
    assert not passes(repo, line["test_cmd"]), "the buggy program fails its visible test"


def test_pytest_form_has_one_test_per_assertion_so_partial_progress_shows(tmp_path: Path) -> None:
    dest = tmp_path / "qb"
    convert.convert("quixbugs", EXAMPLES / "sample" / "quixbugs_sample.jsonl", dest)
    repo = dest / "repos" / "quixbugs_gcd"
    sandbox = LocalSandbox(repo, SandboxSpec(kind="local"))
    try:
        report = run_tests(sandbox, f"{sys.executable} -m pytest -q", timeout=60)
    finally:
        sandbox.close()
    # gcd(17, 0) is right even with the bug; the five others recurse without end
    assert report.passed == ["test_gcd.py::test_1"]
    assert report.failed == [f"test_gcd.py::test_{i}" for i in range(2, 7)]
    he = tmp_path / "he"
    convert.convert("humanevalfix", EXAMPLES / "sample" / "humanevalfix_sample.jsonl", he)
    text = (he / "repos" / "humanevalfix_Python_0" / "test_example.py").read_text()
    assert "def check" not in text and "def test_1():\n    assert has_close_elements(" in text and "def test_2" in text


def test_tests_that_define_and_call_functions_become_collectable_functions() -> None:
    tests = (
        "class Node:\n    def __init__(self, value):\n        self.value = value\n\n\nroot = Node(1)\n\n\n"
        "def test1():\n    assert walk(root) == [1]\n\n\ndef test2():\n    assert walk(None) == []\n\n\n"
        "test1()\ntest2()\n"
    )
    module = convert.quixbugs_pytest(tests)
    assert "test1()" not in module.replace("def test1():", "") and "test2()" not in module.replace("def test2():", "")
    assert "def test1():\n    assert walk(root) == [1]" in module and "root = Node(1)" in module
    compile(module, "test_x.py", "exec")
    example = (
        "def check(candidate):\n    import math\n    assert candidate(2) == 4\n    for n in range(3):\n"
        "        assert candidate(n) == n * n\n\ncheck(square)\n"
    )
    assert convert.humanevalfix_pytest(example, "square") == (
        "def test_1():\n    candidate = square\n    import math\n    assert candidate(2) == 4\n\n\n"
        "def test_2():\n    candidate = square\n    import math\n    for n in range(3):\n"
        "        assert candidate(n) == n * n\n"
    )


# -- every task of the benchmark data, both forms ---------------------------------------------------------------
NO_SIGNAL = {32, 38, 41, 50, 51, 64, 81, 82, 83, 84, 89, 90, 92, 99}  # HumanEvalFix: the bug passes example_test
TIMEOUT = 8.0  # bitcount, sqrt, find_first_in_sorted and Python/10 loop forever when buggy


def passes(repo: Path, cmd: str) -> bool:
    """The visible test passes in ``repo`` (a hang past the timeout is a failure)."""
    args = shlex.split(cmd)
    args[0] = sys.executable
    if "pytest" in args:
        args += ["-p", "no:cacheprovider"]
    try:
        done = subprocess.run(args, cwd=repo, env={**os.environ, **FAST_ENV}, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def check_task(dest: Path, line: dict[str, str], scratch: Path) -> tuple[str, bool, bool]:
    """(instance id, buggy program passes, reference passes) for the visible test of one converted task."""
    repo = dest / line["repo"]
    slug = repo.name
    meta = json.loads((dest / "graders" / slug / "meta.json").read_text())
    fixed = scratch / slug
    shutil.copytree(repo, fixed, ignore=shutil.ignore_patterns(".git"))
    shutil.copy(dest / "graders" / slug / "reference.py", fixed / meta["program"])
    return line["instance_id"], passes(repo, line["test_cmd"]), passes(fixed, line["test_cmd"])


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(not DATA.is_dir(), reason="the shared benchmark data is not beside this checkout")
@pytest.mark.parametrize("kind", ["quixbugs", "humanevalfix"])
def test_every_benchmark_task_converts_in_both_forms_and_the_tests_tell_bug_from_fix(tmp_path: Path, kind: str) -> None:
    source = DATA / ("quixbugs_python.jsonl" if kind == "quixbugs" else "humanevalfix_python_0-99.jsonl")
    results: dict[str, dict[str, tuple[bool, bool]]] = {}
    for form in ("pytest", "script"):
        dest = tmp_path / form
        convert.convert(kind, source, dest, form=form)
        lines = [json.loads(line) for line in (dest / "tasks.jsonl").read_text().splitlines()]
        assert len(lines) == (40 if kind == "quixbugs" else 100)
        assert {line["test_cmd"] for line in lines} <= {"python -m pytest -q"} if form == "pytest" else True
        scratch = [tmp_path / f"{form}-fixed"] * len(lines)
        with ThreadPoolExecutor(max_workers=2) as pool:
            found = pool.map(check_task, [dest] * len(lines), lines, scratch)
            results[form] = {task: (buggy, fixed) for task, buggy, fixed in found}
    for form, rows in results.items():
        assert [t for t, (_, fixed) in rows.items() if not fixed] == [], f"{form}: the reference fails"
        buggy_passes = {t for t, (buggy, _) in rows.items() if buggy}
        if kind == "quixbugs":
            assert buggy_passes == set(), f"{form}: the bug passes the visible test"
        else:
            assert buggy_passes == {f"humanevalfix/Python/{n}" for n in NO_SIGNAL}, form
    # the hidden grader (one form for both) passes every reference fix and fails every bug
    grade = load("grade")
    graded = grade.grade(tmp_path / "pytest", None, TIMEOUT, reference=True)
    assert [row["instance_id"] for row in graded if not row["passed"]] == []
    graded = grade.grade(tmp_path / "pytest", None, TIMEOUT)
    assert [row["instance_id"] for row in graded if row["passed"]] == []
