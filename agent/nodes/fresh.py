"""write, rebuilt fresh each round: the task, the current code, the latest failure (and trace), and one line per
earlier attempt - then the fixed code back, K samples at once.

Why fresh and not a growing conversation: a small model shown its own failed answers repeats them, and the pile
soon outgrows a 4096-token window. Round 1 is what a bare one-shot prompt is (the code, "give the fixed code back")
plus the failing test, so the loop starts at least as well as one shot. An answer with no change, or with a change
already tried, is asked again at a higher temperature (``retry_temperatures``): the prompt is the same, so the
server's prefix cache pays for it. With ``--candidates K`` the K answers come from one request (``n=K``), which reads
the prompt once.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from agent.budget import BudgetExceeded
from agent.context import RunContext
from agent.model import Completion, ContextOverflow
from agent.nodes.common import protection, system_message
from agent.nodes.prompting import Section, estimate_tokens, fit_sections, prompt_budget
from agent.nodes.repo_context import defined_names, is_test_file, read_source, relevant_sources
from agent.nodes.selection import normalize_patch
from agent.prompts import render, template
from agent.state import RepairState
from tools.patching import apply_edit, check_syntax
from tools.patching.definitions import python_files

NODE = "write"
MAX_SHRINKS = 3
FILE_FLOOR = 1500  # characters of the most relevant file that always stay in the prompt
TEST_FILE_CHARS = 1500  # a longer test file is shown as just the tests that failed
_APPLIED = ("Applied", "Wrote", "Created", "Replaced", "Added")  # how the patcher's success messages start
LARGE_FILE_CHARS = 6000  # a longer source file is shown as the definitions the task and the failure name


def tried_patches(state: RepairState) -> set[str]:
    """Every patch already verified in an earlier round, normalised: an answer repeating one is asked again."""
    return {normalize_patch(c["patch"]) for r in state.get("rounds", []) for c in r.get("candidates", []) if c["patch"]}


def attempt_lines(state: RepairState) -> list[str]:
    """One line per earlier round: what its winning change did, and what the tests then said."""
    lines = []
    for r in state.get("rounds", []):
        winner = next((c for c in r.get("candidates", []) if c.get("winner")), None)
        change = summarize_patch(winner["patch"]) if winner else ""
        lines.append(f"- round {r['iteration']}: {change or 'no change'} -> tests: {r['tests']}")
    return lines


def summarize_patch(patch: str, limit: int = 220) -> str:
    """A patch in one line: the file(s) and the changed lines, ``-old`` then ``+new``."""
    files: list[str] = []
    changes: list[str] = []
    for line in patch.splitlines():
        if line.startswith("+++ b/"):
            files.append(line[6:])
        elif line.startswith(("+", "-")) and not line.startswith(("+++", "---")):
            text = " ".join(line[1:].split())
            if text:
                changes.append(f"{line[0]}`{text}`")
    out = f"{', '.join(files)}: {' '.join(changes)}" if files else " ".join(changes)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _failing_tests_only(text: str, tests: str) -> str | None:
    """A long test file cut to the test functions the failure names (``in test3``, ``::test_x``), or None."""
    names = set(re.findall(r"(?:, in |::)(\w+)", tests))
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.splitlines()
    picked = [
        "\n".join(lines[min([n.lineno, *(d.lineno for d in n.decorator_list)]) - 1 : n.end_lineno])
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in names
    ]
    return "\n\n\n".join(picked) if picked else None


def _named_definitions_only(text: str, words: set[str]) -> str | None:
    """A long source file cut to the definitions the task and the failure name, in file order, or None."""
    spans = sorted(span for name, span in defined_names(text).items() if name in words)
    if not spans:
        return None
    lines = text.splitlines()
    parts: list[str] = []
    last = 0
    for first, end in spans:
        if first <= last:  # nested inside the previous one (a method of a named class)
            continue
        parts.append(f"# ... (lines {last + 1}-{first - 1} not shown)" if first > last + 1 else "")
        parts.append("\n".join(lines[first - 1 : end]))
        last = end
    if last < len(lines):
        parts.append(f"# ... (lines {last + 1}-{len(lines)} not shown)")
    return "\n".join(p for p in parts if p)


def _code_sections(ctx: RunContext, state: RepairState, hints: str) -> list[Section]:
    root = ctx.workspace.root
    files = relevant_sources(root, ctx.task.text, hints, failing=_failing_files(state))
    if (state.get("evidence") or {}).get("asserts"):
        files = [f for f in files if not is_test_file(f)]  # the failing assertions are in the test results already
    sections = []
    for rank, rel in enumerate(files):
        text = read_source(root, rel)  # a regular file only: never a link (it may be swapped in since the listing)
        if text is None:
            continue
        label = f"`{rel}`"
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", f"{ctx.task.text}\n{hints}"))
        if not is_test_file(rel) and len(text) > LARGE_FILE_CHARS:
            named = _named_definitions_only(text, words)
            if named is not None:
                text, label = named, f"`{rel}` (the definitions the task and the failure name)"
        if is_test_file(rel) and len(text) > TEST_FILE_CHARS:
            only = _failing_tests_only(text, hints)
            if only is not None:
                text, label = only, f"`{rel}` (the failing tests)"
        block = f"{label}:\n```python\n{text.rstrip()}\n```\n"
        floor = min(len(block), FILE_FLOOR) if rank == 0 else 0
        sections.append(Section(f"file:{rel}", block, priority=10 + rank, floor=floor))
    return sections


def _failing_files(state: RepairState) -> list[str]:
    evidence = state.get("evidence") or {}
    return list(evidence.get("files", []))


def build_prompt(ctx: RunContext, state: RepairState, budget: int | None) -> tuple[str, bool]:
    """The round's request text fitted to ``budget`` tokens, and whether an execution trace is in it."""
    evidence = state.get("evidence") or {}
    tests = str(evidence.get("tests") or "")
    trace = str(evidence.get("trace") or "")
    attempts = attempt_lines(state)
    sections = [
        Section("task", ctx.task.text.strip(), priority=1, floor=1200),
        *_code_sections(ctx, state, tests),
        Section("tests", tests, priority=2, floor=600, keep="both"),
        Section("trace", trace, priority=30),
        Section("attempts", "\n".join(attempts), priority=20, floor=0, keep="tail"),
    ]
    fitted = fit_sections(sections, budget)
    code = "\n".join(fitted[s.name] for s in sections if s.name.startswith("file:") and fitted[s.name])
    parts = []
    if fitted["tests"]:
        parts.append(f"# Test results\n\n{fitted['tests']}\n")
    if fitted["trace"]:
        parts.append(f"# What the code did\n\n{fitted['trace']}\n")
    if fitted["attempts"]:
        parts.append(f"# Earlier attempts (they did not fix it; do something else)\n\n{fitted['attempts']}\n")
    text = render("write_fresh", task=fitted["task"], code=code or "(no source file found)", evidence="\n".join(parts))
    return text, bool(fitted["trace"])


def _request(ctx: RunContext, state: RepairState, shrink: int) -> tuple[list[dict[str, Any]], int | None, bool]:
    """The messages for this round, fitted to the context (``shrink`` times smaller after each refusal)."""
    system = system_message(ctx, tools=False)
    fixed = estimate_tokens(system["content"]) + estimate_tokens(template("write_fresh")) + 64
    context = ctx.model.context_size()
    budget = prompt_budget(context, ctx.settings.max_completion_tokens, fixed)
    if budget is not None and shrink:
        budget = int(budget * 0.7**shrink)
    text, traced = build_prompt(ctx, state, budget)
    messages = [system, {"role": "user", "content": text}]
    room = None
    if context:
        room = max(128, context - estimate_tokens(system["content"]) - estimate_tokens(text) - 64)
    return messages, room, traced


def _with_hint(messages: list[dict[str, Any]], hint: str) -> list[dict[str, Any]]:
    """The same request with one line added at the end of the user turn: the prefix stays cached."""
    last = messages[-1]
    return [*messages[:-1], {**last, "content": f"{last['content'].rstrip()}\n\n{hint}"}]


def _hints(ctx: RunContext, state: RepairState) -> list[str]:
    """Where a block of code with no path most likely belongs: the source files the failure went through, then those
    the task names by path or module. Only these: a ranking of every file would turn an ambiguity into a guess."""
    failing = [f for f in _failing_files(state) if not is_test_file(f)]
    text = ctx.task.text
    named = [
        f
        for f in python_files(ctx.workspace.root)
        if not is_test_file(f) and (f in text or f.removesuffix(".py").replace("/", ".") in text)
    ]
    return list(dict.fromkeys([*failing, *named]))


def _try_answer(
    ctx: RunContext, state: RepairState, completion: Completion, seen: set[str]
) -> tuple[str, list[str], list[str], str]:
    """Apply one answer on the workspace, take its patch, put the workspace back. Returns (patch, files changed,
    observations, why it is no candidate: "" when it is one)."""
    workspace = ctx.workspace
    parsed = ctx.dialect.parse(completion)
    observations = list(parsed.problems)
    edits = parsed.edits
    if not edits:
        return "", [], [*observations, ctx.dialect.no_edit_hint()], "held no code block with a change"
    guard = protection(ctx, state)
    snap = workspace.snapshot()
    changed: list[str] = []
    try:
        for edit in edits:
            outcome = apply_edit(workspace.root, edit, protected=guard, hints=_hints(ctx, state))
            observations.append(outcome.message)
            changed.extend(outcome.changed)
        syntax = check_syntax(workspace.root, changed)
        observations.extend(syntax)
        patch = workspace.diff()
    finally:
        workspace.restore(snap)
    if syntax:
        return "", changed, observations, "did not parse: " + syntax[0].splitlines()[0]
    if not patch.strip() or patch == state.get("workspace_patch", ""):
        failed = [o for o in observations if o and not o.startswith(_APPLIED)]
        detail = f" ({failed[0].splitlines()[0]})" if failed else ""
        return "", changed, observations, f"did not change the code{detail}"
    if normalize_patch(patch) in seen:
        return "", changed, observations, "repeated a change that was already tried and failed"
    return patch, changed, observations, ""


def write_fresh(ctx: RunContext, state: RepairState) -> dict[str, Any]:
    """One round: up to ``1 + len(retry_temperatures)`` requests until at least one answer is a new change."""
    settings = ctx.settings
    k = max(1, settings.candidates)
    round_no = state.get("iteration", 0) + 1
    first = settings.sample_temperature if k > 1 else settings.temperature
    temperatures = [first, *settings.retry_temperatures]
    seen = tried_patches(state)
    seen.discard(normalize_patch(""))
    candidates: list[dict[str, Any]] = []
    notes: list[str] = []
    stop_reason = ""
    shrink = 0
    messages, room, traced = _request(ctx, state, shrink)
    tokens = 0
    turn = 0
    while turn < len(temperatures) and not candidates:
        ctx.progress(
            f"asking for the fixed code (round {round_no}, {k} sample{'s' if k > 1 else ''}, T={temperatures[turn]:g})"
        )
        try:
            answers = ctx.model.sample(
                messages, node=NODE, n=k, temperature=temperatures[turn], max_tokens=room, tools=None
            )
        except BudgetExceeded as exc:
            stop_reason = str(exc)
            break
        except ContextOverflow as exc:
            shrink += 1
            if shrink > MAX_SHRINKS:
                stop_reason = f"the request cannot be made to fit the model's context: {exc.message}"
                break
            ctx.progress("the request did not fit the model's context; sending less")
            messages, room, traced = _request(ctx, state, shrink)
            continue
        whys: list[str] = []
        for answer in answers:
            tokens += answer.prompt_tokens // len(answers) + answer.completion_tokens
            patch, changed, observations, why = _try_answer(ctx, state, answer, seen)
            notes.extend(o for o in observations if o)
            if why:
                whys.append(why)
                continue
            seen.add(normalize_patch(patch))
            candidates.append(
                {
                    "index": len(candidates),
                    "patch": patch,
                    "messages": [*messages, ctx.dialect.assistant_message(answer)],
                    "tokens": answer.prompt_tokens // len(answers) + answer.completion_tokens,
                    "applied": sorted(set(changed)),
                    "observations": observations[-5:],
                    "temperature": temperatures[turn],
                }
            )
        if not candidates and whys:
            notes.append(f"turn {turn + 1} (T={temperatures[turn]:g}): the answer {whys[0]}")
            messages = _with_hint(
                messages,
                f"(Your previous answer {whys[0]}. Answer with the corrected code in one ```python block.)",
            )
        turn += 1
    if not candidates:
        candidates.append(
            {
                "index": 0,
                "patch": state.get("workspace_patch", ""),
                "messages": messages,
                "tokens": tokens,
                "applied": [],
                "observations": notes[-5:],
                "no_change": True,
            }
        )
    for cand in candidates:
        cand["traced"] = traced
    update: dict[str, Any] = {"candidates": candidates}
    if stop_reason:
        update["stop_reason"] = stop_reason
    return update
