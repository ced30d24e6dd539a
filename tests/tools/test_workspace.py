"""tools.workspace: real git repos in temp directories, no mocks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tools import proc
from tools.errors import FatalError
from tools.git import Git
from tools.workspace import Workspace, apply_patch, validate_repo


def git(repo: Path, *args: str) -> str:
    return Git(repo).run(*args).stdout


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q")
    write(path, files)
    git(path, "add", "-A")
    git(path, "commit", "-q", "--no-verify", "-m", "init")
    return path


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def tree(root: Path) -> dict[str, str]:
    """Every file under root except .git, as text (symlinks as '-> target')."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            out[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else proc.decode(path.read_bytes())
    return out


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "my repo",
        {"pkg/mod.py": "def f():\n    return 1\n", "README.md": "hi\n", ".gitignore": "build/\n*.log\n"},
    )


def test_validate_repo(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match=r"^repository .*nope does not exist$"):
        validate_repo(tmp_path / "nope")
    (tmp_path / "f").write_text("")
    with pytest.raises(FatalError, match=r"is not a directory$"):
        validate_repo(tmp_path / "f")
    assert validate_repo(tmp_path) == tmp_path.resolve()


def test_create_copies_working_tree_and_diff_holds_only_agent_changes(repo: Path, tmp_path: Path) -> None:
    # The user's uncommitted state: a modified file, a new untracked file, a deleted one, ignored junk.
    write(repo, {"pkg/mod.py": "def f():\n    return 2\n", "new ü file.txt": "new\n", "x.log": "junk\n"})
    write(repo, {"build/out.txt": "generated\n"})
    (repo / "README.md").unlink()
    os.symlink("pkg/mod.py", repo / "link.py")
    nested = repo / "runs" / "old" / "workspace"  # an untracked nested repo, e.g. an earlier run's scratch
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    write(nested, {"stale.py": "x\n"})
    user_status = git(repo, "status", "--porcelain")

    ws = Workspace.create(repo, tmp_path / "ws")
    assert tree(ws.root) == {
        ".gitignore": "build/\n*.log\n",
        "pkg/mod.py": "def f():\n    return 2\n",
        "new ü file.txt": "new\n",
        "link.py": "-> pkg/mod.py",
    }
    assert ws.diff() == ""
    assert ws.changed_files() == []
    assert len(ws.base) == 40

    (ws.root / "pkg/mod.py").write_text("def f():\n    return 3\n")
    diff = ws.diff()
    assert diff.startswith("diff --git a/pkg/mod.py b/pkg/mod.py\n")
    assert "-    return 2\n+    return 3\n" in diff
    assert diff.endswith("\n")
    # The user's tree and index are untouched.
    assert git(repo, "status", "--porcelain") == user_status
    assert (repo / "pkg/mod.py").read_text() == "def f():\n    return 2\n"


def test_diff_covers_new_deleted_binary_and_excludes_test_artifacts(repo: Path, tmp_path: Path) -> None:
    ws = Workspace.create(repo, tmp_path / "ws")
    (ws.root / "README.md").unlink()
    write(ws.root, {"sp ace/ñew.py": "x = 1\n", "tests/test_issue_1.py": "def test(): pass\n"})
    (ws.root / "img.bin").write_bytes(b"\x00\x01\x02binary")
    # Things running tests creates never show up.
    write(ws.root, {".mendloop/junit.xml": "<x/>", "pkg/__pycache__/mod.cpython-311.pyc": "c", "a.pyc": "c"})
    write(ws.root, {".pytest_cache/v": "1", ".hypothesis/db": "1"})

    assert ws.changed_files() == ["README.md", "img.bin", "sp ace/ñew.py", "tests/test_issue_1.py"]
    diff = ws.diff()
    assert "diff --git a/README.md b/README.md\ndeleted file mode 100644\n" in diff
    assert "diff --git a/sp ace/ñew.py b/sp ace/ñew.py\nnew file mode 100644\n" in diff
    assert "GIT binary patch" in diff
    assert "Binary files /dev/null and b/img.bin differ" in ws.diff(binary=False)
    assert ".mendloop" not in diff and "pyc" not in diff and "hypothesis" not in diff

    excluded = ws.diff(exclude=["test_issue_*.py"])
    assert "test_issue_1" not in excluded and "ñew.py" in excluded
    assert "test_issue_1" not in ws.diff(exclude=["tests/"])
    assert "test_issue_1" in ws.diff(exclude=["/test_issue_*.py"])  # anchored at the top: no match
    assert ws.changed_files(exclude=["*.bin", "sp ace/"]) == ["README.md", "tests/test_issue_1.py"]


def test_diff_reapplies_to_a_pristine_copy(repo: Path, tmp_path: Path) -> None:
    ws = Workspace.create(repo, tmp_path / "ws")
    (ws.root / "pkg/mod.py").write_text("def f():\n    return 42\n")
    (ws.root / "README.md").unlink()
    write(ws.root, {"docs/ü.md": "doc\n"})
    (ws.root / "data.bin").write_bytes(bytes(range(256)))
    os.chmod(ws.root / "pkg/mod.py", 0o755)
    patch = ws.diff()

    pristine = Workspace.create(repo, tmp_path / "pristine")
    apply_patch(pristine.root, patch)
    assert tree(pristine.root) == tree(ws.root)
    assert (pristine.root / "data.bin").read_bytes() == bytes(range(256))
    assert os.access(pristine.root / "pkg/mod.py", os.X_OK)
    assert pristine.diff() == patch


def test_reset_and_snapshot_restore(repo: Path, tmp_path: Path) -> None:
    ws = Workspace.create(repo, tmp_path / "ws")
    original = tree(ws.root)
    (ws.root / "pkg/mod.py").write_text("one\n")
    write(ws.root, {"added.py": "a\n"})
    snap = ws.snapshot()
    state_one = tree(ws.root)
    assert ws.diff()  # snapshot does not change what the diff shows

    (ws.root / "pkg/mod.py").write_text("two\n")
    (ws.root / "added.py").unlink()
    write(ws.root, {"later/other.py": "b\n"})
    snap_two = ws.snapshot()

    ws.restore(snap)
    assert tree(ws.root) == state_one
    ws.restore(snap_two)
    assert tree(ws.root)["pkg/mod.py"] == "two\n" and "added.py" not in tree(ws.root)

    write(ws.root, {".mendloop/keep.xml": "x"})
    ws.reset()
    assert tree(ws.root) == original | {".mendloop/keep.xml": "x"}
    assert ws.diff() == ""


def test_open_reattaches_to_the_same_baseline(repo: Path, tmp_path: Path) -> None:
    ws = Workspace.create(repo, tmp_path / "ws")
    (ws.root / "README.md").write_text("changed\n")
    again = Workspace.open(tmp_path / "ws")
    assert again.base == ws.base
    assert again.diff() == ws.diff() != ""
    with pytest.raises(FatalError, match="not a mendloop workspace"):
        Workspace.open(tmp_path / "missing")
    plain = make_repo(tmp_path / "plain", {"a": "a\n"})  # a git repo, but not one of ours
    with pytest.raises(FatalError, match="not a mendloop workspace"):
        Workspace.open(plain)


def test_create_from_base_ref_exports_that_commit(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    write(repo, {"pkg/mod.py": "later\n"})
    git(repo, "commit", "-q", "-am", "later")
    write(repo, {"dirty.txt": "uncommitted\n"})
    ws = Workspace.create(repo, tmp_path / "ws", base_ref=first)
    assert tree(ws.root) == {
        ".gitignore": "build/\n*.log\n",
        "pkg/mod.py": "def f():\n    return 1\n",
        "README.md": "hi\n",
    }
    with pytest.raises(FatalError, match="is not a commit"):
        Workspace.create(repo, tmp_path / "ws2", base_ref="no-such-ref")


def test_create_from_plain_directory_skips_caches(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"a.py": "a\n", ".venv/lib.py": "v\n", "node_modules/x.js": "x\n", "sub/__pycache__/c.pyc": "c"})
    write(src, {".git/HEAD": "junk\n", "sub/b.py": "b\n", ".mypy_cache/m": "m"})
    ws = Workspace.create(src, tmp_path / "ws")
    assert tree(ws.root) == {"a.py": "a\n", "sub/b.py": "b\n"}
    assert ws.diff() == ""


def test_empty_repo_still_gets_a_base(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    ws = Workspace.create(empty, tmp_path / "ws")
    assert len(ws.base) == 40 and ws.diff() == ""
    write(ws.root, {"first.py": "print(1)\n"})
    assert ws.changed_files() == ["first.py"]


def test_create_refuses_non_empty_destination(repo: Path, tmp_path: Path) -> None:
    write(tmp_path / "ws", {"x": "x"})
    with pytest.raises(FatalError, match="already exists"):
        Workspace.create(repo, tmp_path / "ws")


def test_apply_patch_is_all_or_nothing(repo: Path, tmp_path: Path) -> None:
    ws = Workspace.create(repo, tmp_path / "ws")
    (ws.root / "pkg/mod.py").write_text("def f():\n    return 5\n")
    (ws.root / "README.md").write_text("bye\n")
    patch = ws.diff()

    target = Workspace.create(repo, tmp_path / "target").root
    (target / "README.md").write_text("someone else changed this\n")
    before = tree(target)
    with pytest.raises(FatalError, match=r"^the patch does not apply to .*README.md"):
        apply_patch(target, patch)
    assert tree(target) == before  # pkg/mod.py was not patched either

    fresh = Workspace.create(repo, tmp_path / "fresh").root
    apply_patch(fresh, patch, check_only=True)
    assert tree(fresh)["pkg/mod.py"] == "def f():\n    return 1\n"
    apply_patch(fresh, patch)
    assert tree(fresh)["pkg/mod.py"] == "def f():\n    return 5\n"
    apply_patch(fresh, "")  # an empty patch is a no-op


def test_apply_patch_three_way_into_users_repo(tmp_path: Path) -> None:
    lines = "".join(f"line {i}\n" for i in range(20))
    user = make_repo(tmp_path / "user", {"f.txt": lines})
    ws = Workspace.create(user, tmp_path / "ws")
    (ws.root / "f.txt").write_text(lines.replace("line 2\n", "line two\n"))
    patch = ws.diff()

    # The user committed a nearby change meanwhile: plain apply fails (context), 3-way merges it cleanly.
    (user / "f.txt").write_text(lines.replace("line 4\n", "line four\n").replace("line 0\n", "line zero\n"))
    git(user, "commit", "-q", "-am", "meanwhile")
    index_before = git(user, "ls-files", "-s")
    apply_patch(user, patch)
    merged = (user / "f.txt").read_text()
    assert "line two\n" in merged and "line four\n" in merged and "line zero\n" in merged
    assert git(user, "ls-files", "-s") == index_before  # the user's index is left alone

    # A real conflict: refused, nothing written, no conflict markers.
    ws.reset()
    (ws.root / "f.txt").write_text(lines.replace("line 9\n", "line nine\n"))
    conflicting = ws.diff()
    (user / "f.txt").write_text(merged.replace("line 9\n", "line NINE\n"))
    git(user, "commit", "-q", "-am", "conflict")
    before = (user / "f.txt").read_text()
    with pytest.raises(FatalError, match="does not apply"):
        apply_patch(user, conflicting)
    assert (user / "f.txt").read_text() == before
    assert git(user, "status", "--porcelain") == ""


def test_apply_patch_to_plain_directory_inside_another_repo(repo: Path, tmp_path: Path) -> None:
    ws = Workspace.create(repo, tmp_path / "ws")
    (ws.root / "pkg/mod.py").write_text("patched\n")
    patch = ws.diff()
    # A plain copy living *inside* a git repo: git must not apply relative to the outer repo's top.
    outer = make_repo(tmp_path / "outer", {"keep.txt": "k\n"})
    inner = outer / "vendor" / "copy"
    write(inner, {"pkg/mod.py": "def f():\n    return 1\n"})
    apply_patch(inner, patch)
    assert (inner / "pkg/mod.py").read_text() == "patched\n"


def test_destination_inside_a_plain_source_is_not_copied_into_itself(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"a.py": "a\n"})
    ws = Workspace.create(src, src / "runs" / "ws")
    assert tree(ws.root) == {"a.py": "a\n"}


def test_create_from_a_subdirectory_of_a_repo(tmp_path: Path) -> None:
    mono = make_repo(tmp_path / "mono", {"pkg/a.py": "a\n", "other/b.py": "b\n", ".gitignore": "*.tmp\n"})
    write(mono, {"pkg/new.py": "n\n", "pkg/x.tmp": "ignored\n"})
    ws = Workspace.create(mono / "pkg", tmp_path / "ws")
    assert tree(ws.root) == {"a.py": "a\n", "new.py": "n\n"}
    head = Workspace.create(mono / "pkg", tmp_path / "ws-head", base_ref="HEAD")
    assert tree(head.root) == {"a.py": "a\n"}


def _plant_hostile_git_dir(path: Path, canary: Path) -> None:
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True, capture_output=True)
    with (path / "config").open("a") as fh:
        fh.write(f"[core]\n\tbare = false\n\tfsmonitor = touch {canary}\n")


@pytest.mark.parametrize("planted", ["dir", "gitfile"])
def test_a_git_config_planted_in_the_tree_never_runs_on_the_host(repo: Path, tmp_path: Path, planted: str) -> None:
    """Sandboxed code can write anything in the tree; the host's git must not obey a config it planted there."""
    ws = Workspace.create(repo, tmp_path / "ws")
    canary = tmp_path / "PWNED"
    if planted == "dir":  # a .git directory in the tree
        _plant_hostile_git_dir(ws.root / ".git", canary)
    else:  # a .git file pointing at a git directory the attacker controls
        _plant_hostile_git_dir(ws.root / "evil.git", canary)
        (ws.root / ".git").write_text(f"gitdir: {ws.root / 'evil.git'}\n")
    (ws.root / "README.md").write_text("changed\n")
    # The plant works against a git that finds its repository from the tree (the design this test guards against):
    subprocess.run(["git", "status"], cwd=ws.root, capture_output=True)
    assert canary.exists()
    canary.unlink()
    patch = ws.diff()
    snap = ws.snapshot()
    ws.reset()
    ws.apply(patch)
    ws.restore(snap)
    assert not canary.exists(), "a git config planted in the workspace ran a command on the host"
    assert "+changed" in patch and ".git" not in ws.changed_files()


def test_a_hook_environment_does_not_leak_into_the_workspace(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git runs hooks with GIT_INDEX_FILE=.git/index (relative, for the user's repo); the workspace keeps its own."""
    monkeypatch.setenv("GIT_INDEX_FILE", ".git/index")
    ws = Workspace.create(repo, tmp_path / "ws")
    (ws.root / "README.md").write_text("changed\n")
    assert "+changed" in ws.diff()
    assert not (ws.root / ".git").exists()
