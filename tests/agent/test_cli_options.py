"""The option table: ``solve``, ``fix`` and ``batch`` take the same model, sandbox and budget options from one
table, a new row reaches all three, and the values reach a command keyed by ``Settings`` field."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from agent.cli import shared
from agent.cli.main import app, main
from agent.cli.shared import SETTINGS_OPTIONS, Flags, Opt, options
from agent.config import Settings, load_settings

CLI = Path(shared.__file__).parent
SHARED_COMMANDS = ("solve", "fix", "batch")

# The flags users type today, and the settings they set: renaming one breaks scripts and hooks.
FLAG_FIELDS = {
    "--base-url": "base_url",
    "--model": "model",
    "--dialect": "dialect",
    "--temperature": "temperature",
    "--reasoning": "reasoning",
    "--context-tokens": "context_tokens",
    "--history": "history",
    "--request-timeout": "request_timeout",
    "--max-iterations": "max_iterations",
    "--max-calls": "max_model_calls",
    "--max-turns": "max_turns",
    "--max-tokens": "max_total_tokens",
    "--max-time": "max_wall_time",
    "--max-cost": "max_cost",
    "--price-prompt": "price_prompt",
    "--price-completion": "price_completion",
    "--test-cmd": "test_cmd",
    "--candidates": "candidates",
    "--tests": "generated_tests",
    "--protocol": "protocol",
    "--review/--no-review": "submit_review",
    "--traces/--no-traces": "traces",
    "--trace-step-into": "trace_step_into",
    "--reproduce/--no-reproduce": "reproduce",
    "--keep-tests/--drop-tests": "keep_tests",
    "--sandbox": "sandbox",
    "--image": "image",
    "--network/--no-network": "network",
    "--command-timeout": "command_timeout",
    "--trust-repo-config/--no-trust-repo-config": "trust_repo_config",
    "--max-file-size": "max_file_size",
    "--max-workspace-growth": "max_workspace_growth",
}


def table_flags(rows: tuple[Opt, ...]) -> set[str]:
    return {flag for row in rows for flag in row.flags.split("/")}


def app_of(command: Callable[..., Any]) -> typer.Typer:
    one = typer.Typer()
    one.command()(command)
    return one


def click_command(command: Callable[..., Any]) -> Any:
    """The click command typer builds (typer carries its own click: typed loosely here)."""
    return typer.main.get_command(app_of(command))


def subcommand(name: str) -> Any:
    group: Any = typer.main.get_command(app)
    return group.commands[name]


def described(command: Any, flags: set[str]) -> dict[str, tuple[Any, ...]]:
    """Each option of ``command`` that has one of ``flags``: what a user sees of it (names, type, help, panel)."""
    out = {}
    for param in command.params:
        names = {*param.opts, *param.secondary_opts}
        if names & flags:
            out[param.opts[0]] = (
                tuple(param.opts),
                tuple(param.secondary_opts),
                param.type_descriptor.annotation,
                param.default,
                getattr(param, "help", None),
                getattr(param, "rich_help_panel", None),
            )
    return out


def help_flags(name: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    assert main([name, "--help"]) == 0
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", capsys.readouterr().out))


@pytest.fixture(autouse=True)
def wide_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERMINAL_WIDTH", "200")


def test_every_row_is_a_settings_field_and_the_flags_keep_their_names() -> None:
    assert {row.flags: row.field for row in SETTINGS_OPTIONS} == FLAG_FIELDS
    assert set(FLAG_FIELDS.values()) <= set(Settings.model_fields)


def test_solve_fix_and_batch_help_list_the_same_shared_options(capsys: pytest.CaptureFixture[str]) -> None:
    wanted = table_flags(SETTINGS_OPTIONS)
    shown = {name: help_flags(name, capsys) & wanted for name in SHARED_COMMANDS}
    assert shown == dict.fromkeys(SHARED_COMMANDS, wanted)


def test_the_shared_options_read_the_same_in_every_command() -> None:
    wanted = table_flags(SETTINGS_OPTIONS)
    solve, fix, batch = (described(subcommand(name), wanted) for name in SHARED_COMMANDS)
    assert len(solve) == len(SETTINGS_OPTIONS)
    assert solve == fix == batch
    assert solve["--max-calls"][2:] == (int, None, "Most model calls.", "Budget")
    assert solve["--traces"][:2] == (("--traces",), ("--no-traces",))


def test_the_other_commands_take_the_rows_they_name() -> None:
    wanted = table_flags(SETTINGS_OPTIONS)
    taken = {name: set(described(subcommand(name), wanted)) for name in ("demo", "trace", "doctor", "serve-local")}
    assert taken["demo"] == {"--sandbox", "--base-url", "--model", "--dialect", "--max-iterations"}
    trust = {"--trust-repo-config"}
    assert taken["trace"] == {"--sandbox", "--image", "--test-cmd", "--trace-step-into", *trust}
    assert taken["doctor"] == {"--sandbox", "--image", "--base-url", "--model", *trust}
    # serve-local's --model is its own (a .gguf file), not the endpoint's model name
    assert described(subcommand("serve-local"), {"--model"})["--model"][4].startswith("A .gguf file")


@pytest.fixture
def fresh_modules() -> Iterator[Callable[[str], ModuleType]]:
    """Load a new copy of an ``agent/cli`` module, so its commands are built from the table as it is now."""
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        module_name = f"_fresh_cli_{name}"
        spec = importlib.util.spec_from_file_location(module_name, CLI / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        loaded.append(module_name)
        spec.loader.exec_module(module)
        return module

    yield load
    for module_name in loaded:
        sys.modules.pop(module_name, None)


def test_a_new_row_shows_up_in_solve_fix_and_batch(
    monkeypatch: pytest.MonkeyPatch, fresh_modules: Callable[[str], ModuleType]
) -> None:
    row = Opt("memory_mb", "--memory-mb", "Memory per sandbox, in MB.", "Sandbox")
    monkeypatch.setattr(shared, "SETTINGS_OPTIONS", (*SETTINGS_OPTIONS, row))
    for name in SHARED_COMMANDS:
        function = getattr(fresh_modules(name), name)
        command = click_command(function)
        new = described(command, {"--memory-mb"})
        assert new == {"--memory-mb": (("--memory-mb",), (), int, None, "Memory per sandbox, in MB.", "Sandbox")}
        assert len(described(command, table_flags(shared.SETTINGS_OPTIONS))) == len(SETTINGS_OPTIONS) + 1, name
        result = CliRunner().invoke(app_of(function), ["--help"], terminal_width=200)
        assert "--memory-mb" in result.output, name
        assert CliRunner().invoke(app_of(function), ["--memory-mb", "lots"]).exit_code == 2  # typed like the field


def test_the_values_reach_the_command_keyed_by_settings_field() -> None:
    seen: dict[str, Any] = {}

    @options()
    def probe(name: Annotated[str, typer.Option("--name")] = "x", *, flags: Flags) -> None:
        seen.update(flags, name=name)

    args = ["--name", "y", "--max-calls", "2", "--max-tokens", "900", "--max-time", "7.5", "--no-traces"]
    result = CliRunner().invoke(app_of(probe), [*args, "--drop-tests", "--sandbox", "local"])
    assert result.exit_code == 0, result.output
    assert seen.pop("name") == "y"
    assert set(seen) == {row.field for row in SETTINGS_OPTIONS}
    given = {k: v for k, v in seen.items() if v is not None}
    assert given == {
        "max_model_calls": 2,
        "max_total_tokens": 900,
        "max_wall_time": 7.5,
        "traces": False,
        "keep_tests": False,
        "sandbox": "local",
    }
    settings = load_settings(None, seen, environ={})
    assert (settings.max_model_calls, settings.model, settings.reproduce) == (2, "facebook/cwm", True)


def test_a_row_the_command_also_declares_is_refused() -> None:
    def clash(model: str = "x", *, flags: Flags) -> None: ...

    with pytest.raises(TypeError, match="model"):
        options()(clash)
    with pytest.raises(ValueError, match="no_such_field"):
        shared.settings_rows("model", "no_such_field")


def test_subcommand_modules_do_not_import_main() -> None:
    """main.py imports the commands and registers them; nothing imports main back."""
    for path in sorted(CLI.glob("*.py")):
        if path.name in ("main.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names] if node.module else []
            assert not any(n == "agent.cli.main" or n.startswith("agent.cli.main.") for n in names), path.name
