"""The float64 training check on ill-conditioned runs: strict, unless the optimizer amplifies rounding.

Keras' and PyTorch's float64 twins follow each other to ~1e-14 over tens of
steps, which is why the float64 training check is strict (1e-10 relative,
shared/verdict/tolerances.py TRAINING) and where optimizer and layer bugs show. Some
legitimate data makes a gradient pure rounding noise: a conv feeding a
BatchNorm over two flat images, whose true gradient is ~0. Both frameworks
compute that gradient as ~1e-15 of noise (the float64 gradient check passes:
it is judged against the largest gradient), but Adam divides it by
(sqrt(v) + epsilon) with sqrt(v) ~ 1e-15 << epsilon = 1e-7, so the noise
becomes a step of lr * noise / epsilon, a gain of lr/epsilon = 1e4 at the
defaults. After 10 steps the frameworks' trained weights stand ~1e-10 apart
(measured: BIWI-layout folder of 8 flat images at batch 2, Adam, 2.9e-10),
and the strict row is a false alarm.

So a float64 training row that misses the strict tolerance is re-judged
against that bound, derived from measured numbers: the two frameworks'
float64 gradient difference on the first batch, per tensor (rounding: the
strict gradient check passed), times the optimizer's gain from a gradient
to a weight, element by element (Adam: lr / (|g| + epsilon), large only where g
is noise; SGD with momentum mu: lr / (1 - mu)), times the number of steps, times
CONDITIONING_FACTOR. A formula bug (Adam epsilon placement, coupled weight
decay) moves ordinary tensors, whose gradients are not noise, by 1e-8 and
more per step, far above a bound built from 1e-15 gradients; the re-judged
rows say so in their tolerance text. The bound is computed only for a row
that failed, so passing runs cost nothing more. The rows are made again by
the one verdict policy (shared/verdict/policy.py), with this bound as its
conditioning error model.
"""

from __future__ import annotations

import numpy as np

from shared.verdict import policy as verdict
from shared.verdict.checks import Check
from shared.verdict.tolerances import Tolerance, for_check

__all__ = ["CONDITIONING_FACTOR", "optimizer_gain", "rejudge_training"]

# The same multiple the float32 derivation applies to each side's own rounding
# error (shared/verdict/tolerances.py, derived_tolerance: 4 x (e_a + e_b)).
CONDITIONING_FACTOR = 4.0


def optimizer_gain(tc, g) -> np.ndarray:
    """Per element, the largest factor from a gradient difference to a weight difference in one step.

    Adam (keras/src/optimizers/adam.py): w -= lr_t * m / (sqrt(v) + epsilon),
    with m and sqrt(v) of the size of |g|: a change dg moves the step by at most
    lr * dg / (|g| + epsilon): ~lr * dg / |g| (tiny) for an ordinary gradient,
    lr / epsilon (1e4 at the defaults) for a noise-level one. The bias
    corrections (<= 1/(1-b1) at the first step) are absorbed in CONDITIONING_FACTOR.
    SGD with momentum mu (keras/src/optimizers/sgd.py): v = mu v - lr g sums to lr / (1 - mu).
    """
    g = np.abs(np.asarray(g, np.float64))
    if tc.optimizer == "adam":
        return float(tc.learning_rate) / (g + float(tc.epsilon))
    return np.full_like(g, float(tc.learning_rate) / max(1.0 - float(tc.momentum), 1e-12))


def rejudge_training(rows: list, a64, b64, batches: list, tc, run: tuple, ctx: dict, worst) -> list:
    """Re-judge one optimizer's failing float64 rows (loss curve, trained weights) by the gain bound.

    Args:
        rows: the rows training_checks gave for this optimizer.
        a64, b64: the float64 sides (only their gradients are read; state unchanged).
        batches, tc: what the run trained on, and how.
        run: ((a losses, b losses), (a weights, b weights)) of the run.
        worst: shared.flows.engine.worst (folds per-tensor rows into one).

    Returns:
        rows, with the curve and weights rows re-judged (strict where the bound is smaller).
    """
    failing = [r for r in rows if not r.passed and not r.info and r.check.startswith(("training loss curve", "trained weights"))]
    if not failing or not batches:
        return rows
    (la, lb), (wa, wb) = run
    x, y = batches[0]
    _, ga = a64.loss_and_grads([x], y)
    _, gb = b64.loss_and_grads([x], y)
    bound = {n: CONDITIONING_FACTOR * len(batches) * float(np.max(
                 optimizer_gain(tc, np.minimum(np.abs(ga[n]), np.abs(gb[n])))
                 * np.abs(np.asarray(ga[n], np.float64) - np.asarray(gb[n], np.float64)), initial=0.0))
             for n in ga if n in gb}
    strict = for_check("training", "float64")
    sides = dict(a_name=a64.name, b_name=b64.name)
    out = []
    for r in rows:
        if r not in failing:
            out.append(r)
        elif r.check.startswith("training loss curve"):
            # first order: |dL| <= sum over tensors of |grad| * |dw| (bound on dw per tensor)
            dl = sum(float(np.sum(np.abs(np.asarray(ga[n], np.float64)))) * bound[n] for n in bound)
            out.append(_rejudged(r.check, la, lb, dl, strict, sides, ctx, labels={0: [f"step {i + 1}" for i in range(len(la))]}))
        else:
            per = [_rejudged(f"w {n}", wa[n], wb[n], bound.get(n, 0.0), strict, sides, ctx) for n in wa if n in wb]
            row = worst(r.check, per, **ctx)
            loose = [c for c in per if c.tolerance_from.startswith("noise-level")]
            if loose:
                c = max(loose, key=lambda c: c.max_abs_diff)
                row.where += (f"; {len(loose)} tensor(s) judged by the optimizer-gain bound (noise-level gradients), "
                              f"largest {c.check[2:]} {c.max_abs_diff:.3g} against {c.tolerance:.3g}")
            out.append(row)
    return out


def _rejudged(check: str, a, b, bound: float, strict: Tolerance, sides: dict, ctx: dict, labels=None) -> Check:
    """The row made again by the one policy (shared/verdict/policy.py): the fixed bound
    first, then this measured error model."""
    note = (f"noise-level gradients amplified by the optimizer: {CONDITIONING_FACTOR:g} x steps x gain "
            f"(Adam lr/(|g|+epsilon), SGD lr/(1-momentum)) x the frameworks' float64 gradient difference "
            f"(shared/verdict/conditioning.py)")
    ctx = {k: v for k, v in ctx.items() if k != "dtype"}
    return verdict.judge(check, "training", "float64", a, b, models=[verdict.conditioning_model(bound, note)],
                         labels=labels, **sides, **ctx)
