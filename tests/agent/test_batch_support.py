"""Shared helpers for the batch tests (no tests here): tiny buggy git repos, task files, a stand-in repair.

The stand-in ``standin_solve`` exists only to drive the batch machinery's failure paths fast and
deterministically (a worker that crashes, hangs, raises an infrastructure error); the end-to-end tests use the real
``agent.runner.solve`` against the scripted model server.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.task import RunResult, Task
from tools.errors import FatalError

ROOT = Path(__file__).resolve().parents[2]

CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
FIX_REPLY = (
    "ok\n</think>\n<tool: edit>\ncalc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n"
    ">>>>>>> REPLACE\n</tool>"
)


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None) -> str:
    """A git repo with the calc bug; returns its commit."""
    path.mkdir(parents=True)
    for name, text in (files or {"calc.py": CALC, "test_calc.py": TEST_CALC}).items():
        (path / name).write_text(text)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "buggy")
    return git(path, "rev-parse", "HEAD")


def write_tasks(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def make_batch(tmp: Path, n: int, *, text: str = "add() subtracts instead of adding") -> Path:
    """``n`` repos with the same bug and a tasks file naming them (mendloop form)."""
    rows = []
    for i in range(n):
        make_repo(tmp / "repos" / f"r{i:02d}")
        rows.append(
            {"instance_id": f"calc-{i:02d}", "repo": f"repos/r{i:02d}", "task": text, "test_cmd": "python -m pytest -q"}
        )
    return write_tasks(tmp / "tasks.jsonl", rows)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def worker_env() -> dict[str, str]:
    """Environment for CLI/worker subprocesses: the repo root importable (for this stand-in module)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


STANDIN = "tests.agent.test_batch_support:standin_solve"


def standin_solve(task: Task, settings: Settings, run_dir: Path, *, resume: bool = False) -> RunResult:
    """A repair stand-in steered by words in the task text (crash, hang, fatal, boom, slow); else it fixes calc.py."""
    text = task.text
    attempts_file = Path(task.repo) / ".attempts"
    attempts = int(attempts_file.read_text()) + 1 if attempts_file.exists() else 1
    attempts_file.write_text(str(attempts))
    if "crash" in text:
        os._exit(3)
    if "hang" in text:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (Path(task.repo) / ".child").write_text(str(child.pid))
        time.sleep(600)
    if "fatal" in text and attempts <= int(text.split("fatal:")[1].split()[0]):
        raise FatalError(f"endpoint down (attempt {attempts})")
    if "boom" in text:
        raise RuntimeError("a bug in the repair")
    if "slow" in text:
        time.sleep(float(text.split("slow:")[1].split()[0]))
    old = (Path(task.repo) / "calc.py").read_text()
    new = old.replace("a - b", "a + b")
    patch = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/calc.py", "b/calc.py"))
    (run_dir / "patch.diff").write_text(patch)
    (run_dir / "report.md").write_text("# stand-in\n")
    secret = settings.api_key.get_secret_value() if settings.api_key else ""
    (run_dir / "key_seen").write_text("yes" if secret == "sk-very-secret" else "no")
    return RunResult(
        status="resolved",
        patch=patch,
        run_dir=run_dir,
        iterations=1,
        model_calls=1,
        prompt_tokens=100,
        completion_tokens=20,
        tests_passed=1,
    )
