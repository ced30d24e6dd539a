"""The table: edits as models really write them, each with the exact content it was meant to produce.

Why a table: every row is a sloppy-but-meant edit seen from real models; the patcher must turn each into
exactly the intended file, and must refuse (leaving files untouched) the ones that cannot be placed surely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tools.edits import CreateFile, DeleteFile, Edit, FencedCode, SearchReplace, UnifiedDiff, WholeFile
from tools.patching import apply_edit
from tools.patching.definitions import is_test_file

Protected = Callable[[str], str | None]

SRC = """import os


def add(a, b):
    return a + b


def sub(a, b):
    return a - b


class Calc:
    def __init__(self):
        self.total = 0

    def push(self, x):
        self.total += x
        return self.total
"""


def src_with(old: str, new: str) -> str:
    assert SRC.count(old) == 1, old
    return SRC.replace(old, new)


TABS = "def f(x):\n\tif x:\n\t\treturn 1\n\treturn 0\n"
DUP = "def a():\n    x = 1\n    return x\n\n\ndef b():\n    x = 1\n    return x\n"


# --- fixtures for fenced code with no path: the fixed function as a small model gives it back -----------------

STATS = '''"""Descriptive statistics."""


def mean(values):
    return sum(values) / len(values)


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle]
'''
MEDIAN_FIXED = """def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2 == 0:
        return (ordered[middle - 1] + ordered[middle]) / 2
    return ordered[middle]
"""
MEDIAN_BUGGY = STATS[STATS.index("def median") :]
STATS_FIXED = STATS.replace(MEDIAN_BUGGY, MEDIAN_FIXED)
PUSH_TWICE = "    def push(self, x):\n        self.total += 2 * x\n        return self.total\n"
SRC_PUSH_TWICE = SRC.replace("        self.total += x\n", "        self.total += 2 * x\n")
DECORATED = """import functools


@functools.lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class Shape:
    @property
    def area(self):
        return self._area

    @area.setter
    def area(self, value):
        raise AttributeError("read-only")

    @staticmethod
    def unit():
        return 1
"""
DECORATED_DOC = DECORATED.replace("def unit():\n", 'def unit():\n        """One."""\n')
ASYNC = """import asyncio


async def fetch(x):
    await asyncio.sleep(0)
    return x


def run():
    return asyncio.run(fetch(1))
"""
GCD = '''"""Greatest common divisor."""

LIMIT = 100


def gcd(a, b):
    if b == 0:
        return a
    return gcd(a % b, b)


def lcm(a, b):
    return a * b // gcd(a, b)
'''
GCD_FIXED = GCD.replace("gcd(a % b, b)", "gcd(b, a % b)")
MAIN = '\n\nif __name__ == "__main__":\n    print(gcd(12, 18))\n'
GCD_TEST = "from gcd import gcd\n\n\ndef test_gcd():\n    assert gcd(12, 18) == 6\n"
DOCUMENTED = '''"""Stats."""


def mean(values):
    """Arithmetic mean."""
    return sum(values) / len(values)


def median(values):
    """The middle value."""
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
'''
HUMANEVAL = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    """
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = elem - elem2
                if distance < threshold:
                    return True

    return False
'''
HUMANEVAL_ANSWER = """from typing import List

def has_close_elements(numbers: List[float], threshold: float) -> bool:
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False


def check(has_close_elements):
    assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True

check(has_close_elements)
"""
NESTED = """def outer(xs):
    def key(x):
        return x

    return sorted(xs, key=key)


def other():
    return 1
"""
TAB_CLASS = (
    "class Box:\n\tdef get(self):\n\t\tif self:\n\t\t\treturn 1\n\t\treturn 0\n\n\tdef put(self, x):\n\t\tpass\n"
)
QUERY = 'class Store:\n    def query(self):\n        return """\nSELECT 1\n"""\n'
TWO_CLASSES = (
    "class A:\n    def __init__(self):\n        self.x = 1\n\n\nclass B:\n    def __init__(self):\n        self.x = 2\n"
)
HELPER_A = "def helper(x):\n    return x\n"


def protect_tests(rel: str) -> str | None:
    """The loop's rule (agent/nodes/common.py ``protection``) for a repository's tests."""
    return f"{rel} is one of the repository's tests, which are protected" if is_test_file(rel) else None


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, bytes]
    edit: Edit
    expected: dict[str, bytes | None] = field(default_factory=dict)
    protected: Protected | None = None
    hints: tuple[str, ...] = ()


def b(text: str) -> bytes:
    return text.encode("utf-8")


def diff(path: str, body: str, *, old: str | None = None) -> str:
    return f"--- a/{old or path}\n+++ b/{path}\n{body}"


CASES: list[Case] = [
    Case(
        "well_formed_git_diff",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            "diff --git a/calc.py b/calc.py\nindex 83db48f..bf269f4 100644\n"
            + diff(
                "calc.py",
                "@@ -8,2 +8,2 @@ def add(a, b):\n def sub(a, b):\n-    return a - b\n+    return b - a\n",
            )
        ),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "wrong_line_numbers",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -40,3 +40,3 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n \n")),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "no_line_numbers_in_header",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ @@\n def add(a, b):\n-    return a + b\n+    return a + b + 0\n")),
        {"calc.py": b(src_with("return a + b", "return a + b + 0"))},
    ),
    Case(
        "missing_context_only_changed_lines",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -9 +9 @@\n-    return a - b\n+    return b - a\n")),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "extra_context_lines",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff(
                "calc.py",
                "@@ -4,9 +4,9 @@\n def add(a, b):\n     return a + b\n \n \n def sub(a, b):\n"
                "-    return a - b\n+    return b - a\n \n \n class Calc:\n",
            )
        ),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "hallucinated_context_line_split",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff(
                "calc.py",
                '@@ -8,3 +8,4 @@\n def sub(a, b):\n+    """Subtract."""\n-    return a - b\n'
                "+    return b - a\n     # the end of sub\n",
            )
        ),
        {"calc.py": b(src_with("    return a - b", '    """Subtract."""\n    return b - a'))},
    ),
    Case(
        "tab_indented_file_space_diff",
        {"t.py": b(TABS)},
        UnifiedDiff(diff("t.py", "@@ -1,3 +1,4 @@\n def f(x):\n     if x:\n+        print(x)\n         return 1\n")),
        {"t.py": b("def f(x):\n\tif x:\n\t\tprint(x)\n\t\treturn 1\n\treturn 0\n")},
    ),
    Case(
        "space_file_tab_diff",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -16,3 +16,4 @@\n \tdef push(self, x):\n \t\tself.total += x\n+\t\tx += 0\n")),
        {"calc.py": b(src_with("self.total += x\n", "self.total += x\n        x += 0\n"))},
    ),
    Case(
        "crlf_file_lf_diff",
        {"calc.py": b(SRC.replace("\n", "\r\n"))},
        UnifiedDiff(diff("calc.py", "@@ -8,2 +8,2 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n")),
        {"calc.py": b(src_with("return a - b", "return b - a").replace("\n", "\r\n"))},
    ),
    Case(
        "crlf_diff_lf_file",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff("calc.py", "@@ -8,2 +8,2 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n").replace(
                "\n", "\r\n"
            )
        ),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "trailing_whitespace_in_context",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -8,2 +8,2 @@\n def sub(a, b):   \n-    return a - b \n+    return b - a\n")),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "trailing_whitespace_in_file",
        {"w.py": b("x = 1   \ny = 2\t\nz = 3\n")},
        UnifiedDiff(diff("w.py", "@@ -1,3 +1,3 @@\n x = 1\n-y = 2\n+y = 20\n z = 3\n")),
        {"w.py": b("x = 1   \ny = 20\nz = 3\n")},
    ),
    Case(
        "missing_plus_on_unindented_added_line",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -1,3 +1,4 @@\n import os\nimport sys\n \n \n")),
        {"calc.py": b(src_with("import os\n", "import os\nimport sys\n"))},
    ),
    Case(
        "missing_plus_on_indented_added_line",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff(
                "calc.py",
                "@@ -4,2 +4,3 @@\n def add(a, b):\n-    return a + b\n    c = a + b\n+    return c\n",
            )
        ),
        {"calc.py": b(src_with("    return a + b\n", "    c = a + b\n    return c\n"))},
    ),
    Case(
        "hunks_out_of_order",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff(
                "calc.py",
                "@@ -16,3 +16,3 @@\n     def push(self, x):\n-        self.total += x\n"
                "+        self.total += 2 * x\n"
                "         return self.total\n"
                "@@ -1,4 +1,5 @@\n import os\n+import sys\n \n \n def add(a, b):\n",
            )
        ),
        {"calc.py": b(src_with("import os\n", "import os\nimport sys\n").replace("+= x", "+= 2 * x"))},
    ),
    Case(
        "prose_around_fenced_diff",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            "The bug is in `sub`: the operands are swapped. Here is the fix:\n\n```diff\n"
            + diff("calc.py", "@@ -8,2 +8,2 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n")
            + "```\n\nThis makes `sub(1, 2)` return 1 as the issue expects.\n"
        ),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "prose_after_unfenced_diff",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff("calc.py", "@@ -8,2 +8,2 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n")
            + "\nThat should fix it.\n"
        ),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "no_a_b_prefixes",
        {"pkg/calc.py": b(SRC)},
        UnifiedDiff(
            "--- pkg/calc.py\n+++ pkg/calc.py\n@@ -8,2 +8,2 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n"
        ),
        {"pkg/calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "new_file_from_dev_null",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            "diff --git a/tests/test_calc.py b/tests/test_calc.py\nnew file mode 100644\n"
            "--- /dev/null\n+++ b/tests/test_calc.py\n@@ -0,0 +1,4 @@\n+from calc import sub\n+\n+\n"
            "+def test_sub():\n"
        ),
        {"tests/test_calc.py": b("from calc import sub\n\n\ndef test_sub():\n"), "calc.py": b(SRC)},
    ),
    Case(
        "new_file_with_wrong_count_and_missing_plus",
        {},
        UnifiedDiff("--- /dev/null\n+++ b/new.py\n@@ -0,0 +1,1 @@\n+def f():\n+    return 1\n"),
        {"new.py": b("def f():\n    return 1\n")},
    ),
    Case(
        "delete_to_dev_null",
        {"old.py": b("x = 1\n"), "calc.py": b(SRC)},
        UnifiedDiff(
            "diff --git a/old.py b/old.py\ndeleted file mode 100644\n"
            "--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n"
        ),
        {"old.py": None, "calc.py": b(SRC)},
    ),
    Case(
        "hunk_count_too_small",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -8,1 +8,1 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n")),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "missing_plus_on_last_added_line_counts_agree",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -1,1 +1,3 @@\n import os\n+import re\nimport sys\n")),
        {"calc.py": b(src_with("import os\n", "import os\nimport re\nimport sys\n"))},
    ),
    Case(
        "unfenced_prose_after_hunk_with_too_large_count",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff("calc.py", "@@ -8,7 +8,9 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n")
            + "This swaps the operands.\n"
        ),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "search_fragment_deleted",
        {"calc.py": b(SRC)},
        SearchReplace("calc.py", " + b", ""),
        {"calc.py": b(src_with("return a + b", "return a"))},
    ),
    Case(
        "hunk_count_too_large",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -8,7 +8,9 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n")),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "relative_indentation_off_by_minus_4",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff(
                "calc.py",
                "@@ -16,3 +16,4 @@\n def push(self, x):\n     self.total += x\n+    print(x)\n     return self.total\n",
            )
        ),
        {"calc.py": b(src_with("self.total += x\n", "self.total += x\n        print(x)\n"))},
    ),
    Case(
        "relative_indentation_off_by_plus_4",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff(
                "calc.py",
                "@@ -8,2 +8,4 @@\n     def sub(a, b):\n-        return a - b\n+        if a < b:\n"
                "+            return 0\n+        return a - b\n",
            )
        ),
        {"calc.py": b(src_with("    return a - b\n", "    if a < b:\n        return 0\n    return a - b\n"))},
    ),
    Case(
        "blank_context_lines_without_space",
        {"calc.py": b(SRC)},
        UnifiedDiff(diff("calc.py", "@@ -5,4 +5,4 @@\n     return a + b\n\n\n-def sub(a, b):\n+def subtract(a, b):\n")),
        {"calc.py": b(src_with("def sub(", "def subtract("))},
    ),
    Case(
        "trailing_blank_context_past_end_of_file",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff(
                "calc.py",
                "@@ -17,2 +17,2 @@\n         self.total += x\n-        return self.total\n"
                "+        return self.total * 1\n \n",
            )
        ),
        {"calc.py": b(src_with("return self.total\n", "return self.total * 1\n"))},
    ),
    Case(
        "two_files_in_one_diff",
        {"calc.py": b(SRC), "t.py": b(TABS)},
        UnifiedDiff(
            diff("calc.py", "@@ -8,2 +8,2 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n")
            + diff("t.py", "@@ -3,2 +3,2 @@\n \t\treturn 1\n-\treturn 0\n+\treturn -1\n")
        ),
        {
            "calc.py": b(src_with("return a - b", "return b - a")),
            "t.py": b(TABS.replace("return 0", "return -1")),
        },
    ),
    Case(
        "rename_with_change",
        {"old_name.py": b("A = 1\nB = 2\n")},
        UnifiedDiff(
            "diff --git a/old_name.py b/new_name.py\nsimilarity index 80%\nrename from old_name.py\n"
            "rename to new_name.py\n--- a/old_name.py\n+++ b/new_name.py\n"
            "@@ -1,2 +1,2 @@\n A = 1\n-B = 2\n+B = 3\n"
        ),
        {"old_name.py": None, "new_name.py": b("A = 1\nB = 3\n")},
    ),
    Case(
        "no_newline_at_end_of_file_marker",
        {"n.txt": b("one\ntwo")},
        UnifiedDiff(diff("n.txt", "@@ -1,2 +1,2 @@\n one\n-two\n\\ No newline at end of file\n+three\n")),
        {"n.txt": b("one\nthree\n")},
    ),
    Case(
        "nearest_of_two_matches_to_stated_line_wins",
        {"dup.py": b(DUP)},
        UnifiedDiff(diff("dup.py", "@@ -8,2 +8,2 @@\n     x = 1\n-    return x\n+    return x + 1\n")),
        {"dup.py": b(DUP[: DUP.rindex("return x")] + "return x + 1\n")},
    ),
    Case(
        "old_path_missing_but_hunk_only_adds",
        {},
        UnifiedDiff("--- a/fresh.txt\n+++ b/fresh.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\n"),
        {"fresh.txt": b("hello\nworld\n")},
    ),
    Case(
        "search_replace_exact",
        {"calc.py": b(SRC)},
        SearchReplace("calc.py", "    return a - b\n", "    return b - a\n"),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "search_replace_wrong_indentation",
        {"calc.py": b(SRC)},
        SearchReplace(
            "calc.py",
            "def push(self, x):\n    self.total += x",
            "def push(self, x):\n    if x < 0:\n        raise ValueError(x)\n    self.total += x",
        ),
        {
            "calc.py": b(
                src_with(
                    "self.total += x\n",
                    "if x < 0:\n            raise ValueError(x)\n        self.total += x\n",
                )
            )
        },
    ),
    Case(
        "search_replace_spaces_in_tab_file",
        {"t.py": b(TABS)},
        SearchReplace("t.py", "    if x:\n        return 1", "    if x:\n        return 2"),
        {"t.py": b(TABS.replace("return 1", "return 2"))},
    ),
    Case(
        "search_replace_trailing_whitespace_and_blank_edges",
        {"calc.py": b(SRC)},
        SearchReplace("calc.py", "\n\n\ndef sub(a, b):  \n    return a - b\n\n", "def sub(a, b):\n    return b - a\n"),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "search_replace_fragment_of_a_line",
        {"calc.py": b(SRC)},
        SearchReplace("calc.py", "a - b", "b - a"),
        {"calc.py": b(src_with("return a - b", "return b - a"))},
    ),
    Case(
        "search_replace_crlf_file",
        {"calc.py": b(SRC.replace("\n", "\r\n"))},
        SearchReplace("calc.py", "def sub(a, b):\n    return a - b", "def sub(a, b):\n    return b - a"),
        {"calc.py": b(src_with("return a - b", "return b - a").replace("\n", "\r\n"))},
    ),
    Case(
        "search_empty_on_missing_file_creates",
        {},
        SearchReplace("pkg/new.py", "", "VALUE = 1"),
        {"pkg/new.py": b("VALUE = 1\n")},
    ),
    Case(
        "search_empty_on_empty_file_fills",
        {"empty.py": b("")},
        SearchReplace("empty.py", "", "VALUE = 1\n"),
        {"empty.py": b("VALUE = 1\n")},
    ),
    Case("create_file", {}, CreateFile("a/b/c.txt", "hi"), {"a/b/c.txt": b("hi\n")}),
    Case(
        "whole_file_keeps_crlf",
        {"w.txt": b("old\r\nlines\r\n")},
        WholeFile("w.txt", "new\nlines\nhere\n"),
        {"w.txt": b("new\r\nlines\r\nhere\r\n")},
    ),
    Case(
        "delete_file",
        {"gone.txt": b("x\n"), "kept.txt": b("y\n")},
        DeleteFile("gone.txt"),
        {"gone.txt": None},
    ),
    # --- fenced code with no path: placed by name through the syntax tree (tools/patching/definitions.py) ------
    Case(
        "fenced_function_replaces_only_itself",
        {"stats.py": b(STATS), "util.py": b("X = 1\n"), "tests/test_stats.py": b("from stats import median\n")},
        FencedCode(MEDIAN_FIXED),
        {"stats.py": b(STATS_FIXED), "util.py": b("X = 1\n")},
    ),
    Case(
        "fenced_function_twice_in_the_block_last_wins",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode(f"{MEDIAN_BUGGY}\n\n{MEDIAN_FIXED}"),
        {"stats.py": b(STATS_FIXED)},
    ),
    Case(
        "fenced_method_alone_indented",
        {"calc.py": b(SRC), "util.py": b("X = 1\n")},
        FencedCode(PUSH_TWICE),
        {"calc.py": b(SRC_PUSH_TWICE)},
    ),
    Case(
        "fenced_method_alone_at_column_0",
        {"calc.py": b(SRC), "util.py": b("X = 1\n")},
        FencedCode("def push(self, x):\n    self.total += 2 * x\n    return self.total\n"),
        {"calc.py": b(SRC_PUSH_TWICE)},
    ),
    Case(
        "fenced_class_with_only_the_changed_method_keeps_the_others",
        {"calc.py": b(SRC), "util.py": b("X = 1\n")},
        FencedCode(f"class Calc:\n{PUSH_TWICE}"),
        {"calc.py": b(SRC_PUSH_TWICE)},
    ),
    Case(
        "fenced_class_with_a_new_method_appends_it",
        {"calc.py": b(SRC), "util.py": b("X = 1\n")},
        FencedCode(f"class Calc:\n{PUSH_TWICE}\n    def reset(self):\n        self.total = 0\n"),
        {"calc.py": b(SRC_PUSH_TWICE + "\n    def reset(self):\n        self.total = 0\n")},
    ),
    Case(
        "fenced_method_and_a_new_method_at_column_0",
        {"calc.py": b(SRC), "util.py": b("X = 1\n")},
        FencedCode(
            "def push(self, x):\n    self.total += 2 * x\n    return self.total\n\ndef reset(self):\n    pass\n"
        ),
        {"calc.py": b(SRC_PUSH_TWICE + "\n    def reset(self):\n        pass\n")},
    ),
    Case(
        "fenced_def_without_decorator_keeps_the_files",
        {"shapes.py": b(DECORATED), "util.py": b("X = 1\n")},
        FencedCode("def fib(n):\n    return n if n <= 1 else fib(n - 1) + fib(n - 2)\n"),
        {"shapes.py": b(DECORATED.replace("n < 2", "n <= 1"))},
    ),
    Case(
        "fenced_def_with_decorator_replaces_the_files",
        {"shapes.py": b(DECORATED), "util.py": b("X = 1\n")},
        FencedCode("@functools.cache\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"),
        {"shapes.py": b(DECORATED.replace("@functools.lru_cache(maxsize=None)", "@functools.cache"))},
    ),
    Case(
        "fenced_property_setter_replaces_the_setter_not_the_getter",
        {"shapes.py": b(DECORATED), "util.py": b("X = 1\n")},
        FencedCode("    @area.setter\n    def area(self, value):\n        self._area = value\n"),
        {"shapes.py": b(DECORATED.replace('raise AttributeError("read-only")', "self._area = value"))},
    ),
    Case(
        "fenced_staticmethod_without_decorator_keeps_it",
        {"shapes.py": b(DECORATED), "util.py": b("X = 1\n")},
        FencedCode("def unit():\n    return 2\n"),
        {"shapes.py": b(DECORATED.replace("return 1\n", "return 2\n"))},
    ),
    Case(
        "fenced_async_def",
        {"net.py": b(ASYNC), "util.py": b("X = 1\n")},
        FencedCode("async def fetch(x):\n    await asyncio.sleep(0)\n    return x + 1\n"),
        {"net.py": b(ASYNC.replace("    return x\n", "    return x + 1\n"))},
    ),
    Case(
        "fenced_new_helper_before_the_fixed_function",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode(
            "def _pair_mean(ordered, middle):\n    return (ordered[middle - 1] + ordered[middle]) / 2\n\n\n"
            + MEDIAN_FIXED.replace("(ordered[middle - 1] + ordered[middle]) / 2", "_pair_mean(ordered, middle)")
        ),
        {
            "stats.py": b(
                STATS.replace(
                    MEDIAN_BUGGY,
                    "def _pair_mean(ordered, middle):\n    return (ordered[middle - 1] + ordered[middle]) / 2\n\n\n"
                    + MEDIAN_FIXED.replace(
                        "(ordered[middle - 1] + ordered[middle]) / 2", "_pair_mean(ordered, middle)"
                    ),
                )
            )
        },
    ),
    Case(
        "fenced_new_helper_after_the_fixed_function",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode(MEDIAN_FIXED + "\n\ndef mode(values):\n    return max(set(values), key=values.count)\n"),
        {"stats.py": b(STATS_FIXED + "\n\ndef mode(values):\n    return max(set(values), key=values.count)\n")},
    ),
    Case(
        "fenced_new_import_after_the_docstring",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode("import math\n\n\ndef mean(values):\n    return math.fsum(values) / len(values)\n"),
        {
            "stats.py": b(
                STATS.replace(
                    '"""Descriptive statistics."""\n', '"""Descriptive statistics."""\n\nimport math\n'
                ).replace("return sum(values)", "return math.fsum(values)")
            )
        },
    ),
    Case(
        "fenced_new_import_after_the_files_imports_known_ones_skipped",
        {"calc.py": b(SRC), "util.py": b("X = 1\n")},
        FencedCode("import os\nfrom math import fsum\n\ndef add(a, b):\n    return fsum([a, b])\n"),
        {"calc.py": b(src_with("import os\n", "import os\nfrom math import fsum\n").replace("a + b", "fsum([a, b])"))},
    ),
    Case(
        "fenced_whole_file_when_it_is_the_only_source_file",
        {"gcd.py": b(GCD), "test_gcd.py": b(GCD_TEST)},
        FencedCode(GCD_FIXED.replace("LIMIT = 100", "LIMIT = 1000")),
        {"gcd.py": b(GCD_FIXED.replace("LIMIT = 100", "LIMIT = 1000")), "test_gcd.py": b(GCD_TEST)},
    ),
    Case(
        "fenced_whole_file_with_only_a_constant_changed",
        {"gcd.py": b(GCD), "test_gcd.py": b(GCD_TEST)},
        FencedCode(GCD.replace("LIMIT = 100", "LIMIT = 1000")),
        {"gcd.py": b(GCD.replace("LIMIT = 100", "LIMIT = 1000"))},
    ),
    Case(
        "fenced_whole_file_leaves_out_a_main_demo_and_keeps_the_docstring",
        {"gcd.py": b(GCD), "test_gcd.py": b(GCD_TEST)},
        FencedCode(
            GCD_FIXED.removeprefix('"""Greatest common divisor."""\n\n')
            + '\n\n# Example usage\nif __name__ == "__main__":\n    print(gcd(12, 18))\n'
        ),
        {"gcd.py": b(GCD_FIXED)},
    ),
    Case(
        "fenced_whole_file_without_docstrings_touches_only_the_changed_function",
        {"core.py": b(DOCUMENTED), "util.py": b("X = 1\n")},
        FencedCode(
            "def mean(values):\n    return sum(values)/len(values)\n\n\n"
            "def median(values):\n    ordered = sorted(values)\n    return ordered[(len(ordered) - 1) // 2]\n"
        ),
        {"core.py": b(DOCUMENTED.replace("ordered[len(ordered) // 2]", "ordered[(len(ordered) - 1) // 2]"))},
    ),
    Case(
        "fenced_method_given_without_its_docstring_and_decorator_keeps_both",
        {"shapes.py": b(DECORATED_DOC), "util.py": b("X = 1\n")},
        FencedCode("def unit():\n    return 2\n"),
        {"shapes.py": b(DECORATED_DOC.replace("return 1\n", "return 2\n"))},
    ),
    Case(
        "fenced_humaneval_answer_without_docstring_and_with_its_check_function",
        {"he.py": b(HUMANEVAL), "test_he.py": b("from he import has_close_elements\n")},
        FencedCode(HUMANEVAL_ANSWER),
        {"he.py": b(HUMANEVAL.replace("distance = elem - elem2", "distance = abs(elem - elem2)"))},
    ),
    Case(
        "fenced_function_with_a_test_function_after_it",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode(MEDIAN_FIXED + "\n\ndef test_median_even():\n    assert median([4, 1, 3, 2]) == 2.5\n"),
        {"stats.py": b(STATS_FIXED)},
    ),
    Case(
        "fenced_function_with_example_calls_after_it",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode(MEDIAN_FIXED + "\n\nresult = median([4, 1, 3, 2])\nprint(result)  # 2.5\n"),
        {"stats.py": b(STATS_FIXED)},
    ),
    Case(
        "fenced_function_with_example_values_and_prints_after_it",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode(MEDIAN_FIXED + "\n\n# Example usage\nnumbers = [4, 1, 3, 2]\nprint(median(numbers))\n"),
        {"stats.py": b(STATS_FIXED)},
    ),
    Case(
        "fenced_new_constant_the_function_uses_is_added_before_it",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode("EMPTY = 0.0\n\n\ndef mean(values):\n    return sum(values) / len(values) if values else EMPTY\n"),
        {
            "stats.py": b(
                STATS.replace("def mean", "EMPTY = 0.0\n\n\ndef mean").replace(
                    "/ len(values)\n", "/ len(values) if values else EMPTY\n"
                )
            )
        },
    ),
    Case(
        "fenced_whole_file_keeps_the_files_own_main_block",
        {"gcd.py": b(GCD + MAIN), "test_gcd.py": b(GCD_TEST)},
        FencedCode(GCD_FIXED + MAIN.replace("12, 18", "35, 21")),
        {"gcd.py": b(GCD_FIXED + MAIN.replace("12, 18", "35, 21"))},
    ),
    Case(
        "fenced_module_constant_replaced_next_to_its_function",
        {"gcd.py": b(GCD), "util.py": b("X = 1\n")},
        FencedCode("LIMIT = 1000\n\n\ndef lcm(a, b):\n    return abs(a * b) // gcd(a, b)\n"),
        {"gcd.py": b(GCD.replace("LIMIT = 100", "LIMIT = 1000").replace("a * b //", "abs(a * b) //"))},
    ),
    Case(
        "fenced_crlf_file_stays_crlf",
        {"stats.py": b(STATS.replace("\n", "\r\n")), "util.py": b("X = 1\n")},
        FencedCode(MEDIAN_FIXED.replace("\n", "\r\n")),
        {"stats.py": b(STATS_FIXED.replace("\n", "\r\n"))},
    ),
    Case(
        "fenced_file_without_final_newline_keeps_it_so",
        {"stats.py": b(STATS.rstrip("\n")), "util.py": b("X = 1\n")},
        FencedCode(MEDIAN_FIXED),
        {"stats.py": b(STATS_FIXED.rstrip("\n"))},
    ),
    Case(
        "fenced_spaces_into_a_tab_file",
        {"t.py": b(TABS + "\n\ndef g():\n\treturn 2\n"), "util.py": b("X = 1\n")},
        FencedCode("def f(x):\n    if x:\n        return 2\n    return 0\n"),
        {"t.py": b(TABS.replace("return 1", "return 2") + "\n\ndef g():\n\treturn 2\n")},
    ),
    Case(
        "fenced_spaces_method_into_a_tab_class",
        {"box.py": b(TAB_CLASS), "util.py": b("X = 1\n")},
        FencedCode("    def get(self):\n        if self:\n            return 2\n        return 0\n"),
        {"box.py": b(TAB_CLASS.replace("return 1", "return 2"))},
    ),
    Case(
        "fenced_outer_function_with_its_nested_one",
        {"n.py": b(NESTED), "util.py": b("X = 1\n")},
        FencedCode("def outer(xs):\n    def key(x):\n        return -x\n\n    return sorted(xs, key=key)\n"),
        {"n.py": b(NESTED.replace("return x\n", "return -x\n"))},
    ),
    Case(
        "fenced_nested_function_alone",
        {"n.py": b(NESTED), "util.py": b("X = 1\n")},
        FencedCode("def key(x):\n    return -x\n"),
        {"n.py": b(NESTED.replace("return x\n", "return -x\n"))},
    ),
    Case(
        "fenced_method_with_a_multiline_string_moves_without_changing_it",
        {"store.py": b(QUERY), "util.py": b("X = 1\n")},
        FencedCode('def query(self):\n    return """\nSELECT 2\n"""\n'),
        {"store.py": b(QUERY.replace("SELECT 1", "SELECT 2"))},
    ),
    Case(
        "fenced_name_also_in_a_test_file_goes_to_the_source",
        {"stats.py": b(STATS), "tests/test_stats.py": b("def median(values):\n    return 0\n")},
        FencedCode(MEDIAN_FIXED),
        {"stats.py": b(STATS_FIXED), "tests/test_stats.py": b("def median(values):\n    return 0\n")},
        protected=protect_tests,
    ),
    Case(
        "fenced_top_level_definition_beats_a_nested_helper_of_the_same_name",
        {"sort.py": b("def key(x):\n    return x\n"), "n.py": b(NESTED)},
        FencedCode("def key(x):\n    return -x\n"),
        {"sort.py": b("def key(x):\n    return -x\n"), "n.py": b(NESTED)},
    ),
    Case(
        "fenced_block_starting_with_a_bom",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode("\ufeff" + MEDIAN_FIXED),
        {"stats.py": b(STATS_FIXED)},
    ),
    Case(
        "fenced_two_files_define_it_and_the_hint_tells_which",
        {"a/util.py": b(HELPER_A), "b/util.py": b(HELPER_A)},
        FencedCode("def helper(x):\n    return x + 1\n"),
        {"a/util.py": b(HELPER_A), "b/util.py": b(HELPER_A.replace("return x", "return x + 1"))},
        hints=("./b/util.py", "a/other.py"),
    ),
]


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_meant_edit_gives_intended_content(tmp_path: Path, case: Case) -> None:
    write_tree(tmp_path, case.files)
    outcome = apply_edit(tmp_path, case.edit, protected=case.protected, hints=case.hints)
    assert outcome.ok, outcome.message
    for rel, want in case.expected.items():
        path = tmp_path / rel
        if want is None:
            assert not path.exists(), rel
        else:
            assert path.read_bytes() == want, f"{rel}\n{outcome.message}"
    assert outcome.changed, outcome.message


def read_tree(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_meant_edit_reports_exactly_the_files_it_touched(tmp_path: Path, case: Case) -> None:
    """``changed`` is what the loop syntax-checks and reports as applied: every file the edit wrote or deleted, once,
    and no file it left alone."""
    write_tree(tmp_path, case.files)
    before = read_tree(tmp_path)
    outcome = apply_edit(tmp_path, case.edit, protected=case.protected, hints=case.hints)
    after = read_tree(tmp_path)
    touched = {rel for rel in before.keys() | after.keys() if before.get(rel) != after.get(rel)}
    assert sorted(outcome.changed) == sorted(touched), outcome.message


@dataclass(frozen=True)
class Refusal:
    id: str
    files: dict[str, bytes]
    edit: Edit
    says: tuple[str, ...]
    protected: Protected | None = None
    hints: tuple[str, ...] = ()


REFUSALS: list[Refusal] = [
    Refusal(
        "diff_context_matches_twice_without_line_hint",
        {"dup.py": b(DUP)},
        UnifiedDiff(diff("dup.py", "@@ @@\n     x = 1\n-    return x\n+    return x + 1\n")),
        ("dup.py", "several places", "[2, 7]", "left unchanged"),
    ),
    Refusal(
        "search_matches_twice",
        {"dup.py": b(DUP)},
        SearchReplace("dup.py", "    x = 1\n    return x", "    x = 2\n    return x"),
        ("Multiple occurrences", "in lines [2, 7]", "unique"),
    ),
    Refusal(
        "search_not_found_shows_nearest_numbered_lines",
        {"calc.py": b(SRC)},
        SearchReplace("calc.py", "def sub(a, b):\n    return a - c", "def sub(a, b):\n    return 0"),
        (
            "No replacement was performed, the search lines did not appear verbatim in calc.py",
            "8\tdef sub(a, b):",
            "9\t    return a - b",
        ),
    ),
    Refusal(
        "search_fragment_twice",
        {"calc.py": b(SRC)},
        SearchReplace("calc.py", "(a, b)", "(x, y)"),
        ("Multiple occurrences", "[4, 8]"),
    ),
    Refusal(
        "search_on_missing_file",
        {},
        SearchReplace("nope.py", "x = 1", "x = 2"),
        ("nope.py does not exist",),
    ),
    Refusal(
        "diff_atomic_per_file",
        {"calc.py": b(SRC)},
        UnifiedDiff(
            diff(
                "calc.py",
                "@@ -8,2 +8,2 @@\n def sub(a, b):\n-    return a - b\n+    return b - a\n"
                "@@ -12,2 +12,2 @@\n-class Calculator:\n+class Calc2:\n",
            )
        ),
        (
            "hunk 1 (@@ -8,2 +8,2 @@) applied",
            "hunk 2 (@@ -12,2 +12,2 @@) FAILED",
            "12\tclass Calc:",
            "unchanged",
        ),
    ),
    Refusal(
        "diff_already_applied_is_not_applied_twice",
        {"calc.py": b(src_with("import os\n", "import os\nimport sys\n"))},
        UnifiedDiff(diff("calc.py", "@@ -1,2 +1,3 @@\n import os\n+import sys\n \n")),
        ("applied already",),
    ),
    Refusal(
        "diff_missing_file",
        {},
        UnifiedDiff(diff("ghost.py", "@@ -1,2 +1,2 @@\n a\n-b\n+c\n")),
        ("ghost.py", "does not exist"),
    ),
    Refusal("create_refuses_existing", {"calc.py": b(SRC)}, CreateFile("calc.py", "x"), ("already exists",)),
    Refusal("delete_missing", {}, DeleteFile("nope.txt"), ("does not exist",)),
    Refusal(
        "not_a_diff",
        {"calc.py": b(SRC)},
        UnifiedDiff("I think you should swap a and b."),
        ("No file changes",),
    ),
    Refusal(
        "binary_files_differ",
        {"img.png": b"\x89PNG\x00\x01"},
        UnifiedDiff("diff --git a/img.png b/img.png\nindex 1..2 100644\nBinary files a/img.png and b/img.png differ\n"),
        ("img.png", "binary"),
    ),
    Refusal(
        "git_binary_patch",
        {"img.png": b"\x89PNG\x00\x01"},
        UnifiedDiff("diff --git a/img.png b/img.png\nindex 1..2 100644\nGIT binary patch\nliteral 5\nMcmZ?wbhEHb\n\n"),
        ("img.png", "binary"),
    ),
    Refusal(
        "search_in_binary_file",
        {"blob.bin": b"ab\x00cd\n"},
        SearchReplace("blob.bin", "ab", "xy"),
        ("blob.bin", "binary"),
    ),
    Refusal(
        "search_in_non_utf8_file",
        {"latin.txt": "caf\xe9 = 1\n".encode("latin-1")},
        SearchReplace("latin.txt", "caf", "bar"),
        ("latin.txt is not valid UTF-8", "0xe9"),
    ),
    Refusal(
        "diff_on_non_utf8_file",
        {"latin.txt": "caf\xe9 = 1\n".encode("latin-1")},
        UnifiedDiff(diff("latin.txt", "@@ -1 +1 @@\n-café = 1\n+café = 2\n")),
        ("latin.txt is not valid UTF-8",),
    ),
    Refusal("parent_dir_escape", {}, CreateFile("../evil.py", "x"), ("..",)),
    Refusal("absolute_path", {}, WholeFile("/tmp/evil.py", "x"), ("absolute",)),
    Refusal("dot_git", {}, WholeFile(".git/config", "x"), (".git",)),
    Refusal(
        "diff_path_escape",
        {},
        UnifiedDiff("--- /dev/null\n+++ b/../../evil.py\n@@ -0,0 +1 @@\n+x = 1\n"),
        ("..",),
    ),
    # --- fenced code with no path ---------------------------------------------------------------------------
    Refusal(
        "fenced_two_files_define_it_and_nothing_tells_which",
        {"a/util.py": b(HELPER_A), "b/util.py": b(HELPER_A)},
        FencedCode("def helper(x):\n    return x + 1\n"),
        ("helper", "a/util.py", "b/util.py", "nothing was written"),
        hints=("c/elsewhere.py",),
    ),
    Refusal(
        "fenced_block_does_not_parse",
        {"stats.py": b(STATS)},
        FencedCode("def median(values):\n    ordered = sorted(values\n    return ordered[0]\n"),
        ("does not parse", "line 2", "nothing was written"),
    ),
    Refusal(
        "fenced_block_matches_no_definition",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode("def mode(values):\n    return max(values)\n"),
        ("matches no definition", "looked for mode", "stats.py", "util.py", "nothing was written"),
    ),
    Refusal(
        "fenced_only_source_file_is_not_overwritten_by_an_unknown_function",
        {"gcd.py": b(GCD), "test_gcd.py": b(GCD_TEST)},
        FencedCode("def greatest_common_divisor(a, b):\n    return a\n"),
        ("matches no definition", "looked for greatest_common_divisor", "gcd.py"),
    ),
    Refusal(
        "fenced_name_defined_only_in_a_protected_test",
        {"stats.py": b(STATS), "tests/test_stats.py": b("def test_median():\n    assert True\n")},
        FencedCode("def test_median():\n    assert 1 == 1\n"),
        ("test_median", "tests/test_stats.py", "protected", "Nothing was written"),
        protected=protect_tests,
    ),
    Refusal(
        "fenced_name_defined_only_in_a_test_file_without_protection",
        {"stats.py": b(STATS), "test_stats.py": b("def test_median():\n    assert True\n")},
        FencedCode("def test_median():\n    assert 1 == 1\n"),
        ("test_median", "test_stats.py", "test file", "Nothing was written"),
    ),
    Refusal(
        "fenced_method_name_in_two_classes",
        {"two.py": b(TWO_CLASSES), "util.py": b("X = 1\n")},
        FencedCode("def __init__(self):\n    self.x = 3\n"),
        ("several places in two.py", "A.__init__", "B.__init__", "nothing was written"),
    ),
    Refusal(
        "fenced_block_is_what_the_file_has",
        {"stats.py": b(STATS), "util.py": b("X = 1\n")},
        FencedCode(MEDIAN_BUGGY),
        ("already has", "stats.py", "nothing changed"),
    ),
    Refusal(
        "fenced_name_in_a_file_that_does_not_parse_itself",
        {"stats.py": b(STATS.replace("return ordered[middle]", "return ordered[middle")), "util.py": b("X = 1\n")},
        FencedCode(MEDIAN_FIXED),
        ("median", "stats.py does not parse itself (line 11", "nothing was written"),
    ),
    Refusal(
        "fenced_block_differs_only_in_docstring_and_layout",
        {"core.py": b(DOCUMENTED), "util.py": b("X = 1\n")},
        FencedCode(
            'def median( values ):\n    """Another doc."""\n    ordered = sorted( values )\n'
            "    return ordered[len(ordered)//2]\n"
        ),
        ("core.py already has", "docstrings and layout aside", "nothing changed"),
    ),
    Refusal(
        "fenced_block_without_a_def",
        {"stats.py": b(STATS)},
        FencedCode("print(median([4, 1, 3, 2]))\n"),
        ("no def or class", "nothing was written"),
    ),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", REFUSALS, ids=[c.id for c in REFUSALS])
def test_refused_edit_leaves_tree_unchanged(tmp_path: Path, case: Refusal) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    write_tree(root, case.files)
    before = snapshot(tmp_path)
    outcome = apply_edit(root, case.edit, protected=case.protected, hints=case.hints)
    assert not outcome.ok
    assert outcome.changed == []
    for fragment in case.says:
        assert fragment in outcome.message, outcome.message
    assert snapshot(tmp_path) == before
