"""The scratch workspace: a private git repo holding a copy of the target, where ALL edits happen.

Why a copy with its own repo: the user's tree is never touched until an explicit :func:`apply_patch`, and the
agent's change is always ``git diff`` against a baseline commit made at copy time. The baseline is the user's
*current* working tree (uncommitted changes included), so the final diff holds only what the agent did. The
scratch repo is ours, so it is fine to use its index freely; snapshots are tree objects written from that index,
which makes fanning out candidates cheap. Its git directory lives beside the tree (:func:`git_dir_of`), and every
git call on it goes through :func:`scratch_git`.

Why a diff leaves some things out: the tree is written by untrusted code. A symbolic link that points outside the
tree (``leak -> /proc/self/environ``, ``key -> /home/me/.ssh/id_rsa``) is never part of a change - applied to the
user's checkout it would hand the next tool that reads it a host file - so :meth:`Workspace.diff` omits it and
:meth:`Workspace.outside_links` names it for the report. Added lines holding one of the user's secrets (a test that
wrote its environment into a file) are masked by the one scrubber, :mod:`tools.secrets`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tools import proc
from tools.errors import FatalError
from tools.git import Git
from tools.secrets import known, scrub

__all__ = ["PATCH_FILE_LIMIT", "Workspace", "apply_patch", "too_large_for_patch", "validate_repo"]

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
            if not Git(repo).is_work_tree():
                raise FatalError(f"--base-ref needs a git repository, and {repo} is not one")
            _export_commit(repo, base_ref, dest)
        elif Git(repo).is_work_tree():
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
        base = scratch_git(dest).commit_of(BASE_REF)
        if base is None:
            raise FatalError(f"workspace {dest} has no mendloop baseline ({BASE_REF})")
        return cls(dest, base)

    @classmethod
    def _init_scratch(cls, dest: Path) -> Workspace:
        git = scratch_git(dest)
        assert git.git_dir is not None
        if git.git_dir.exists():
            shutil.rmtree(git.git_dir)
        git.run("init", "-q")
        for key, value in _SCRATCH_CONFIG.items():
            git.run("config", key, value)
        exclude = git.git_dir / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("# mendloop: files that running tests creates\n" + "\n".join(SCRATCH_EXCLUDES) + "\n")
        # -f: a file the user tracks although it matches .gitignore is part of the baseline all the same.
        git.run("add", "-A", "-f", ".")
        git.run("commit", "-q", "--no-verify", "--allow-empty", "-m", _BASE_MESSAGE)
        base = git.run("rev-parse", "HEAD").stdout.strip()
        git.run("update-ref", BASE_REF, base)
        return cls(dest, base)

    @property
    def git(self) -> Git:
        """git for this workspace, its git directory named on every call (see :func:`git_dir_of`)."""
        return scratch_git(self.root)

    def diff(self, *, exclude: Iterable[str] = (), binary: bool = True) -> str:
        """The agent's change: ``git diff`` of the working tree (new, deleted, binary files too) against base.

        ``exclude`` holds gitignore-like globs (``tests/test_issue*.py``; a pattern without ``/`` matches
        at any depth). With ``binary`` (the default) binary files carry a full ``GIT binary patch`` so the
        diff can be re-applied; without it they are only marked ``Binary files ... differ`` (for a model).
        A symbolic link pointing outside the tree is never in it (see :meth:`outside_links`), and added lines
        have the user's secrets masked.
        """
        args = ["diff", "--cached", "--no-color", "--no-ext-diff", "--no-renames", "--src-prefix=a/"]
        args += ["--dst-prefix=b/", "--full-index", *(["--binary"] if binary else []), self.base]
        outside = [f":(exclude,literal){rel}" for rel in self.outside_links()]  # stages the tree too
        spec = _pathspec(exclude)
        spec = [*(spec or ["."]), *outside] if outside else spec
        text = _scrub_added(self.git.run(*args, "--", *spec).stdout)
        return text if not text or text.endswith("\n") else text + "\n"

    def outside_links(self) -> dict[str, str]:
        """Symbolic links added or changed since base whose target leaves the tree (absolute, ``..`` past the top,
        or through another link): ``rel -> target``. They are left out of every diff."""
        raw = self._staged("diff", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev", self.base).stdout
        fields = raw.split("\0")
        found: dict[str, str] = {}
        for meta, rel in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.split()
            if len(parts) >= 5 and parts[1] == "120000" and parts[4] != "D":
                target = _link_target(self.root / rel)
                if target is not None and _leaves(self.root, rel, target):
                    found[rel] = target
        return found

    def changed_files(self, *, exclude: Iterable[str] = ()) -> list[str]:
        """Paths (relative, ``/``-separated) that differ from base: added, modified or deleted."""
        args = ["diff", "--cached", "--name-only", "-z", "--no-renames", self.base, "--", *_pathspec(exclude)]
        return sorted(p for p in self._staged(*args).stdout.split("\0") if p)

    def reset(self) -> None:
        """Put the working tree back to base (ignored files such as ``.mendloop/`` are kept)."""
        self.git.run("reset", "-q", "--hard", self.base)
        self.git.run("clean", "-ffdq")

    def snapshot(self) -> str:
        """Save the working tree as a git tree object and return its sha; the working tree is unchanged."""
        self._add_all()
        return self.git.run("write-tree").stdout.strip()

    def restore(self, snap: str) -> None:
        """Make the working tree exactly the tree ``snap`` from :meth:`snapshot` (newer files go away)."""
        self._add_all()  # so that files created since the snapshot are known and removed
        self.git.run("read-tree", "-u", "--reset", snap)

    def changed_since(self, snap: str) -> list[str]:
        """Paths that differ between the snapshot ``snap`` and the working tree now."""
        done = self._staged("diff", "--cached", "--name-only", "-z", "--no-renames", snap)
        return sorted(p for p in done.stdout.split("\0") if p)

    def restore_paths(self, snap: str, paths: Iterable[str]) -> None:
        """Put ``paths`` back as they were in the snapshot ``snap``; a path the snapshot lacks is removed."""
        for rel in paths:
            if self.git.ok("cat-file", "-e", f"{snap}:{rel}"):
                self.git.run("checkout", snap, "--", rel)
            else:
                (self.root / rel).unlink(missing_ok=True)

    def apply(self, patch: str) -> None:
        """Apply a ``git diff`` to the working tree, all or nothing, with this workspace's own git directory."""
        self.git.apply(patch)

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
        _extract(self.git, self.base, dest)
        return Workspace._init_scratch(dest)

    def _staged(self, *args: str) -> proc.Completed:
        """Stage everything (new files included) and run ``git ARGS``: the index is ours to use."""
        self._add_all()
        return self.git.run(*args)

    def _add_all(self) -> None:
        """``git add -A``, leaving out files too large for a patch (see :func:`too_large_for_patch`)."""
        big = too_large_for_patch(self.root)
        self.git.run("add", "-A", "--", ".", *(f":(exclude,literal){rel}" for rel in big))


PATCH_FILE_LIMIT = 64 * 1024 * 1024


def too_large_for_patch(root: Path, limit: int = PATCH_FILE_LIMIT) -> list[str]:
    """Files of the scratch tree (tracked, or new and not ignored) larger than ``limit`` bytes.

    Why: such a file is never a repair, and putting it in the index, a diff, the graph state and the checkpoint
    would hold it in memory several times over (a 1 GB file took mendloop to 2 GB). It is left out of every
    snapshot and diff instead: the patch and what ``--resume`` restores go without it. (Sandboxes remove files at
    their own, larger, size limit; this guard holds whatever wrote the file.)
    """
    listed = scratch_git(root).run("ls-files", "-z", "-c", "-o", "--exclude-standard", "--", ".").stdout
    big = []
    for rel in dict.fromkeys(p for p in listed.split("\0") if p):
        try:
            st = os.lstat(root / rel)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            big.append(rel)
    return big


def apply_patch(target: Path, patch: str, *, check_only: bool = False) -> None:
    """Hand the agent's change back: apply a ``git diff`` to the user's directory ``target``, all or nothing.

    When ``target`` is the top of a git repository and the plain apply fails, a 3-way merge is tried (see
    :meth:`tools.git.Git.apply`): the user may have committed nearby changes since the run started. A repository
    *above* ``target`` is never used: git would apply the paths relative to that repository's top.
    """
    target = validate_repo(target)
    git = Git(target, env={"GIT_CEILING_DIRECTORIES": str(target.parent)})
    git.apply(patch, merge=True, check_only=check_only)


def _link_target(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _leaves(root: Path, rel: str, target: str) -> bool:
    """Does the link ``rel -> target`` point outside ``root``: absolute, lexically above it, or once resolved?"""
    if os.path.isabs(target):
        return True
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if lexical == ".." or lexical.startswith("../"):
        return True
    top = root.resolve()
    return not Path(os.path.realpath(root / rel)).is_relative_to(top)


def _scrub_added(diff: str) -> str:
    """Mask secrets in added lines only: context and removed lines are the base's own text and must still match."""
    if not any(secret in diff for secret in known()):
        return diff
    lines = diff.split("\n")
    return "\n".join(scrub(line) if line.startswith("+") and not line.startswith("+++ ") else line for line in lines)


def scratch_git(root: Path) -> Git:
    """git for the scratch tree ``root``: the git directory beside it and its index named on every call."""
    return Git(root, git_dir=git_dir_of(root))


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


def _git_files(repo: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files of the working tree, relative to ``repo``."""
    out = Git(repo).run("ls-files", "-co", "--exclude-standard", "-z", "--", ".").stdout
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
    git = Git(repo)
    commit = git.commit_of(ref)
    if commit is None:
        raise FatalError(f"{ref!r} is not a commit in {repo}")
    _extract(git, commit, dest)


def _extract(git: Git, commit: str, dest: Path) -> None:
    """Write the files of ``commit`` into ``dest`` (``git archive``, then a tar extraction that refuses escapes)."""
    with tempfile.TemporaryDirectory(prefix="mendloop-archive-") as tmp:
        tar_path = Path(tmp) / "base.tar"
        git.run("archive", "--format=tar", "-o", str(tar_path), commit)
        with tarfile.open(tar_path) as tar:
            tar.extractall(dest, filter="tar")
