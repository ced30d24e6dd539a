"""tools.tree: the one walk over an untrusted tree - links are yielded, never entered; skipped folders stay shut."""

from __future__ import annotations

import os
from pathlib import Path

from tools.tree import walk


def test_walk_yields_files_and_links_and_never_enters_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "secret.txt").write_text("host file\n")
    root = tmp_path / "repo"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "sub" / "mod.py").write_text("x = 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "top.txt").write_text("t\n")
    (root / "up").symlink_to(outside, target_is_directory=True)
    (root / "pkg" / "leak.txt").symlink_to(outside / "deep" / "secret.txt")
    os.mkfifo(root / "pipe")

    found = dict(walk(root, {".git"}.__contains__))

    assert sorted(found) == ["pipe", "pkg/leak.txt", "pkg/sub/mod.py", "top.txt", "up"]
    assert found["up"].is_symlink() and found["pkg/leak.txt"].is_symlink()  # yielded as links, not followed
    assert not any("secret" in rel for rel in found)
    assert ".git/HEAD" in dict(walk(root))  # nothing is skipped unless asked


def test_walk_passes_over_what_it_cannot_read(tmp_path: Path) -> None:
    assert list(walk(tmp_path / "gone")) == []
