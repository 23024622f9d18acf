"""shared/verdict/policy.py: the one verdict policy every flow makes its rows with (issue 19).

Framework-free: numbers only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from shared.verdict import policy as verdict
from shared.verdict.checks import Check
from shared.verdict.tolerances import F32_EPS, F64_EPS, Tolerance


def test_one_status_per_row_decided_when_made():
    c = verdict.judge("logits", "forward", "float64", np.ones(3), np.ones(3))
    assert c.status == "pass" and c.to_dict()["status"] == "pass"
    with pytest.raises(AttributeError, match="decided when the row is made"):
        c.info = True
    with pytest.raises(AttributeError):
        c.passed = False
    info = verdict.judge("pair", "forward", "float32", np.ones(3), np.ones(3) + 1.0, reason="float32 pairs: rounding")
    assert info.status == "info" and info.reason == "float32 pairs: rounding" and not info.passed
    assert dataclasses.replace(c, passed=False).status == "fail"  # a new row may say otherwise
    row = verdict.info_row("onnx", "skipped: two inputs")
    assert row.status == "info" and row.where == "skipped: two inputs"


def test_float32_is_derived_from_each_sides_own_float64_error():
    a64 = b64 = np.array([1.0, 2.0])
    a32, b32 = a64 + 3e-6, b64 - 3e-6  # each 3e-6 from its own float64 result: 6e-6 apart is rounding
    c = verdict.judge("node x", "forward", "float32", a32, b32, ref=(a64, b64))
    assert c.status == "pass" and c.tolerance == pytest.approx(4 * 6e-6 + 4 * F32_EPS * 2.0)
    bug = verdict.judge("node x", "forward", "float32", a32, b32 + 1e-4, ref=(a64, b64 + 1e-4))
    assert bug.status == "fail"  # both sides near their float64 results, far from each other


def test_float64_fixed_bound_first_and_the_error_model_only_where_it_is_missed():
    calls = []

    def lazy(x):
        def read():
            calls.append(1)
            return x
        return read

    a64, b64 = np.array([1.0]), np.array([1.0 + 5e-13])
    model = verdict.float32_error_model("gradient", lazy(a64), a64, lazy(b64), b64)
    c = verdict.judge("grad w", "gradient", "float64", a64, b64, models=[model])
    assert c.status == "pass" and c.tolerance_from.startswith("fixed") and calls == []  # not read: nothing to explain


def test_a_conditioning_limited_float64_row_passes_only_when_float32_says_it_is_rounding():
    """MobileNetV3-Small's squeeze-excitation gradients (issue 19): float64 3.1e-12
    apart against 1e-12. Where each side's float32 result is 2e-3 from its own
    float64 one (an ill-conditioned computation), eps64/eps32 of that is 3.7e-12
    per side: rounding. With float32 errors of ordinary size (1e-7) the same
    difference is a bug."""
    a64, b64 = np.array([1.0]), np.array([1.0 + 3.1e-12])
    a32, b32 = a64 + 2e-3, b64 - 1e-3
    c = verdict.judge("grad se.fc1.weight", "gradient", "float64", a64, b64,
                      models=[verdict.float32_error_model("gradient", a32, a64, b32, b64)])
    assert c.status == "pass" and c.tolerance_from.startswith("float64 error model")
    assert c.tolerance == pytest.approx(1e-12 + 4 * (F64_EPS / F32_EPS) * 3e-3)
    ordinary = verdict.judge("grad se.fc1.weight", "gradient", "float64", a64, b64,
                             models=[verdict.float32_error_model("gradient", a64 + 1e-7, a64, b64 - 1e-7, b64)])
    assert ordinary.status == "fail" and ordinary.tolerance == pytest.approx(1e-12)
    assert "also beyond float64 error model" in ordinary.tolerance_from


def test_a_planted_float64_bug_stays_caught_by_the_error_model():
    # bn-epsilon at SIZE 1e-7 moves float64 outputs by ~1e-10; float32 rounding 1e-6 buys 7e-15
    a64, b64 = np.array([0.5, 2.0]), np.array([0.5, 2.0 + 1e-10])
    c = verdict.judge("logits", "forward", "float64", a64, b64,
                      models=[verdict.float32_error_model("forward", a64 + 1e-6, a64, b64 - 1e-6, b64)])
    assert c.status == "fail" and c.margin > 10


def test_forward_error_model_caps_the_port_not_the_reference():
    """A float32-only bug in the port (b) makes its float32 error large; in
    forward rows it buys at most MAX_ASYMMETRY times the reference's (a)."""
    a64, b64 = np.array([1.0]), np.array([1.0 + 3e-12])
    model = verdict.float32_error_model("forward", a64 + 1e-7, a64, b64 + 1.0, b64)
    tol = model(Tolerance(rel=1e-12))
    assert tol.abs == pytest.approx(4 * (F64_EPS / F32_EPS) * (1e-7 + 16 * 1e-7))
    assert verdict.judge("logits", "forward", "float64", a64, b64, models=[model]).status == "fail"


def test_the_references_own_float32_error_is_not_capped():
    """keras.io's TokenLearner: TF's float32 convolutions lie 4.7e-4 from their
    float64 result, torch's 7e-7, float64 agrees: the model's own arithmetic,
    not the port's. The same numbers with the roles swapped (the port that far
    off) fail."""
    k64 = t64 = np.array([0.0, 1.0])
    k32, t32 = k64 + np.array([4.7e-4, 0.0]), t64 + np.array([7e-7, 0.0])
    assert verdict.judge("node conv2d_1", "forward", "float32", k32, t32, ref=(k64, t64)).status == "pass"
    assert verdict.judge("node conv2d_1", "forward", "float32", t32, k32, ref=(t64, k64)).status == "fail"


def test_conditioning_model_names_itself_and_infinite_bounds_are_ignored():
    a, b = np.array([1.0]), np.array([1.0 + 5e-10])
    c = verdict.judge("w", "training", "float64", a, b, models=[verdict.conditioning_model(np.inf, "x"),
                                                                  verdict.conditioning_model(1e-9, "gain")])
    assert c.status == "pass" and c.tolerance_from.startswith("gain = 1e-09")


def test_a_kink_straddle_makes_a_failing_float32_gradient_row_information_never_a_float64_one():
    straddles = verdict.kink_straddles([("relu1", "conv1", np.array([-1e-9, 1.0]), np.array([1e-9, 1.0]))])
    assert straddles == {"relu1": (1, "conv1[0]: -1e-09 vs 1e-09")}
    kinks = verdict.describe_straddles(straddles)
    g = verdict.judge("grad conv1.w", "gradient", "float32", np.array([0.0]), np.array([1.0]), kinks=kinks)
    assert g.status == "info" and "ReLU-kink" in g.reason and "conv1[0]" in g.reason
    g64 = verdict.judge("grad conv1.w", "gradient", "float64", np.array([0.0]), np.array([1.0]), kinks=kinks)
    assert g64.status == "fail"
    row = verdict.kink_row(straddles, "gradients compared on batch 1", dtype="float32")
    assert row.status == "info" and row.max_abs_diff == 1.0


def test_kink_positions_per_activation():
    relu6 = verdict.KINKS["relu6"]
    out = verdict.kink_straddles([("r6", "x", np.array([5.9, 1.0]), np.array([6.1, 1.0]), relu6)])
    assert out["r6"][0] == 1


def test_user_override_judges_as_given():
    tol = Tolerance(rel=0.0, abs=1e-3, note="user")
    c = verdict.judge("w", "training", "float64", np.array([0.0]), np.array([2e-3]), override=tol,
                      models=[verdict.conditioning_model(1.0, "gain")])
    assert c.status == "fail" and c.tolerance_from == "user"


def test_no_flow_turns_a_row_into_information_after_the_fact():
    """Information is decided at creation (Check forbids changing info/passed);
    the old after-the-fact excuses are gone."""
    from shared.flows import port_check

    for gone in ("excuse_float32_drift", "excuse_kinks", "excuse_zero_gradients"):
        assert not hasattr(port_check, gone)
    c = Check("x", "a", "b", 0.0, 0.0, 0.0, True, "")
    with pytest.raises(AttributeError):
        c.info = True
