"""The one user-facing error type.

Why: like pre-commit's ``FatalError``, every failure of *infrastructure* (a missing repo, an endpoint that is down,
Docker gone) is raised as a ``FatalError`` subclass and mapped to a one-line message and an exit code at the CLI edge.
Failures of *tools* (a bad edit, a failing test) are never raised: they are observations for the model.
"""

from __future__ import annotations


class FatalError(Exception):
    """An error that stops the run with a one-line message; ``exit_code`` is what the CLI returns."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__
