"""What a repair is asked to do and what it gives back: the contract every front door uses.

Why plain dataclasses: the GitHub, pre-commit and batch front doors build a ``Task``, call ``agent.runner.solve`` and
read a ``RunResult``; none of them needs to know the graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["resolved", "unresolved", "error"]


@dataclass
class Task:
    """One repair: a repository, what is wrong, and optionally how to check it."""

    repo: Path
    text: str
    instance_id: str = "task"
    title: str = ""
    test_cmd: str | None = None  # overrides the settings' test command
    fail_to_pass: list[str] = field(default_factory=list)  # test ids that must pass after the fix
    pass_to_pass: list[str] = field(default_factory=list)  # test ids that must keep passing
    editable: list[str] = field(default_factory=list)  # globs the model may edit (pre-commit: the staged files)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["repo"] = str(self.repo)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        return cls(**{**data, "repo": Path(data["repo"])})


@dataclass
class RunResult:
    """What a repair produced. ``patch`` is a ``git diff`` against the task's base; empty when nothing was found."""

    status: Status
    patch: str
    run_dir: Path
    reason: str = ""
    iterations: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    tests_passed: int = 0
    tests_failed: int = 0
    duration: float = 0.0
    still_failing: list[str] = field(default_factory=list)
    traced_rounds: int = 0  # rounds whose request carried an execution trace

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data
