"""The scratch workspace: a private git repo holding a copy of the target, where ALL edits happen.

Why a copy with its own repo: the user's tree is never touched until an explicit :func:`apply_patch`, and the
agent's change is always ``git diff`` against a baseline commit made at copy time. The baseline is the user's
*current* working tree (uncommitted changes included), so the final diff holds only what the agent did. The
scratch repo is ours, so it is fine to use its index freely; snapshots are tree objects written through a
separate index, which makes fanning out candidates cheap.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tools import proc
from tools.errors import FatalError

__all__ = ["Workspace", "apply_patch", "validate_repo"]

BASE_REF = "refs/mendloop/base"
# Files that running tests creates; they never belong in a diff.
SCRATCH_EXCLUDES = (".mendloop/", "__pycache__/", ".pytest_cache/", "*.pyc", ".hypothesis/")
# Skipped when copying a directory that is not a git work tree.
COPY_SKIP = frozenset({".git", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache"})
_BASE_MESSAGE = "mendloop base"
# Written into the scratch repo's config: no hooks, no signing, no gc that could drop snapshot trees, and an
# identity of its own so the baseline commit works on any machine.
_SCRATCH_CONFIG = {
    "commit.gpgsign": "false",
    "core.hooksPath": "/dev/null",
    "gc.auto": "0",
    "core.autocrlf": "false",
    "core.fileMode": "true",
    "core.symlinks": "true",
    "user.name": "mendloop",
    "user.email": "mendloop@localhost",
}


def validate_repo(path: Path) -> Path:
    """The resolved ``path`` if it is an existing directory; a one-line ``FatalError`` otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FatalError(f"repository {path} does not exist")
    if not path.is_dir():
        raise FatalError(f"repository {path} is not a directory")
    return path.resolve()


def git_dir_of(root: Path) -> Path:
    """Where a workspace's git directory lives: beside the tree, never inside it.

    Why: the tree is bound read-write into sandboxes. A ``.git`` inside it would let sandboxed code write the config
    that the host's next ``git`` call obeys (``core.fsmonitor``, filters, hooks): code execution on the host. Every
    host git call on a workspace names this directory explicitly, so a ``.git`` planted in the tree is ignored.
    """
    return root.parent / f".{root.name}.git"


@dataclass
class Workspace:
    """A scratch git repo at ``root`` whose commit ``base`` is the baseline every diff is taken against.

    Its git directory is :func:`git_dir_of` ``(root)``, outside the tree that sandboxes see.
    """

    root: Path
    base: str

    @classmethod
    def create(cls, repo: Path, dest: Path, *, base_ref: str | None = None) -> Workspace:
        """Copy ``repo`` (its working tree, or the commit ``base_ref``) into ``dest``; commit it as base."""
        repo = validate_repo(repo)
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise FatalError(f"workspace {dest} already exists and is not empty")
        dest.mkdir(parents=True, exist_ok=True)
        dest = dest.resolve()
        if base_ref is not None:
            if not _is_work_tree(repo):
                raise FatalError(f"--base-ref needs a git repository, and {repo} is not one")
            _export_commit(repo, base_ref, dest)
        elif _is_work_tree(repo):
            _copy_paths(repo, dest, _git_files(repo))
        else:
            _copy_tree(repo, dest)
        return cls._init_scratch(dest)

    @classmethod
    def open(cls, dest: Path) -> Workspace:
        """Reopen a workspace made by :meth:`create` (for ``--resume``)."""
        dest = Path(dest).resolve()
        if not git_dir_of(dest).is_dir():
            raise FatalError(f"workspace {dest} does not exist or is not a mendloop workspace")
        done = _git(dest, "rev-parse", "--verify", "-q", f"{BASE_REF}^{{commit}}", check=False)
        if done.returncode != 0:
            raise FatalError(f"workspace {dest} has no mendloop baseline ({BASE_REF})")
        return cls(dest, done.stdout.strip())

    @classmethod
    def _init_scratch(cls, dest: Path) -> Workspace:
        git_dir = git_dir_of(dest)
        if git_dir.exists():
            shutil.rmtree(git_dir)
        _git(dest, "init", "-q")
        for key, value in _SCRATCH_CONFIG.items():
            _git(dest, "config", key, value)
        exclude = git_dir / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("# mendloop: files that running tests creates\n" + "\n".join(SCRATCH_EXCLUDES) + "\n")
        # -f: a file the user tracks although it matches .gitignore is part of the baseline all the same.
        _git(dest, "add", "-A", "-f", ".")
        _git(dest, "commit", "-q", "--no-verify", "--allow-empty", "-m", _BASE_MESSAGE)
        base = _git(dest, "rev-parse", "HEAD").stdout.strip()
        _git(dest, "update-ref", BASE_REF, base)
        return cls(dest, base)

    def diff(self, *, exclude: Iterable[str] = (), binary: bool = True) -> str:
        """The agent's change: ``git diff`` of the working tree (new, deleted, binary files too) against base.

        ``exclude`` holds gitignore-like globs (``tests/test_issue*.py``; a pattern without ``/`` matches
        at any depth). With ``binary`` (the default) binary files carry a full ``GIT binary patch`` so the
        diff can be re-applied; without it they are only marked ``Binary files ... differ`` (for a model).
        """
        args = ["diff", "--cached", "--no-color", "--no-ext-diff", "--no-renames", "--src-prefix=a/"]
        args += ["--dst-prefix=b/", "--full-index", *(["--binary"] if binary else []), self.base]
        text = self._staged(*args, "--", *_pathspec(exclude)).stdout
        return text if not text or text.endswith("\n") else text + "\n"

    def changed_files(self, *, exclude: Iterable[str] = ()) -> list[str]:
        """Paths (relative, ``/``-separated) that differ from base: added, modified or deleted."""
        args = ["diff", "--cached", "--name-only", "-z", "--no-renames", self.base, "--", *_pathspec(exclude)]
        return sorted(p for p in self._staged(*args).stdout.split("\0") if p)

    def reset(self) -> None:
        """Put the working tree back to base (ignored files such as ``.mendloop/`` are kept)."""
        _git(self.root, "reset", "-q", "--hard", self.base)
        _git(self.root, "clean", "-ffdq")

    def snapshot(self) -> str:
        """Save the working tree as a git tree object and return its sha; the working tree is unchanged."""
        _git(self.root, "add", "-A", ".")
        return _git(self.root, "write-tree").stdout.strip()

    def restore(self, snap: str) -> None:
        """Make the working tree exactly the tree ``snap`` from :meth:`snapshot` (newer files go away)."""
        _git(self.root, "add", "-A", ".")  # so that files created since the snapshot are known and removed
        _git(self.root, "read-tree", "-u", "--reset", snap)

    def changed_since(self, snap: str) -> list[str]:
        """Paths that differ between the snapshot ``snap`` and the working tree now."""
        done = self._staged("diff", "--cached", "--name-only", "-z", "--no-renames", snap)
        return sorted(p for p in done.stdout.split("\0") if p)

    def restore_paths(self, snap: str, paths: Iterable[str]) -> None:
        """Put ``paths`` back as they were in the snapshot ``snap``; a path the snapshot lacks is removed."""
        for rel in paths:
            if _git(self.root, "cat-file", "-e", f"{snap}:{rel}", check=False).returncode == 0:
                _git(self.root, "checkout", snap, "--", rel)
            else:
                (self.root / rel).unlink(missing_ok=True)

    def apply(self, patch: str) -> None:
        """Apply a ``git diff`` to the working tree, all or nothing, with this workspace's own git directory."""
        if not patch.strip():
            return
        data = proc.encode(patch if patch.endswith("\n") else patch + "\n")
        done = _git(self.root, "apply", "--whitespace=nowarn", "-", check=False, input=data)
        if done.returncode != 0:
            raise FatalError(f"the patch does not apply to {self.root}: {_first_error(done.stderr)}")

    def copy_to(self, dest: Path) -> Workspace:
        """An independent copy (tree and git directory) at ``dest``: a private tree for one candidate."""
        dest = Path(dest).resolve()
        for path in (dest, git_dir_of(dest)):
            if path.exists():
                shutil.rmtree(path)
        shutil.copytree(self.root, dest, symlinks=True)
        shutil.copytree(git_dir_of(self.root), git_dir_of(dest), symlinks=True)
        return Workspace(dest, self.base)

    def export_base(self, dest: Path) -> Workspace:
        """A fresh workspace at ``dest`` holding exactly the base commit (the pristine copy for re-checking)."""
        dest = Path(dest).resolve()
        if dest.exists() and any(dest.iterdir()):
            raise FatalError(f"workspace {dest} already exists and is not empty")
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mendloop-archive-") as tmp:
            tar_path = Path(tmp) / "base.tar"
            _git(self.root, "archive", "--format=tar", "-o", str(tar_path), self.base)
            with tarfile.open(tar_path) as tar:
                tar.extractall(dest, filter="tar")
        return Workspace._init_scratch(dest)

    def _staged(self, *args: str) -> proc.Completed:
        """Stage everything (new files included) and run ``git ARGS``: the index is ours to use."""
        _git(self.root, "add", "-A", ".")
        return _git(self.root, *args)


def apply_patch(target: Path, patch: str, *, check_only: bool = False) -> None:
    """Apply a ``git diff`` to the directory ``target``, all or nothing.

    Plain ``git apply`` first (atomic by itself). When that fails and ``target`` is a git repo, a 3-way
    merge is tried against a *copy* of its index: only if it merges without conflicts is it replayed on the
    working tree, so the user's tree never ends up half-patched or with conflict markers, and the user's
    index is left alone.
    """
    target = validate_repo(target)
    if not patch.strip():
        return
    data = proc.encode(patch if patch.endswith("\n") else patch + "\n")
    # Never let git find a repository *above* target: it would apply paths relative to that repo's top.
    env = {"GIT_CEILING_DIRECTORIES": str(target.parent)}
    plain = proc.git("apply", "--check", "-", cwd=target, input=data, env=env, check=False)
    if plain.returncode == 0:
        if not check_only:
            proc.git("apply", "-", cwd=target, input=data, env=env)
        return
    if (target / ".git").exists() and _three_way(target, data, env, check_only):
        return
    reason = _first_error(plain.stderr)
    raise FatalError(f"the patch does not apply to {target}: {reason}")


def _three_way(target: Path, data: bytes, env: dict[str, str], check_only: bool) -> bool:
    index = Path(proc.git("rev-parse", "--git-path", "index", cwd=target, env=env).stdout.strip())
    index = index if index.is_absolute() else target / index
    with tempfile.TemporaryDirectory(prefix="mendloop-index-") as tmp:
        trial = Path(tmp) / "index"
        if index.exists():
            shutil.copyfile(index, trial)
        trial_env = {**env, "GIT_INDEX_FILE": str(trial)}
        merged = proc.git("apply", "--3way", "--cached", "-", cwd=target, input=data, env=trial_env, check=False)
        if merged.returncode != 0:
            return False
        if check_only:
            return True
        if index.exists():
            shutil.copyfile(index, trial)
        else:
            trial.unlink(missing_ok=True)
        done = proc.git("apply", "--3way", "-", cwd=target, input=data, env=trial_env, check=False)
        return done.returncode == 0


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error:")]
    picked = errors[:2] or lines[:1] or ["git apply failed"]
    return "; ".join(picked)


def _git(root: Path, *args: str, check: bool = True, input: bytes | None = None) -> proc.Completed:
    """git on a workspace: its git directory and index named explicitly, hooks and fsmonitor off.

    Why the index too: inside a git hook (mendloop under pre-commit) git exports ``GIT_INDEX_FILE=.git/index`` for
    the *user's* repository; inherited here, it would point into the scratch tree.
    """
    return proc.git(
        f"--git-dir={git_dir_of(root)}",
        f"--work-tree={root}",
        "-c",
        "core.fsmonitor=false",
        "-c",
        "core.hooksPath=/dev/null",
        *args,
        cwd=root,
        check=check,
        input=input,
        env={"GIT_INDEX_FILE": str(git_dir_of(root) / "index")},
    )


def _pathspec(exclude: Iterable[str]) -> list[str]:
    """gitignore-like globs as exclude pathspecs: ``/x`` anchored, ``x`` at any depth, ``d/`` all below."""
    specs = []
    for raw in exclude:
        pattern = raw.strip()
        anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
        pattern = pattern.lstrip("/")
        if not pattern:
            continue
        if pattern.endswith("/"):
            pattern += "**"
        specs.append(f":(exclude,glob){pattern}")
        if not anchored:
            specs.append(f":(exclude,glob)**/{pattern}")
    return [".", *specs] if specs else []


def _is_work_tree(path: Path) -> bool:
    done = proc.git("rev-parse", "--is-inside-work-tree", cwd=path, check=False)
    return done.returncode == 0 and done.stdout.strip() == "true"


def _git_files(repo: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files of the working tree, relative to ``repo``."""
    out = proc.git("ls-files", "-co", "--exclude-standard", "-z", "--", ".", cwd=repo).stdout
    # "dir/" is an untracked nested repository (an earlier run's workspace, say): not part of this tree.
    return sorted({p for p in out.split("\0") if p and not p.endswith("/")})


def _copy_paths(repo: Path, dest: Path, paths: Iterable[str]) -> None:
    for rel in paths:
        src = repo / rel
        if not os.path.lexists(src):  # tracked but deleted in the working tree
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), out)
        elif src.is_dir():  # a submodule: copy its files, not its .git
            shutil.copytree(src, out, symlinks=True, ignore=shutil.ignore_patterns(".git"), dirs_exist_ok=True)
        else:
            shutil.copy2(src, out)


def _copy_tree(repo: Path, dest: Path) -> None:
    def skip(directory: str, names: list[str]) -> set[str]:
        # The destination may live inside the source (a run directory under the project): never copy it.
        return {n for n in names if n in COPY_SKIP or Path(directory, n) == dest}

    shutil.copytree(repo, dest, symlinks=True, ignore=skip, dirs_exist_ok=True)


def _export_commit(repo: Path, ref: str, dest: Path) -> None:
    done = proc.git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", cwd=repo, check=False)
    if done.returncode != 0:
        raise FatalError(f"{ref!r} is not a commit in {repo}")
    with tempfile.TemporaryDirectory(prefix="mendloop-archive-") as tmp:
        tar_path = Path(tmp) / "base.tar"
        proc.git("archive", "--format=tar", "-o", str(tar_path), done.stdout.strip(), cwd=repo)
        with tarfile.open(tar_path) as tar:
            tar.extractall(dest, filter="tar")
