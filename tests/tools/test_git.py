"""tools.git: real git in temp directories, for user trees and scratch trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import proc
from tools.git import Git, PatchError

PATCH = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-1\n+2\n"


def _repo(path: Path) -> Git:
    path.mkdir()
    git = Git(path)
    git.run("init", "-q")
    (path / "a.txt").write_text("1\n")
    git.run("add", "a.txt")
    git.run("commit", "-q", "-m", "first")
    return git


def test_git_message_hides_config_plumbing(tmp_path: Path) -> None:
    with pytest.raises(proc.CalledProcessError) as info:
        Git(tmp_path).run("apply", "--check", "missing.patch")
    assert info.value.message.startswith("command `git apply --check missing.patch` failed (exit ")


def test_git_commit_works_without_configured_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "none"))
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    git = _repo(tmp_path / "repo")
    assert git.run("log", "-1", "--format=%an <%ae>").stdout.strip() == "mendloop <mendloop@localhost>"
    # A configured identity wins over the default.
    git.run("config", "user.name", "Ada")
    git.run("config", "user.email", "ada@example.org")
    git.run("commit", "-q", "--allow-empty", "-m", "second")
    assert git.run("log", "-1", "--format=%an <%ae>").stdout.strip() == "Ada <ada@example.org>"


def test_git_output_is_unquoted_for_unicode_paths(tmp_path: Path) -> None:
    Git(tmp_path).run("init", "-q")
    (tmp_path / "naïve file.py").write_text("x = 1\n")
    assert Git(tmp_path).run("status", "--porcelain").stdout.strip() == '?? "naïve file.py"'


def test_commit_of_resolves_refs_and_says_none_for_others(tmp_path: Path) -> None:
    git = _repo(tmp_path / "repo")
    head = git.run("rev-parse", "HEAD").stdout.strip()
    assert git.commit_of("HEAD") == head and git.commit_of(head[:8]) == head
    assert git.commit_of("no-such-branch") is None
    assert git.is_work_tree() and not Git(tmp_path).is_work_tree()


def test_apply_with_index_stages_exactly_the_patch(tmp_path: Path) -> None:
    git = _repo(tmp_path / "repo")
    git.apply(PATCH, index=True)
    assert (git.tree / "a.txt").read_text() == "2\n"
    assert git.run("diff", "--cached", "--name-only").stdout.split() == ["a.txt"]
    assert git.run("diff", "--name-only").stdout == ""  # nothing left unstaged


def test_apply_that_fails_says_why_and_writes_nothing(tmp_path: Path) -> None:
    git = _repo(tmp_path / "repo")
    (git.tree / "a.txt").write_text("changed\n")
    two_files = PATCH + "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+new\n"
    with pytest.raises(PatchError, match=r"^the patch does not apply to .*repo: patch failed: a\.txt:1"):
        git.apply(two_files)
    assert not (git.tree / "new.txt").exists() and (git.tree / "a.txt").read_text() == "changed\n"
    git.apply("")  # an empty patch is a no-op


def test_a_scratch_tree_uses_its_own_git_dir_and_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from inside a git hook, git exports the user's GIT_INDEX_FILE; the scratch tree must keep its own."""
    tree, git_dir = tmp_path / "tree", tmp_path / ".tree.git"
    tree.mkdir()
    scratch = Git(tree, git_dir=git_dir)
    scratch.run("init", "-q")
    (tree / "a.txt").write_text("1\n")
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "users-index"))
    scratch.run("add", "a.txt")
    assert (git_dir / "index").is_file() and not (tmp_path / "users-index").exists()
    assert not (tree / ".git").exists()
    scratch.run("commit", "-q", "-m", "base")
    scratch.apply(PATCH)
    assert (tree / "a.txt").read_text() == "2\n"
