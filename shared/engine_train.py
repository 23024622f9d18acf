"""The engine's training checks: trajectories, the float64 repeat, the threshold sweep.

Part of shared/engine.py (split along the seam between one pass and many
steps). Framework-free: backends are trained through shared.backend.Backend.
"""

from __future__ import annotations

from shared import metrics
from shared.batches import batch_fingerprints, batch_plan, cast_batches, make_batches
from shared.checks import Check, compare_arrays, compare_named
from shared.config import TrainConfig
from shared.engine import DEFAULT_LR, PairData, cast_y, count_check, float64_forward_checks, worst

__all__ = ["make_pair_batches", "training_checks", "float64_checks", "sweep_checks", "SWEEP_TRAIN_STEPS", "SWEEP_LR"]

# The multi-label threshold sweep runs on the `a` twin trained this long with
# Adam at this rate: on the built-in images that reaches mAP ~0.8 and a curve
# with a clear peak (30 steps leave it predicting "no label" everywhere).
SWEEP_TRAIN_STEPS = 300
SWEEP_LR = 3e-3


def _batch_size(data: PairData, opts) -> int:
    return min(opts.batch_size, len(data.x_train))


def make_pair_batches(data: PairData, dtype: str, opts, steps: int | None = None) -> list:
    """The shared batch order (shared.batches): at least one batch (the gradient check needs one)."""
    plan = batch_plan(len(data.x_train), _batch_size(data, opts), steps or max(opts.steps, 1), opts.seed)
    return make_batches(data.x_train.astype(dtype), cast_y(data.y_train, dtype), plan)


def _train_both(a, b, batches: list, tc: TrainConfig, progress, label: str) -> list:
    """Fresh clones of a and b, each trained on `batches`: [(backend, TrainResult)] x 2."""
    runs = []
    for side in (a.clone(), b.clone()):
        task_id = progress.task(f"{label} {side.name}", total=len(batches))
        result = side.train(batches, tc, on_step=lambda i, loss, _id=task_id: progress.advance(_id))
        progress.done(task_id)
        runs.append((side, result))
    return runs


def training_checks(a, b, batches: list, opts, progress, name: str, curves: dict | None, tol, ctx: dict) -> list:
    """Train clones of a and b from their (equal) weights on `batches` with each optimizer; compare.

    Checks: the batch fingerprints each loop consumed (against each other and
    the shared plan), the per-step pre-update loss curves, and every final
    tensor (BatchNorm moving statistics included).

    Args:
        tol: kind -> Tolerance ("training").
        curves: filled with {f"{name} {opt}": {a.name: losses, b.name: losses}} if given.
    """
    out = []
    expected = batch_fingerprints(cast_batches(batches, a.dtype))
    bs = len(batches[0][0]) if batches else 0
    sides = dict(a_name=a.name, b_name=b.name)
    for opt in opts.optimizers:
        tc = TrainConfig(optimizer=opt, learning_rate=DEFAULT_LR[opt], steps=len(batches), batch_size=max(bs, 1),
                         seed=opts.seed)
        (ta, ra), (tb, rb) = _train_both(a, b, batches, tc, progress, f"{name} {a.dtype} {opt}")
        fp = count_check(f"batch fingerprints ({opt})", ra.fingerprints, rb.fingerprints,
                         [f"batch {i}" for i in range(len(batches))], a.name, b.name, **ctx)
        if ra.fingerprints != expected:
            fp.passed = False
            fp.where += f"; {a.name} differs from the shared batch order"
        fp.detail = {"batches": len(expected), "first": expected[:3]}
        out.append(fp)
        out.append(compare_arrays(f"training loss curve ({opt})", ra.losses, rb.losses, tol("training"),
                                  labels={0: [f"step {i + 1}" for i in range(len(batches))]}, **sides, **ctx))
        out.append(worst(f"trained weights ({opt})",
                         compare_named("w", ta.get_weights(), tb.get_weights(), tol("training"), **sides, **ctx), **ctx))
        if curves is not None:
            curves[f"{name} {opt}"] = {a.name: ra.losses, b.name: rb.losses}
    return out


def float64_checks(a, b, data: PairData, batches: list, opts, progress, name: str, tol, ctx: dict) -> list:
    """The same weights exactly widened to float64: forward and training must agree to ~1e-12.

    b64 holds what b holds (a planted fault included), a64 what a holds. With
    no float32 rounding to compound, the two optimizers must follow each other
    to ~1e-14 (the strict proof of the formulas).
    """
    a64, b64 = a.with_dtype("float64"), b.with_dtype("float64")
    ctx64 = dict(ctx, dtype="float64")
    out = float64_forward_checks(a64, b64, data, tol("forward", "float64"), ctx64)
    return out + training_checks(a64, b64, batches, opts, progress, name, None, lambda kind: tol(kind, "float64"), ctx64)


def sweep_checks(a, b, data: PairData, opts, progress, name: str, tol, ctx: dict) -> tuple:
    """Multi-label: sweep the decision threshold on both, on a model that has learned something.

    A clone of `a` trains alone (Adam, SWEEP_TRAIN_STEPS) so the curve is not
    flat; its weights go to fresh clones of both, so this stays a
    same-weights comparison and the two picks must agree exactly.

    Returns:
        (checks, the sweep for the plot).
    """
    trainee = a.clone()
    batches = make_pair_batches(data, a.dtype, opts, steps=SWEEP_TRAIN_STEPS)
    tc = TrainConfig(optimizer="adam", learning_rate=SWEEP_LR, steps=SWEEP_TRAIN_STEPS,
                     batch_size=_batch_size(data, opts), seed=opts.seed)
    task_id = progress.task(f"{name} {a.name} training for the threshold sweep", total=len(batches))
    trainee.train(batches, tc, on_step=lambda i, loss: progress.advance(task_id))
    progress.done(task_id)
    weights = trainee.get_weights()
    xv, yv = data.valid(a.dtype)
    probs = {}
    for side in (a, b):
        twin = side.clone()
        twin.set_weights(weights)
        probs[side.name] = side.loss_outputs(twin.forward(xv), yv)["probabilities"]
    thr, acc_a, best_a = metrics.threshold_sweep(yv, probs[a.name])
    _, acc_b, best_b = metrics.threshold_sweep(yv, probs[b.name])
    which = f"after {SWEEP_TRAIN_STEPS} Adam steps"
    gap = abs(best_a - best_b)
    rows = [
        compare_arrays(f"threshold sweep accuracy ({which})", acc_a, acc_b, tol, labels={0: [f"t={v:.2f}" for v in thr]},
                       a_name=a.name, b_name=b.name, **ctx),
        Check("chosen threshold", a.name, b.name, gap, gap, 0.0, best_a == best_b,
              f"{a.name} {best_a:.2f}, {b.name} {best_b:.2f} ({which})",
              detail={f"map_{a.name}": metrics.mean_average_precision(yv, probs[a.name])}, **ctx),
    ]
    sweep = {"thresholds": thr, a.name: acc_a, b.name: acc_b, "best": {a.name: best_a, b.name: best_b}}
    return rows, sweep
