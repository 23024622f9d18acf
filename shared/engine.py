"""The parity engine: every check, run on a pair of backends. Framework-free.

`check_pair(a, b, data, opts)` is what `python compare.py` runs for each
(dataset, task, model): the weights' round trip, the forward pass on the
validation split (logits, probabilities, losses, predictions, metrics, and on
a failure the first layer that differs), the gradients, the training runs
(shared/engine_train.py), the float64 repeat, the threshold sweep, the
from-logits stability rows and the ONNX exports run in onnxruntime.

`a` and `b` are anything that implements shared.backend.Backend: the Keras
and PyTorch twins, onnxruntime, or two numpy models in a test. Nothing here
imports TensorFlow or torch; everything arrives as numpy in the common (torch)
layout. `a` is the side whose weights are ported to `b`; `b` is the reference
scale of every comparison (compare_arrays' `b`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shared import metrics
from shared.checks import Check, compare_arrays, compare_named
from shared.layout import nhwc_to_nchw
from shared.tolerances import Tolerance, for_check

__all__ = ["Options", "PairData", "PairResult", "NullProgress", "check_pair", "weights_check", "forward_checks",
           "first_differing_layer", "relu_layers", "relu_straddles", "gradient_checks", "stability_checks",
           "onnx_checks", "worst", "count_check", "DEFAULT_STEPS", "DEFAULT_BATCH_SIZE", "DEFAULT_LR",
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
    fault: str | None = None
    quiet: bool = False
    threads: int = 1


@dataclass
class PairData:
    """The data a pair is checked on, in the common layout (images NCHW).

    Args:
        task: one of shared.config.TASKS.
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
        """From a shared.dataset.Dataset (images NHWC there, NCHW here)."""
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

    def badness(c):
        return float("inf") if not c.passed else c.max_abs_diff / max(c.tolerance, 1e-300)

    w = max(checks, key=badness)
    tensor = w.check.split(" ", 1)[-1]
    return Check(name, w.a, w.b, w.max_abs_diff, w.max_rel_diff, w.tolerance, all(c.passed for c in checks),
                 f"{tensor} {w.where}", detail={c.check.split(" ", 1)[-1]: c.max_abs_diff for c in checks}, **ctx)


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
    back = a.clone()
    back.set_weights(store(b.name, b.get_weights()))
    return worst(f"weights {a.name}->{b.name}->{a.name}",
                 compare_named("w", back.get_weights(), start, Tolerance(rel=0.0),
                               a_name=f"{a.name}->{b.name}->{a.name}", b_name=a.name), **ctx)


# ---- 2. forward --------------------------------------------------------------------
def first_differing_layer(a, b, x: np.ndarray, tol: Tolerance, ctx: dict) -> Check | None:
    """Walk both models layer by layer; the first layer whose output differs."""
    la, lb = a.layer_outputs(x), b.layer_outputs(x)
    for name in la:
        if name not in lb:
            return Check("first differing layer", a.name, b.name, float("inf"), float("inf"), 0.0, False,
                         f"{name}: only in {a.name}", detail={"layer": name}, **ctx)
        c = compare_arrays("first differing layer", la[name], lb[name], tol, **_sides(a, b), **ctx)
        if not c.passed:
            c.where = f"{name} {c.where}"
            c.detail = {"layer": name}
            return c
    return None


def _loss_rows(a, b, oa: dict, ob: dict, tol, labels, rows, ctx) -> list:
    out = []
    for name in ("probabilities", "per-sample loss", "mean loss"):
        lab = labels if name == "probabilities" else rows
        out.append(compare_arrays(name, oa[name], ob[name], tol, labels=lab, **_sides(a, b), **ctx))
    return out


def forward_checks(a, b, data: PairData, tol: Tolerance, ctx: dict) -> tuple:
    """Logits, probabilities, losses, predictions and metrics on the validation split.

    Returns:
        (checks, a's logits, b's logits).
    """
    xv, yv = data.valid(a.dtype)
    labels, rows = data.labels()
    la, lb = a.forward(xv), b.forward(xv)
    c_logits = compare_arrays("logits", la, lb, tol, labels=labels, **_sides(a, b), **ctx)
    oa, ob = a.loss_outputs(la, yv), b.loss_outputs(lb, yv)
    checks = [c_logits] + _loss_rows(a, b, oa, ob, tol, labels, rows, ctx)
    if not c_logits.passed:
        layer = first_differing_layer(a, b, xv, tol, ctx)
        if layer is not None:
            checks.append(layer)
    if data.task != "regression":
        pa = metrics.predictions(data.task, oa["probabilities"])
        pb = metrics.predictions(data.task, ob["probabilities"])
        checks.append(count_check("predictions", pa, pb, rows[0], a.name, b.name, **ctx))
    ma = metrics.metrics_for(data.task, yv, oa["probabilities"])
    mb = metrics.metrics_for(data.task, yv, ob["probabilities"])
    row = worst("metrics", compare_named("metric", ma, mb, tol, **_sides(a, b), **ctx), **ctx)
    row.detail = {a.name: ma, b.name: mb}
    return checks + [row], la, lb


def float64_forward_checks(a64, b64, data: PairData, tol: Tolerance, ctx: dict) -> list:
    """The float64 repeat: logits, probabilities and losses (labels on the logits only)."""
    x64, y64 = data.valid("float64")
    labels, _ = data.labels()
    la, lb = a64.forward(x64), b64.forward(x64)
    out = [compare_arrays("logits", la, lb, tol, labels=labels, **_sides(a64, b64), **ctx)]
    oa, ob = a64.loss_outputs(la, y64), b64.loss_outputs(lb, y64)
    return out + _loss_rows(a64, b64, oa, ob, tol, None, None, ctx)


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
    la, lb = a.layer_outputs(x, training=True), b.layer_outputs(x, training=True)
    pairs = [p for p in relu_layers(la) if p in set(relu_layers(lb))]
    out = {}
    for prev, name in pairs:
        u, v = la[prev], lb[prev]
        straddle = (u > 0) != (v > 0)
        if straddle.any():
            idx = tuple(int(i) for i in np.argwhere(straddle)[0])
            out[name] = (int(straddle.sum()), f"{prev}{list(idx)}: {u[idx]:.3g} vs {v[idx]:.3g}")
    return out


def _straddle_row(a, b, skipped: list, chosen: int, ctx: dict) -> Check:
    j, st = skipped[0]
    layer, (n, where) = next(iter(st.items()))
    return Check("relu kink straddles", a.name, b.name, float(sum(c for c, _ in st.values())), 0.0, 0.0, True,
                 f"batch {j}: {n} input(s) of {layer} on different sides of 0, e.g. {where}; "
                 f"{len(skipped)} batch(es) skipped, gradients compared on batch {chosen}",
                 info=True, detail={f"batch {i}": {k: v[0] for k, v in s.items()} for i, s in skipped}, **ctx)


def gradient_checks(a, b, batches: list, tol, ctx: dict) -> list:
    """Loss and gradients on the first batch with no ReLU input on the kink.

    Args:
        tol: kind -> Tolerance ("forward", "gradient").
    """
    skipped, chosen = [], 0
    for j, (xb, _) in enumerate(batches[:MAX_GRADIENT_BATCHES]):
        straddles = relu_straddles(a, b, xb)
        if not straddles:
            chosen = j
            break
        skipped.append((j, straddles))
    xb, yb = batches[chosen]
    loss_a, ga = a.loss_and_grads(xb, yb)
    loss_b, gb = b.loss_and_grads(xb, yb)
    out = [_straddle_row(a, b, skipped, chosen, ctx)] if skipped else []
    out.append(compare_arrays(f"loss (training mode, batch {chosen})", loss_a, loss_b, tol("forward"),
                              **_sides(a, b), **ctx))
    out.append(worst(f"gradients (batch {chosen})",
                     compare_named("grad", ga, gb, tol("gradient"), **_sides(a, b), **ctx), **ctx))
    return out


# ---- 4. stability and ONNX ---------------------------------------------------------
def stability_checks(a, b, logits_a: np.ndarray, data: PairData, tol: Tolerance, ctx: dict) -> list:
    """The from-logits losses at extreme logits, and the naive path's failure (info rows)."""
    _, yv = data.valid(a.dtype)
    _, rows = data.labels()
    big = (logits_a.astype(np.float64) * EXTREME_LOGIT_SCALE).astype(a.dtype)
    sa, sb = a.loss_outputs(big, yv, naive=True), b.loss_outputs(big, yv, naive=True)
    sctx = dict(ctx, info=True)
    c = compare_arrays(f"stability from_logits x{EXTREME_LOGIT_SCALE:g}", sa["per-sample loss"], sb["per-sample loss"],
                       tol, **_sides(a, b), **sctx)
    c.detail = {"finite": bool(np.isfinite(sa["per-sample loss"]).all() and np.isfinite(sb["per-sample loss"]).all())}
    out = [c]
    for side, s in ((a.name, sa), (b.name, sb)):
        c = compare_arrays(f"stability naive probabilities->log x{EXTREME_LOGIT_SCALE:g}", s["naive loss"],
                           s["per-sample loss"], tol, a_name=f"{side} naive", b_name=f"{side} from_logits",
                           labels=rows, **sctx)
        c.detail = {"nonfinite": int((~np.isfinite(s["naive loss"])).sum())}
        out.append(c)
    return out


def onnx_checks(a, b, data: PairData, outdir, progress, name: str, ctx: dict) -> tuple:
    """Export both, validate, run in onnxruntime, compare the four backends on every edge.

    onnxruntime is a backend like the others (forward only): the four outputs
    are compared pairwise by shared.onnx_check.edge_checks.

    Returns:
        (checks, info for the report: per side the checker's summary and the
        exporter that ran).
    """
    from shared import onnx_check

    xv, _ = data.valid(a.dtype)
    outdir.mkdir(parents=True, exist_ok=True)
    task_id = progress.task(f"{name} ONNX export", total=2)
    exported = {}
    for side in (a, b):
        path, how = side.export_onnx(outdir / f"{side.name}.onnx", onnx_check.ONNX_OPSET)
        exported[side.name] = (side.onnx_backend(path), {**onnx_check.check_model(path), **how})
        progress.advance(task_id)
    progress.done(task_id)
    info = {s: i for s, (_, i) in exported.items()}
    info.update(ort_level=str(onnx_check.ORT_LEVEL), opset=onnx_check.ONNX_OPSET)
    runners = [a, b] + [o for o, _ in exported.values()]
    try:
        outputs = {r.name: r.forward(xv) for r in runners}
    except onnx_check.OnnxModelError as exc:
        return [Check("onnx skipped", a.name, b.name, 0.0, 0.0, 0.0, True, f"onnxruntime cannot run the exports: {exc}",
                      info=True, **ctx)], info
    classes = data.classes if data.task in _CLASS_TASKS else None
    exporters = {s: i["exporter"] for s, i in info.items() if isinstance(i, dict)}
    checks = onnx_check.edge_checks(outputs, class_names=classes, detail={"exporters": exporters}, **ctx)
    for o, _ in exported.values():  # dynamic batch: item 0 alone gives what it gave inside the batch
        checks.append(compare_arrays("onnx batch 1 vs full batch", o.forward(xv[:1]), outputs[o.name][:1],
                                     for_check("onnx", a.dtype), a_name=f"{o.name} batch 1",
                                     b_name=f"{o.name} batch {len(xv)}", **ctx))
    return checks, info


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
        batchnorm: the model has BatchNorm before a ReLU (looser float32
            training tolerance, shared.tolerances.TRAINING_BATCHNORM).
        workdir: where the ONNX files go (workdir / "onnx"); None: no export.
        store: see weights_check.
    """
    from shared import engine_train as et

    progress = progress or NullProgress()
    res = PairResult()
    ctx = dict(task=data.task, model=model, dtype=a.dtype)

    def tol(kind, dtype=a.dtype):
        return for_check(kind, dtype, opts.tolerance, batchnorm=batchnorm)

    clock = _Clock(res.timings)
    res.checks.append(weights_check(a, b, ctx, store))
    clock.lap("port")
    batches = et.make_pair_batches(data, a.dtype, opts)
    checks, logits_a, logits_b = forward_checks(a, b, data, tol("forward"), ctx)
    res.checks += checks
    res.logit_diffs = np.abs(logits_a.astype(np.float64) - logits_b.astype(np.float64)).ravel()
    clock.lap("forward")
    res.checks += gradient_checks(a, b, batches, tol, ctx)
    clock.lap("gradients")
    res.checks += et.training_checks(a, b, batches[: opts.steps], opts, progress, name, res.curves, tol, ctx)
    clock.lap("training")
    if a.dtype == "float32":
        res.checks += et.float64_checks(a, b, data, batches[: opts.steps], opts, progress, name, tol, ctx)
        clock.lap("float64")
    if data.task == "multilabel":
        rows, res.sweep = et.sweep_checks(a, b, data, opts, progress, name, tol("forward"), ctx)
        res.checks += rows
        clock.lap("threshold sweep")
    if data.task != "regression":
        res.checks += stability_checks(a, b, logits_a, data, tol("forward"), ctx)
    if opts.onnx and workdir is not None:
        clock.lap(None)
        rows, res.onnx = onnx_checks(a, b, data, workdir / "onnx" / name.replace("/", "_").replace(":", "_"),
                                     progress, name, ctx)
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
