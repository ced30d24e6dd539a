"""The edits a model can ask for, as plain data.

Why a module of its own: the dialects (agent/) produce these and the patcher (tools/) consumes them; keeping the
types here lets tools/ stay free of any model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SearchReplace:
    """Replace one unique occurrence of ``search`` in ``path`` by ``replace`` (CWM's ``<tool: edit>``)."""

    path: str
    search: str
    replace: str


@dataclass(frozen=True)
class CreateFile:
    """Create ``path`` with ``content``; refused if the file already exists (CWM's ``<tool: create>``)."""

    path: str
    content: str


@dataclass(frozen=True)
class WholeFile:
    """Write the whole content of ``path``, creating or overwriting it (a fenced file block after its path)."""

    path: str
    content: str


@dataclass(frozen=True)
class DeleteFile:
    """Delete ``path``."""

    path: str


@dataclass(frozen=True)
class UnifiedDiff:
    """A unified diff (``git diff`` or ``diff -u`` style) that may touch several files."""

    text: str


@dataclass(frozen=True)
class FencedCode:
    """Python code in a fence holding whole definitions (def/class), placed by name through the syntax tree, or a
    whole file (see ``tools/patching/definitions.py``).

    ``path`` is the source file the answer named before the fence, if any: the definitions are placed in that file
    (the rest of it is kept), where a plain ``WholeFile`` would have cut the file down to the one function shown."""

    code: str
    path: str | None = None


Edit = SearchReplace | CreateFile | WholeFile | DeleteFile | UnifiedDiff | FencedCode


@dataclass
class EditOutcome:
    """What applying one edit did: ``ok`` and the files changed, or a precise message for the model."""

    ok: bool
    message: str
    changed: list[str] = field(default_factory=list)
