"""The winner among candidates: most tests passed, then CWM's vote on normalised patches, then fewest tokens."""

from __future__ import annotations

import pytest

from agent.nodes.selection import Scored, normalize_patch, pick

FIX = """diff --git a/m.py b/m.py
index 1111111..2222222 100644
--- a/m.py
+++ b/m.py
@@ -1,3 +1,3 @@
 def f(x):
-    return x - 1
+    return x + 1
"""
# The same change, as another sample wrote it: other index line and hunk numbers, trailing blanks, double spaces.
FIX_AGAIN = FIX.replace("1111111..2222222", "abcdef0..1234567").replace("@@ -1,3 +1,3 @@", "@@ -10,3 +10,3 @@")
FIX_AGAIN = FIX_AGAIN.replace("+    return x + 1", "+    return  x + 1   ")
OTHER = FIX.replace("+    return x + 1", "+    return 1 + x")


def test_normalisation_ignores_line_numbers_index_and_whitespace() -> None:
    assert normalize_patch(FIX) == normalize_patch(FIX_AGAIN)
    assert normalize_patch(FIX) != normalize_patch(OTHER)


def test_most_tests_passed_wins_over_votes_and_tokens() -> None:
    cands = [
        Scored(0, passed=3, failed=1, patch=FIX, tokens=10),
        Scored(1, passed=3, failed=1, patch=FIX_AGAIN, tokens=10),
        Scored(2, passed=4, failed=0, patch=OTHER, tokens=900),
    ]
    assert pick(cands).index == 2


def test_among_equal_passes_the_most_frequent_patch_wins() -> None:
    cands = [
        Scored(0, passed=4, failed=0, patch=OTHER, tokens=5),
        Scored(1, passed=4, failed=0, patch=FIX, tokens=50),
        Scored(2, passed=4, failed=0, patch=FIX_AGAIN, tokens=60),
    ]
    assert pick(cands).index == 1


def test_ties_on_votes_go_to_fewer_tokens_then_lower_index() -> None:
    cands = [
        Scored(0, passed=2, failed=0, patch=FIX, tokens=70),
        Scored(1, passed=2, failed=0, patch=OTHER, tokens=30),
    ]
    assert pick(cands).index == 1
    same = [Scored(3, passed=2, failed=0, patch=OTHER, tokens=30), Scored(1, passed=2, failed=0, patch=FIX, tokens=30)]
    assert pick(same).index == 1


def test_empty_patches_get_no_votes() -> None:
    cands = [
        Scored(0, passed=1, failed=1, patch="", tokens=1),
        Scored(1, passed=1, failed=1, patch="", tokens=2),
        Scored(2, passed=1, failed=1, patch=FIX, tokens=3),
    ]
    assert pick(cands).index == 2


def test_no_candidates_is_an_error() -> None:
    with pytest.raises(ValueError):
        pick([])
