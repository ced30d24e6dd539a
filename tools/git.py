"""git on the host: the one helper for the scratch workspace and for the user's own trees, and the one way to apply
a patch.

Why one: every git call mendloop makes should share the same non-interactive environment (no prompt, no pager, C
locale, unquoted paths), the same fallback identity for commits, the same one-line errors (through the subprocess
chokepoint :func:`tools.proc.run`) and the same rules for the two kinds of tree it touches:

* a **user tree** (``Git(path)``): the user's checkout or a clone made for them. git finds the repository from
  ``path`` as it would for the user, and the user's config and hooks apply;
* a **scratch tree** (``Git(path, git_dir=...)``, see :mod:`tools.workspace`): a copy whose git directory lives
  *beside* the tree because sandboxes can write anything inside it. Every call names that git directory, the work
  tree and the index explicitly, with hooks and fsmonitor off, so a ``.git`` or a config planted in the tree is
  never obeyed by the host.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools import proc
from tools.errors import FatalError

__all__ = ["Git", "PatchError"]

_IDENTITY = {"user.name": "mendloop", "user.email": "mendloop@localhost"}
# git subcommands that write commits and so need an identity on a machine where none is configured.
_NEEDS_IDENTITY = frozenset({"commit", "commit-tree", "merge", "rebase", "cherry-pick", "am", "stash", "revert", "tag"})
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_PAGER": "cat"}


class PatchError(FatalError):
    """A patch does not apply; nothing was written."""


@dataclass(frozen=True)
class Git:
    """git for the work tree ``tree``; with ``git_dir`` a scratch tree whose repository lives outside it.

    ``env`` is added to every call (a token header for one remote, a ceiling for repository discovery).
    """

    tree: Path
    git_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def run(
        self,
        *args: str,
        check: bool = True,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> proc.Completed:
        """``git ARGS`` in the tree, non-interactively, with stable (C locale, unquoted) output.

        Why the identity defaults: a commit on a fresh machine (CI, a container) with no ``user.name`` would
        otherwise fail with "Please tell me who you are"; a configured identity always wins because ours is only
        added when it is absent.
        """
        prefix = self._prefix()
        full_env = {**_ENV, **self._env(), **(env or {})}
        if _subcommand(args) in _NEEDS_IDENTITY:
            for key, value in _IDENTITY.items():
                configured = proc.run([*prefix, "config", "--get", key], cwd=self.tree, env=full_env, check=False)
                if configured.returncode != 0 or not configured.stdout.strip():
                    prefix += ["-c", f"{key}={value}"]
        return proc.run([*prefix, *args], cwd=self.tree, env=full_env, input=input, check=check, timeout=timeout)

    def ok(self, *args: str) -> bool:
        """Whether ``git ARGS`` succeeds (a question such as ``cat-file -e`` or ``show-ref --verify``)."""
        return self.run(*args, check=False).returncode == 0

    def is_work_tree(self) -> bool:
        done = self.run("rev-parse", "--is-inside-work-tree", check=False)
        return done.returncode == 0 and done.stdout.strip() == "true"

    def commit_of(self, ref: str) -> str | None:
        """The full id of the commit ``ref`` names (a branch, a tag, an abbreviated id), ``None`` if none."""
        done = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def apply(self, patch: str, *, index: bool = False, merge: bool = False, check_only: bool = False) -> None:
        """Apply a ``git diff`` to the tree, all or nothing; :class:`PatchError` when it does not apply.

        ``index`` updates the index too (a commit then holds exactly the patch). ``merge``: when the plain apply
        fails and the tree is a repository's top, a 3-way merge is tried against a *copy* of its index, and replayed
        on the tree only if it merges without conflicts; the tree never ends up half-patched or with conflict
        markers, and the repository's index is left alone. ``check_only`` writes nothing.
        """
        if not patch.strip():
            return
        data = proc.encode(patch if patch.endswith("\n") else patch + "\n")
        args = ["apply", "--whitespace=nowarn", *(["--index"] if index else []), *(["--check"] if check_only else [])]
        plain = self.run(*args, "-", input=data, check=False)
        if plain.returncode == 0:
            return
        at_top = self.git_dir is not None or (self.tree / ".git").exists()
        if merge and at_top and self._three_way(data, check_only):
            return
        raise PatchError(f"the patch does not apply to {self.tree}: {_first_error(plain.stderr)}")

    def _three_way(self, data: bytes, check_only: bool) -> bool:
        index = Path(self.run("rev-parse", "--git-path", "index").stdout.strip())
        index = index if index.is_absolute() else self.tree / index
        with tempfile.TemporaryDirectory(prefix="mendloop-index-") as tmp:
            trial = Path(tmp) / "index"
            if index.exists():
                shutil.copyfile(index, trial)
            env = {"GIT_INDEX_FILE": str(trial)}
            if self.run("apply", "--3way", "--cached", "-", input=data, env=env, check=False).returncode != 0:
                return False
            if check_only:
                return True
            if index.exists():
                shutil.copyfile(index, trial)
            else:
                trial.unlink(missing_ok=True)
            return self.run("apply", "--3way", "-", input=data, env=env, check=False).returncode == 0

    def _prefix(self) -> list[str]:
        prefix = ["git", "-c", "core.quotepath=off"]
        if self.git_dir is not None:
            prefix += ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"]
            prefix += [f"--git-dir={self.git_dir}", f"--work-tree={self.tree}"]
        return prefix

    def _env(self) -> dict[str, str]:
        """The per-tree environment. A scratch tree names its own index: inside a git hook (mendloop under
        pre-commit) git exports ``GIT_INDEX_FILE=.git/index`` for the *user's* repository, which inherited here
        would point into the scratch tree."""
        if self.git_dir is None:
            return dict(self.env)
        return {**self.env, "GIT_INDEX_FILE": str(self.git_dir / "index")}


def _subcommand(args: Sequence[str]) -> str:
    """The git subcommand among ``args``, skipping global options like ``-c k=v`` and ``--git-dir=...``."""
    it = iter(args)
    for arg in it:
        if arg in ("-c", "-C", "--git-dir", "--work-tree", "--namespace"):
            next(it, None)
        elif not arg.startswith("-"):
            return arg
    return ""


def _first_error(stderr: str) -> str:
    """What ``git apply`` said went wrong: its first two ``error:`` lines, else its first line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error:")]
    picked = errors[:2] or lines[:1] or ["git apply failed"]
    return "; ".join(picked)
