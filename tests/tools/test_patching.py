"""Behaviour of the patcher beyond the table: path guard, protection, messages, syntax gate, properties."""

from __future__ import annotations

import difflib
import os
import re
import stat
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.edits import CreateFile, DeleteFile, Edit, FencedCode, SearchReplace, UnifiedDiff, WholeFile
from tools.patching import PathRefused, apply_edit, apply_edits, check_syntax, resolve_path
from tools.patching.diffparse import parse_diff

LONG = "".join(f"line_{i} = {i}\n" for i in range(1, 41))


def test_resolve_path_inside_root(tmp_path: Path) -> None:
    assert resolve_path(tmp_path, "pkg/mod.py") == tmp_path.resolve() / "pkg" / "mod.py"
    assert resolve_path(tmp_path, "./pkg/x.py") == tmp_path.resolve() / "pkg" / "x.py"


@pytest.mark.parametrize("rel", ["../x.py", "a/../../x.py", "/etc/passwd", "C:/x.py", "", ".git/hooks/pre-commit"])
def test_resolve_path_refuses(tmp_path: Path, rel: str) -> None:
    with pytest.raises(PathRefused) as info:
        resolve_path(tmp_path, rel)
    assert isinstance(info.value, ValueError)
    assert "Refused" in str(info.value)


def test_symlink_out_of_root_is_refused_and_target_untouched(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("keep\n")
    (root / "link_dir").symlink_to(outside, target_is_directory=True)
    (root / "link_file").symlink_to(secret)
    with pytest.raises(PathRefused, match="symbolic link"):
        resolve_path(root, "link_dir/secret.txt")
    for edit in (
        WholeFile("link_file", "pwned\n"),
        SearchReplace("link_dir/secret.txt", "keep", "pwned"),
        UnifiedDiff("--- a/link_file\n+++ b/link_file\n@@ -1 +1 @@\n-keep\n+pwned\n"),
        DeleteFile("link_file"),
    ):
        outcome = apply_edit(root, edit)
        assert not outcome.ok and "symbolic link" in outcome.message, outcome.message
    assert secret.read_text() == "keep\n"
    assert (root / "link_file").is_symlink()


def test_symlink_inside_root_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("a\n")
    (tmp_path / "alias.txt").symlink_to(tmp_path / "real.txt")
    outcome = apply_edit(tmp_path, SearchReplace("alias.txt", "a", "b"))
    assert outcome.ok, outcome.message
    assert (tmp_path / "real.txt").read_text() == "b\n"


def test_protected_paths_are_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("assert f() == 1\n")
    (tmp_path / "x.py").write_text("def f():\n    return 2\n")
    seen: list[str] = []

    def protected(path: str) -> str | None:
        seen.append(path)
        return "existing tests may not be weakened" if path.startswith("tests/") else None

    refused = apply_edit(tmp_path, SearchReplace("./tests/test_x.py", "== 1", "== 2"), protected=protected)
    assert not refused.ok
    assert refused.message == "Refused to edit tests/test_x.py: existing tests may not be weakened"
    diff = "--- a/tests/test_x.py\n+++ b/tests/test_x.py\n@@ -1 +1 @@\n-assert f() == 1\n+assert True\n"
    assert "may not be weakened" in apply_edit(tmp_path, UnifiedDiff(diff), protected=protected).message
    assert not apply_edit(tmp_path, DeleteFile("tests/test_x.py"), protected=protected).ok
    assert (tmp_path / "tests" / "test_x.py").read_text() == "assert f() == 1\n"
    allowed = apply_edit(tmp_path, SearchReplace("x.py", "return 2", "return 1"), protected=protected)
    assert allowed.ok and allowed.changed == ["x.py"]
    assert seen[0] == "tests/test_x.py" and "x.py" in seen


def test_good_search_replace_reports_line_count_and_numbered_context(tmp_path: Path) -> None:
    (tmp_path / "long.py").write_text(LONG)
    outcome = apply_edit(tmp_path, SearchReplace("long.py", "line_20 = 20\n", "line_20 = 20\nextra = 0\n"))
    assert outcome.ok
    assert "It now has 41 lines" in outcome.message
    shown = [int(m) for m in re.findall(r"^\s*(\d+)\t", outcome.message, re.M)]
    assert shown == list(range(12, 30))
    assert "21\textra = 0" in outcome.message


def test_not_found_message_points_at_closest_lines(tmp_path: Path) -> None:
    (tmp_path / "long.py").write_text(LONG)
    outcome = apply_edit(tmp_path, SearchReplace("long.py", "line_31 = 3l\nline_32 = 32", "x"))
    assert not outcome.ok
    assert "did not appear verbatim in long.py" in outcome.message
    assert "31\tline_31 = 31" in outcome.message and "32\tline_32 = 32" in outcome.message
    assert (tmp_path / "long.py").read_text() == LONG


def test_unrelated_search_says_nothing_similar(tmp_path: Path) -> None:
    (tmp_path / "long.py").write_text(LONG)
    outcome = apply_edit(tmp_path, SearchReplace("long.py", "class Zebra(Protocol):", "x"))
    assert "No similar lines" in outcome.message


def test_edits_apply_in_sequence_and_a_failure_does_not_stop_the_rest(tmp_path: Path) -> None:
    outcomes = apply_edits(
        tmp_path,
        [
            CreateFile("m.py", "A = 1\n"),
            SearchReplace("m.py", "A = 1", "A = 2"),
            SearchReplace("m.py", "B = 1", "B = 2"),
            UnifiedDiff("--- a/m.py\n+++ b/m.py\n@@ -1 +1,2 @@\n A = 2\n+B = 3\n"),
        ],
    )
    assert [o.ok for o in outcomes] == [True, True, False, True]
    assert (tmp_path / "m.py").read_text() == "A = 2\nB = 3\n"


def test_multi_file_diff_is_atomic_per_file_only(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\nz = 1\n")
    text = (
        "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
        "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-y = 1\n+y = 2\n@@ -2 +2 @@\n-nope = 1\n+nope = 2\n"
    )
    outcome = apply_edit(tmp_path, UnifiedDiff(text))
    assert not outcome.ok
    assert outcome.changed == ["a.py"]
    assert (tmp_path / "a.py").read_text() == "x = 2\n"
    assert (tmp_path / "b.py").read_text() == "y = 1\nz = 1\n"
    assert "hunk 1 (@@ -1 +1 @@) applied" in outcome.message
    assert "hunk 2 (@@ -2 +2 @@) FAILED" in outcome.message


def test_bom_and_missing_final_newline_survive_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbfx = 1\r\ny = 2")
    assert apply_edit(tmp_path, SearchReplace("bom.py", "y = 2", "y = 3")).ok
    assert path.read_bytes() == b"\xef\xbb\xbfx = 1\r\ny = 3"


def test_parser_uses_unidiff_for_clean_diffs_and_falls_back_for_sloppy_ones() -> None:
    clean = "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
    files, parser = parse_diff(clean)
    assert parser == "unidiff"
    assert [(x.op, x.text) for x in files[0].hunks[0].lines] == [(" ", "a"), ("-", "b"), ("+", "c")]
    short_count = clean.replace("-1,2 +1,2", "-1,1 +1,1")  # unidiff would silently drop "-b" and "+c"
    files, parser = parse_diff(short_count)
    assert parser == "tolerant"
    assert [(x.op, x.text) for x in files[0].hunks[0].lines] == [(" ", "a"), ("-", "b"), ("+", "c")]
    files, parser = parse_diff("Sure!\n```diff\n--- x.py\n+++ x.py\n@@ @@\n a\n-b\n+c\n```\nDone.")
    assert parser == "tolerant" and files[0].old_path == "x.py" and files[0].hunks[0].old_start is None


def test_check_syntax_reports_file_line_col_and_the_line(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text("x = 1\n")
    (tmp_path / "bad.py").write_text("def f(:\n    return 1\n")
    (tmp_path / "notes.txt").write_text("def f(:\n")
    (tmp_path / "latin.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    problems = check_syntax(tmp_path, ["good.py", "bad.py", "notes.txt", "missing.py", "latin.py", "../up.py"])
    assert len(problems) == 3
    assert problems[0].startswith("bad.py:1:7: ")
    assert "def f(:" in problems[0]
    assert "latin.py" in problems[1] and "UTF-8" in problems[1]
    assert "Refused" in problems[2]
    assert check_syntax(tmp_path, ["good.py"]) == []


def test_outcome_never_raises_on_garbage(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for edit in (
        UnifiedDiff(""),
        UnifiedDiff("@@ -1 +1 @@\n-a\n+b\n"),
        UnifiedDiff("--- a/d\n+++ b/d\n@@ -1 +1 @@\n-a\n+b\n"),
        SearchReplace("d", "a", "b"),
        WholeFile("d", "x"),
        DeleteFile("d"),
        SearchReplace("\x00", "a", "b"),
    ):
        outcome = apply_edit(tmp_path, edit)
        assert not outcome.ok and outcome.message


# --- fenced code (tools/patching/definitions.py) beyond the table ---------------------------------------------

TWO = "def mean(values):\n    return sum(values) / len(values)\n\n\ndef median(values):\n    return sorted(values)[0]\n"
MEDIAN_FIX = "def median(values):\n    return sorted(values)[len(values) // 2]\n"


def test_fenced_buggy_original_then_the_fix_the_fix_wins(tmp_path: Path) -> None:
    (tmp_path / "stats.py").write_text(TWO)
    buggy = TWO[TWO.index("def median") :]
    first, second = apply_edits(tmp_path, [FencedCode(buggy), FencedCode(MEDIAN_FIX)])
    assert not first.ok and "already has" in first.message and first.changed == []
    assert second.ok and second.changed == ["stats.py"]
    assert (tmp_path / "stats.py").read_text() == TWO.replace(buggy, MEDIAN_FIX)


def test_fenced_code_after_a_path_goes_into_that_file_and_keeps_the_rest(tmp_path: Path) -> None:
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text(TWO)
    outcome = apply_edit(tmp_path, FencedCode(MEDIAN_FIX, "./b.py"))
    assert outcome.ok and outcome.changed == ["b.py"], outcome.message
    assert (tmp_path / "b.py").read_text() == TWO.replace(TWO[TWO.index("def median") :], MEDIAN_FIX)
    assert (tmp_path / "a.py").read_text() == TWO


def test_fenced_code_after_a_new_path_creates_the_file(tmp_path: Path) -> None:
    outcome = apply_edit(tmp_path, FencedCode(MEDIAN_FIX, "pkg/new.py"))
    assert outcome.ok and outcome.changed == ["pkg/new.py"], outcome.message
    assert (tmp_path / "pkg" / "new.py").read_text() == MEDIAN_FIX


def test_fenced_code_after_a_protected_or_escaping_path_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "stats.py").write_text(TWO)
    (outside / "secret.py").write_text(TWO)
    (root / "link.py").symlink_to(outside / "secret.py")

    def protected(path: str) -> str | None:
        return "it is frozen for this run" if path == "stats.py" else None

    refused = apply_edit(root, FencedCode(MEDIAN_FIX, "stats.py"), protected=protected)
    assert not refused.ok and refused.message == "Refused to edit stats.py: it is frozen for this run"
    escaped = apply_edit(root, FencedCode(MEDIAN_FIX, "link.py"))
    assert not escaped.ok and "symbolic link" in escaped.message
    assert not apply_edit(root, FencedCode(MEDIAN_FIX, "../outside/secret.py")).ok
    assert (root / "stats.py").read_text() == TWO and (outside / "secret.py").read_text() == TWO


FUNCTION_BODIES = st.lists(st.integers(0, 99), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(FUNCTION_BODIES, st.data(), st.sampled_from(["", "    ", "\t"]), st.sampled_from(["\n", "\r\n"]))
def test_fenced_function_changes_only_its_own_lines(
    values: list[int], data: st.DataObject, margin: str, eol: str
) -> None:
    """Whichever function of a module is given back (at any margin), only its lines change, byte for byte."""
    functions = [f"def f{i}(x):\n    # f{i}\n    return x + {v}\n" for i, v in enumerate(values)]
    chosen = data.draw(st.integers(0, len(values) - 1))
    fixed = functions[chosen].replace(f"x + {values[chosen]}", "x * 2")
    given_back = "".join(margin + line + "\n" if line else "\n" for line in fixed.splitlines())
    before = "\n\n".join(functions).replace("\n", eol)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "mod.py").write_bytes(before.encode())
        (root / "other.py").write_text("Y = 2\n")
        outcome = apply_edit(root, FencedCode(given_back))
        assert outcome.ok, outcome.message
        expected = before.replace(functions[chosen].replace("\n", eol), fixed.replace("\n", eol))
        assert (root / "mod.py").read_bytes() == expected.encode()


PYTHONISH = st.lists(
    st.sampled_from(
        [
            "def f(x):",
            "    return x",
            "class C:",
            "    def f(self):",
            "        pass",
            "@decorator",
            "import os",
            "from m import f",
            "if __name__ == '__main__':",
            "    f(1)",
            "print(f(2))",
            "F = 3",
            '    """doc',
            '"""',
            "",
            "\tpass",
            "async def f():",
            "class C: pass",
            "class C(B): x = 1",
            "def f(x): return x",
            "    x: int = 0",
            "    @property",
            "    @f.setter",
        ]
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    PYTHONISH,
    st.sampled_from(
        [
            "def f(x):\n    return 1\n",
            "class C:\n    def f(self):\n        pass\n",
            "F = 1\n",
            "class C: pass\n",
            "class C:\n    @property\n    def f(self):\n        return 1\n",
            "def f(x): return 2\n\n\nclass C(B):\n\tx = 1\n",
        ]
    ),
)
def test_arbitrary_fenced_code_gives_an_outcome_not_a_crash(lines: list[str], start: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m.py").write_text(start)
        outcome = apply_edit(Path(tmp), FencedCode("\n".join(lines) + "\n"))
        assert outcome.message
        assert "Internal error" not in outcome.message, outcome.message
        if outcome.ok:
            compile((Path(tmp) / "m.py").read_text(), "m.py", "exec")


# --- properties ---------------------------------------------------------------------------------------------

LINES = st.lists(st.sampled_from(["a", "b", "c", "", "    x = 1", "\treturn y", "# note"]), max_size=25)


def make_diff(a: list[str], b: list[str]) -> str:
    body = "".join(difflib.unified_diff([x + "\n" for x in a], [x + "\n" for x in b], "a/f.txt", "b/f.txt"))
    return body


def run_diff(a: list[str], text: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.txt"
        path.write_text("".join(x + "\n" for x in a))
        outcome = apply_edit(Path(tmp), UnifiedDiff(text))
        assert outcome.ok, outcome.message + "\n" + text
        return path.read_text()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES, LINES)
def test_difflib_diff_applies_exactly(a: list[str], b: list[str]) -> None:
    text = make_diff(a, b)
    if not text:
        return
    assert run_diff(a, text) == "".join(x + "\n" for x in b)


@st.composite
def unique_edit(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    a = [f"row {i}" for i in range(draw(st.integers(1, 40)))]
    b = list(a)
    for n in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(b)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert" or not b:
            b.insert(pos, f"new {n}")
        elif action == "delete":
            del b[min(pos, len(b) - 1)]
        else:
            b[min(pos, len(b) - 1)] = f"changed {n}"
    return a, b


@settings(max_examples=60, deadline=None)
@given(unique_edit(), st.integers(-15, 15))
def test_shifted_line_numbers_still_apply(pair: tuple[list[str], list[str]], shift: int) -> None:
    a, b = pair
    text = make_diff(a, b)
    if not text:
        return

    def move(m: re.Match[str]) -> str:
        old, new = (max(int(m.group(i)) + shift, 1) if int(m.group(i)) else 0 for i in (1, 3))
        return f"@@ -{old}{m.group(2) or ''} +{new}{m.group(4) or ''} @@"

    shifted = re.sub(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@", move, text, flags=re.M)
    assert run_diff(a, shifted) == "".join(x + "\n" for x in b)


@settings(max_examples=40, deadline=None)
@given(unique_edit())
def test_hunks_in_reverse_order_still_apply(pair: tuple[list[str], list[str]]) -> None:
    a, b = pair
    text = make_diff(a, b)
    if not text:
        return
    head, *hunks = re.split(r"(?m)^(?=@@ )", text)
    assert run_diff(a, head + "".join(reversed(hunks))) == "".join(x + "\n" for x in b)


def test_edits_keep_the_file_mode_and_new_files_follow_the_umask(tmp_path: Path) -> None:
    """git records the executable bit: an edit that rewrote a script as a plain file would put a mode change in the
    patch, and a new file must get the mode any other tool would give it."""
    script = tmp_path / "run.sh"
    script.write_text("echo a\n")
    script.chmod(0o755)
    edits: list[Edit] = [
        SearchReplace("run.sh", "echo a", "echo b"),
        WholeFile("run.sh", "echo c\n"),
        UnifiedDiff("--- a/run.sh\n+++ b/run.sh\n@@ -1 +1 @@\n-echo c\n+echo d\n"),
    ]
    for edit in edits:
        assert apply_edit(tmp_path, edit).ok
        assert stat.S_IMODE(script.stat().st_mode) == 0o755, edit
    assert script.read_text() == "echo d\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert apply_edit(tmp_path, CreateFile("n.txt", "x")).ok
    assert stat.S_IMODE((tmp_path / "n.txt").stat().st_mode) == 0o666 & ~umask


DIFFISH = st.lists(
    st.sampled_from(
        [
            "--- a/f.txt",
            "+++ b/f.txt",
            "--- /dev/null",
            "+++ /dev/null",
            "@@ -1,2 +1,2 @@",
            "@@ @@",
            "@@ -0,0 +1 @@",
            " a",
            "-a",
            "+a",
            " b",
            "-b",
            "+b",
            "",
            "b",
            "\\ No newline at end of file",
            "```diff",
            "```",
            "diff --git a/f.txt b/f.txt",
            "Binary files a/f.txt and b/f.txt differ",
            "rename to g.txt",
            "\tx",
        ]
    ),
    max_size=14,
)


@settings(max_examples=150, deadline=None)
@given(DIFFISH, st.sampled_from(["", "a\nb\n", "a\nb", "b\na\nb\n"]))
def test_arbitrary_diffish_text_gives_an_outcome_not_a_crash(lines: list[str], start: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "f.txt").write_text(start)
        outcome = apply_edit(Path(tmp), UnifiedDiff("\n".join(lines)))
        assert outcome.message
        assert "Internal error" not in outcome.message, outcome.message


@settings(max_examples=100, deadline=None)
@given(st.text("ab \n\t", max_size=12), st.text("ab \n\t", max_size=12), st.sampled_from(["a\nb\n", " a\n\tb"]))
def test_arbitrary_search_replace_gives_an_outcome_not_a_crash(search: str, replace: str, start: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "f.txt").write_text(start)
        outcome = apply_edit(Path(tmp), SearchReplace("f.txt", search, replace))
        assert "Internal error" not in outcome.message, outcome.message


def test_failing_hunk_on_a_big_file_answers_quickly(tmp_path: Path) -> None:
    """The "closest lines" search once took half a minute on 10,000 similar lines; keep it quick."""
    (tmp_path / "big.py").write_text("".join(f"    value_{i} = compute({i})\n" for i in range(10000)))
    body = "".join(
        f"     value_{5000 + g * 3} = compute({5000 + g * 3})\n-    nope_{g}\n+    yes_{g}\n" for g in range(4)
    )
    started = time.monotonic()
    outcome = apply_edit(tmp_path, UnifiedDiff("--- a/big.py\n+++ b/big.py\n@@ -5000,7 +5000,7 @@\n" + body))
    assert time.monotonic() - started < 10
    assert not outcome.ok and "5001\t    value_5000 = compute(5000)" in outcome.message
