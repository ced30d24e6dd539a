"""Real run and batch directories for the tests of ``mendloop show`` and its pages, made by the real repair loop
against the scripted model server.

Why real: the views read what a run leaves (checkpoints, trajectory, run.json, results.jsonl); a hand-made directory
would test the views against our idea of those files, not the files. The batch is hostile on purpose: a model answer
with ``<script>alert(1)</script>``, a repository file named ``<img src=x onerror=alert(1)>.py``, and task ids made of
both, so every page shows them as text or fails its test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.doors.batch.run import BatchOptions, run_batch
from tests.agent.test_batch_support import CALC, TEST_CALC, make_repo, write_tasks
from tests.support.fake_server import RecordedRequest, ScriptedServer

SCRIPT = "<script>alert(1)</script>"
IMG_FILE = "<img src=x onerror=alert(1)>.py"
SCRIPT_TASK = f"calc-{SCRIPT}"
IMG_TASK = IMG_FILE
TWO_ROUNDS = "calc-two-rounds"

TEST_IMG = f"""import importlib.util
import pathlib

spec = importlib.util.spec_from_file_location("img", pathlib.Path(__file__).parent / {IMG_FILE!r})
img = importlib.util.module_from_spec(spec)
spec.loader.exec_module(img)


def test_add():
    assert img.add(2, 3) == 5
"""


def edit(path: str, old: str, new: str, thought: str = "ok") -> str:
    """A CWM answer: reasoning, then one edit of ``path``."""
    return f"{thought}\n</think>\n<tool: edit>\n{path}\n<<<<<<< SEARCH\n{old}=======\n{new}>>>>>>> REPLACE\n</tool>"


HOSTILE_ANSWER = edit(
    "calc.py",
    "    return a - b\n",
    "    return a + b\n",
    thought=f"The page must show {SCRIPT} as text.",
)


def _reply(request: RecordedRequest) -> str:
    """Answers by task (its marker in the prompt) and by round (assistant turns already in the conversation)."""
    body = request.body if isinstance(request.body, dict) else {}
    messages: list[dict[str, Any]] = body.get("messages", [])
    prompt = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
    turns = sum(1 for m in messages if m.get("role") == "assistant")
    if "TASK-IMG" in prompt:
        return edit(IMG_FILE, "    return a - b\n", "    return a + b\n")
    if "TASK-TWO" in prompt:
        if turns == 0:
            return edit("calc.py", "    return a - b\n", "    return a * b\n", thought="Maybe it multiplies.")
        return edit("calc.py", "    return a * b\n", "    return a + b\n", thought="No: it adds.")
    return HOSTILE_ANSWER


def make_batch(tmp: Path, *, candidates: int = 1) -> Path:
    """A finished batch of three tasks (see the module docstring); returns its output directory."""
    make_repo(tmp / "repos" / "script")
    make_repo(tmp / "repos" / "img", {IMG_FILE: CALC, "test_img.py": TEST_IMG})
    make_repo(tmp / "repos" / "two", {"calc.py": CALC, "test_calc.py": TEST_CALC})
    rows = [
        {"instance_id": SCRIPT_TASK, "repo": str(tmp / "repos" / "script"), "task": f"TASK-SCRIPT add() {SCRIPT}"},
        {"instance_id": IMG_TASK, "repo": str(tmp / "repos" / "img"), "task": f"TASK-IMG add() in {IMG_FILE}"},
        {"instance_id": TWO_ROUNDS, "repo": str(tmp / "repos" / "two"), "task": "TASK-TWO add() subtracts"},
    ]
    tasks = write_tasks(tmp / "tasks.jsonl", rows)
    out = tmp / "out"
    with ScriptedServer(_reply) as server:
        settings = Settings(
            base_url=server.url,
            sandbox="local",
            reproduce=False,
            max_iterations=2,
            candidates=candidates,
            traces=True,
            command_timeout=60,
            price_prompt=1.0,
            price_completion=2.0,
        )
        run_batch(tasks, settings, BatchOptions(out=out, workers=2, progress=False, task_timeout=300))
    return out
