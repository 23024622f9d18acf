"""The engine's training checks: trajectories, the float64 repeat, the threshold sweep.

Part of shared/flows/engine.py (split along the seam between one pass and many
steps). Framework-free: sides are trained through shared.flows.side.Side.train_steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shared.verdict import metrics
from shared.data.batches import batch_fingerprints, batch_plan, cast_batches, make_batches
from shared.verdict.checks import Check
from shared.data.config import TrainConfig
from shared.verdict.diagnose import diagnose
from shared.verdict.conditioning import rejudge_training
from shared.verdict.policy import diverged_together, info_row
from shared.flows.engine import DEFAULT_LR, PairData, cast_y, count_check, float64_forward_checks, worst

__all__ = ["make_pair_batches", "training_checks", "float64_checks", "sweep_checks", "SWEEP_TRAIN_STEPS", "SWEEP_LR"]

# The multi-label threshold sweep runs on the `a` twin trained this long with
# Adam at this rate: on the built-in images that reaches mAP ~0.8 and a curve
# with a clear peak (30 steps leave it predicting "no label" everywhere).
SWEEP_TRAIN_STEPS = 300
SWEEP_LR = 3e-3


def _batch_size(data: PairData, opts) -> int:
    return min(opts.batch_size, len(data.x_train))


def make_pair_batches(data: PairData, dtype: str, opts, steps: int | None = None) -> list:
    """The shared batch order (shared.data.batches): at least one batch (the gradient check needs one)."""
    plan = batch_plan(len(data.x_train), _batch_size(data, opts), steps or max(opts.steps, 1), opts.seed)
    return make_batches(data.x_train.astype(dtype), cast_y(data.y_train, dtype), plan)


def side_batches(batches: list) -> list:
    """(x, y) batches as Side.train_steps takes them: ([x], y), one input."""
    return [([x], y) for x, y in batches]


def _train_both(a, b, batches: list, tc: TrainConfig, progress, label: str) -> list:
    """Fresh copies of a and b, each trained on `batches`: [(side, TrainResult)] x 2."""
    runs = []
    for side in (a.copy(), b.copy()):
        task_id = progress.task(f"{label} {side.name}", total=len(batches))
        result = side.train_steps(side_batches(batches), None, tc, training=True,
                                  on_step=lambda i, loss, _id=task_id: progress.advance(_id))
        progress.done(task_id)
        runs.append((side, result))
    return runs


def train_config(opt: str, batches: list, opts) -> TrainConfig:
    """The run's TrainConfig for `opt` (with any changes a planted fault asks for)."""
    bs = len(batches[0][0]) if batches else 0
    return TrainConfig(optimizer=opt, learning_rate=DEFAULT_LR[opt], steps=len(batches), batch_size=max(bs, 1),
                       seed=opts.seed, **(getattr(opts, "train_overrides", None) or {}))


def _weights_rows(ta, tb, start: dict, ref, judge, sides: dict, ctx: dict, steps: int) -> list:
    """Every final tensor, judged (derived with float64 references), a trap named where one matches."""
    wa, wb = ta.get_weights(), tb.get_weights()
    wa64, wb64 = ref if ref is not None else ({}, {})
    rows = []
    for n in list(wa) + [m for m in wb if m not in wa]:
        if n not in wa or n not in wb:
            rows.append(Check(f"w {n}", sides["a_name"], sides["b_name"], float("inf"), float("inf"), 0.0, False,
                              f"only in {sides['a_name'] if n in wa else sides['b_name']}", **ctx))
            continue
        c = judge.compare(f"w {n}", "training", wa[n], wb[n], wa64.get(n), wb64.get(n), **sides, **ctx)
        if not c.passed:
            hint = diagnose(n, wa[n], wb[n], start=start.get(n), steps=steps)
            if hint:
                c.detail["diagnosis"] = hint
        rows.append(c)
    return rows


def _diverged_rows(opt, k, la, lb, ref, judge, sides, ctx) -> list:
    """Both twins diverged at step k+1 (e.g. SGD at the default rate on targets
    of 1e4): the curves are compared up to it; the final weights are not
    comparable (NaN agrees with nothing) and get an information row instead."""
    labels = {0: [f"step {i + 1}" for i in range(k)]}
    r64 = (np.asarray(ref[0][0])[:k], np.asarray(ref[0][1])[:k]) if ref else (None, None)
    curve = judge.trajectory(f"training loss curve ({opt})", np.asarray(la)[:k], np.asarray(lb)[:k], *r64,
                             labels=labels, **sides, **ctx)
    curve.where += f"; steps 1-{k} compared, both diverged at step {k + 1}"
    info = info_row(f"trained weights ({opt})", "the learning rate diverges on this data, in both frameworks alike",
                    f"not compared: both losses non-finite from step {k + 1} on ({la[k]} vs {lb[k]}): the learning "
                    f"rate diverges on this data, in both frameworks alike", **sides, **ctx)
    return [curve, info]


def training_checks(a, b, batches: list, opts, progress, name: str, curves: dict | None, judge, ctx: dict,
                    refs: dict | None = None) -> tuple:
    """Train clones of a and b from their (equal) weights on `batches` with each optimizer; compare.

    Checks: the batch fingerprints each loop consumed (against each other and
    the shared plan), the per-step pre-update loss curves, and every final
    tensor (BatchNorm moving statistics included).

    Args:
        judge: shared.verdict.judge.Judge (the run's tolerance policy).
        curves: filled with {f"{name} {opt}": {a.name: losses, b.name: losses}} if given.
        refs: {opt: float64 run} from the float64 twins (training_checks' own
            second return value): float32 curves are then judged step by step
            against each side's own float32-vs-float64 divergence, final
            tensors against each side's own float64 tensors.

    Returns:
        (checks, {opt: ((a losses, b losses), (a weights, b weights))}).
    """
    out, runs = [], {}
    expected = batch_fingerprints(cast_batches(batches, a.dtype))
    sides = dict(a_name=a.name, b_name=b.name)
    start = a.get_weights()
    for opt in opts.optimizers:
        tc = train_config(opt, batches, opts)
        (ta, ra), (tb, rb) = _train_both(a, b, batches, tc, progress, f"{name} {a.dtype} {opt}")
        runs[opt] = ((ra.losses, rb.losses), (ta.get_weights(), tb.get_weights()))
        ref = (refs or {}).get(opt)
        fp = count_check(f"batch fingerprints ({opt})", ra.fingerprints, rb.fingerprints,
                         [f"batch {i}" for i in range(len(batches))], a.name, b.name, **ctx)
        if ra.fingerprints != expected:
            fp = dataclasses.replace(fp, passed=False, where=fp.where + f"; {a.name} differs from the shared batch order")
        if not fp.passed:
            fp.detail = {"diagnosis": "the two training loops received different bytes: the data path differs "
                                      "(labels, channel order, resizing, normalisation) before the models"}
        fp.detail.update({"batches": len(expected), "first": expected[:3]})
        out.append(fp)
        k = diverged_together(ra.losses, rb.losses)  # the one rule of shared/verdict/policy.py
        if k is not None:  # both blew up at the same step: the run's learning rate, not a port
            out += _diverged_rows(opt, k, ra.losses, rb.losses, ref, judge, sides, ctx)
        else:
            out.append(judge.trajectory(f"training loss curve ({opt})", ra.losses, rb.losses,
                                        *(ref[0] if ref else (None, None)),
                                        labels={0: [f"step {i + 1}" for i in range(len(batches))]}, **sides, **ctx))
            out.append(worst(f"trained weights ({opt})",
                             _weights_rows(ta, tb, start, ref[1] if ref else None, judge, sides, ctx, len(batches)),
                             **ctx))
        if curves is not None:
            curves[f"{name} {opt}"] = {a.name: ra.losses, b.name: rb.losses}
    return out, runs


def float64_checks(a64, b64, data: PairData, batches: list, opts, progress, name: str, judge, ctx64: dict,
                   f64=None) -> tuple:
    """The same weights exactly widened to float64: forward and training must agree to ~1e-12.

    b64 holds what b holds (a planted fault included), a64 what a holds. With
    no float32 rounding to compound, the two optimizers must follow each other
    to ~1e-14 (the strict proof of the formulas).

    Returns:
        (checks, {opt: float64 run}: the references of the float32 training checks).
    """
    out = float64_forward_checks(a64, b64, data, judge, ctx64, f64)
    batches64 = cast_batches(batches, "float64")
    rows, runs = training_checks(a64, b64, batches64, opts, progress, name, None, judge, ctx64)
    if judge.override is None:  # a user's --atol/--rtol is taken as given
        for opt in opts.optimizers:  # a chaotic run is judged by its own conditioning (shared/verdict/conditioning.py)
            mine = [r for r in rows if r.check.endswith(f"({opt})")]
            new = rejudge_training(mine, a64, b64, batches64, train_config(opt, batches64, opts), runs[opt], ctx64, worst)
            rows = [new[mine.index(r)] if r in mine else r for r in rows]
    return out + rows, runs


def sweep_checks(a, b, data: PairData, opts, progress, name: str, judge, ctx: dict) -> tuple:
    """Multi-label: sweep the decision threshold on both, on a model that has learned something.

    A clone of `a` trains alone (Adam, SWEEP_TRAIN_STEPS) so the curve is not
    flat; its weights go to fresh clones of both, so this stays a
    same-weights comparison: the accuracies and the picks must agree except
    where probabilities lie within the float32 tolerance of a threshold.

    Returns:
        (checks, the sweep for the plot).
    """
    trainee = a.copy()
    batches = make_pair_batches(data, a.dtype, opts, steps=SWEEP_TRAIN_STEPS)
    tc = TrainConfig(optimizer="adam", learning_rate=SWEEP_LR, steps=SWEEP_TRAIN_STEPS,
                     batch_size=_batch_size(data, opts), seed=opts.seed)
    task_id = progress.task(f"{name} {a.name} training for the threshold sweep", total=len(batches))
    trainee.train_steps(side_batches(batches), None, tc, training=True,
                        on_step=lambda i, loss: progress.advance(task_id))
    progress.done(task_id)
    weights = trainee.get_weights()
    xv, yv = data.valid(a.dtype)
    probs, probs64 = {}, {}
    for side in (a, b):
        twin = side.copy()
        twin.set_weights(weights)
        probs[side.name] = side.loss_outputs(twin.forward([xv])[0], yv)["probabilities"]
        if a.dtype == "float32":  # each side's own float64 reference, for the near-tie tolerance
            x64, y64 = data.valid("float64")
            twin64 = twin.with_dtype("float64")
            probs64[side.name] = twin64.loss_outputs(twin64.forward([x64])[0], y64)["probabilities"]
    pa, pb = probs[a.name], probs[b.name]
    tol = judge.tolerance("forward", a.dtype, pa, pb, probs64.get(a.name), probs64.get(b.name), (a.name, b.name))
    tie = tol.allowed(1.0)
    thr, acc_a, best_a = metrics.threshold_sweep(yv, pa)
    _, acc_b, best_b = metrics.threshold_sweep(yv, pb)
    which = f"after {SWEEP_TRAIN_STEPS} Adam steps"
    rows = [
        judge.sweep_accuracy(yv, pa, pb, thr, acc_a, acc_b, tie, which=which, a_name=a.name, b_name=b.name, **ctx),
        judge.chosen_threshold(yv, pa, pb, thr, best_a, best_b, tie, which=which, a_name=a.name, b_name=b.name, **ctx),
    ]
    rows[-1].detail[f"map_{a.name}"] = metrics.mean_average_precision(yv, pa)
    sweep = {"thresholds": thr, a.name: acc_a, b.name: acc_b, "best": {a.name: best_a, b.name: best_b}}
    return rows, sweep
