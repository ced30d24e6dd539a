"""Conformance with the protocol CWM was trained on (facebookresearch/cwm: prompts.py, envs/swerl_tool.py,
envs/swerl_testgen_tool.py, demos/cwmdbg.py; ../shared/docs/CWM.md), one test per row of issue 14's table.

Through the real scripted server (answers routed by the X-Mendloop-Node header, ``n`` answered with n choices), real
git repositories and real pytest runs in the local sandbox: the exact bytes of a second-turn request, a two-tool
answer refused with the environment's words and nothing run, the whole-repair budget, submit with a patch path (and
its review), per-dialect sampling and the reasoning switch, a trace shown as CWM was trained on it (source first), and
CWM's test-time scaling where the right patch is in the minority but wins on the agreed generated tests.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.config import Settings, load_settings, request_extra_body
from agent.dialects.cwm import SYSTEM_PROMPT
from agent.nodes.prompting import estimate_tokens
from agent.nodes.selection import Matrix, agreed_tests
from agent.runner import solve
from agent.task import RunResult, Task
from tests.support.cli import cli_env
from tests.support.example import CWM_FIX, CWM_REPRODUCE, CWM_WRONG_FIX, ISSUE, REPLACE, ROOT, SEARCH, make_repo
from tests.support.fake_server import RecordedRequest, ScriptedServer, count_tokens
from tests.tools import cwm_trace_grammar as grammar

TASK = ISSUE.read_text()

# The environment text CWM was trained with (SYSTEM_UBUNTU), with this run's limits, where mendloop's sandbox differs
# only where the trained words would not be true here (a fresh shell per command; no git history to diff).
ENVIRONMENT = """\
You are working in a sandbox that holds a Python repository; the repository root is the current directory. \
Each command runs in a fresh shell at the repository root and is stopped after a 120-second timeout; there is no \
network access. You are also constrained by a 32768 total context window limit. You can interact with the sandbox \
through the following tool interface for at most 6 turns. Here are the specifications:

<tool: bash>
[command(s)]
</tool>
Executes bash command(s) [command(s)] in a fresh shell at the repository root. [command(s)] can be any \
non-interactive bash command(s), either single or multi-line.

<tool: edit>
[path]
<<<<<<< SEARCH
[search_lines]
=======
[replacement_lines]
>>>>>>> REPLACE
</tool>
Replaces [search_lines] from [path] with [replacement_lines], where [path] must exist and [search_lines] must \
uniquely and exactly match one or more consecutive lines from the original file, including indentations and \
whitespaces.

<tool: create>
[path]
[content]
</tool>
Creates a new file at [path] with [content], where [path] must not exist, but its parent directory must exist.

<tool: submit>
[result]
</tool>
Marks [result] as your final submission. [result] is the path to a patch file in git diff format (it must begin \
with `diff`) that holds the end-to-end code changes; it is applied to the original code and the tests are run on it. \
The repository has no git history here: a [result] left empty submits the files as you have changed them.

REQUIREMENTS:
* You cannot invoke more than one tool in each step.
* You must invoke exactly one tool in each step before any <tool: submit> call.
* After successful submission, provide a final response if the request is resolved, otherwise continue iterating. \
You cannot provide a final response before invoking <tool: submit>.
* When an edit applies cleanly, the repository's tests are run and their results come back with that step's \
output."""


def cwm(body: str, thought: str = "Let me see.") -> str:
    return f"{thought}\n</think>\n{body}"


def bash(command: str) -> str:
    return cwm(f"<tool: bash>\n{command}\n</tool>")


def chats(server: ScriptedServer, node: str | None = None) -> list[RecordedRequest]:
    """The chat requests in order (the run also asks the server about itself: GET /v1/models)."""
    out = [r for r in server.requests if r.path.endswith("/chat/completions")]
    return [r for r in out if node is None or r.node == node]


def run(tmp_path: Path, server: ScriptedServer, repo: Path | None = None, **extra: Any) -> RunResult:
    values: dict[str, Any] = {
        "base_url": server.url,
        "sandbox": "local",
        "max_iterations": 2,
        "reproduce": False,
        **extra,
    }
    task = Task(repo=repo or make_repo(tmp_path / "repo"), text=TASK, title="median")
    return solve(task, Settings.model_validate(values), tmp_path / "run")


def used_tokens(request: RecordedRequest, answer: str) -> int:
    """Prompt plus completion tokens of one exchange, counted as the scripted server counts them."""
    prompt = count_tokens("\n".join(str(m["content"]) for m in request.body["messages"]))
    return prompt + count_tokens(answer)


# -- row 1: environment text, one tool per step ----------------------------------------------------------------------
LOOK = bash("echo looking")


def test_the_second_turn_request_byte_for_byte(tmp_path: Path) -> None:
    with ScriptedServer({"write": [LOOK, CWM_FIX]}) as server:
        result = run(tmp_path, server, max_total_tokens=20000)
        first, second = chats(server)
    assert result.status == "resolved", result.reason
    assert [m["role"] for m in second.body["messages"]] == ["system", "user", "assistant", "user"]
    system, user, assistant, observation = (m["content"] for m in second.body["messages"])
    assert system == f"{SYSTEM_PROMPT}\n\n# Environment\n\n{ENVIRONMENT}"
    assert first.body["messages"] == second.body["messages"][:2]  # the fixed prefix stays byte-identical
    assert user.startswith(f"# Task\n\n{TASK}") and "\n# Repository\n\n" in user
    assert assistant == LOOK
    left = 20000 - used_tokens(first, LOOK)  # the run's token budget after the first exchange
    assert observation == (
        "<output>\n$ echo looking\nlooking\n\n(exit code 0)\n</output>\n\n"
        f"<budget>\n* Remaining turns: 5\n* Remaining tokens: {left}\n</budget>"
    )
    # CWM's sampling (Meta's evaluations: T=1.0, top_p=0.95) and its reasoning switch, as vLLM's template reads it
    assert (second.body["temperature"], second.body["top_p"]) == (1.0, 0.95)
    assert second.body["chat_template_kwargs"] == {"enable_thinking": True, "preserve_previous_think": True}
    assert set(second.body) == {"model", "messages", "temperature", "top_p", "max_tokens", "chat_template_kwargs"}


def test_without_a_token_budget_the_tokens_left_are_the_context_windows(tmp_path: Path) -> None:
    with ScriptedServer({"write": [LOOK, CWM_FIX]}) as server:
        run(tmp_path, server)
        first, second = chats(server)
    observation = second.body["messages"][-1]["content"]
    text = "$ echo looking\nlooking\n\n(exit code 0)"
    left = 32768 - used_tokens(first, LOOK) - estimate_tokens(text)  # CWM's environment counted the window
    assert observation.endswith(f"<budget>\n* Remaining turns: 5\n* Remaining tokens: {left}\n</budget>")


MARKER = "ran_the_first_block"
TWO_TOOLS = cwm(
    f"<tool: bash>\ntouch {MARKER}\n</tool>\n\n"
    f"<tool: edit>\nstats/core.py\n<<<<<<< SEARCH\n{SEARCH}=======\n{REPLACE}>>>>>>> REPLACE\n</tool>"
)


def test_a_two_tool_answer_gets_the_environments_format_error_and_nothing_runs(tmp_path: Path) -> None:
    with ScriptedServer({"write": [TWO_TOOLS, CWM_FIX]}) as server:
        result = run(tmp_path, server)
        second = chats(server)[1].body["messages"]
    assert result.status == "resolved", result.reason
    # as CWM's environment returned it: a bare user message, no <output>, no <budget>
    assert second[-1] == {
        "role": "user",
        "content": "FormatError: Expected one tool call, but found 2: bash, edit. "
        "Ensure only one <tool:...></tool> block is present in the response.",
    }
    assert not (tmp_path / "run" / "workspace" / MARKER).exists()  # neither block ran, not even the first
    assert MARKER not in result.patch


def test_permissive_protocol_runs_every_block(tmp_path: Path) -> None:
    with ScriptedServer({"write": [TWO_TOOLS]}) as server:
        result = run(tmp_path, server, protocol="permissive", max_iterations=1)
        system = chats(server)[0].body["messages"][0]["content"]
    assert result.status == "resolved", result.reason
    assert (tmp_path / "run" / "workspace" / MARKER).exists()
    assert "You may use several tools in one answer" in system


def test_an_answer_without_think_or_without_a_tool_is_a_format_observation(tmp_path: Path) -> None:
    no_think = f"<tool: edit>\nstats/core.py\n<<<<<<< SEARCH\n{SEARCH}=======\n{REPLACE}>>>>>>> REPLACE\n</tool>"
    with ScriptedServer({"write": [no_think, cwm("It is fine as it is."), CWM_FIX]}) as server:
        result = run(tmp_path, server)
        asked = [r.body["messages"][-1]["content"] for r in chats(server)]
    assert result.status == "resolved", result.reason
    assert asked[1] == "FormatError: Expected exactly one thinking end token, got 0"
    assert asked[2] == "FormatError: No tool calls found"
    # with reasoning off, no </think> is expected: the same answer is a plain edit
    with ScriptedServer({"write": [no_think]}) as server:
        off = run(tmp_path / "off", server, reasoning="off", max_iterations=1)
        body = chats(server)[0].body
    assert off.status == "resolved", off.reason
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_a_new_file_alone_does_not_end_the_round(tmp_path: Path) -> None:
    """CWM often writes a script to reproduce the bug, then runs it: the round goes on until the code is edited."""
    script = cwm("<tool: create>\ncheck.py\nfrom stats import median\nprint(median([4, 1, 3, 2]))\n</tool>")
    with ScriptedServer({"write": [script, bash("python check.py"), CWM_FIX]}) as server:
        result = run(tmp_path, server)
        asked = [r.body["messages"][-1]["content"] for r in chats(server)]
    assert result.status == "resolved" and result.iterations == 1, result.reason
    assert asked[2].startswith("<output>\n$ python check.py\n3\n")


# -- row 2: observations and the budget of the whole repair ------------------------------------------------------------
def test_test_results_and_the_trace_are_inside_output_and_the_budget_spans_rounds(tmp_path: Path) -> None:
    with ScriptedServer({"write": [CWM_WRONG_FIX, CWM_FIX]}) as server:
        result = run(tmp_path, server)
        second = chats(server)[1].body["messages"][-1]["content"]
    assert result.status == "resolved", result.reason
    assert second.startswith("<output>\nThe file stats/core.py has been edited")  # the edit's own result first
    output, budget = second.split("\n</output>\n\n", 1)
    assert "test_median_even" in output and "Your change was applied and the tests were run again" in output
    # one turn of six was used in round 1: the budget is the repair's, not a fresh round's
    assert budget.startswith("<budget>\n* Remaining turns: 5\n* Remaining tokens: ")
    assert budget.endswith("\n</budget>") and "</output>" not in budget
    # the trace as CWM was trained on it: the traced function's source first, marked, then the frames
    start = output.index("<|trace_context_start|>")
    trace = output[start : output.rindex("<|frame_sep|>") + len("<|frame_sep|>")]
    assert trace.startswith("<|trace_context_start|>def median(values):  # << START_OF_TRACE\n")
    parsed = grammar.parse(trace)
    assert parsed.context is not None and "    return ordered[middle]\n" in parsed.context
    assert parsed.frames[0].locals == {"values": "[4, 1, 3, 2]"}
    assert '"ordered": "[4, 3, 2, 1]"' in trace


def test_the_reproduce_step_sends_a_budget_too(tmp_path: Path) -> None:
    passes = cwm(
        "<tool: create>\ntests/test_mendloop_repro.py\nfrom stats import median\n\n\n"
        "def test_odd():\n    assert median([3, 1, 2]) == 2\n</tool>"
    )
    with ScriptedServer({"reproduce": [passes, CWM_REPRODUCE], "write": [CWM_FIX]}) as server:
        result = run(tmp_path, server, reproduce=True, reproduce_attempts=2)
        first, second = chats(server, "reproduce")
    assert result.status == "resolved", result.reason
    assert "for at most 2 turns" in first.body["messages"][0]["content"]
    asked = second.body["messages"][-1]["content"]
    assert asked.startswith("<output>\nCreated tests/test_mendloop_repro.py")
    assert "passes on the current code" in asked and "Write the reproduction test again" in asked
    assert "\n</output>\n\n<budget>\n* Remaining turns: 1\n* Remaining tokens: " in asked


# -- row 3: submit with a patch path, and the review after it ---------------------------------------------------------
def fix_patch(repo: Path) -> str:
    """The fix as ``git diff`` would print it, for the model to write to a file."""
    before = (repo / "stats" / "core.py").read_text()
    after = before.replace(SEARCH, REPLACE)
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), "a/stats/core.py", "b/stats/core.py"
    )
    return "diff --git a/stats/core.py b/stats/core.py\n" + "".join(lines)


def write_file(path: str, text: str) -> str:
    return bash(f"cat > {path} <<'PATCH_EOF'\n{text}PATCH_EOF")


def test_submit_takes_a_patch_path_and_bad_paths_are_observations(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    answers = [
        cwm("<tool: submit>\nmissing.patch\n</tool>"),
        cwm("<tool: submit>\nREADME.md\n</tool>"),
        write_file("empty.patch", ""),
        cwm("<tool: submit>\nempty.patch\n</tool>"),
        write_file("fix.patch", fix_patch(repo)),
        cwm("<tool: submit>\nfix.patch\n</tool>"),
    ]
    with ScriptedServer({"write": answers}) as server:
        result = run(tmp_path, server, repo=repo, max_turns=6)
        asked = [r.body["messages"][-1]["content"] for r in chats(server)]
    assert result.status == "resolved", result.reason
    assert asked[1].startswith("<output>\nFailed to submit missing.patch. Make sure it exists and is readable.\n")
    assert asked[2].startswith("<output>\nFailed to submit README.md. It is not a valid diff file.\n")
    assert asked[4].startswith("<output>\nFailed to submit empty.patch. It is an empty file.\n")
    assert "(ordered[middle - 1] + ordered[middle]) / 2" in result.patch
    # what was submitted is the code: the patch, applied to the original code, and nothing else of the tree
    assert "fix.patch" not in result.patch and "empty.patch" not in result.patch
    assert len(chats(server)) == 6


def test_the_review_step_shows_the_submission_back(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    answers = [
        write_file("fix.patch", fix_patch(repo)),
        cwm("<tool: submit>\nfix.patch\n</tool>"),
        cwm("## Summary\n\nmedian() now averages the two middle values.", "The patch is right."),
    ]
    with ScriptedServer({"write": answers}) as server:
        result = run(tmp_path, server, repo=repo, submit_review=True)
        asked = [r.body["messages"][-1]["content"] for r in chats(server)]
    assert result.status == "resolved", result.reason
    assert len(asked) == 3  # the final response ended the round; the tests then ran on the submission
    review = asked[2]
    assert review.startswith(
        "<output>\nThe following patch content is marked as your final submission:\n\n<submission>\ndiff --git"
    )
    assert "Review the patch content and ensure it correctly resolves the issue." in review
    assert "\n</output>\n\n<budget>\n* Remaining turns: 4\n" in review


# -- row 4: sampling per dialect -------------------------------------------------------------------------------------
def test_sampling_defaults_per_dialect_are_not_user_settings() -> None:
    cwm_settings = load_settings(None, {}, environ={})
    assert (cwm_settings.temperature, cwm_settings.top_p) == (1.0, 0.95)
    assert request_extra_body(cwm_settings)["chat_template_kwargs"]["enable_thinking"] is True
    assert not {"temperature", "top_p", "extra_body"} & cwm_settings.model_fields_set
    assert cwm_settings.extra_body == {}  # the user's field: the reasoning switch is added to each request instead
    openai = load_settings(None, {"dialect": "openai"}, environ={})
    assert openai.temperature == 0.6 and "chat_template_kwargs" not in request_extra_body(openai)
    told = load_settings(None, {"dialect": "openai", "reasoning": "off", "temperature": 0.3}, environ={})
    assert told.temperature == 0.3 and request_extra_body(told) == {"chat_template_kwargs": {"enable_thinking": False}}
    mine = load_settings(None, {"extra_body": {"chat_template_kwargs": {"x": 1}}}, environ={})
    assert request_extra_body(mine) == {"chat_template_kwargs": {"x": 1}}  # the user's own kwargs are never overwritten
    assert mine.extra_body == {"chat_template_kwargs": {"x": 1}}


# -- row 6: test-time scaling ------------------------------------------------------------------------------------------
STATS = """def mean(values):
    return sum(values) / len(values)


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle]
"""
EXISTING = """from stats import mean, median


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_median_odd():
    assert median([3, 1, 2]) == 2
"""
MEDIAN_TASK = "median() is wrong for an even number of values: it must be the mean of the two middle values."


def generated(values: str, expected: str) -> str:
    return cwm(
        f"<tool: create>\ntests/test_mendloop_repro.py\nfrom stats import median\n\n\n"
        f"def test_even():\n    assert median({values}) == {expected}\n</tool>"
    )


RIGHT_TESTS = [
    generated("[1, 2, 3, 4]", "2.5"),
    generated("[10, 20]", "15"),
    generated("[4, 1, 3, 2]", "2.5"),
    generated("[5, 1]", "3"),
    generated("[2, 4, 6, 8]", "5"),
]
# wrong tests (they expect the lower middle value): they fail on the original code too, so they are kept
WRONG_TESTS = [generated("[1, 2, 3, 4]", "2"), generated("[1, 3]", "1")]
NOT_COLLECTED = cwm(
    "<tool: create>\ntests/test_mendloop_repro.py\nfrom stats import median\n\n\ndef test_even(:\n    pass\n</tool>"
)


def median_edit(replacement: str) -> str:
    return cwm(
        "<tool: edit>\nstats.py\n<<<<<<< SEARCH\n    return ordered[middle]\n=======\n"
        f"{replacement}>>>>>>> REPLACE\n</tool>"
    )


RIGHT_PATCH = median_edit(
    "    if len(ordered) % 2 == 0:\n"
    "        return (ordered[middle - 1] + ordered[middle]) / 2\n"
    "    return ordered[middle]\n"
)
LOWER_MIDDLE = median_edit(
    "    if len(ordered) % 2 == 0:\n        return ordered[middle - 1]\n    return ordered[middle]\n"
)


def median_repo(dest: Path) -> Path:
    (dest / "tests").mkdir(parents=True)
    (dest / "stats.py").write_text(STATS)
    (dest / "tests" / "test_stats.py").write_text(EXISTING)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@x.invalid", "commit", "-qm", "i"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def test_the_right_patch_in_the_minority_wins_on_the_agreed_generated_tests(tmp_path: Path) -> None:
    script = {
        "reproduce": [*RIGHT_TESTS, *WRONG_TESTS],
        "write": [RIGHT_PATCH, LOWER_MIDDLE, LOWER_MIDDLE, LOWER_MIDDLE],
    }
    repo = median_repo(tmp_path / "repo")
    with ScriptedServer(script) as server:
        values: dict[str, Any] = {
            "base_url": server.url,
            "sandbox": "local",
            "max_iterations": 1,
            "candidates": 4,
            "generated_tests": 7,
            "command_timeout": 60,
        }
        task = Task(repo=repo, text=MEDIAN_TASK, title="median")
        result = solve(task, Settings.model_validate(values), tmp_path / "run")
        reproduce = chats(server, "reproduce")
    assert len(reproduce) == 1 and reproduce[0].body["n"] == 7  # M tests sampled independently in one request
    assert result.status == "resolved", result.reason
    assert "(ordered[middle - 1] + ordered[middle]) / 2" in result.patch  # one sample of four, against three
    state_round = json.loads((tmp_path / "run" / "run.json").read_text())  # the run itself is on record
    assert state_round["settings"]["generated_tests"] == 7
    report = (tmp_path / "run" / "report.md").read_text()
    matrix = report[report.index("## Candidates × generated tests (round 1)") :]
    tests = [f"tests/test_mendloop_repro_{n}.py" for n in range(1, 8)]
    for number, path in enumerate(tests, start=1):
        assert f"- t{number}: `{path}`" in matrix
    # the two wrong tests share a pattern only two tests have: not among the five agreed, so they do not count
    assert "- t6: `tests/test_mendloop_repro_6.py` (not agreed: does not count)" in matrix
    assert "- t7: `tests/test_mendloop_repro_7.py` (not agreed: does not count)" in matrix
    rows = [line for line in matrix.splitlines() if line.startswith("| #")]
    assert len(rows) == 4
    right = next(row for row in rows if "(chosen)" in row)
    assert "| 2 | pass | pass | pass | pass | pass | fail | fail | 7 | 1 |" in right
    for row in rows:
        if row is not right:
            assert "| 2 | fail | fail | fail | fail | fail | pass | pass | 2 | 3 |" in row
    # the dropped tests left the run: not required, not in the tree, not in the patch
    assert not (tmp_path / "run" / "workspace" / "tests" / "test_mendloop_repro_6.py").exists()
    assert "test_mendloop_repro" not in result.patch


def test_agreement_ranks_tests_by_how_many_share_their_pattern() -> None:
    tests = ["a", "b", "c", "d", "e", "f", "g"]
    passed = {  # candidate -> outcome per test
        0: [True, True, True, False, True, False, False],
        1: [False, False, False, True, False, True, False],
        2: [False, False, False, True, False, True, False],
    }
    # a, b, c, e share one pattern (4 tests); d and f another (2); g alone (nobody passes it)
    assert agreed_tests(tests, passed) == ["a", "b", "c", "d", "e"]
    assert agreed_tests(tests, passed, top=3) == ["a", "b", "c"]
    matrix = Matrix(tests, passed, {0: 2, 1: 2, 2: 2}, agreed_tests(tests, passed))
    assert [matrix.score(i) for i in range(3)] == [6, 3, 3] and matrix.dropped == ["f", "g"]


def test_cli_tts_picks_the_patch_that_passes_the_agreed_generated_tests(tmp_path: Path) -> None:
    """``mendloop solve --dialect cwm --candidates 4 --tests 4``: four tests sampled at once, one of which does not
    collect (dropped, with its reason); four patches, three of them the same wrong one."""
    repo = median_repo(tmp_path / "repo")
    script = {"reproduce": [*RIGHT_TESTS[:3], NOT_COLLECTED], "write": [RIGHT_PATCH, *[LOWER_MIDDLE] * 3]}
    run_dir = tmp_path / "run"
    with ScriptedServer(script) as server:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "agent.cli.main",
                "solve",
                "--repo",
                str(repo),
                "--task",
                MEDIAN_TASK,
                "--dialect",
                "cwm",
                "--candidates",
                "4",
                "--tests",
                "4",
                "--max-iterations",
                "1",
                "--base-url",
                server.url,
                "--sandbox",
                "local",
                "--out",
                str(run_dir),
            ],
            capture_output=True,
            text=True,
            env=cli_env(),
            cwd=ROOT,
            timeout=600,
        )
        nodes = server.nodes()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert nodes == ["reproduce", "write", "write", "write", "write"]
    patch = (run_dir / "patch.diff").read_text()
    assert "(ordered[middle - 1] + ordered[middle]) / 2" in patch and "test_mendloop_repro" not in patch
    report = (run_dir / "report.md").read_text()
    assert "attempt 1, test 4: dropped: it is not collected by pytest: it has a syntax error" in report
    matrix = report[report.index("## Candidates × generated tests (round 1)") :]
    assert "| candidate | existing passed | t1 | t2 | t3 | score | same patch | tokens |" in matrix
    rows = [line for line in matrix.splitlines() if line.startswith("| #")]
    assert len(rows) == 4 and sum("(chosen)" in row for row in rows) == 1
    assert "| 2 | pass | pass | pass | 5 | 1 |" in next(row for row in rows if "(chosen)" in row)
    # the three samples of the same wrong patch (the lower middle value) fail every generated test
    assert sum("| 2 | fail | fail | fail | 2 | 3 |" in row for row in rows) == 3
