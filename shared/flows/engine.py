"""The parity engine: every check, run on a pair of backends. Framework-free.

`check_pair(a, b, data, opts)` is what `python compare.py` runs for each
(dataset, task, model): the weights' round trip, the forward pass on the
validation split (logits, probabilities, losses, predictions, metrics, and on
a failure the first layer that differs), the gradients, the training runs
(shared/flows/engine_train.py), the float64 repeat, the threshold sweep, the
from-logits stability rows and the ONNX exports run in onnxruntime.

`a` and `b` are shared.flows.side.Side objects in the default run's form (its
column in shared/flows/side.py's table): the Keras and PyTorch twins, onnxruntime,
or two numpy models in a test. Nothing here
imports TensorFlow or torch; everything arrives as numpy in the common (torch)
layout. `a` is the side whose weights are ported to `b`; `b` is the reference
scale of every comparison (compare_arrays' `b`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shared.verdict.checks import Check, compare_named
from shared.verdict.diagnose import diagnose
from shared.verdict import policy as verdict
from shared.verdict.judge import Judge
from shared.graph.layout import nhwc_to_nchw
from shared.verdict.tolerances import Tolerance

__all__ = ["Options", "PairData", "PairResult", "NullProgress", "check_pair", "weights_check", "forward_checks",
           "first_differing_layer", "relu_layers", "relu_straddles", "gradient_checks", "worst", "count_check", "DEFAULT_STEPS", "DEFAULT_BATCH_SIZE", "DEFAULT_LR",
           "EXTREME_LOGIT_SCALE", "MAX_GRADIENT_BATCHES"]

# "A few dozen" steps: long enough for the float32 rounding to compound.
DEFAULT_STEPS = 30
DEFAULT_BATCH_SIZE = 32
# Learning rates per optimizer: constant (a schedule breaks SGD-momentum
# equivalence, PORTING_TRAPS.md), small enough that no built-in pair diverges.
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}
# Logits are multiplied by this to show what the seeds say about from_logits:
# at |logit| ~ 1e3 a probability rounds to exactly 0 or 1 in float32.
EXTREME_LOGIT_SCALE = 1000.0
# The gradient check looks at most this many batches for one on which no ReLU
# input straddles 0 between the backends (see relu_straddles).
MAX_GRADIENT_BATCHES = 8
_CLASS_TASKS = ("multiclass", "multilabel")


@dataclass
class Options:
    """Everything that shapes a run (the CLI fills it; tests may too)."""

    steps: int = DEFAULT_STEPS
    optimizers: tuple = ("sgd", "adam")
    seed: int = 0
    dtype: str = "float32"
    batch_size: int = DEFAULT_BATCH_SIZE
    tolerance: Tolerance | None = None  # --atol/--rtol override every kind
    onnx: bool = True
    fault: str | None = None  # --plant NAME[=SIZE] (shared/data/faults.py)
    quiet: bool = False
    threads: int = 1
    verbose: bool = False
    train_overrides: dict = field(default_factory=dict)  # TrainConfig changes a planted fault needs


@dataclass
class PairData:
    """The data a pair is checked on, in the common layout (images NCHW).

    Args:
        task: one of shared.data.config.TASKS.
        x_train, y_train: the items training batches are drawn from.
        x_valid, y_valid: the forward pass' inputs and targets.
        items_valid: a name per validation row (for `where`); default indices.
        classes: class (or label) names for multiclass / multilabel columns.
    """

    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    items_valid: list = field(default_factory=list)
    classes: list = field(default_factory=list)

    @classmethod
    def from_dataset(cls, ds) -> "PairData":
        """From a shared.data.dataset.Dataset (images NHWC there, NCHW here)."""
        return cls(ds.task, nhwc_to_nchw(ds.x_train), ds.y_train, nhwc_to_nchw(ds.x_valid), ds.y_valid,
                   list(ds.items_valid), list(ds.classes))

    def valid(self, dtype: str) -> tuple:
        return self.x_valid.astype(dtype), cast_y(self.y_valid, dtype)

    def labels(self) -> tuple:
        """({0: row names, 1: class names}, {0: row names}) for compare_arrays."""
        items = list(self.items_valid) or list(range(len(self.x_valid)))
        class_axis = {1: list(self.classes)} if self.task in _CLASS_TASKS else {}
        return {0: items, **class_axis}, {0: items}


@dataclass
class PairResult:
    checks: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    sweep: dict | None = None
    logit_diffs: np.ndarray | None = None
    onnx: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


class NullProgress:
    """The progress interface the engine reports to (compare.py shows it with rich)."""

    def task(self, description: str, total: int):
        return None

    def advance(self, task_id, n: int = 1, description: str | None = None):
        pass

    def done(self, task_id):
        pass

    def log(self, msg: str):
        pass


def cast_y(y: np.ndarray, dtype: str) -> np.ndarray:
    """Float targets in the model dtype; class indices keep their integer dtype."""
    return y if y.dtype.kind in "iu" else y.astype(dtype)


def worst(name: str, checks: list, **ctx) -> Check:
    """Fold per-tensor checks into one row: the worst (by diff / tolerance) names itself."""

    w = max(checks, key=lambda c: (not c.passed, c.margin))
    tensor = w.check.split(" ", 1)[-1]
    detail = {c.check.split(" ", 1)[-1]: c.max_abs_diff for c in checks}
    if isinstance(w.detail, dict) and w.detail.get("diagnosis") and not w.passed:
        detail["diagnosis"] = w.detail["diagnosis"]
    return Check(name, w.a, w.b, w.max_abs_diff, w.max_rel_diff, w.tolerance, all(c.passed for c in checks),
                 f"{tensor} {w.where}", detail=detail, tolerance_from=w.tolerance_from, **ctx)


def count_check(name: str, a_vals, b_vals, item_ids, a: str, b: str, **ctx) -> Check:
    """Discrete outputs (predictions, fingerprints): max_abs_diff = number that differ."""
    a_vals, b_vals = np.asarray(a_vals), np.asarray(b_vals)
    differ = np.flatnonzero((a_vals != b_vals).reshape(len(a_vals), -1).any(axis=1))
    if len(differ):
        i = int(differ[0])
        item = item_ids[i] if i < len(item_ids) else i
        where = f"{len(differ)} of {len(a_vals)} differ; first: item {i} ({item}): {a_vals[i].tolist()} vs {b_vals[i].tolist()}"
    else:
        where = f"all {len(a_vals)} equal"
    n = float(len(differ))
    return Check(name, a, b, n, n / max(1, len(a_vals)), 0.0, not len(differ), where, **ctx)


def _sides(a, b) -> dict:
    return {"a_name": a.name, "b_name": b.name}


# ---- 1. weights --------------------------------------------------------------------
def weights_check(a, b, ctx: dict, store=None) -> Check:
    """Port a's weights to b, then b's back into a fresh a: must be bitwise a's.

    Args:
        store: optional (side name, tensors) -> tensors: writes the portable
            file and reads it back (the port then goes through the file).
    """
    store = store or (lambda side, tensors: tensors)
    start = a.get_weights()
    b.set_weights(store(a.name, start))
    back = a.copy()
    back.set_weights(store(b.name, b.get_weights()))
    rows = compare_named("w", back.get_weights(), start, Tolerance(rel=0.0, note="exact: the round trip is bitwise"),
                         a_name=f"{a.name}->{b.name}->{a.name}", b_name=a.name)
    returned = back.get_weights()
    for c in rows:
        tensor = c.check.split(" ", 1)[-1]
        if not c.passed and tensor in returned and tensor in start:
            hint = diagnose(tensor, start[tensor], returned[tensor])
            if hint:
                c.detail["diagnosis"] = hint
    return worst(f"weights {a.name}->{b.name}->{a.name}", rows, **ctx)


# ---- 2. forward --------------------------------------------------------------------
def first_differing_layer(a, b, x: np.ndarray, judge: Judge, ctx: dict, refs=None) -> Check | None:
    """Walk both models layer by layer; the first layer whose output differs.

    With float64 twins `refs` = (a64, b64), each layer is judged by its own
    derived tolerance; a likely trap is named from the layer's numbers.
    """
    la, lb = a.values([x]), b.values([x])
    la64 = lb64 = {}
    if refs is not None:
        x64 = x.astype("float64")
        la64, lb64 = refs[0].values([x64]), refs[1].values([x64])
    for name in la:
        if name not in lb:
            return Check("first differing layer", a.name, b.name, float("inf"), float("inf"), 0.0, False,
                         f"{name}: only in {a.name}", detail={"layer": name}, **ctx)
        c = judge.compare("first differing layer", "forward", la[name], lb[name], la64.get(name), lb64.get(name),
                          **_sides(a, b), **ctx)
        if not c.passed:
            c.where = f"{name} {c.where}"
            c.detail = {"layer": name}
            hint = diagnose(name, la[name], lb[name], layer=name, first_layer=True)
            if hint:
                c.detail["diagnosis"] = hint
            return c
    return None


def _loss_rows(a, b, oa: dict, ob: dict, judge: Judge, labels, rows, ctx, refs=(None, None), f32=None) -> list:
    """refs: float32 rows' float64 results; f32: float64 rows' float32 results (the error model)."""
    oa64, ob64 = refs
    out = []
    for name in ("probabilities", "per-sample loss", "mean loss"):
        lab = labels if name == "probabilities" else rows
        models = _f32_model(a, b, f32, name, oa[name], ob[name])
        c = judge.compare(name, "forward", oa[name], ob[name], None if oa64 is None else oa64[name],
                          None if ob64 is None else ob64[name], labels=lab, models=models, **_sides(a, b), **ctx)
        if not c.passed:
            hint = diagnose(name, oa[name], ob[name])
            if hint:
                c.detail["diagnosis"] = hint
        out.append(c)
    return out


def _f32_model(a64, b64, f32, name, va64, vb64) -> list:
    """The float64 error model of one float64 row from the float32 results (shared/verdict/policy.py)."""
    if f32 is None:
        return []
    (va32, vb32) = (f32[0][name], f32[1][name]) if name != "logits" else f32
    return [verdict.float32_error_model("forward", va32, va64, vb32, vb64, (a64.name, b64.name))]


def forward_checks(a, b, data: PairData, judge: Judge, ctx: dict, refs=None) -> tuple:
    """Logits, probabilities, losses, predictions and metrics on the validation split.

    Args:
        refs: (a64, b64), the float64 twins: each float32 row is then judged
            against each side's own float32-vs-float64 error (Judge).

    Returns:
        (checks, a's logits, b's logits, float64 outputs {"logits": (a, b),
        "loss outputs": (a, b), "float32": the same in float32} or None).
    """
    xv, yv = data.valid(a.dtype)
    labels, rows = data.labels()
    la, lb = a.forward([xv])[0], b.forward([xv])[0]
    oa, ob = a.loss_outputs(la, yv), b.loss_outputs(lb, yv)
    la64 = lb64 = oa64 = ob64 = None
    if refs is not None:
        x64, y64 = data.valid("float64")
        la64, lb64 = refs[0].forward([x64])[0], refs[1].forward([x64])[0]
        oa64, ob64 = refs[0].loss_outputs(la64, y64), refs[1].loss_outputs(lb64, y64)
    c_logits = judge.compare("logits", "forward", la, lb, la64, lb64, labels=labels, **_sides(a, b), **ctx)
    checks = [c_logits] + _loss_rows(a, b, oa, ob, judge, labels, rows, ctx, (oa64, ob64))
    if not c_logits.passed:
        layer = first_differing_layer(a, b, xv, judge, ctx, refs)
        if layer is not None:
            checks.append(layer)
    prob_tol = checks[1].tolerance  # the probabilities row's: what a near tie is
    if data.task != "regression":
        checks.append(judge.predictions(oa["probabilities"], ob["probabilities"], prob_tol, rows[0],
                                        **_sides(a, b), **ctx))
    checks.append(judge.metrics(yv, oa["probabilities"], ob["probabilities"], prob_tol, **_sides(a, b), **ctx))
    f64 = None if refs is None else {"logits": (la64, lb64), "loss outputs": (oa64, ob64),
                                     "float32": {"logits": (la, lb), "loss outputs": (oa, ob)}}
    return checks, la, lb, f64


def float64_forward_checks(a64, b64, data: PairData, judge: Judge, ctx: dict, f64=None) -> list:
    """The float64 repeat: logits, probabilities and losses (labels on the logits only).

    Args:
        f64: the float64 outputs forward_checks computed already (reused).
    """
    x64, y64 = data.valid("float64")
    labels, _ = data.labels()
    if f64 is not None:
        (la, lb), (oa, ob) = f64["logits"], f64["loss outputs"]
    else:
        la, lb = a64.forward([x64])[0], b64.forward([x64])[0]
        oa, ob = a64.loss_outputs(la, y64), b64.loss_outputs(lb, y64)
    f32 = (f64 or {}).get("float32")  # where the fixed bound is not met: the float32 error model
    out = [judge.compare("logits", "forward", la, lb, labels=labels, **_sides(a64, b64), **ctx,
                         models=_f32_model(a64, b64, f32 and f32["logits"], "logits", la, lb))]
    out += _loss_rows(a64, b64, oa, ob, judge, None, None, ctx, f32=f32 and f32["loss outputs"])
    if not out[0].passed:  # locate it here too: a bug below float32's rounding shows only in float64
        layer = first_differing_layer(a64, b64, x64, judge, ctx)
        if layer is not None:
            out.append(layer)
    return out


# ---- 3. gradients ------------------------------------------------------------------
def relu_layers(outputs: dict) -> list:
    """(input layer, layer) for each layer whose output is max(0, the previous one's)."""
    names = list(outputs)
    return [(prev, name) for prev, name in zip(names, names[1:])
            if outputs[prev].shape == outputs[name].shape
            and np.array_equal(outputs[name], np.maximum(outputs[prev], 0))]


def relu_straddles(a, b, x: np.ndarray) -> dict:
    """ReLU inputs that fall on different sides of 0 in the two backends.

    In training mode BatchNorm centres activations on the ReLU's kink; an input
    that is exactly 0 in one framework can be +4e-9 in the other, and then the
    gradient passes on one side only. That is arithmetic, not a porting bug,
    but it moves gradients by up to 1e-3, so the gradient check skips such
    batches and says so. The ReLUs are found, not named: every layer whose
    output is max(0, its input) on both sides. Backends keep their state.

    Returns:
        {relu layer: (count, "input layer[index]: a value vs b value")}.
    """
    la, lb = a.values([x], training=True), b.values([x], training=True)
    pairs = [p for p in relu_layers(la) if p in set(relu_layers(lb))]
    return verdict.kink_straddles((name, prev, la[prev], lb[prev]) for prev, name in pairs)


def _straddle_row(a, b, skipped: list, chosen: int, ctx: dict) -> Check:
    j, st = skipped[0]
    return verdict.kink_row(st, f"batch {j}; {len(skipped)} batch(es) skipped, gradients compared on batch {chosen}",
                            a_name=a.name, b_name=b.name,
                            detail={f"batch {i}": {k: v[0] for k, v in s.items()} for i, s in skipped}, **ctx)


def gradient_checks(a, b, batches: list, judge: Judge, ctx: dict, refs=None) -> list:
    """Loss and gradients on the first batch with no ReLU input on the kink.

    Args:
        refs: (a64, b64): each tensor's gradient is judged against each side's
            own float32-vs-float64 error on the same batch (Judge).
    """
    skipped, chosen = [], 0
    for j, (xb, _) in enumerate(batches[:MAX_GRADIENT_BATCHES]):
        straddles = relu_straddles(a, b, xb)
        if not straddles:
            chosen = j
            break
        skipped.append((j, straddles))
    xb, yb = batches[chosen]
    loss_a, ga = a.loss_and_grads([xb], yb)
    loss_b, gb = b.loss_and_grads([xb], yb)
    loss_a64 = loss_b64 = None
    ga64 = gb64 = {}
    if refs is not None:
        x64, y64 = xb.astype("float64"), (yb if yb.dtype.kind in "iu" else yb.astype("float64"))
        loss_a64, ga64 = refs[0].loss_and_grads([x64], y64)
        loss_b64, gb64 = refs[1].loss_and_grads([x64], y64)
    out = [_straddle_row(a, b, skipped, chosen, ctx)] if skipped else []
    out.append(judge.compare(f"loss (training mode, batch {chosen})", "forward", loss_a, loss_b, loss_a64, loss_b64,
                             **_sides(a, b), **ctx))
    rows = []
    for n in list(ga) + [m for m in gb if m not in ga]:
        if n not in ga or n not in gb:
            rows.append(Check(f"grad {n}", a.name, b.name, float("inf"), float("inf"), 0.0, False,
                              f"only in {a.name if n in ga else b.name}", **ctx))
            continue
        c = judge.compare(f"grad {n}", "gradient", ga[n], gb[n], ga64.get(n), gb64.get(n), **_sides(a, b), **ctx)
        if not c.passed:
            hint = diagnose(n, ga[n], gb[n])
            if hint:
                c.detail["diagnosis"] = hint
        rows.append(c)
    out.append(worst(f"gradients (batch {chosen})", rows, **ctx))
    return out


# ---- the whole pair ----------------------------------------------------------------
def check_pair(a, b, data: PairData, opts: Options, progress=None, *, name: str = "pair", model: str = "",
               batchnorm: bool = False, workdir=None, store=None) -> PairResult:
    """Every check for one pair of backends, in order (see the module docstring).

    Args:
        a, b: the two backends (b receives a's weights first).
        data: the data, common layout.
        opts: steps, optimizers, seed, batch size, tolerance override, onnx.
        progress: NullProgress-like; name: the pair's name in it and in the curves.
        model: the model's label in the report rows.
        batchnorm: the model has BatchNorm before a ReLU (the named float32
            training tolerance, used only without float64 references).
        workdir: where the ONNX files go (workdir / "onnx"); None: no export.
        store: see weights_check.

    A float32 pair is also run as its float64 twins (with_dtype, weights
    exactly widened): strict float64 rows, and the float64 references every
    float32 row is judged against (shared.verdict.judge, README "Verdicts").
    """
    from shared.flows import engine_outputs as eo
    from shared.flows import engine_train as et

    progress = progress or NullProgress()
    res = PairResult()
    ctx = dict(task=data.task, model=model, dtype=a.dtype)
    judge = Judge(opts.tolerance, batchnorm)
    clock = _Clock(res.timings)
    res.checks.append(weights_check(a, b, ctx, store))
    clock.lap("port")
    refs = (a.with_dtype("float64"), b.with_dtype("float64")) if a.dtype == "float32" else None
    batches = et.make_pair_batches(data, a.dtype, opts)
    checks, logits_a, logits_b, f64 = forward_checks(a, b, data, judge, ctx, refs)
    res.checks += checks
    res.logit_diffs = np.abs(logits_a.astype(np.float64) - logits_b.astype(np.float64)).ravel()
    clock.lap("forward")
    res.checks += gradient_checks(a, b, batches, judge, ctx, refs)
    clock.lap("gradients")
    runs64 = None
    if refs is not None:
        rows64, runs64 = et.float64_checks(refs[0], refs[1], data, batches[: opts.steps], opts, progress, name,
                                           judge, dict(ctx, dtype="float64"), f64)
        clock.lap("float64")
    res.checks += et.training_checks(a, b, batches[: opts.steps], opts, progress, name, res.curves, judge, ctx,
                                     runs64)[0]
    clock.lap("training")
    if refs is not None:
        res.checks += rows64
    if data.task == "multilabel":
        rows, res.sweep = et.sweep_checks(a, b, data, opts, progress, name, judge, ctx)
        res.checks += rows
        clock.lap("threshold sweep")
    if data.task != "regression":
        res.checks += eo.stability_checks(a, b, logits_a, data, judge, ctx, refs)
    if opts.onnx and workdir is not None:
        clock.lap(None)
        rows, res.onnx = eo.onnx_checks(a, b, data, workdir / "onnx" / name.replace("/", "_").replace(":", "_"),
                                     progress, name, ctx, judge, None if f64 is None else f64["logits"])
        res.checks += rows
        clock.lap("onnx")
    return res


class _Clock:
    """Wall time per phase into `timings` (lap(None) restarts without recording)."""

    def __init__(self, timings: dict):
        self.timings, self.t = timings, time.perf_counter()

    def lap(self, phase: str | None) -> None:
        now = time.perf_counter()
        if phase is not None:
            self.timings[phase] = now - self.t
        self.t = now
