"""prepare: open the sandbox over the scratch workspace and run the baseline tests.

Why the baseline matters: it tells later rounds which failures are the task's and which were already there, and a
test command that cannot run at all is an infrastructure error found before any model call is spent.
"""

from __future__ import annotations

import re
from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.nodes.common import test_cmd
from agent.nodes.repo_context import is_test_file, list_files
from agent.state import RepairState
from tools.errors import FatalError
from tools.testing import run_tests


def _runner_missing(cmd: str, output: str) -> bool:
    """``python -m MODULE`` where Python says the module does not exist (pytest absent from an image, say)."""
    module = re.search(r"-m\s+([\w.]+)", cmd)
    return module is not None and f"No module named {module.group(1)}" in output.replace("'", "")


def prepare(state: RepairState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    cmd = test_cmd(ctx, state)
    ctx.progress(f"running the baseline tests: {cmd}")
    report = run_tests(ctx.sandbox, cmd, timeout=ctx.settings.command_timeout * 5)
    missing = report.exit_code in (126, 127) or _runner_missing(cmd, report.output)
    if missing and not report.cases:  # the shell could not find the command, or Python the test runner
        last = report.output.strip().splitlines()[-1:] or [""]
        raise FatalError(
            f"the test command `{cmd}` cannot run in the sandbox: {last[0].strip()} "
            "(install the test runner in the sandbox image or its setup commands, or pass --test-cmd)"
        )
    ctx.progress(f"baseline: {report.summary()}")
    protected = [f for f in list_files(ctx.workspace.root, limit=100_000) if f.endswith(".py") and is_test_file(f)]
    return {
        "test_cmd": cmd,
        "baseline": report.to_dict(),
        "last_report": report.to_dict(),
        "protected": protected,
        "iteration": 0,
        "workspace_patch": "",
        # the code to beat: a round's change is built upon only if it passes more tests than this
        "best": {"patch": "", "passed": len(report.passed), "failed": len(report.failed), "iteration": 0},
    }
