"""One verdict policy for every flow (issue 19; README, "Verdicts").

The default run's engine (through shared/verdict/judge.py), `compare.py port`, the
reverse port and `compare.py verify` make their continuous rows here, and each
row gets exactly one status when it is made: pass, fail, or info with its
reason (Check.status, Check.reason); no row is turned into information later.

The rule:

1. a user's --atol/--rtol, when given, judge the row as given;
2. float32, with each side's own float64 result from the same weights and
   inputs: derived, 4 x (e_a + e_b) + 4 float32 ulp, e = that side's own
   |float32 - float64| (shared/verdict/tolerances.py derived_tolerance; loss curves
   step by step, trajectory_envelope); without float64 results: the named
   constant (shared/verdict/tolerances.py);
3. float64: the fixed bound first (1e-12 forward and gradients, 1e-10
   training). Where it is not met, the measured error models the flow hands
   in are tried in order, and the first that holds passes the row and names
   itself in the row's `tolerance_from`:
   - `float32_error_model`: each side's own float32-vs-float64 error scaled
     by eps64/eps32 (rounding errors scale with the unit roundoff: a
     computation whose float32 result is that far from exact is that
     ill-conditioned in float64 too), times F64_SAFETY;
   - a conditioning measurement (shared/verdict/conditioning.py: the optimizer's gain
     on noise-level gradients; shared/flows/port_reverse.py: torch's own run from a
     start perturbed by the measured float64 difference).
   A porting bug moves float64 results by far more than eps64/eps32 (1.9e-9)
   of the float32 rounding, so it stays a failure.
4. information is decided at creation (`info_row`, or `reason=`). Where
   activation inputs straddle a ReLU-like kink in the two frameworks
   (`kink_straddles`), a float32 gradient row that misses its tolerance is
   information with that reason, and a float32 training row is held to the
   named BatchNorm bound (shared/verdict/tolerances.py TRAINING_BATCHNORM) instead;
   float64 rows are never excused that way.

Framework-free (numpy only).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shared.verdict.checks import Check, compare_arrays, compare_envelope
from shared.verdict.tolerances import (F32_EPS, F64_EPS, FLOOR_ULPS, MAX_ASYMMETRY, ROUNDING_MULTIPLE, Tolerance,
                               derived_tolerance, for_check, own_error, trajectory_envelope)

__all__ = ["against", "EPS_RATIO", "F64_SAFETY", "KINKS", "judge", "trajectory", "tolerance", "info_row", "float32_error_model",
           "conditioning_model", "kink_straddles", "kink_row", "KINK_REASON"]

# How much smaller float64's unit roundoff is than float32's: 2**-52 / 2**-23
# = 2**-29 = 1.86e-9 (numpy.finfo). A rounding error of float32 size e32 is,
# for the same computation in float64, about e32 * EPS_RATIO.
EPS_RATIO = F64_EPS / F32_EPS
# The float64 error model's multiple: the float32 derivation's ROUNDING_MULTIPLE
# (two sides' errors need not peak at the same element; the legitimate runs'
# worst |a32 - b32| / (e_a + e_b) is below 1, README "Verdicts").
F64_SAFETY = ROUNDING_MULTIPLE

# Activations with a kink, and where it is (the README's "ReLU kinks").
KINKS = {"relu": (0.0,), "relu6": (0.0, 6.0), "leaky_relu": (0.0,), "hard_sigmoid": (-3.0, 3.0),
         "hard_silu": (-3.0, 3.0)}
KINK_REASON = "ReLU-kink straddle: activation inputs on different sides of a kink in the two frameworks (float64 stays strict)"


def tolerance(kind: str, dtype: str, a32=None, b32=None, a64=None, b64=None, *, names=("keras", "torch"),
              override: Tolerance | None = None, batchnorm: bool = False) -> Tolerance:
    """The first tolerance a row is held to: the user's, derived (float32 with
    both float64 results), else the named constant for (kind, dtype)."""
    if override is not None:
        return override
    if dtype == "float32" and a64 is not None and b64 is not None:
        cap = {} if kind in ("forward", "onnx") else {"max_asymmetry": None}  # kinks: gradients, training
        return derived_tolerance(a32, a64, b32, b64, a_name=names[0], b_name=names[1], **cap)
    return for_check(kind, dtype, batchnorm=batchnorm)


def float32_error_model(kind: str, a32, a64, b32, b64, names=("keras", "torch")):
    """A float64 error model (see the module docstring): a function of the
    fixed Tolerance giving the derived one, or None where the float32 results
    are unusable (other shape, a finiteness disagreement). The four results may
    be given as functions returning them (read only when the model is used)."""
    def model(fixed: Tolerance) -> Tolerance | None:
        try:
            e_a, e_b = own_error(*map(_value, (a32, a64))), own_error(*map(_value, (b32, b64)))
        except ValueError:
            return None
        if not (np.isfinite(e_a) and np.isfinite(e_b)):
            return None
        if kind in ("forward", "onnx"):  # continuous: a float32-only bug in the port (b) buys no room (MAX_ASYMMETRY)
            e_b = min(e_b, MAX_ASYMMETRY * max(e_a, FLOOR_ULPS * F32_EPS))
        bound = F64_SAFETY * EPS_RATIO * (e_a + e_b)
        return Tolerance(rel=fixed.rel, abs=bound, note=(
            f"float64 error model: {F64_SAFETY:g} x eps64/eps32 x ({names[0]} {e_a:.2g} + {names[1]} {e_b:.2g}) "
            f"own float32-vs-float64 error = {bound:.3g} + the fixed {fixed.rel:g} relative (fixed bound not met)"))
    return model


def _value(x):
    return x() if callable(x) else x


def conditioning_model(bound: float, note: str):
    """A float64 error model from a conditioning measurement: `bound` absolute on
    top of the fixed relative tolerance; `note` says how it was measured."""
    def model(fixed: Tolerance) -> Tolerance | None:
        if not np.isfinite(bound):
            return None
        return Tolerance(rel=fixed.rel, abs=float(bound), note=f"{note} = {bound:.3g} + the fixed {fixed.rel:g} relative "
                                                              "(fixed bound not met)")
    return model


def against(kind: str, dtype: str, name: str, mine: tuple, other: tuple | None) -> dict:
    """judge's arguments from the other dtype's results, for a flow that has both.

    Args:
        mine: (a results, b results) of the row's dtype, mappings by name.
        other: the same of the other dtype, or None.

    A float32 row gets each side's float64 result (`ref`: derived tolerance);
    a float64 row the float32 error model, which reads the float32 results only
    where the fixed bound is not met.
    """
    if other is None or name not in other[0] or name not in other[1]:
        return {}
    if dtype == "float32":
        return {"ref": (other[0][name], other[1][name])}
    return {"models": [float32_error_model(kind, lambda: other[0][name], lambda: mine[0][name],
                                           lambda: other[1][name], lambda: mine[1][name])]}


def judge(check: str, kind: str, dtype: str, a, b, *, ref=None, models=(), override: Tolerance | None = None,
          batchnorm: bool = False, reason: str | None = None, kinks: str | None = None, a_name: str = "keras",
          b_name: str = "torch", **context) -> Check:
    """One row, its status decided here.

    Args:
        kind: "forward", "gradient", "training" or "onnx".
        a, b: the two results in `dtype` (b is the reference for the scale).
        ref: float32 rows: (a64, b64), each side's float64 result (derived tolerance).
        models: float64 rows: error models (float32_error_model, conditioning_model)
            tried in order when the fixed bound is not met.
        reason: the row is information, and why.
        kinks: float32 gradient/training rows: where activation inputs straddle
            a kink (kink_straddles); a row that misses its tolerance is then information.
        context: compare_arrays' (labels, task, model, detail, ...).
    """
    context.pop("dtype", None)  # the argument is the row's dtype
    names = (a_name, b_name)
    a64, b64 = ref if ref is not None else (None, None)
    tol = tolerance(kind, dtype, a, b, a64, b64, names=names, override=override, batchnorm=batchnorm)
    c = compare_arrays(check, a, b, tol, a_name=a_name, b_name=b_name, dtype=dtype, **context)
    if reason is not None:
        return dataclasses.replace(c, info=True, reason=reason)
    if c.passed:
        return c
    if dtype == "float64" and override is None and np.isfinite(c.max_abs_diff):
        tried = []
        for model in models:
            loose = model(tol)
            if loose is not None and loose.allowed(0.0) > tol.allowed(0.0):
                again = compare_arrays(check, a, b, loose, a_name=a_name, b_name=b_name, dtype=dtype, **context)
                if again.passed:
                    return again
                tried.append(loose.note)
        if tried:  # the row says which measured bounds it was also beyond
            c = dataclasses.replace(c, tolerance_from=f"{c.tolerance_from}; also beyond " + "; ".join(tried))
    if kinks and dtype == "float32" and kind == "gradient":
        return dataclasses.replace(c, info=True, reason=f"{KINK_REASON}: {kinks}")
    if kinks and dtype == "float32" and kind == "training" and override is None:  # kink events compound over steps
        named = for_check("training", dtype, batchnorm=True)
        if named.allowed(0.0) > tol.allowed(0.0) or named.rel > tol.rel:
            again = compare_arrays(check, a, b, named, a_name=a_name, b_name=b_name, dtype=dtype, **context)
            if again.passed:
                return dataclasses.replace(again, tolerance_from=f"{again.tolerance_from}; {KINK_REASON}: {kinks}")
    return c


def trajectory(check: str, a, b, a64=None, b64=None, *, dtype: str, override: Tolerance | None = None,
               batchnorm: bool = False, models=(), a_name: str = "keras", b_name: str = "torch", **context) -> Check:
    """A loss curve: float32 with both float64 curves step by step (each side's
    own divergence so far, trajectory_envelope); otherwise `judge` (training)."""
    if override is not None or dtype != "float32" or a64 is None or b64 is None:
        return judge(check, "training", dtype, a, b, override=override, batchnorm=batchnorm, models=models,
                     a_name=a_name, b_name=b_name, **context)
    env = trajectory_envelope(a, a64, b, b64)
    note = (f"derived step by step: {ROUNDING_MULTIPLE:g} x the largest float32-vs-float64 divergence either side "
            f"has shown so far + {FLOOR_ULPS:g} ulp floor")
    return compare_envelope(check, a, b, env, note, a_name=a_name, b_name=b_name, dtype=dtype, **context)


def info_row(check: str, reason: str, where: str = "", *, a_name: str = "keras", b_name: str = "torch",
             passed: bool = True, max_abs_diff: float = 0.0, max_rel_diff: float = 0.0, tolerance: float = 0.0,
             **context) -> Check:
    """An information row (never fails a run), with its reason."""
    return Check(check, a_name, b_name, max_abs_diff, max_rel_diff, tolerance, passed, where or reason, info=True,
                 reason=reason, **context)


def kink_straddles(pairs, kinks=(0.0,)) -> dict:
    """Activation inputs that fall on different sides of a kink in the two frameworks.

    Args:
        pairs: (activation name, input name, a input, b input[, kinks]) tuples.
        kinks: the kink positions where a tuple gives none (ReLU: 0).

    Returns:
        {activation: (count, "input[index]: a vs b")}, first straddle of each.
    """
    out = {}
    for name, src, x, y, *own in pairs:
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            continue
        straddle = np.zeros(x.shape, bool)
        for k in (own[0] if own else kinks):
            straddle |= (x > k) != (y > k)
        if straddle.any():
            idx = tuple(int(i) for i in np.argwhere(straddle)[0])
            out[name] = (int(straddle.sum()), f"{src}{list(idx)}: {x[idx]:.3g} vs {y[idx]:.3g}")
    return out


def describe_straddles(straddles: dict) -> str:
    """'n activation inputs ..., first at node: where' ('' for none)."""
    if not straddles:
        return ""
    n = sum(c for c, _ in straddles.values())
    name, (_, where) = next(iter(straddles.items()))
    return f"{n} activation input(s) on different sides of a kink, first at {name}: {where}"


def kink_row(straddles: dict, what: str, *, a_name: str = "keras", b_name: str = "torch", **context) -> Check:
    """The information row that says where kinks were straddled and what follows from it."""
    n = float(sum(c for c, _ in straddles.values()))
    return info_row("relu kink straddles", KINK_REASON, f"{describe_straddles(straddles)}; {what}", a_name=a_name,
                    b_name=b_name, max_abs_diff=n, **context)


__all__ += ["describe_straddles"]


__all__ += ["diverged_together", "diverged_rows", "DIVERGED_REASON"]

DIVERGED_REASON = ("both frameworks' training diverged at step {step} (the loss is non-finite on both sides from that "
                   "step on, and finite on both before it): the optimizer's step is too large for these weights and "
                   "inputs in either framework, not a porting difference. The loss curve is compared over the {step} "
                   "finite step(s); the trained weights (non-finite on both sides) are not compared. A smaller "
                   "learning rate (--optimizer, or the model's compile) compares them.")


def diverged_together(a, b) -> int | None:
    """The first step at which both loss curves turn non-finite, when they do so at
    the same step (one rule for every flow's training rows). None when neither
    diverges, or when only one does or they part at different steps: that is a
    disagreement, judged as such."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        return None
    bad_a, bad_b = ~np.isfinite(a), ~np.isfinite(b)
    if not bad_a.any() or not bad_b.any():
        return None
    step_a, step_b = int(np.argmax(bad_a)), int(np.argmax(bad_b))
    return step_a if step_a == step_b else None


def diverged_rows(name: str, step: int, a, b, a64=None, b64=None, *, dtype: str, a_name: str = "keras",
                  b_name: str = "torch", **context) -> list:
    """The training rows when both loss curves turn non-finite at `step`
    (diverged_together): one information row with the reason, and the loss curve
    judged over the finite steps before it (with the float64 curves, where finite,
    as the float32 reference). The trained weights are not compared."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    names = {"a_name": a_name, "b_name": b_name}
    rows = [info_row(f"{name}: diverged in both", DIVERGED_REASON.format(step=step), f"step {step}: {a[step]} vs {b[step]}",
                     dtype=dtype, **names, **context)]
    if step > 0:
        refs = [None if r is None else np.asarray(r, dtype=float).ravel()[:step] for r in (a64, b64)]
        usable = all(r is not None and np.all(np.isfinite(r)) for r in refs)
        rows.append(trajectory(f"{name}, first {step} step(s)", a[:step], b[:step], *(refs if usable else (None, None)),
                               dtype=dtype, **names, **context))
    return rows
