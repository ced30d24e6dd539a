"""Dialects read real-looking answers: CWM text tools, OpenAI tool calls (structured or as JSON), markdown."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.config import ConfigError
from agent.dialects import BashCall, CwmDialect, OpenAIDialect, Submit, get_dialect
from agent.dialects.base import observation_body, split_think
from agent.dialects.cwm import environment
from agent.dialects.fences import looks_like_path, parse_fenced
from agent.dialects.openai_tools import TOOL_SCHEMAS
from agent.model import Completion, ToolCall
from tools.edits import CreateFile, FencedCode, SearchReplace, UnifiedDiff, WholeFile

CWM_PROMPT = (
    "You are a helpful AI assistant. You always reason before responding, using the following format:\n\n"
    "<think>\nyour internal reasoning\n</think>\nyour external response"
)


def cwm(text: str) -> Any:
    return CwmDialect().parse(Completion(content=text))


def oai(text: str = "", calls: list[ToolCall] | None = None) -> Any:
    return OpenAIDialect().parse(Completion(content=text, tool_calls=calls or []))


# --- choosing a dialect ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,model,expected",
    [
        ("cwm", "gpt-4o", "cwm"),
        ("openai", "facebook/cwm", "openai"),
        ("auto", "facebook/CWM-q4", "cwm"),
        ("auto", "qwen2.5-coder-7b", "openai"),
    ],
)
def test_get_dialect(name: str, model: str, expected: str) -> None:
    assert get_dialect(name, model).name == expected


def test_unknown_dialect_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown dialect 'xml'"):
        get_dialect("xml")


# --- CWM ---------------------------------------------------------------------------------------------------


def test_cwm_system_prompt_is_exact() -> None:
    prompt = CwmDialect().system_prompt("## Tools\nbash, edit")
    assert prompt == CWM_PROMPT + "\n\n# Environment\n\n## Tools\nbash, edit"
    assert "format:\n\n<think>\n" in prompt
    assert CwmDialect().tools() is None


CWM_EDIT = """The slice drops the first token; the issue says all tokens must be kept.
Let me check the tests afterwards.
</think>
The bug is the `[1:]` slice.

<tool: edit>
src/pkg/parser.py
<<<<<<< SEARCH
    return tokens[1:]
=======
    return tokens
>>>>>>> REPLACE
</tool>"""


def test_cwm_edit_after_think() -> None:
    parsed = cwm(CWM_EDIT)
    assert parsed.reasoning.startswith("The slice drops") and parsed.reasoning.endswith("afterwards.")
    assert parsed.answer.startswith("The bug is")
    assert parsed.actions == [SearchReplace("src/pkg/parser.py", "    return tokens[1:]\n", "    return tokens\n")]
    assert parsed.problems == []


def test_cwm_splits_on_the_last_think_and_tolerates_a_missing_tag() -> None:
    two = cwm("<think>\nfirst\n</think>\nmore thought </think>\n<tool: bash>\nls\n</tool>")
    assert two.reasoning == "first\n</think>\nmore thought" and two.actions == [BashCall("ls")]
    none = cwm("<tool: submit>\nfix.patch\n</tool>")
    assert none.reasoning == "" and none.actions == [Submit("fix.patch")]


def test_cwm_reasoning_from_the_server_when_content_has_no_tag() -> None:
    completion = Completion(content="<tool: bash>\nls\n</tool>", reasoning="server-split thoughts")
    reasoning, answer = split_think(completion)
    assert (reasoning, answer) == ("server-split thoughts", "<tool: bash>\nls\n</tool>")
    message = CwmDialect().assistant_message(completion)
    assert message == {
        "role": "assistant",
        "content": "server-split thoughts\n</think>\n<tool: bash>\nls\n</tool>",
    }


def test_cwm_tool_blocks_inside_reasoning_are_not_actions() -> None:
    parsed = cwm("Maybe <tool: bash>\nrm -rf /\n</tool> - no.\n</think>\n<tool: bash>\npytest -x\n</tool>")
    assert parsed.actions == [BashCall("pytest -x")]


def test_cwm_several_edits_and_several_blocks_for_one_path() -> None:
    answer = """</think>
<tool: edit>
a.py
<<<<<<< SEARCH
x = 1
=======
x = 2
>>>>>>> REPLACE
<<<<<<< SEARCH
y = 1
=======
>>>>>>> REPLACE
</tool>
Also the helper:
<tool: edit>
pkg/b.py
<<<<<<< SEARCH
def f():
    pass
=======
def f():
    return 1
>>>>>>> REPLACE
</tool>
<tool: create>
tests/test_issue.py
import pkg


def test_issue():
    assert pkg.f() == 1
</tool>"""
    parsed = cwm(answer)
    assert parsed.problems == []
    assert parsed.actions == [
        SearchReplace("a.py", "x = 1\n", "x = 2\n"),
        SearchReplace("a.py", "y = 1\n", ""),
        SearchReplace("pkg/b.py", "def f():\n    pass\n", "def f():\n    return 1\n"),
        CreateFile("tests/test_issue.py", "import pkg\n\n\ndef test_issue():\n    assert pkg.f() == 1\n"),
    ]
    assert len(parsed.edits) == 4 and not parsed.submitted


@pytest.mark.parametrize(
    "answer,problem",
    [
        ("<tool: grep>\nfoo\n</tool>", "unknown tool 'grep': the tools are bash, edit, create, submit"),
        ("<tool: edit>\na.py\nx = 2\n</tool>", "<tool: edit> for a.py has no SEARCH/REPLACE block"),
        ("<tool: edit>\na.py\n<<<<<<< SEARCH\nx = 1\n>>>>>>> REPLACE\n</tool>", "is incomplete"),
        ("<tool: edit>\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n</tool>", "needs the file path"),
        ("<tool: bash>\nls", "the block starting with <tool: bash> was not read"),
        ("<tool: bash> ls </tool>", "the block starting with <tool: bash> was not read"),
        ("<tool: create>\n\n</tool>", "<tool: create> needs the file path"),
    ],
)
def test_cwm_malformed_blocks_become_problems(answer: str, problem: str) -> None:
    parsed = cwm("thinking\n</think>\n" + answer)
    assert parsed.actions == []
    assert any(problem in p for p in parsed.problems), parsed.problems


def test_cwm_good_block_survives_next_to_a_broken_one() -> None:
    parsed = cwm("</think>\n<tool: bash>\nls\n</tool>\n<tool: edit>\na.py\n<<<<<<< SEARCH\n")
    assert parsed.actions == [BashCall("ls")]
    assert len(parsed.problems) == 1


def test_cwm_example_fence_next_to_a_real_tool_is_not_an_edit() -> None:
    answer = """</think>
For example, a caller would do:

src/pkg/parser.py
```python
tokens = parse("a b")
```

<tool: bash>
pytest -q
</tool>"""
    assert cwm(answer).actions == [BashCall("pytest -q")]


def test_cwm_falls_back_to_a_fenced_diff() -> None:
    answer = """I need to keep all tokens.
</think>
Here is the patch:

```diff
--- a/src/pkg/parser.py
+++ b/src/pkg/parser.py
@@ -1,2 +1,2 @@
 def parse(s):
-    return s.split()[1:]
+    return s.split()
```"""
    (edit,) = cwm(answer).actions
    assert isinstance(edit, UnifiedDiff)
    assert edit.text.startswith("--- a/src/pkg/parser.py\n") and edit.text.endswith("+    return s.split()\n")


def test_cwm_observation_body() -> None:
    dialect = CwmDialect()
    completion = Completion(content="x")
    (message,) = dialect.observation_messages(
        completion, observation_body("3 passed", remaining_turns=5, remaining_tokens=1200)
    )
    assert message == {
        "role": "user",
        "content": "<output>\n3 passed\n</output>\n\n"
        "<budget>\n* Remaining turns: 5\n* Remaining tokens: 1200\n</budget>",
    }
    (bare,) = dialect.observation_messages(
        completion, observation_body("ok", remaining_turns=None, remaining_tokens=None)
    )
    assert bare["content"] == "<output>\nok\n</output>"
    (half,) = dialect.observation_messages(completion, observation_body("ok", remaining_turns=2, remaining_tokens=None))
    assert half["content"].endswith("<budget>\n* Remaining turns: 2\n</budget>")


# --- OpenAI ------------------------------------------------------------------------------------------------


def test_openai_tool_schemas() -> None:
    dialect = OpenAIDialect()
    names = {t["function"]["name"]: t["function"]["parameters"]["required"] for t in dialect.tools() or []}
    assert names == {
        "edit": ["path", "search", "replace"],
        "create": ["path", "content"],
        "apply_patch": ["patch"],
        "submit": [],
    }
    assert dialect.tools() is TOOL_SCHEMAS
    assert dialect.system_prompt("ENV").endswith("\n\n# Environment\n\nENV")


def test_openai_structured_tool_calls() -> None:
    calls = [
        ToolCall("c1", "edit", json.dumps({"path": "a.py", "search": "x = 1\n", "replace": "x = 2\n"})),
        ToolCall("c2", "apply_patch", json.dumps({"patch": "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-a\n+b"})),
        ToolCall("c3", "create", '{"path": "t.py", "content": "x"}'),
        ToolCall("c4", "submit", "{}"),
    ]
    parsed = oai("", calls)
    assert parsed.problems == []
    assert parsed.actions == [
        SearchReplace("a.py", "x = 1\n", "x = 2\n"),
        UnifiedDiff("--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-a\n+b\n"),
        CreateFile("t.py", "x"),
        Submit(),
    ]


def test_openai_structured_call_problems() -> None:
    calls = [
        ToolCall("c1", "edit", '{"path": "a.py", "search": '),
        ToolCall("c2", "edit", '{"path": "a.py"}'),
        ToolCall("c3", "delete_repo", "{}"),
        ToolCall("c4", "create", "[1, 2]"),
    ]
    parsed = oai("", calls)
    assert parsed.actions == []
    assert parsed.problems[0].startswith("the arguments of the edit call are not valid JSON")
    assert parsed.problems[1] == "the edit call is missing 'search'"
    assert parsed.problems[2].startswith("unknown tool 'delete_repo'")
    assert parsed.problems[3] == "the arguments of the create call must be a JSON object"


EDIT_ARGS = {"path": "src/app.py", "search": "    return a - b\n", "replace": "    return a + b\n"}
EXPECTED = SearchReplace("src/app.py", "    return a - b\n", "    return a + b\n")


@pytest.mark.parametrize(
    "content",
    [
        # llama.cpp small models: fenced JSON after some prose
        "I'll fix the operator.\n\n```json\n"
        + json.dumps({"name": "edit", "arguments": EDIT_ARGS}, indent=2)
        + "\n```",
        # bare JSON
        json.dumps({"name": "edit", "arguments": EDIT_ARGS}),
        # arguments as a JSON string, OpenAI wire style
        json.dumps({"name": "edit", "arguments": json.dumps(EDIT_ARGS)}),
        # {"type": "function", "function": {...}}
        json.dumps({"type": "function", "function": {"name": "edit", "arguments": EDIT_ARGS}}),
        # {"function": "edit", "parameters": {...}} (llama 3 style keys)
        json.dumps({"function": "edit", "parameters": EDIT_ARGS}),
        # Hermes / Qwen <tool_call> wrapper
        "<tool_call>\n" + json.dumps({"name": "edit", "arguments": EDIT_ARGS}) + "\n</tool_call>",
        # a list of calls, and {"tool_calls": [...]}
        json.dumps([{"name": "edit", "arguments": EDIT_ARGS}]),
        json.dumps({"tool_calls": [{"function": {"name": "edit", "arguments": EDIT_ARGS}}]}),
        # str_replace_editor-style argument names
        json.dumps(
            {
                "name": "edit",
                "arguments": {
                    "file_path": "src/app.py",
                    "old_str": "    return a - b\n",
                    "new_str": "    return a + b\n",
                },
            }
        ),
        # raw newlines inside JSON strings (invalid strict JSON, common from small models)
        '{"name": "edit", "arguments": {"path": "src/app.py", "search": "    return a - b\n", '
        '"replace": "    return a + b\n"}}',
        # thinking first
        "<think>\nthe sign is wrong\n</think>\n" + json.dumps({"name": "edit", "arguments": EDIT_ARGS}),
    ],
)
def test_openai_tool_call_json_written_in_content(content: str) -> None:
    parsed = oai(content)
    assert parsed.actions == [EXPECTED], parsed.problems
    assert parsed.problems == []


def test_openai_several_json_calls_in_one_answer() -> None:
    content = (
        "First the fix:\n```json\n"
        + json.dumps({"name": "edit", "arguments": EDIT_ARGS})
        + "\n```\nThen I am done:\n```json\n"
        + json.dumps({"name": "submit", "arguments": {}})
        + "\n```"
    )
    parsed = oai(content)
    assert parsed.actions == [EXPECTED, Submit()] and parsed.submitted


def test_openai_broken_json_call_is_a_problem() -> None:
    parsed = oai('```json\n{"name": "edit", "arguments": {"path": "a.py", "search": "x" "replace": "y"}}\n```')
    assert parsed.actions == []
    assert parsed.problems and parsed.problems[0].startswith("a tool call written as JSON could not be read")


def test_openai_json_that_is_not_a_call_is_ignored() -> None:
    parsed = oai('The config should be {"name": "demo", "version": 2} and the list [1, 2, 3].')
    assert parsed.actions == [] and parsed.problems == []


def test_openai_prose_with_fenced_whole_file() -> None:
    content = """The function subtracts instead of adding. Here is the corrected file.

src/app.py
```python
def add(a, b):
    return a + b
```

And an example of using it (not a file):

```python
print(add(1, 2))
```"""
    # a source file's path and a function: placed by name in that file (a WholeFile would delete the rest of it)
    assert oai(content).actions == [FencedCode("def add(a, b):\n    return a + b\n", "src/app.py")]


def test_openai_assistant_and_tool_messages() -> None:
    dialect = OpenAIDialect()
    calls = [ToolCall("c1", "edit", "{}"), ToolCall("c2", "submit", "{}")]
    structured = Completion(content="", tool_calls=calls)
    assistant = dialect.assistant_message(structured)
    assert assistant["content"] is None
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["tool_calls"][0] == {
        "id": "c1",
        "type": "function",
        "function": {"name": "edit", "arguments": "{}"},
    }
    results = dialect.observation_messages(
        structured, observation_body("applied", remaining_turns=3, remaining_tokens=None)
    )
    assert [(m["role"], m["tool_call_id"]) for m in results] == [("tool", "c1"), ("tool", "c2")]
    assert results[0]["content"].startswith("<output>\napplied\n</output>")
    textual = Completion(content='{"name": "submit", "arguments": {}}')
    assert dialect.assistant_message(textual) == {"role": "assistant", "content": textual.content}
    (user,) = dialect.observation_messages(
        textual, observation_body("done", remaining_turns=None, remaining_tokens=None)
    )
    assert user == {"role": "user", "content": "<output>\ndone\n</output>"}


@pytest.mark.parametrize("dialect", [OpenAIDialect(), CwmDialect()], ids=["openai", "cwm"])
def test_tool_prompts_say_a_whole_function_in_a_python_block_is_accepted(dialect: Any) -> None:
    """The looser prompts name the markdown form; CWM's trained environment text (strict) keeps to its four tools."""
    tools = dialect.tool_description() if dialect.name == "openai" else cwm_environment(strict=False)
    prompt = " ".join(dialect.system_prompt(tools).split())
    assert "```python" in prompt and "`def` line" in prompt and "replaces the definition of the same name" in prompt
    if dialect.name == "openai":  # the simplest form is named first, before the tools
        assert prompt.index("```python") < prompt.index("- edit:")
    else:
        assert "```python" not in dialect.tool_description()


def cwm_environment(*, strict: bool = True) -> str:
    return environment(max_turns=12, context_size=32768, timeout=120, strict=strict)


def test_cwm_environment_is_the_trained_one_with_this_runs_limits() -> None:
    text = cwm_environment()
    assert "You are also constrained by a 32768 total context window limit." in text
    assert "through the following tool interface for at most 12 turns." in text
    assert "stopped after a 120-second timeout" in text
    requirements = text[text.index("REQUIREMENTS:") :].splitlines()
    assert requirements[1:3] == [
        "* You cannot invoke more than one tool in each step.",
        "* You must invoke exactly one tool in each step before any <tool: submit> call.",
    ]
    for spec in ("<tool: bash>\n[command(s)]\n</tool>", "<tool: create>\n[path]\n[content]\n</tool>"):
        assert spec in text
    assert "<tool: submit>\n[result]\n</tool>\nMarks [result] as your final submission." in text
    assert "several tools" in cwm_environment(strict=False)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("x\n</think>\n<tool: bash>\nls\n</tool>", ""),
        ("x\n</think>\n<tool: submit>\nfix.patch\n</tool>", ""),
        ("x\n</think>\n<tool: submit>\n</tool>", ""),  # the one deliberate difference: a plain submit
        (
            "x\n</think>\n<tool: edit>\na.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n</tool>\n"
            "<tool: submit>\n</tool>",
            "FormatError: Expected one tool call, but found 2: edit, submit. "
            "Ensure only one <tool:...></tool> block is present in the response.",
        ),
        ("x\n</think>\nI think it is fixed.", "FormatError: No tool calls found"),
        (
            "x\n</think>\n<tool: bash>\nls",
            "FormatError: Mismatch in tool tag counts: found 0 tool calls via regex, but counted 1 opening tags "
            "and 0 closing tags.",
        ),
        ("x\n</think>\n<tool: grep>\nfoo\n</tool>", "NoSuchToolError: Tool 'grep' not found."),
        (
            "x\n</think>\n<tool: bash>\n  \n</tool>",
            "FormatError: Tool 'bash' requires non-empty arguments, but received empty or whitespace-only input.",
        ),
    ],
)
def test_cwm_format_errors_are_its_environments_words(answer: str, error: str) -> None:
    parsed = cwm(answer)
    assert parsed.format_error == error and parsed.think_error == ""


def test_cwm_think_errors() -> None:
    assert cwm("<tool: bash>\nls\n</tool>").think_error == (
        "FormatError: Expected exactly one thinking end token, got 0"
    )
    assert cwm("a\n</think>\nb\n</think>\n<tool: bash>\nls\n</tool>").think_error.endswith("got 2")
    split = CwmDialect().parse(Completion(content="<tool: bash>\nls\n</tool>", reasoning="server-split"))
    assert split.think_error == "" and split.format_error == ""
    # the generous reading is still there for the permissive protocol: both blocks are actions
    both = cwm("x\n</think>\n<tool: bash>\nls\n</tool>\n<tool: bash>\npwd\n</tool>")
    assert both.actions == [BashCall("ls"), BashCall("pwd")] and both.format_error.startswith(
        "FormatError: Expected one"
    )


# --- markdown fences ---------------------------------------------------------------------------------------


def test_fence_info_string_names_the_path() -> None:
    edits, problems = parse_fenced("```python src/pkg/mod.py\nX = 1\n```\n```python\nnot a file\n```")
    assert edits == [WholeFile("src/pkg/mod.py", "X = 1\n")] and problems == []


MEDIAN = "def median(values):\n    ordered = sorted(values)\n    return ordered[len(ordered) // 2]\n"


@pytest.mark.parametrize("fence", ["```python", "```py", "```", "~~~python"])
def test_python_fence_without_a_path_holding_a_def_is_fenced_code(fence: str) -> None:
    closing = fence[:3]
    answer = f"The middle is wrong for even lengths. Here is the fixed function:\n\n{fence}\n{MEDIAN}{closing}\n"
    edits, problems = parse_fenced(answer)
    assert edits == [FencedCode(MEDIAN)] and problems == []


def test_fenced_method_given_indented_and_async_def_are_fenced_code() -> None:
    method = "    def push(self, x):\n        return x\n"
    coro = "async def fetch(x):\n    return x\n"
    edits, _ = parse_fenced(f"```python\n{method}```\n\n```python\n{coro}```")
    assert edits == [FencedCode(method), FencedCode(coro)]


@pytest.mark.parametrize(
    "body",
    [
        "print(median([4, 1, 3, 2]))\n",  # example usage
        "from stats import median\n\nassert median([1, 2]) == 1.5\n",
        '"""\nclass attribute docs, not a class\n"""\nx = 1\n',  # a line starting with "class" inside a string
        ">>> median([1, 2])\n1.5\n",  # a console session does not parse and names no definition
    ],
)
def test_python_fence_without_a_definition_is_not_an_edit(body: str) -> None:
    assert parse_fenced(f"For example:\n\n```python\n{body}```\n") == ([], [])


def test_buggy_original_then_the_fix_are_two_edits_in_order() -> None:
    fixed = MEDIAN.replace("return ordered[len(ordered) // 2]", "return 0")
    answer = f"The current code:\n```python\n{MEDIAN}```\nThe fix:\n```python\n{fixed}```\n"
    edits, _ = parse_fenced(answer)
    assert edits == [FencedCode(MEDIAN), FencedCode(fixed)]  # applied in order, so the fix wins


def test_a_definition_that_does_not_parse_is_still_code_so_the_model_hears_where() -> None:
    broken = "def median(values):\n    return sorted(values\n"
    assert parse_fenced(f"```python\n{broken}```") == ([FencedCode(broken)], [])


def test_an_unclosed_fence_of_code_is_a_problem_not_an_edit() -> None:
    edits, problems = parse_fenced(f"Here it is:\n```python\n{MEDIAN}")
    assert edits == [] and problems and "not closed" in problems[0]


@pytest.mark.parametrize(
    "before,expected",
    [
        ("`stats/core.py`:", FencedCode(MEDIAN, "stats/core.py")),  # the prompt's own way of showing a file
        ("In stats/core.py:", FencedCode(MEDIAN, "stats/core.py")),
        ("tests/test_core.py", WholeFile("tests/test_core.py", MEDIAN)),  # a test's path: the whole test file
        ("notes.txt", WholeFile("notes.txt", MEDIAN)),
    ],
)
def test_a_path_before_a_fence_of_definitions(before: str, expected: object) -> None:
    assert parse_fenced(f"{before}\n```python\n{MEDIAN}```\n") == ([expected], [])


def test_cwm_answer_with_only_a_fenced_function_is_fenced_code() -> None:
    parsed = cwm(f"The middle is off.\n</think>\nThe fix:\n```python\n{MEDIAN}```")
    assert parsed.actions == [FencedCode(MEDIAN)] and parsed.problems == []


def test_openai_answer_with_only_a_fenced_function_is_fenced_code() -> None:
    parsed = oai(f"```python\n{MEDIAN}```")
    assert parsed.actions == [FencedCode(MEDIAN)] and parsed.problems == []


def test_aider_style_search_replace_with_paths() -> None:
    text = """Two changes.

src/a.py
```python
<<<<<<< SEARCH
import os
=======
import os
import sys
>>>>>>> REPLACE
```

src/b.py
<<<<<<< SEARCH
x = 1
=======
x = 2
>>>>>>> REPLACE
"""
    edits, problems = parse_fenced(text)
    assert problems == []
    assert edits == [
        SearchReplace("src/a.py", "import os\n", "import os\nimport sys\n"),
        SearchReplace("src/b.py", "x = 1\n", "x = 2\n"),
    ]


def test_search_replace_without_a_path_is_a_problem() -> None:
    edits, problems = parse_fenced("Change this:\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n")
    assert edits == [] and problems == ["a SEARCH/REPLACE block has no file path: put the path on the line before it"]


def test_git_diff_fence_without_a_language() -> None:
    diff = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
    edits, _ = parse_fenced(f"```\n{diff}```")
    assert edits == [UnifiedDiff(diff)]


def test_unclosed_whole_file_fence_is_a_problem() -> None:
    edits, problems = parse_fenced("src/x.py\n```python\ndef f():\n    return 1\n")
    assert edits == [] and "not closed" in problems[0]


@pytest.mark.parametrize(
    "line,path",
    [
        ("src/pkg/mod.py", "src/pkg/mod.py"),
        ("**src/pkg/mod.py**", "src/pkg/mod.py"),
        ("`setup.cfg`:", "setup.cfg"),
        ("File: ./tests/test_x.py", "tests/test_x.py"),
        ("# pkg/__init__.py", "pkg/__init__.py"),
        ("Here is the fix:", None),
        ("For example:", None),
        ("e.g.", None),
        ("https://example.com/a.py", None),
        ("python", None),
    ],
)
def test_looks_like_path(line: str, path: str | None) -> None:
    assert looks_like_path(line) == path


def test_cwm_empty_submit_block_is_read() -> None:
    """The prompt shows ``<tool: submit>`` with an empty body; CWM's strict regex alone would not read it."""
    from agent.dialects.base import Submit
    from agent.dialects.cwm import CwmDialect
    from agent.model import Completion

    answer = "done\n</think>\n<tool: submit>\n</tool>"
    parsed = CwmDialect().parse(
        Completion(content=answer, tool_calls=[], finish_reason="stop", prompt_tokens=0, completion_tokens=0)
    )
    assert parsed.actions == [Submit(path=None)] and parsed.problems == []


def test_openai_json_call_missing_its_closing_brace_is_read() -> None:
    """Small local models often stop one brace short; the call is still read (and only a call is repaired)."""
    from agent.dialects.openai_tools import OpenAIDialect
    from agent.model import Completion
    from tools.edits import SearchReplace

    text = (
        'I will fix it.\n```json\n{"name": "edit", "arguments": {"path": "stats/core.py", '
        '"search": "    return ordered[middle]\\n", "replace": "    return 0\\n"}\n```'
    )
    parsed = OpenAIDialect().parse(
        Completion(content=text, tool_calls=[], finish_reason="stop", prompt_tokens=0, completion_tokens=0)
    )
    assert parsed.actions == [SearchReplace("stats/core.py", "    return ordered[middle]\n", "    return 0\n")]
    broken_data = OpenAIDialect().parse(
        Completion(
            content='{"values": [1, 2', tool_calls=[], finish_reason="stop", prompt_tokens=0, completion_tokens=0
        )
    )
    assert broken_data.actions == []
