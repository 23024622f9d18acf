"""Derived float32 tolerances (shared/verdict/tolerances.py): rounding is judged
against each framework's own float32-vs-float64 error, a bug is not."""

from __future__ import annotations

import numpy as np
import pytest

from shared.verdict.checks import compare_arrays, compare_envelope
from shared.verdict.tolerances import F32_EPS, FLOOR_ULPS, ROUNDING_MULTIPLE, derived_tolerance, own_error, trajectory_envelope


def _net(x, w1, w2, dtype):
    """A two-layer ReLU net, summed in a given order (two 'frameworks')."""
    h = np.maximum(x.astype(dtype) @ w1.astype(dtype), 0)
    return h @ w2.astype(dtype)


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 100)).astype(np.float32)
    w1 = (rng.normal(size=(100, 50)) / 10).astype(np.float32)
    w2 = (rng.normal(size=(50, 10)) / 7).astype(np.float32)
    return x, w1, w2


def _twins(x, w1, w2, bug=None):
    """'keras' sums in natural order, 'torch' over a reversed reduction axis."""
    def a(dtype):
        return _net(x, w1, w2, dtype)

    def b(dtype):
        w = w1 * (1 + bug) if bug else w1
        return _net(x[:, ::-1], w[::-1], w2, dtype)

    return a(np.float32), a(np.float64), b(np.float32), b(np.float64)


def test_own_error_is_the_largest_float32_vs_float64_gap():
    assert own_error([1.0, 2.0 + 1e-6], [1.0, 2.0]) == pytest.approx(1e-6)
    assert own_error([np.inf], [1.0]) == np.inf
    with pytest.raises(ValueError, match="shape"):
        own_error([1.0], [1.0, 2.0])


def test_rounding_passes_and_says_how_the_tolerance_was_derived():
    a32, a64, b32, b64 = _twins(*_setup())
    tol = derived_tolerance(a32, a64, b32, b64)
    c = compare_arrays("logits", a32, b32, tol)
    assert c.passed and 0 < c.max_abs_diff
    e_a, e_b = own_error(a32, a64), own_error(b32, b64)
    scale = max(1.0, float(np.abs(b32).max()))
    assert c.tolerance == pytest.approx(ROUNDING_MULTIPLE * (e_a + e_b) + FLOOR_ULPS * F32_EPS * scale)
    assert c.tolerance_from.startswith(f"derived: {ROUNDING_MULTIPLE:g} x (keras ")
    # The difference really is of the size of the frameworks' own rounding:
    assert c.max_abs_diff <= 2 * (e_a + e_b)


@pytest.mark.parametrize("bug", [1e-4, 1e-5])
def test_a_small_bug_fails_although_a_fixed_loose_tolerance_passes_it(bug):
    """A weight off by 1e-5 relative (in both of torch's dtypes, as a porting
    bug is) is 10x beyond the rounding: derived fails it, a fixed 1e-4 would not."""
    a32, a64, b32, b64 = _twins(*_setup(), bug=bug)
    assert not compare_arrays("logits", a32, b32, derived_tolerance(a32, a64, b32, b64)).passed
    assert np.abs(a32 - b32).max() < 1e-3 * max(1, np.abs(b32).max())


def test_floor_when_both_sides_round_exactly():
    tol = derived_tolerance([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0])
    assert tol.abs == pytest.approx(FLOOR_ULPS * F32_EPS * 2.0)
    assert "ulp floor" in tol.note


def test_trajectory_envelope_follows_chaotic_growth_but_not_a_formula_change():
    steps = np.arange(30)
    truth = np.exp(-steps / 10)  # a float64 loss curve
    growth = 1e-7 * np.exp(steps / 4)  # each side's own float32 divergence, growing
    rng = np.random.default_rng(1)
    a64, b64 = truth, truth + 1e-15
    a32 = truth + growth * rng.uniform(-1, 1, 30)
    b32 = truth + growth * rng.uniform(-1, 1, 30)
    env = trajectory_envelope(a32, a64, b32, b64)
    assert (np.diff(env - FLOOR_ULPS * F32_EPS * np.maximum(1, np.abs(b32))) >= -1e-300).all()  # non-decreasing
    ok = compare_envelope("training loss curve", a32, b32, env, "derived envelope")
    assert ok.passed and ok.tolerance_from == "derived envelope"
    # A formula change (momentum applied differently) bends b off early:
    b32_bug = b32 + 1e-4 * (steps > 3) * steps / 30
    b64_bug = b64 + 1e-4 * (steps > 3) * steps / 30
    bad = compare_envelope("training loss curve", a32, b32_bug, trajectory_envelope(a32, a64, b32_bug, b64_bug), "derived")
    assert not bad.passed and bad.margin > 1
    assert bad.detail["largest |diff|"] >= bad.max_abs_diff


def test_envelope_keeps_the_nonfinite_rules():
    c = compare_envelope("x", [1.0, np.nan], [1.0, np.nan], [1.0, 1.0], "derived")
    assert not c.passed and "non-finite" in c.where


def test_a_float32_only_bug_cannot_buy_its_own_tolerance():
    """torch's float32 path off by 1e-3 (its float64 path right): its own error
    is 1e-3 too, but counts for at most 16x keras' rounding, so it fails."""
    a32, a64, b32, b64 = _twins(*_setup())
    b32_bug = b32 + 1e-3
    tol = derived_tolerance(a32, a64, b32_bug, b64)
    assert "capped" in tol.note
    assert not compare_arrays("logits", a32, b32_bug, tol).passed
    # Gradients and trajectories: no cap (a ReLU kink moves one side alone, legitimately).
    assert compare_arrays("grad", a32, b32_bug, derived_tolerance(a32, a64, b32_bug, b64, max_asymmetry=None)).passed
