"""The verdict primitive, rule by rule (shared/verdict/checks.py's module docstring).

Each test breaks one rule on purpose: a comparison that let a difference pass
at 10x its tolerance, dropped the one-sided NaN/inf check, counted +inf
against -inf or NaN against NaN as agreement, took the scale from the wrong
side, or lost the floor of 1, fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.verdict.checks import Check, ParityFailure, assert_checks, compare_arrays, compare_named, format_check
from shared.verdict.tolerances import F32_EPS, Tolerance

TOL = Tolerance(rel=1e-6)
INF, NAN = float("inf"), float("nan")


# ---- rule 4: pass iff max|a-b| <= allowed, exactly at the boundary -----------
@pytest.mark.parametrize("factor, passes", [(0.5, True), (1.0, True), (1.01, False), (10.0, False)])
def test_boundary_of_the_tolerance(factor, passes):
    """At 1.01x the allowed difference it fails: a comparison loosened by any
    factor (10x included) is caught; exactly at the tolerance it passes."""
    b = np.array([0.25, -0.5, 0.75])
    a = b.copy()
    a[1] += factor * TOL.allowed(1.0)  # scale 0.75 -> floor 1
    c = compare_arrays("x", a, b, TOL)
    assert c.passed is passes, c
    assert c.max_abs_diff == pytest.approx(factor * 1e-6, rel=1e-6)
    assert c.tolerance == pytest.approx(1e-6)
    assert c.where.startswith("[1]:")


def test_absolute_part_adds_to_the_relative_part():
    c = compare_arrays("x", [1.0 + 3e-6], [1.0], Tolerance(rel=1e-6, abs=1e-6))
    assert not c.passed and c.tolerance == pytest.approx(2e-6)
    c = compare_arrays("x", [1.0 + 1.5e-6], [1.0], Tolerance(rel=1e-6, abs=1e-6))
    assert c.passed


def test_zero_tolerance_means_bitwise():
    assert compare_arrays("x", [1.0, 2.0], [1.0, 2.0], Tolerance(rel=0.0)).passed
    c = compare_arrays("x", [1.0, np.nextafter(2.0, 3.0)], [1.0, 2.0], Tolerance(rel=0.0))
    assert not c.passed and c.max_abs_diff == pytest.approx(4.44e-16, rel=1e-2) and c.margin == INF


# ---- rule 3: scale = max finite |b|, floor 1 ----------------------------------
def test_scale_is_the_reference_side_with_a_floor_of_one():
    # |b| up to 1000: allowed 1e-3, so a 5e-4 difference passes...
    assert compare_arrays("x", [1000.0005, 0.0], [1000.0, 0.0], TOL).passed
    # ...but only because b (the reference) is large: the same difference on
    # small values, with a huge a, fails (scale not taken from a).
    c = compare_arrays("x", [1e6, 0.0005], [1e6 - 1e-3, 0.0], Tolerance(rel=1e-12))
    assert c.tolerance == pytest.approx(1e-6) and not c.passed
    # Floor: tiny outputs do not shrink the tolerance below rel * 1.
    c = compare_arrays("x", [1e-9 + 5e-7], [1e-9], TOL)
    assert c.passed and c.tolerance == pytest.approx(1e-6)


def test_scale_ignores_infinities_on_the_reference():
    c = compare_arrays("x", [INF, 2.0 + 1.5e-6], [INF, 2.0], TOL)
    assert c.tolerance == pytest.approx(2e-6) and c.passed


# ---- rule 2: non-finite values ------------------------------------------------
@pytest.mark.parametrize("a, b", [
    (NAN, 1.0), (1.0, NAN),          # one-sided NaN
    (INF, 1.0), (1.0, -INF),         # one-sided inf
    (INF, -INF), (-INF, INF),        # opposite infinities
    (NAN, NAN),                      # NaN never agrees
    (NAN, INF), (INF, NAN),
])
def test_nonfinite_disagreements_fail(a, b):
    c = compare_arrays("x", [0.5, a], [0.5, b], Tolerance(rel=1e3))  # any tolerance: non-finite fails regardless
    assert not c.passed and c.max_abs_diff == INF
    assert c.where.startswith("[1]:") and "non-finite" in c.where


@pytest.mark.parametrize("v", [INF, -INF])
def test_identical_infinities_agree(v):
    c = compare_arrays("x", [v, 1.0], [v, 1.0], TOL)
    assert c.passed and c.max_abs_diff == 0.0


def test_identical_infinities_do_not_hide_a_finite_difference():
    c = compare_arrays("x", [INF, 1.1], [INF, 1.0], TOL)
    assert not c.passed and c.max_abs_diff == pytest.approx(0.1) and c.where.startswith("[1]")


# ---- rule 1: shapes ---------------------------------------------------------
def test_shape_mismatch_fails_even_when_broadcastable():
    c = compare_arrays("x", np.zeros((3, 1)), np.zeros((3,)), Tolerance(rel=1.0))
    assert not c.passed and "shape (3, 1) vs (3,)" in c.where


def test_empty_arrays_pass():
    c = compare_arrays("x", np.zeros((0, 2)), np.zeros((0, 2)), TOL)
    assert c.passed and c.where == "empty"


# ---- rule 5: where ------------------------------------------------------------
def test_where_names_the_largest_difference_with_labels():
    b = np.zeros((2, 3))
    a = b.copy()
    a[0, 2] = 1e-7
    a[1, 1] = 3e-6
    c = compare_arrays("logits", a, b, TOL, labels={0: ["img0.jpg", "img1.jpg"], 1: ["cat", "dog", "cow"]})
    assert c.where == "[1 (img1.jpg), 1 (dog)]: 3e-06 vs 0"
    assert c.max_abs_diff == pytest.approx(3e-6) and not c.passed
    assert c.margin == pytest.approx(3.0)


# ---- the derivation travels with the row ------------------------------------
def test_every_row_says_how_its_tolerance_was_set():
    c = compare_arrays("x", [1.0], [1.0], Tolerance(rel=16 * F32_EPS))
    assert c.tolerance_from == "fixed: 1.91e-06 x max(1, |reference|)"
    c = compare_arrays("x", [1.0], [1.0], Tolerance(rel=0, abs=1e-5, note="derived: 4 x own rounding"))
    assert c.tolerance_from == "derived: 4 x own rounding" and "margin" in c.to_dict()
    assert "(derived: 4 x own rounding)" in format_check(c)


def test_compare_named_fails_a_name_on_one_side_only():
    out = compare_named("w", {"a": [1.0], "b": [2.0]}, {"a": [1.0], "c": [3.0]}, TOL)
    assert [(c.check, c.passed, c.where) for c in out] == [
        ("w a", True, "[0]: 1 vs 1"), ("w b", False, "only in keras"), ("w c", False, "only in torch")]


def test_assert_checks_names_every_failure_and_ignores_info_rows():
    ok = Check("fine", "keras", "torch", 0.0, 0.0, 1e-6, True, "x")
    info = Check("note", "keras", "torch", 1.0, 1.0, 0.0, False, "x", info=True)
    assert assert_checks([ok, info]) == [ok, info]
    bad = compare_arrays("logits", [1.0, 2.5], [1.0, 2.0], TOL)
    with pytest.raises(ParityFailure, match=r"FAIL logits: keras vs torch, max \|diff\| 0.5 at \[1\]: 2.5 vs 2, tolerance 2e-06"):
        assert_checks([ok, info, bad])


def test_pair_lines_one_line_per_pair_and_every_failure_in_full():
    from shared.report.build import pair_lines

    ok = compare_arrays("logits", [1.0], [1.0 + 5e-7], TOL, task="binary", model="mlp", dtype="float32")
    bad = compare_arrays("logits", [1.0, 2.0], [1.0, 2.5], TOL, task="regression", model="cnn", dtype="float32")
    bad.detail["diagnosis"] = "a constant factor"
    info = Check("note", "keras", "torch", 9.0, 9.0, 0.0, False, "x", task="binary", model="mlp", info=True)
    lines = pair_lines([ok, info, bad])
    assert lines[0] == "pass binary/mlp: 1 checks; worst margin 0.5 (float32 logits at [0]: 1 vs 1.0000005)"
    assert lines[1].startswith("FAIL regression/cnn: 1 checks, 1 failed; worst margin 2e+05 (float32 logits at [1]: 2 vs 2.5)")
    assert lines[2].startswith("  FAIL regression/cnn/float32 logits: keras vs torch, max |diff| 0.5")
    assert lines[2].endswith("; likely: a constant factor") and len(lines) == 3
