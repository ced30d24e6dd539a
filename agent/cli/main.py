"""The ``mendloop`` command: solve | fix | batch | show | trace | doctor | sandbox prune | demo | serve-local.

The app and the list of its commands, each defined in a module of its own; ``main(argv) -> int`` is the program's
one edge (:func:`agent.cli.shared.run`): like pre-commit, a ``FatalError`` becomes ``mendloop: error: <one line>`` and
exit 2, usage errors exit 2, and Ctrl-C / SIGTERM exit 130 leaving a resumable run behind. Tests call ``main([...])``
or run ``python -m agent.cli.main`` as a subprocess.
"""

from __future__ import annotations

import typer

from agent.cli import batch, fix, local, shared, show, solve, tools

__all__ = ["app", "main"]

app = typer.Typer(
    name="mendloop",
    help="A self-repair coding agent: write, test, read the failure, patch, run again.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("solve")(solve.solve)
app.command("fix")(fix.fix)
app.command("batch")(batch.batch)
app.command("show")(show.show)
app.command("trace")(tools.trace)
app.command("doctor")(tools.doctor)
app.command("demo")(local.demo)
app.command("serve-local")(local.serve_local)

sandbox_app = typer.Typer(help="Manage sandboxes.", no_args_is_help=True)
sandbox_app.command("prune")(tools.prune)
app.add_typer(sandbox_app, name="sandbox")


def main(argv: list[str] | None = None) -> int:
    """Run mendloop: 0 resolved, 1 not resolved, 2 error, 130 interrupted."""
    return shared.run(app, argv)


if __name__ == "__main__":
    raise SystemExit(main())
