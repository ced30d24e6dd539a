"""write, as one conversation with tools: the model looks (``<tool: bash>``), edits, and gets each result back.

Why a few turns inside one round: a model often looks before it edits or writes an edit that does not apply. Those
are observations it gets back at once, within the same round, instead of costing a whole test run. With
``--candidates K`` this runs K times in parallel (LangGraph ``Send``), each in its own copy of the workspace (and its
own sandbox over that copy, opened when it first runs a command); ``verify`` then picks the winner. The conversation
is cut to the endpoint's context before each request (the first request and the latest turns stay); a refusal for
length is answered by sending less.

The protocol (``agent/nodes/protocol.py``), by default the one CWM was trained on (``protocol = "strict"``):

* one tool call per step. An answer with two blocks, none, a tag without its pair, or (reasoning on) without exactly
  one ``</think>`` gets the format error CWM's environment gave, as a bare user message, and NOTHING in it runs -
  its environment raised before executing anything. It still costs a turn, as it did there.
* every result is ``<output>…</output>`` then ``<budget>`` with the turns and tokens left for the whole repair.
* a round ends when a step changed the code cleanly (an edit of an existing file that applies and parses; a new
  file alone does not end it - it is often a script to run next), when a submission is accepted, or when the model
  gives its final response after one (``submit_review``: an accepted
  submission first shows the patch back for review, as CWM's environment did). ``verify`` then runs the tests;
  what it found goes into that last step's ``<output>`` at the start of the next round.
* ``<tool: submit>`` takes the path of a patch file (``git diff`` format, starting with ``diff``): the workspace is
  put back to the original code (accepted reproduction tests kept) and the patch applied - what was submitted is
  what is tested. A path that does not exist, an empty file, a file that is no diff or does not apply is an
  observation. A plain ``<tool: submit>`` submits the files as they are.

``protocol = "permissive"`` (and every other dialect) keeps mendloop's looser reading: several tools per answer, run
in order; markdown edits; the round ends once an edit applied and the model did not look in the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from agent.budget import BudgetExceeded
from agent.context import RunContext
from agent.dialects.base import Action, BashCall, Parsed, Submit
from agent.model import ContextOverflow
from agent.nodes.common import Turn, ask, protection
from agent.nodes.prompting import bounded_history
from agent.nodes.protocol import (
    TURNS_PER_ROUND,
    Episode,
    amend_pending,
    environment_message,
    fold_feedback,
    format_message,
    observation,
    reasoning_on,
    strict,
    without_marks,
)
from agent.nodes.repo_context import gather
from agent.prompts import render
from agent.state import RepairState
from sandboxes.base import Sandbox
from tools.edits import CreateFile
from tools.git import PatchError
from tools.patching import PathRefused, apply_edit, check_syntax, resolve_path
from tools.testing import TestReport
from tools.workspace import Workspace

NODE = "write"
MAX_SHRINKS = 3
SANDBOX_ROOT = "/workspace"  # where the bwrap and Docker sandboxes mount the workspace
MAX_PATCH_BYTES = 2_000_000

__all__ = ["TURNS_PER_ROUND", "episode_turns", "write_conversation"]


def episode_turns(ctx: RunContext) -> int:
    """Model turns for the whole repair: ``max_turns``, or ``max_iterations`` rounds of ``TURNS_PER_ROUND``."""
    return ctx.settings.max_turns or ctx.settings.max_iterations * TURNS_PER_ROUND


def _ask_fitted(ctx: RunContext, messages: list[dict[str, Any]]) -> Turn:
    """One turn with the conversation cut to fit the context; smaller again after each refusal for length."""
    clean = without_marks(messages)
    for shrink in range(MAX_SHRINKS + 1):
        # the window as the server said it (a refusal teaches it), else max_history_chars
        sent = bounded_history(clean, ctx.settings, ctx.model.context_size(), shrink=shrink)
        try:
            return ask(ctx, sent, NODE)
        except ContextOverflow:
            if shrink == MAX_SHRINKS:
                raise
    raise AssertionError("unreachable")


def _first_prompt(ctx: RunContext, state: RepairState) -> str:
    report = TestReport.from_dict(state["last_report"]) if state.get("last_report") else None
    tests = report.feedback(6000) if report else "(not run)"
    repro = state.get("repro_files") or []
    note = f" nor the reproduction test {', '.join(repro)}" if repro else ""
    hints = report.output[-4000:] if report else ""
    return render(
        NODE,
        task=ctx.task.text,
        context=gather(ctx.workspace.root, ctx.task.text, hints),
        tests=tests,
        protected_note=note,
    )


def _candidate_workspace(ctx: RunContext, state: RepairState) -> tuple[Workspace, bool]:
    """Where this write edits: the workspace itself, or a private copy when sampling several candidates."""
    index = state.get("candidate")
    if index is None or ctx.settings.candidates <= 1:
        return ctx.workspace, False
    dest = ctx.run_dir / "candidates" / f"round{state.get('iteration', 0) + 1}-{index}"
    return ctx.workspace.copy_to(dest), True


@dataclass
class _Round:
    """What one round of the conversation works in, and what it has done so far."""

    ctx: RunContext
    state: RepairState
    workspace: Workspace
    private: bool
    box: Sandbox | None = None
    applied: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    submitted: bool = False  # a submission was accepted in this round

    def sandbox(self) -> Sandbox:
        """The run's sandbox, or - for a candidate's private copy - one over that copy, opened on first use."""
        if not self.private:
            return self.ctx.sandbox
        if self.box is None:
            self.box = self.ctx.sandbox_for(self.workspace.root)
        return self.box

    def close(self) -> None:
        if self.box is not None:
            self.box.close()
            self.box = None

    @property
    def repro(self) -> list[str]:
        return list(self.state.get("repro_files") or [])


@dataclass
class _Step:
    """What one answer did: its observation, the files it changed cleanly, whether it looked or submitted."""

    text: str = ""
    changed: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # new files among ``changed`` (a scratch script, often)
    syntax: list[str] = field(default_factory=list)
    looked: bool = False
    submitted: bool = False


def _patch_path(root: Path, raw: str) -> str:
    """A submitted path as the model wrote it (relative, or absolute inside the sandbox) made relative."""
    text = raw.strip().strip("'\"")
    for prefix in (f"{root}/", f"{SANDBOX_ROOT}/"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return str(PurePosixPath(text)) if text.startswith("./") else text


def _submission(patch: str) -> str:
    """The words CWM's environment used to show a submission back."""
    head = "The following patch content is marked as your final submission:"
    return f"{head}\n\n<submission>\n{patch.rstrip()}\n</submission>"


def _submit(rnd: _Round, action: Submit) -> tuple[bool, str, list[str]]:
    """Take a submission: a patch file applied to the original code (accepted reproduction tests kept), or the
    files as they are. ``(accepted, observation, changed files)``; a refused one leaves the workspace as it was."""
    ws = rnd.workspace
    if action.path is None:
        patch = ws.diff(exclude=rnd.repro)
        if not patch.strip():
            return False, "Failed to submit: no file differs from the original code yet.", []
        return True, _submission(patch), ws.changed_files(exclude=rnd.repro)
    shown = action.path.strip()
    try:
        path = resolve_path(ws.root, _patch_path(ws.root, shown))
        data = path.read_bytes()[: MAX_PATCH_BYTES + 1]
        text = data.decode("utf-8")
    except (PathRefused, OSError, UnicodeDecodeError):
        return False, f"Failed to submit {shown}. Make sure it exists and is readable.", []
    if not text.strip():
        return False, f"Failed to submit {shown}. It is an empty file.", []
    if not text.startswith("diff") or len(data) > MAX_PATCH_BYTES:
        return False, f"Failed to submit {shown}. It is not a valid diff file.", []
    snap = ws.snapshot()
    ws.reset()  # the patch is applied to the original code: what was submitted is what is tested
    ws.restore_paths(snap, rnd.repro)
    try:
        ws.apply(text)
    except PatchError as exc:
        ws.restore(snap)
        detail = str(exc).split(": ", 1)[-1]
        return False, f"Failed to submit {shown}. It does not apply to the original code: {detail}", []
    changed = ws.changed_files(exclude=rnd.repro)
    guard = protection(rnd.ctx, rnd.state)
    refused = [why for rel in changed if (why := guard(rel))]
    if refused:
        ws.restore(snap)
        return False, f"Failed to submit {shown}. {refused[0]}", []
    if not changed:
        ws.restore(snap)
        return False, f"Failed to submit {shown}. It changes nothing in the original code.", []
    return True, _submission(ws.diff(exclude=rnd.repro)), changed


def _run(rnd: _Round, actions: list[Action], problems: list[str]) -> _Step:
    """Run an answer's actions in order; every result is an observation."""
    step = _Step()
    observations = list(problems)
    root = rnd.workspace.root
    guard = protection(rnd.ctx, rnd.state)
    for action in actions:
        if isinstance(action, Submit):
            accepted, message, changed = _submit(rnd, action)
            observations.append(message)
            step.submitted = step.submitted or accepted
            step.changed.extend(changed)
        elif isinstance(action, BashCall):
            step.looked = True
            result = rnd.sandbox().run(action.command, timeout=rnd.ctx.settings.command_timeout)
            observations.append(f"$ {action.command}\n{result.output}\n({result.describe()})")
        else:
            outcome = apply_edit(root, action, protected=guard)
            observations.append(outcome.message)
            step.changed.extend(outcome.changed)
            if isinstance(action, CreateFile):
                step.created.extend(outcome.changed)
    step.syntax = check_syntax(root, step.changed)
    observations.extend(step.syntax)
    step.text = "\n\n".join(o for o in observations if o)
    return step


def _review(patch_text: str) -> str:
    return (
        f"{patch_text}\n\nReview the patch content and ensure it correctly resolves the issue. If necessary, you can "
        "continue refining the patch and submit an updated version."
    )


def write_conversation(ctx: RunContext, state: RepairState) -> dict[str, Any]:
    """One round of the conversation (see the module docstring for when it ends)."""
    workspace, private = _candidate_workspace(ctx, state)
    rnd = _Round(ctx, state, workspace, private)
    episode = Episode(ctx, episode_turns(ctx))
    messages = list(state.get("messages") or [])
    if not messages:
        messages = [environment_message(ctx, episode.turns), {"role": "user", "content": _first_prompt(ctx, state)}]
    else:
        messages = fold_feedback(episode, messages, state.get("feedback") or "The tests still fail. Fix the code.")
    guard = protection(ctx, state)
    snap = workspace.snapshot()
    tokens = 0
    stop_reason = ""
    per_round = TURNS_PER_ROUND if ctx.settings.max_turns is None else episode.turns
    trained = strict(ctx)
    try:
        for turn in range(per_round):
            if episode.turns_left(messages) <= 0:
                stop_reason = f"turn budget spent: {episode.turns} of {episode.turns} turns used"
                break
            ctx.progress(f"asking for a change (round {state.get('iteration', 0) + 1}, turn {turn + 1})")
            try:
                answer = _ask_fitted(ctx, messages)
            except BudgetExceeded as exc:
                stop_reason = str(exc)
                break
            except ContextOverflow as exc:
                stop_reason = f"the conversation cannot be made to fit the model's context: {exc.message}"
                break
            tokens += answer.tokens
            messages = [*messages, ctx.dialect.assistant_message(answer.completion)]
            if trained:
                done, messages = _strict_turn(rnd, episode, messages, answer)
            else:
                done, messages = _permissive_turn(rnd, episode, messages, answer)
            if done:
                break
        # Edits are checked before they apply; a shell command is not, so what it did to protected files is undone.
        reverted = [rel for rel in workspace.changed_since(snap) if guard(rel)]
        if reverted:
            workspace.restore_paths(snap, reverted)
            note = f"Undone: your commands changed {', '.join(reverted)}, which this run may not change."
            rnd.log.append(note)
            messages = amend_pending(episode, messages, note)
    finally:
        rnd.close()
    patch = workspace.diff()
    candidate = {
        "index": state.get("candidate", 0),
        "patch": patch,
        "messages": messages,
        "tokens": tokens,
        "applied": sorted(set(rnd.applied)),
        "observations": rnd.log[-20:],
        "traced": "Execution trace of" in str(state.get("feedback") or ""),
    }
    update: dict[str, Any] = {"candidates": [candidate]}
    if stop_reason:
        update["stop_reason"] = stop_reason
    if not private:
        update["workspace_patch"] = patch
    return update


def _strict_turn(
    rnd: _Round, episode: Episode, messages: list[dict[str, Any]], answer: Turn
) -> tuple[bool, list[dict[str, Any]]]:
    """One step of CWM's protocol: a format error runs nothing; otherwise the one tool call runs."""
    parsed: Parsed = answer.parsed
    think = parsed.think_error if reasoning_on(rnd.ctx) else ""
    error = think or parsed.format_error
    if error:
        if rnd.submitted and not think:
            return True, messages  # the final response after an accepted submission: the round is done
        rnd.log.append(error)
        return False, format_message(messages, answer.completion, error)
    step = _run(rnd, parsed.actions, parsed.problems)
    rnd.log.append(step.text)
    clean = bool(step.changed) and not step.syntax
    if clean:
        rnd.applied.extend(step.changed)
    # a new file alone (a script to reproduce the bug, say) is a step on the way, not yet a change to test
    edited = clean and bool(set(step.changed) - set(step.created))
    if step.submitted:
        rnd.submitted = True
        if rnd.ctx.settings.submit_review:
            return False, observation(rnd.ctx, episode, messages, answer.completion, _review(step.text))
    done = edited or step.submitted
    return done, observation(rnd.ctx, episode, messages, answer.completion, step.text or "Done.")


def _permissive_turn(
    rnd: _Round, episode: Episode, messages: list[dict[str, Any]], answer: Turn
) -> tuple[bool, list[dict[str, Any]]]:
    """mendloop's looser reading: every action of the answer runs, in order."""
    parsed = answer.parsed
    step = _run(rnd, parsed.actions, parsed.problems)
    rnd.applied.extend(step.changed)
    text = step.text
    if not parsed.actions:
        text = "\n\n".join(t for t in (text, rnd.ctx.dialect.no_edit_hint()) if t)
    if text:
        rnd.log.append(text)
    done = bool(rnd.applied) and not step.syntax and (step.submitted or not step.looked)
    return done, observation(rnd.ctx, episode, messages, answer.completion, text or "Done.")
