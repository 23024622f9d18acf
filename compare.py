#!/usr/bin/env python3
"""keras-torch-parity: prove that a Keras model and its PyTorch twin agree.

Runs the same model in Keras (TensorFlow backend) and PyTorch from the same
portable weights on the same inputs, and compares losses, probabilities,
predictions, metrics, gradients, training trajectories (SGD with momentum and
Adam), float64 forward passes and both ONNX exports. Every check states what
was compared, the largest difference, where it occurred and the tolerance.

Commands:
  python compare.py [options]     every check on the built-in data, or on --data
  python compare.py data ...      show what a loader reads from a dataset
  python compare.py export ...    write both ONNX exports and the portable weights
  python compare.py bench ...     speed and memory of both implementations
  python compare.py port MODEL --out DIR   any Keras model -> readable PyTorch model.py + weights, proven
  python compare.py port TORCH_MODEL --input-shape C,H,W --out DIR   a PyTorch module -> model.keras + model_keras.py, proven

Exit codes: 0 every check passed; 1 a parity check failed; 2 bad usage or bad
input (one line on stderr, no traceback); 3 an internal error (a bug in this
tool, with its traceback).

This is the only module (with the tests) that brings TensorFlow and PyTorch
together, and only through numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.checks import Check, ParityFailure, assert_checks, compare_arrays, compare_named
from shared.config import DTYPES, MODELS, TASKS, ModelConfig, TrainConfig
from shared.errors import ParityError, UsageError
from shared.tolerances import Tolerance, for_check

__all__ = ["main", "compare_models", "assert_parity", "run_checks", "Options", "keras_to_torch", "port_checks", "torch_to_keras", "reverse_port_checks"]

EXIT_OK, EXIT_PARITY, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
DEFAULT_OUT = "reports/latest"
# "A few dozen" steps: long enough for the float32 rounding to compound.
DEFAULT_STEPS = 30
DEFAULT_BATCH_SIZE = 32
# Learning rates per optimizer: constant (a schedule breaks SGD-momentum
# equivalence, PORTING_TRAPS.md), small enough that no built-in pair diverges.
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}
# Logits are multiplied by this to show what the seeds say about from_logits:
# at |logit| ~ 1e3 a probability rounds to exactly 0 or 1 in float32.
EXTREME_LOGIT_SCALE = 1000.0
# The multi-label threshold sweep runs on a Keras twin trained this long with
# Adam at this rate: on the built-in images that reaches mAP ~0.8 and a curve
# with a clear peak (30 steps leave it predicting "no label" everywhere).
SWEEP_TRAIN_STEPS = 300
SWEEP_LR = 3e-3
# Threads per framework. These models are tiny: with more than one thread the
# synchronisation costs more than the work (torch CNN training measured 5-7x
# slower with 2 threads than 1 on this 2-core machine under load), and a fixed
# count keeps the reduction order, hence the numbers, independent of the
# machine's core count.
DEFAULT_THREADS = 1
# The gradient check looks at most this many batches for one on which no ReLU
# input straddles 0 between the frameworks (see relu_straddles).
MAX_GRADIENT_BATCHES = 8
# Known porting bugs the harness can plant in the PyTorch twin, to see what it
# reports for each (and for the tests that prove it names the right layer).
FAULTS = {
    "bn-epsilon": "torch BatchNorm eps left at torch's default 1e-5 instead of Keras' 1e-3",
    "conv-kernel": "conv1 kernel transposed with H and W swapped (OIWH instead of OIHW)",
    "flatten-order": "fc1 weight a plain transpose, ignoring Keras' (H,W,C) Flatten order",
}


# --------------------------------------------------------------------------
# Frameworks, imported lazily so that --help and `data` stay instant.
# --------------------------------------------------------------------------
class _Frameworks:
    """The two implementations and their frameworks, imported once."""

    def __init__(self, threads: int = DEFAULT_THREADS):
        import torch  # torch before TensorFlow, as Keras' own test suite does

        import keras_impl  # noqa: F401  (sets KERAS_BACKEND=tensorflow)
        import keras
        import tensorflow as tf

        from keras_impl import losses as kl
        from keras_impl import models as km
        from keras_impl import train as kt
        from keras_impl import weights as kw
        from torch_impl import losses as tl
        from torch_impl import models as tm
        from torch_impl import train as tt
        from torch_impl import weights as tw

        self.torch, self.tf, self.keras = torch, tf, keras
        self.set_threads(threads)
        self.km, self.kw, self.kl, self.kt = km, kw, kl, kt
        self.tm, self.tw, self.tl, self.tt = tm, tw, tl, tt

    def versions(self) -> dict:
        import onnx
        import onnxruntime
        import tf2onnx

        return {
            "tensorflow": self.tf.__version__,
            "keras": self.keras.__version__,
            "torch": self.torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "tf2onnx": tf2onnx.__version__,
            "numpy": np.__version__,
        }

    def set_threads(self, n: int) -> None:
        """Pin both frameworks' intra-op threads (TF: only before its first op)."""
        self.torch.set_num_threads(n)
        try:
            self.tf.config.threading.set_intra_op_parallelism_threads(n)
            self.tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TF already initialised in this process: keep its setting
            pass

    def threads(self) -> dict:
        return {
            "torch_intra_op": self.torch.get_num_threads(),
            "tf_intra_op": self.tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)",
            "tf_inter_op": self.tf.config.threading.get_inter_op_parallelism_threads() or "default (all cores)",
        }

    def seed_all(self, seed: int) -> None:
        self.keras.utils.set_random_seed(seed)
        self.torch.manual_seed(seed)

    # ---- the same computation on each side, returned as numpy -------------
    def keras_outputs(self, task, logits, y, naive=False) -> dict:
        ops = self.keras.ops
        lg = ops.convert_to_tensor(logits)
        yy = ops.convert_to_tensor(y)
        out = {
            "probabilities": ops.convert_to_numpy(self.kl.probabilities(task, lg)),
            "per-sample loss": ops.convert_to_numpy(self.kl.per_sample_loss(task, lg, yy)),
            "mean loss": np.asarray(ops.convert_to_numpy(self.kl.mean_loss(task, lg, yy))),
        }
        if naive:
            out["naive loss"] = ops.convert_to_numpy(self.kl.naive_per_sample_loss(task, lg, yy))
        return out

    def torch_outputs(self, task, logits, y, naive=False) -> dict:
        torch = self.torch
        lg = torch.as_tensor(np.asarray(logits))
        yy = torch.as_tensor(np.asarray(y))
        with torch.no_grad():
            out = {
                "probabilities": self.tl.probabilities(task, lg).numpy(),
                "per-sample loss": self.tl.per_sample_loss(task, lg, yy).numpy(),
                "mean loss": self.tl.mean_loss(task, lg, yy).numpy(),
            }
            if naive:
                out["naive loss"] = self.tl.naive_per_sample_loss(task, lg, yy).numpy()
        return out


_FW = None


def frameworks(threads: int = DEFAULT_THREADS) -> _Frameworks:
    global _FW
    if _FW is None:
        _FW = _Frameworks(threads)
    else:
        _FW.set_threads(threads)
    return _FW


# --------------------------------------------------------------------------
# What a run checks
# --------------------------------------------------------------------------
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
    threads: int = DEFAULT_THREADS


@dataclass
class Case:
    """One (dataset, task, model) to check."""

    name: str
    dataset: object  # shared.dataset.Dataset
    config: ModelConfig

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_").replace(":", "_")


@dataclass
class CaseResult:
    checks: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    sweep: dict | None = None
    logit_diffs: np.ndarray | None = None
    onnx: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


class _UI:
    """Console output and the progress display (rich); silent with --quiet."""

    def __init__(self, quiet: bool):
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True, quiet=quiet)
        # Wide enough for one line per check, also when CI captures the output.
        self.out = Console(quiet=quiet, width=max(260, Console().width))
        self._progress = None

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, disable=self.quiet, transient=True,
        )
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        self._progress.__exit__(*exc)

    def task(self, description: str, total: int):
        return self._progress.add_task(description, total=total)

    def advance(self, task_id, n: int = 1, description: str | None = None):
        kw = {"description": description} if description else {}
        self._progress.update(task_id, advance=n, **kw)

    def done(self, task_id):
        self._progress.remove_task(task_id)

    def log(self, msg: str):
        self.console.print(msg)


def _worst(name: str, checks: list, **ctx) -> Check:
    """Fold per-tensor checks into one row: the worst (by diff / tolerance) names itself."""

    def badness(c):
        return float("inf") if not c.passed else c.max_abs_diff / max(c.tolerance, 1e-300)

    worst = max(checks, key=badness)
    tensor = worst.check.split(" ", 1)[-1]
    return Check(
        name, worst.a, worst.b, worst.max_abs_diff, worst.max_rel_diff, worst.tolerance,
        all(c.passed for c in checks), f"{tensor} {worst.where}",
        detail={c.check.split(" ", 1)[-1]: c.max_abs_diff for c in checks}, **ctx,
    )


def _count_check(name: str, a_vals, b_vals, item_ids, a="keras", b="torch", **ctx) -> Check:
    """Discrete outputs (predictions, fingerprints): max_abs_diff = number that differ."""
    a_vals, b_vals = np.asarray(a_vals), np.asarray(b_vals)
    differ = np.flatnonzero((a_vals != b_vals).reshape(len(a_vals), -1).any(axis=1))
    if len(differ):
        i = int(differ[0])
        item = item_ids[i] if i < len(item_ids) else i
        where = f"{len(differ)} of {len(a_vals)} differ; first: item {i} ({item}): {a_vals[i].tolist()} vs {b_vals[i].tolist()}"
    else:
        where = f"all {len(a_vals)} equal"
    return Check(name, a, b, float(len(differ)), float(len(differ)) / max(1, len(a_vals)), 0.0, not len(differ), where, **ctx)


def _cast_y(y: np.ndarray, dtype: str) -> np.ndarray:
    return y if y.dtype.kind in "iu" else y.astype(dtype)


def plant_fault(fw: _Frameworks, model, config: ModelConfig, fault: str) -> None:
    """Break the PyTorch twin the way a porting bug would (see FAULTS)."""
    torch = fw.torch
    with torch.no_grad():
        if fault == "bn-epsilon":
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eps = 1e-5  # torch's default
        elif fault == "conv-kernel":
            w = model.conv1.weight
            w.copy_(w.transpose(2, 3).clone())
        elif fault == "flatten-order":
            from shared import layout

            k = layout.flatten_dense_weight_to_kernel(model.fc1.weight.numpy(), config.flatten_hwc)
            model.fc1.weight.copy_(torch.from_numpy(layout.dense_kernel_to_weight(k)))
        else:
            raise UsageError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")


def first_differing_layer(fw, k_model, t_model, config, x, tol, ctx) -> Check | None:
    """Walk both models layer by layer; the first layer whose output differs."""
    from shared.layout import keras_activation_as_torch, nhwc_to_nchw

    ka = fw.km.layer_outputs(k_model, x)
    ta = fw.tm.layer_outputs(t_model, nhwc_to_nchw(x))
    for name in ka:
        c = compare_arrays("first differing layer", keras_activation_as_torch(name, ka[name], config), ta[name], tol, **ctx)
        if not c.passed:
            c.where = f"{name} {c.where}"
            c.detail = {"layer": name}
            return c
    return None


def relu_straddles(fw, tensors: dict, config: ModelConfig, x: np.ndarray) -> dict:
    """ReLU inputs that fall on different sides of 0 in the two frameworks.

    In training mode BatchNorm centres activations on the ReLU's kink; an input
    that is exactly 0 in one framework can be +4e-9 in the other, and then the
    gradient passes on one side only. That is arithmetic, not a porting bug,
    but it moves gradients by up to 1e-3, so the gradient check skips such
    batches and says so. Runs on fresh copies: the models given are untouched.

    Returns:
        {relu layer: (count, "input layer[index]: keras value vs torch value")}.
    """
    from shared.layout import keras_activation_as_torch, nhwc_to_nchw

    k, t = fw.km.build_model(config), fw.tm.build_model(config)
    fw.kw.from_portable(k, config, tensors)
    fw.tw.from_portable(t, config, tensors)
    ka = fw.km.layer_outputs(k, x, training=True)
    ta = fw.tm.layer_outputs(t, nhwc_to_nchw(x), training=True)
    names = list(ka)
    out = {}
    for prev, name in zip(names, names[1:]):
        if not name.startswith("relu"):
            continue
        a, b = keras_activation_as_torch(prev, ka[prev], config), ta[prev]
        straddle = (a > 0) != (b > 0)
        if straddle.any():
            idx = tuple(int(i) for i in np.argwhere(straddle)[0])
            out[name] = (int(straddle.sum()), f"{prev}{list(idx)}: {a[idx]:.3g} vs {b[idx]:.3g}")
    return out


def gradient_checks(fw, k, t, cfg, batches, tensors, tol, ctx) -> list:
    """Loss and gradients on the first batch with no ReLU input on the kink."""
    skipped = []
    chosen = 0
    for j, (xb, _) in enumerate(batches[:MAX_GRADIENT_BATCHES]):
        straddles = relu_straddles(fw, tensors, cfg, xb) if cfg.model == "cnn" else {}
        if not straddles:
            chosen = j
            break
        skipped.append((j, straddles))
    xb, yb = batches[chosen]
    loss_k, gk = fw.kt.loss_and_grads(k, cfg, xb, yb)
    loss_t, gt = fw.tt.loss_and_grads(t, cfg, xb, yb)
    out = []
    if skipped:
        j, st = skipped[0]
        layer, (n, where) = next(iter(st.items()))
        out.append(Check("relu kink straddles", "keras", "torch", float(sum(c for c, _ in st.values())), 0.0, 0.0, True,
                         f"batch {j}: {n} input(s) of {layer} on different sides of 0, e.g. {where}; "
                         f"{len(skipped)} batch(es) skipped, gradients compared on batch {chosen}",
                         info=True, detail={f"batch {b}": {k_: v[0] for k_, v in s_.items()} for b, s_ in skipped}, **ctx))
    out.append(compare_arrays(f"loss (training mode, batch {chosen})", loss_k, loss_t, tol("forward"), **ctx))
    out.append(_worst(f"gradients (batch {chosen})", compare_named("grad", gk, gt, tol("gradient"), **ctx), **ctx))
    return out


def sweep_weights(fw, cfg, start, ds, bs, opts, ui, name) -> dict:
    """The Keras twin trained alone (Adam) long enough to make the threshold sweep
    informative; its tensors, ready to port to both sides."""
    from shared.batches import batch_plan, make_batches

    k = fw.km.build_model(cfg)
    fw.kw.from_portable(k, cfg, start)
    plan = batch_plan(len(ds.x_train), bs, SWEEP_TRAIN_STEPS, opts.seed)
    batches = make_batches(ds.x_train.astype(cfg.dtype), _cast_y(ds.y_train, cfg.dtype), plan)
    tc = TrainConfig(optimizer="adam", learning_rate=SWEEP_LR, steps=SWEEP_TRAIN_STEPS, batch_size=bs, seed=opts.seed)
    task_id = ui.task(f"{name} keras training for the threshold sweep", total=len(batches))
    fw.kt.train(k, cfg, tc, batches, on_step=lambda i, loss: ui.advance(task_id))
    ui.done(task_id)
    return fw.kw.to_portable(k, cfg)


def training_checks(fw, cfg, start, batches, opts, ui, name, curves, tol, ctx) -> list:
    """Train both twins from `start` on `batches` with each optimizer; compare.

    Checks: the batch fingerprints each loop consumed (against each other and
    the shared plan), the per-step pre-update loss curves, and every final
    tensor (BatchNorm moving statistics included).
    """
    from shared.batches import batch_fingerprints, cast_batches

    out = []
    expected = batch_fingerprints(cast_batches(batches, cfg.dtype))
    bs = len(batches[0][0]) if batches else 0
    for opt in opts.optimizers:
        tc = TrainConfig(optimizer=opt, learning_rate=DEFAULT_LR[opt], steps=len(batches), batch_size=max(bs, 1), seed=opts.seed)
        kk, tt_ = fw.km.build_model(cfg), fw.tm.build_model(cfg)
        fw.kw.from_portable(kk, cfg, start)
        fw.tw.from_portable(tt_, cfg, start)
        if opts.fault:
            plant_fault(fw, tt_, cfg, opts.fault)
        runs = {}
        for side, trainer, model in (("keras", fw.kt, kk), ("torch", fw.tt, tt_)):
            task_id = ui.task(f"{name} {cfg.dtype} {opt} {side}", total=len(batches))
            runs[side] = trainer.train(model, cfg, tc, batches, on_step=lambda i, loss, _id=task_id: ui.advance(_id))
            ui.done(task_id)
        fp = _count_check(f"batch fingerprints ({opt})", runs["keras"].fingerprints, runs["torch"].fingerprints,
                          [f"batch {i}" for i in range(len(batches))], **ctx)
        if runs["keras"].fingerprints != expected:
            fp.passed = False
            fp.where += "; keras differs from the shared batch order"
        fp.detail = {"batches": len(expected), "first": expected[:3]}
        out.append(fp)
        out.append(compare_arrays(f"training loss curve ({opt})", runs["keras"].losses, runs["torch"].losses, tol("training"),
                                  labels={0: [f"step {i + 1}" for i in range(len(batches))]}, **ctx))
        out.append(_worst(f"trained weights ({opt})", compare_named("w", fw.kw.to_portable(kk, cfg), fw.tw.to_portable(tt_, cfg), tol("training"), **ctx), **ctx))
        if curves is not None:
            curves[f"{name} {opt}"] = {"keras": runs["keras"].losses, "torch": runs["torch"].losses}
    return out


def check_case(case: Case, opts: Options, ui: _UI, workdir: Path) -> CaseResult:
    """Every check for one case. Artifacts (weights, ONNX files) go under workdir."""
    from shared.batches import batch_plan, make_batches
    from shared.layout import nhwc_to_nchw

    fw = frameworks()
    res = CaseResult()
    cfg = case.config
    ds = case.dataset
    ctx = dict(task=cfg.task, model=cfg.model, dtype=cfg.dtype)
    def tol(kind, dtype=cfg.dtype):
        return for_check(kind, dtype, opts.tolerance, batchnorm=cfg.model == "cnn")

    add = res.checks.append
    t0 = time.perf_counter()

    # 1. Keras model -> portable file -> PyTorch, and once the other way.
    fw.seed_all(opts.seed)
    k = fw.km.build_model(cfg, seed=opts.seed)
    wdir = workdir / "weights"
    kpath = wdir / f"{case.slug}.keras.safetensors"
    fw.kw.save_weights(k, cfg, kpath, classes=ds.classes)
    t = fw.tm.build_model(cfg)
    fw.tw.load_weights(t, cfg, kpath)
    if opts.fault:
        plant_fault(fw, t, cfg, opts.fault)
    tpath = wdir / f"{case.slug}.torch.safetensors"
    fw.tw.save_weights(t, cfg, tpath, classes=ds.classes)
    k_back = fw.km.build_model(cfg)
    fw.kw.load_weights(k_back, cfg, tpath)
    exact = Tolerance(rel=0.0)
    add(_worst("weights keras->torch->keras", compare_named("w", fw.kw.to_portable(k_back, cfg), fw.kw.to_portable(k, cfg), exact, a_name="keras->torch->keras", b_name="keras"), **ctx))
    res.timings["port"] = time.perf_counter() - t0

    # 2. Same inputs: the batches both training loops consume, by fingerprint.
    bs = min(opts.batch_size, len(ds.x_train))
    plan = batch_plan(len(ds.x_train), bs, max(opts.steps, 1), opts.seed)  # >= 1: the gradient check needs one
    batches = make_batches(ds.x_train.astype(cfg.dtype), _cast_y(ds.y_train, cfg.dtype), plan)

    # 3. Forward on the validation split, inference mode.
    t1 = time.perf_counter()
    xv = ds.x_valid.astype(cfg.dtype)
    yv = _cast_y(ds.y_valid, cfg.dtype)
    items = list(ds.items_valid) or list(range(len(xv)))
    class_axis = {1: list(ds.classes)} if cfg.task in ("multiclass", "multilabel") else None
    labels = {0: items, **(class_axis or {})}
    lk = fw.km.forward(k, xv)
    lt = fw.tm.forward(t, nhwc_to_nchw(xv))
    c_logits = compare_arrays("logits", lk, lt, tol("forward"), labels=labels, **ctx)
    add(c_logits)
    res.logit_diffs = np.abs(lk.astype(np.float64) - lt.astype(np.float64)).ravel()
    ok_, ot_ = fw.keras_outputs(cfg.task, lk, yv), fw.torch_outputs(cfg.task, lt, yv)
    for name in ("probabilities", "per-sample loss", "mean loss"):
        add(compare_arrays(name, ok_[name], ot_[name], tol("forward"), labels=labels if name == "probabilities" else {0: items}, **ctx))
    if not c_logits.passed:
        layer = first_differing_layer(fw, k, t, cfg, xv, tol("forward"), ctx)
        if layer is not None:
            add(layer)
    from shared import metrics

    if cfg.task != "regression":
        pk = metrics.predictions(cfg.task, ok_["probabilities"])
        pt = metrics.predictions(cfg.task, ot_["probabilities"])
        add(_count_check("predictions", pk, pt, items, **ctx))
    mk = metrics.metrics_for(cfg.task, yv, ok_["probabilities"])
    mt = metrics.metrics_for(cfg.task, yv, ot_["probabilities"])
    add(_worst("metrics", compare_named("metric", mk, mt, tol("forward"), **ctx), **ctx))
    res.checks[-1].detail = {"keras": mk, "torch": mt}
    res.timings["forward"] = time.perf_counter() - t1

    # 4. Gradients of the loss for every parameter, on a training batch.
    t2 = time.perf_counter()
    start = fw.kw.to_portable(k, cfg)
    res.checks += gradient_checks(fw, k, t, cfg, batches, fw.tw.to_portable(t, cfg), tol, ctx)
    res.timings["gradients"] = time.perf_counter() - t2

    # 5. Training from the same start on the same batches.
    t3 = time.perf_counter()
    res.checks += training_checks(fw, cfg, start, batches[: opts.steps], opts, ui, case.name, res.curves, tol, ctx)
    res.timings["training"] = time.perf_counter() - t3

    # 6. float64: the same weights, exactly widened; must agree to ~1e-12.
    if cfg.dtype == "float32":
        t4 = time.perf_counter()
        cfg64 = cfg.replace(dtype="float64")
        ctx64 = dict(ctx, dtype="float64")
        k64, t64 = fw.km.build_model(cfg64), fw.tm.build_model(cfg64)
        # Widening float32 -> float64 is exact; torch gets what its float32 twin
        # holds (a planted fault included), Keras what it started from.
        fw.kw.from_portable(k64, cfg64, {n: v.astype(np.float64) for n, v in start.items()})
        fw.tw.from_portable(t64, cfg64, {n: v.astype(np.float64) for n, v in fw.tw.to_portable(t, cfg).items()})
        if opts.fault == "bn-epsilon":
            plant_fault(fw, t64, cfg64, opts.fault)
        x64, y64 = ds.x_valid.astype(np.float64), _cast_y(ds.y_valid, "float64")
        l64k, l64t = fw.km.forward(k64, x64), fw.tm.forward(t64, nhwc_to_nchw(x64))
        add(compare_arrays("logits", l64k, l64t, tol("forward", "float64"), labels=labels, **ctx64))
        o64k, o64t = fw.keras_outputs(cfg.task, l64k, y64), fw.torch_outputs(cfg.task, l64t, y64)
        for name in ("probabilities", "per-sample loss", "mean loss"):
            add(compare_arrays(name, o64k[name], o64t[name], tol("forward", "float64"), **ctx64))
        # Training in float64: no float32 rounding to compound, so the two
        # optimizers must follow each other to ~1e-14 (strict proof of the formulas).
        w64 = {n: v.astype(np.float64) for n, v in start.items()}
        res.checks += training_checks(fw, cfg64, w64, batches[: opts.steps], opts, ui, case.name, None,
                                      lambda kind: tol(kind, "float64"), ctx64)
        res.timings["float64"] = time.perf_counter() - t4

    # 7. Multi-label: sweep the decision threshold in both frameworks, on a
    # model that has learned something (an untrained net's curve is flat):
    # the Keras twin trains alone, its weights are ported to both, so this stays
    # a same-weights comparison and the two picks must agree exactly.
    if cfg.task == "multilabel":
        t6 = time.perf_counter()
        sweep_w = sweep_weights(fw, cfg, start, ds, bs, opts, ui, case.name)
        ks, ts = fw.km.build_model(cfg), fw.tm.build_model(cfg)
        fw.kw.from_portable(ks, cfg, sweep_w)
        fw.tw.from_portable(ts, cfg, sweep_w)
        if opts.fault:
            plant_fault(fw, ts, cfg, opts.fault)
        pk_sweep = fw.keras_outputs(cfg.task, fw.km.forward(ks, xv), yv)["probabilities"]
        pt_sweep = fw.torch_outputs(cfg.task, fw.tm.forward(ts, nhwc_to_nchw(xv)), yv)["probabilities"]
        thr, acc_k, best_k = metrics.threshold_sweep(yv, pk_sweep)
        _, acc_t, best_t = metrics.threshold_sweep(yv, pt_sweep)
        which = f"after {SWEEP_TRAIN_STEPS} Adam steps"
        add(compare_arrays(f"threshold sweep accuracy ({which})", acc_k, acc_t, tol("forward"), labels={0: [f"t={v:.2f}" for v in thr]}, **ctx))
        add(Check("chosen threshold", "keras", "torch", abs(best_k - best_t), abs(best_k - best_t), 0.0,
                  best_k == best_t, f"keras {best_k:.2f}, torch {best_t:.2f} ({which})",
                  detail={"map_keras": metrics.mean_average_precision(yv, pk_sweep)}, **ctx))
        res.sweep = {"thresholds": thr, "keras": acc_k, "torch": acc_t, "best": {"keras": best_k, "torch": best_t}}
        res.timings["threshold sweep"] = time.perf_counter() - t6

    # 8. Numerical stability at extreme logits (information, never a failure).
    if cfg.task != "regression":
        big = (lk.astype(np.float64) * EXTREME_LOGIT_SCALE).astype(cfg.dtype)
        sk = fw.keras_outputs(cfg.task, big, yv, naive=True)
        st = fw.torch_outputs(cfg.task, big, yv, naive=True)
        sctx = dict(ctx, info=True)
        add(compare_arrays(f"stability from_logits x{EXTREME_LOGIT_SCALE:g}", sk["per-sample loss"], st["per-sample loss"], tol("forward"), **sctx))
        res.checks[-1].detail = {"finite": bool(np.isfinite(sk["per-sample loss"]).all() and np.isfinite(st["per-sample loss"]).all())}
        for side, s in (("keras", sk), ("torch", st)):
            c = compare_arrays(f"stability naive probabilities->log x{EXTREME_LOGIT_SCALE:g}", s["naive loss"], s["per-sample loss"], tol("forward"),
                               a_name=f"{side} naive", b_name=f"{side} from_logits", labels={0: items}, **sctx)
            c.detail = {"nonfinite": int((~np.isfinite(s["naive loss"])).sum())}
            add(c)

    # 9. ONNX: both exports, checked, run in onnxruntime, compared four ways.
    if opts.onnx and cfg.dtype == "float64" and cfg.model == "cnn":
        add(Check("onnx skipped", "keras", "torch", 0.0, 0.0, 0.0, True,
                  "onnxruntime's CPU provider has no float64 Conv kernel (NOT_IMPLEMENTED)", info=True, **ctx))
    elif opts.onnx:
        t5 = time.perf_counter()
        res.checks += onnx_checks(fw, k, t, cfg, xv, workdir / "onnx" / case.slug, ui, case, res, ctx)
        res.timings["onnx"] = time.perf_counter() - t5
    return res


def onnx_checks(fw, k, t, cfg, xv, outdir, ui, case, res, ctx) -> list:
    """Export both models, validate, run in onnxruntime, compare four ways."""
    from keras_impl import export as kx
    from shared import onnx_check
    from shared.layout import nhwc_to_nchw
    from torch_impl import export as tx

    outdir.mkdir(parents=True, exist_ok=True)
    task_id = ui.task(f"{case.name} ONNX export", total=2)
    kp = kx.export_onnx(k, cfg, outdir / "keras.onnx")
    ui.advance(task_id)
    tp = tx.export_onnx(t, cfg, outdir / "torch.onnx")
    ui.advance(task_id)
    ui.done(task_id)
    info = {"keras": onnx_check.check_model(kp), "torch": onnx_check.check_model(tp), "ort_level": str(onnx_check.ORT_LEVEL), "opset": onnx_check.ONNX_OPSET}
    res.onnx = info
    xt = nhwc_to_nchw(xv)
    outputs = {
        "keras": fw.km.forward(k, xv),
        "torch": fw.tm.forward(t, xt),
        "onnx(keras)": onnx_check.run_onnx(kp, xv),
        "onnx(torch)": onnx_check.run_onnx(tp, xt),
    }
    classes = case.dataset.classes if cfg.task in ("multiclass", "multilabel") else None
    checks = onnx_check.four_way_checks(outputs, task=cfg.task, dtype=cfg.dtype, class_names=classes, model=cfg.model)
    # Dynamic batch: item 0 alone gives what it gave inside the full batch.
    for side, path, x in (("onnx(keras)", kp, xv), ("onnx(torch)", tp, xt)):
        checks.append(compare_arrays("onnx batch 1 vs full batch", onnx_check.run_onnx(path, x[:1]), outputs[side][:1],
                                     for_check("onnx", cfg.dtype), a_name=f"{side} batch 1", b_name=f"{side} batch {len(x)}", **ctx))
    return checks


# --------------------------------------------------------------------------
# Building the cases
# --------------------------------------------------------------------------
def builtin_cases(task=None, model=None, dtype="float32", seed=0) -> list:
    from shared import loaders
    from shared.registry import PAIRS

    cases = []
    for p in PAIRS:
        if (task and p.task != task) or (model and p.model != model):
            continue
        ds = loaders.load(None, p.dataset)
        cases.append(Case(p.name, ds, ModelConfig(p.model, p.task, ds.input_shape, ds.num_outputs, dtype=dtype)))
    if not cases:
        raise UsageError(f"no built-in pair has task={task!r} and model={model!r}; "
                         f"built-in: digits/mlp multiclass, breast_cancer/mlp binary, builtin-multilabel/cnn multilabel, builtin-regression/cnn regression")
    return cases


def user_case(args) -> Case:
    from shared import loaders

    if not args.format:
        raise UsageError("--data needs --format pascal|biwi|csv")
    kw = {}
    if args.format == "csv":
        if not args.task:
            raise UsageError("--format csv needs --task (multiclass, multilabel, binary or regression)")
        kw = dict(task=args.task, target=args.target)
    elif args.format in ("pascal", "biwi"):
        kw = dict(image_size=args.image_size)
    ds = loaders.load(args.data, args.format, **kw)
    if args.task and args.task != ds.task:
        raise UsageError(f"--task {args.task} does not fit --format {args.format}, which gives task {ds.task}")
    model = args.model or ("cnn" if ds.is_image else "mlp")
    if (model == "cnn") != ds.is_image:
        raise UsageError(f"--model {model} needs {'image' if model == 'cnn' else 'tabular'} data; {args.data} is {'image' if ds.is_image else 'tabular'}")
    name = f"{Path(args.data).name}/{model}"
    return Case(name, ds, ModelConfig(model, ds.task, ds.input_shape, ds.num_outputs, dtype=args.dtype))


def run_checks(cases: list, opts: Options, out: Path | None) -> dict:
    """Run every case; write the report atomically into `out` (if given)."""
    from shared import report as rpt

    fw = frameworks(opts.threads)
    all_checks, data, curves, sweeps, diffs, onnx_info, timings = [], [], {}, {}, {}, {}, {}
    ui = _UI(opts.quiet)
    with _workdir(out) as work, ui:
        for case in cases:
            ui.log(f"[bold]{case.name}[/bold] ({case.config.task}, {case.config.model}, {case.config.dtype}): "
                   f"{len(case.dataset.x_train)} train / {len(case.dataset.x_valid)} valid items")
            r = check_case(case, opts, ui, work)
            all_checks += r.checks
            curves.update(r.curves)
            if r.sweep:
                sweeps[case.name] = r.sweep
            if r.logit_diffs is not None:
                diffs[case.name] = r.logit_diffs
            onnx_info[case.name] = r.onnx
            timings[case.name] = r.timings
            data.append({
                "case": case.name, "dataset": case.dataset.name, "path": case.dataset.source,
                "format": case.dataset.format, "task": case.config.task, "model": case.config.model,
                "rows": {"train": len(case.dataset.x_train), "valid": len(case.dataset.x_valid)},
                "input_shape": list(case.dataset.input_shape), "fingerprint": case.dataset.fingerprint(),
            })
        plots = _write_plots(work, curves, sweeps, diffs, opts)
        env = rpt.environment(fw.versions(), seed=opts.seed, dtype=opts.dtype, threads=fw.threads())
        report = rpt.build_report(all_checks, environment=env, data=data,
                                  artifacts={"plots": plots, "onnx": onnx_info, "timings_s": timings,
                                             "options": {"steps": opts.steps, "optimizers": list(opts.optimizers),
                                                         "batch_size": opts.batch_size, "fault": opts.fault}})
        if work is not None:
            from shared.atomic import atomic_write_text

            atomic_write_text(work / "report.json", rpt.dumps(report))
            atomic_write_text(work / "report.md", rpt.markdown(report, all_checks))
    rpt.console_table(all_checks, ui.out)
    ui.out.print(rpt.summary_line(report) + (f"; report in {out}" if out else ""))
    report["_checks"] = all_checks
    return report


class _workdir:
    """A temporary folder beside `out`, renamed into place only when the run completes."""

    def __init__(self, out: Path | None):
        self.out = out
        self._cm = None

    def __enter__(self):
        if self.out is None:
            return None
        from shared.atomic import atomic_dir

        self._cm = atomic_dir(self.out)
        return Path(self._cm.__enter__())

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return False


def _write_plots(work: Path | None, curves, sweeps, diffs, opts) -> list:
    if work is None:
        return []
    from shared import plots

    written = []
    if curves:
        plots.plot_loss_curves(curves, work / "loss_curves.png")
        written.append("loss_curves.png")
    if sweeps:
        plots.plot_threshold_sweep(sweeps, work / "threshold_sweep.png")
        written.append("threshold_sweep.png")
    if diffs:
        plots.plot_diff_histogram(diffs, work / "forward_diff_hist.png", tolerance=for_check("forward", opts.dtype, opts.tolerance).allowed(1.0))
        written.append("forward_diff_hist.png")
    return written


# --------------------------------------------------------------------------
# The API for users' own test suites
# --------------------------------------------------------------------------
def _leaves(prefix: str, obj) -> dict:
    """Name every array in a (nested) output, HF-style: outputs.logits, outputs_1."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_leaves(f"{prefix}.{k}", v))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_leaves(f"{prefix}_{i}", v))
        return out
    return {prefix: obj}


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if hasattr(x, "numpy"):
        return x.numpy()
    return np.asarray(x)


def compare_models(keras_model, torch_model, inputs, *, atol: float = 0.0, rtol: float | None = None,
                   channels_last_input: bool = True, channels_last_output: bool = True, name: str = "outputs") -> list:
    """Run both models on the same numpy inputs and compare every output.

    Args:
        keras_model: a Keras model (or any callable returning tensors).
        torch_model: a torch.nn.Module; put in eval mode here.
        inputs: a numpy array in Keras layout (NHWC for images); a 4-D input is
            permuted to NCHW for torch when channels_last_input is True.
        atol, rtol: allowed = atol + rtol * max(1, max|torch output|); rtol
            defaults to 16 float32 epsilons (float32) or 1e-12 (float64).
        channels_last_output: 4-D Keras outputs are permuted to NCHW before
            comparing with torch's.
        name: prefix of each output's name in the checks.

    Returns:
        One Check per output leaf (same records as report.json's "checks").
    """
    fw = frameworks()
    from shared.layout import nhwc_to_nchw

    x = np.asarray(inputs)
    dtype = "float64" if x.dtype == np.float64 else "float32"
    tol = Tolerance(rel=rtol, abs=atol) if rtol is not None else Tolerance(rel=for_check("forward", dtype).rel, abs=atol)
    k_out = keras_model(x, training=False) if hasattr(keras_model, "layers") else keras_model(x)
    torch_model.eval()
    with fw.torch.no_grad():
        t_out = torch_model(fw.torch.as_tensor(nhwc_to_nchw(x) if channels_last_input else x))
    kl = {n: _to_numpy(v) for n, v in _leaves(name, k_out).items()}
    tl = {n: _to_numpy(v) for n, v in _leaves(name, t_out).items()}
    if channels_last_output:
        kl = {n: nhwc_to_nchw(v) for n, v in kl.items()}
    checks = []
    for n in list(kl) + [m for m in tl if m not in kl]:
        if n in kl and n in tl:
            checks.append(compare_arrays(n, kl[n], tl[n], tol, dtype=dtype))
        else:
            checks.append(Check(n, "keras", "torch", float("inf"), float("inf"), 0.0, False,
                                f"only in {'keras' if n in kl else 'torch'}", dtype=dtype))
    return checks


def assert_parity(keras_model, torch_model, inputs, **kw) -> list:
    """compare_models, then raise ParityFailure (an AssertionError) naming every
    output that differs, its largest difference, where, and the tolerance."""
    return assert_checks(compare_models(keras_model, torch_model, inputs, **kw))


# --------------------------------------------------------------------------
# Port: any Keras model -> a readable PyTorch twin (through shared/graph.py)
# --------------------------------------------------------------------------
def keras_to_torch(keras_model):
    """(torch module in eval mode, its model.py source) for a functional or
    Sequential Keras model; the module is built by executing that source."""
    frameworks()
    from keras_impl.graph import read_graph
    from torch_impl.graph import build_module

    return build_module(read_graph(keras_model))


@dataclass
class PortResult:
    graph: object
    module: object
    source: str
    checks: list
    info: dict


def _port_forward(fw, model, graph, module, xs, dtype) -> list:
    from keras_impl.graph import graph_values as keras_values
    from shared import port_check as pc
    from torch_impl.graph import graph_values as torch_values

    tol = for_check("forward", dtype)
    a, b = keras_values(model, graph, xs), torch_values(module, graph, xs)
    nodes = pc.node_checks(graph, a, b, tol, dtype=dtype)
    out = [compare_arrays(f"output {o}", a[o], b[o], tol, model=graph.name, dtype=dtype) for o in graph.outputs]
    first = pc.first_differing(graph, nodes)
    return out + ([first] if first else []) + nodes


def _port_gradients(fw, model, graph, module, xs, y, loss, dtype) -> list:
    from keras_impl import port as kp
    from shared import port_check as pc
    from torch_impl import port as tp

    ka, ga = kp.loss_and_grads(model, graph, xs, y, loss)
    kb, gb = tp.loss_and_grads(module, graph, xs, y, loss)
    tol = for_check("gradient", dtype)
    rows = [compare_arrays(f"loss ({loss['kind']})", ka, kb, for_check("forward", dtype), model=graph.name, dtype=dtype)]
    return rows + pc.gradient_checks(graph, ga, gb, tol, dtype=dtype)


def port_checks(keras_model, inputs=None, *, seed: int = 0, batch: int = 4, dtypes=("float32", "float64")) -> PortResult:
    """Port `keras_model` and prove the port: forward of the model and of every
    node, loss and gradients, in each dtype. `inputs`: numpy arrays in the
    PyTorch layout (default: seeded random ones of the model's shape)."""
    fw = frameworks()
    from keras_impl import port as kp
    from keras_impl.graph import cast_model, read_graph
    from shared import port_check as pc
    from torch_impl.graph import build_module

    t0 = time.perf_counter()
    graph = read_graph(keras_model)
    module, source = build_module(graph)
    info = {"layouts": pc.layouts(graph), "nodes": len(graph.nodes), "timings_s": {"port": time.perf_counter() - t0}}
    xs = list(inputs) if inputs is not None else pc.random_inputs(graph, batch, seed)
    loss = kp.infer_loss(keras_model, graph)
    y = pc.random_targets(graph, loss, len(xs[0]), seed)
    info["loss"] = loss
    checks = []
    for dtype in dtypes:
        t0 = time.perf_counter()
        model = keras_model if dtype == graph.tensors[graph.inputs[0]].dtype else cast_model(keras_model, dtype)
        mod = module if model is keras_model else build_module(graph, source, dtype=fw.torch.float64 if dtype == "float64" else fw.torch.float32)[0]
        xd = [x.astype(dtype) if x.dtype.kind == "f" else x for x in xs]
        checks += _port_forward(fw, model, graph, mod, xd, dtype)
        checks += _port_gradients(fw, model, graph, mod, xd, y, loss, dtype)
        info["timings_s"][dtype] = time.perf_counter() - t0
    return PortResult(graph, module, source, checks, info)


# --------------------------------------------------------------------------
# Reverse port: a PyTorch module -> a Keras functional model (shared/graph.py)
# --------------------------------------------------------------------------
def torch_to_keras(torch_model, input_shape, dtype: str = "float32") -> tuple:
    """(Keras model, its model_keras.py source, the graph) for an nn.Module and
    an input shape without the batch (C, H, W); the model is built by executing
    that source and takes Keras' layout (N, H, W, C)."""
    frameworks()
    from keras_impl.write import build_model
    from torch_impl.read import read_graph

    graph = read_graph(torch_model, tuple(input_shape))
    model, source, plan = build_model(graph, dtype=dtype)
    graph.meta["keras_plan"] = plan
    return model, source, graph


def _reverse_dtype(fw, torch_model, graph, source, dtype):
    import copy

    from keras_impl.write import build_model

    if dtype == "float32":
        return torch_model, build_model(graph, source, graph.meta["keras_plan"])[0]
    module = copy.deepcopy(torch_model).to(getattr(fw.torch, dtype)).eval()
    return module, build_model(graph, source, graph.meta["keras_plan"], dtype=dtype)[0]


REVERSE_TRAIN_STEPS = 3  # SGD steps of the training check (float64, train mode)
REVERSE_TRAIN_LR, REVERSE_TRAIN_MOMENTUM = 0.01, 0.9


def _reverse_training(fw, torch_model, graph, source, loss, batch, seed) -> list:
    """A few SGD+momentum steps in training mode (BatchNorm on batch statistics),
    float64, from the same start on the same batches: losses per step and every
    weight after. BatchNorm's running variance is an information row: torch
    updates it with the unbiased batch variance, Keras with the biased one."""
    from keras_impl import port as kp
    from shared import port_check as pc
    from torch_impl import port as tp

    dtype = "float64"
    module, km = _reverse_dtype(fw, torch_model, graph, source, dtype)
    batches = []
    for i in range(REVERSE_TRAIN_STEPS):
        xs = [x.astype(dtype) for x in pc.random_inputs(graph, batch, seed + 100 + i)]
        batches.append((xs, pc.random_targets(graph, loss, batch, seed + 100 + i)))
    kl, kw = kp.sgd_steps(km, graph, batches, loss, REVERSE_TRAIN_LR, REVERSE_TRAIN_MOMENTUM)
    tl, tw = tp.module_sgd_steps(module, graph, batches, loss, REVERSE_TRAIN_LR, REVERSE_TRAIN_MOMENTUM)
    tol = for_check("training", dtype)
    ctx = {"a_name": "torch", "b_name": "keras", "model": graph.name, "dtype": dtype}
    rows = [compare_arrays(f"training loss per step (SGD, {REVERSE_TRAIN_STEPS} steps)", np.array(tl), np.array(kl), tol, **ctx)]
    var_keys = {k for k in tw if k.endswith(".running_var")}
    rows += compare_named("trained", {k: v for k, v in tw.items() if k not in var_keys},
                          {k: v for k, v in kw.items() if k not in var_keys}, tol, **ctx)
    if var_keys:
        info = _worst("trained BatchNorm running_var (torch: unbiased batch variance, Keras: biased; not a port error)",
                      compare_named("v", {k: tw[k] for k in var_keys}, {k: kw[k] for k in var_keys}, tol, **ctx),
                      model=graph.name, dtype=dtype)
        info.info, info.passed = True, True
        rows.append(info)
    return rows


# float32 per-node allowance of the reverse port: besides 16 eps of the scale,
# 4x torch's own float32 error on that tensor (|torch float32 - torch float64|,
# same inputs). Deep nets accumulate float32 rounding past 16 eps (ConvNeXt-T
# at 64x64: 7.4e-6 on a 2x2 stride-2 conv of 1536 inputs, torch's own error
# there 3e-6) while float64 agrees to 1e-14; a porting bug shows in float64.
F32_OWN_ERROR_FACTOR = 4.0


def _reverse_dtype_checks(fw, torch_model, graph, source, xs, y, loss, dtype, truth) -> tuple:
    """(rows, torch values, Keras model) of one dtype: output, every node, loss, gradients."""
    from keras_impl import port as kp
    from keras_impl.write import graph_values as keras_values
    from shared import port_check as pc
    from shared.tolerances import Tolerance
    from torch_impl import port as tp
    from torch_impl.read import graph_values as torch_values

    module, km = _reverse_dtype(fw, torch_model, graph, source, dtype)
    xd = [x.astype(dtype) if x.dtype.kind == "f" else x for x in xs]
    tol = for_check("forward", dtype)
    a, b = torch_values(module, graph, xd), keras_values(km, graph, xd)
    node_tol = tol
    if dtype == "float32" and truth is not None:
        def node_tol(name):
            own = float(np.abs(a[name].astype(np.float64) - truth[name]).max()) if name in truth and name in a else 0.0
            return Tolerance(rel=tol.rel, abs=F32_OWN_ERROR_FACTOR * own)
    ctx = {"a_name": "torch", "b_name": "keras", "model": graph.name, "dtype": dtype}
    nodes = pc.node_checks(graph, a, b, node_tol, dtype=dtype, a_name="torch", b_name="keras")
    rows = [compare_arrays(f"output {o}", a[o], b[o], node_tol(o) if callable(node_tol) else tol, **ctx) for o in graph.outputs]
    first = pc.first_differing(graph, nodes)
    rows += ([first] if first else []) + nodes
    kl, kg = kp.loss_and_grads(km, graph, xd, y, loss)
    tl, tg = tp.module_loss_and_grads(module, graph, xd, y, loss)
    rows.append(compare_arrays(f"loss ({loss['kind']})", tl, kl, tol, **ctx))
    rows += compare_named("grad", tg, kg, for_check("gradient", dtype), **ctx)
    return rows, a, km


def reverse_port_checks(torch_model, input_shape, inputs=None, *, seed: int = 0, batch: int = 4,
                        dtypes=("float32", "float64"), training: bool = True) -> PortResult:
    """Port `torch_model` to Keras and prove it: forward of the model and of
    every node, loss and gradients, in each dtype (the torch module is the
    reference, a). `inputs`: numpy arrays in PyTorch's layout."""
    fw = frameworks()
    from keras_impl import port as kp
    from shared import port_check as pc

    t0 = time.perf_counter()
    model, source, graph = torch_to_keras(torch_model, input_shape)
    info = {"layouts": pc.layouts(graph), "nodes": len(graph.nodes), "timings_s": {"port": time.perf_counter() - t0}}
    xs = list(inputs) if inputs is not None else pc.random_inputs(graph, batch, seed)
    loss = kp.infer_loss(model, graph)
    y = pc.random_targets(graph, loss, len(xs[0]), seed)
    info["loss"] = loss
    checks, truth = [], None
    for dtype in sorted(dtypes, key=lambda d: d != "float64"):  # float64 first: the float32 rows measure against it
        t0 = time.perf_counter()
        rows, values, km = _reverse_dtype_checks(fw, torch_model, graph, source, xs, y, loss, dtype, truth)
        truth = values if dtype == "float64" else truth
        checks = rows + checks if dtype == "float32" else checks + rows
        info["timings_s"][dtype] = time.perf_counter() - t0
        model = km if dtype == "float32" else model
    if training:
        t0 = time.perf_counter()
        checks += _reverse_training(fw, torch_model, graph, source, loss, len(xs[0]), seed)
        info["timings_s"]["training"] = time.perf_counter() - t0
    return PortResult(graph, model, source, checks, info)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _nonneg_float(s: str) -> float:
    v = float(s)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="compare.py",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Subcommands: 'data', 'export' and 'bench' (each has --help). "
               "Exit codes: 0 all checks passed, 1 a parity check failed, 2 bad usage or bad input, 3 internal error.",
    )
    p.add_argument("--task", choices=TASKS, help="only built-in pairs of this task; with --format csv, the task of the data")
    p.add_argument("--model", choices=MODELS, help="only built-in pairs of this model; with --data, the model to build (default: cnn for images, mlp for tables)")
    p.add_argument("--data", metavar="PATH", help="check a model on your own data instead of the built-in sets")
    p.add_argument("--format", choices=("pascal", "biwi", "csv"), help="layout of --data: fastai PASCAL (train.csv + train/), BIWI (person folders), or a tabular CSV")
    p.add_argument("--target", action="append", metavar="COLUMN", help="target column of a CSV (repeat for several; default: the last column)")
    p.add_argument("--image-size", type=_positive_int, default=32, help="images are resized to this square size (default 32)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of both models (float32 also repeats the forward check in float64)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps per optimizer (default {DEFAULT_STEPS}; 0 skips training)")
    p.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE, help=f"batch size (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--optimizer", choices=("sgd", "adam", "both"), default="both", help="optimizer(s) to train with (default both)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order (default 0)")
    p.add_argument("--atol", type=_nonneg_float, help="absolute tolerance for every check (overrides the named defaults)")
    p.add_argument("--rtol", type=_nonneg_float, help="relative tolerance (times max(1, |reference|)) for every check")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"report folder, replaced atomically (default {DEFAULT_OUT})")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export checks")
    p.add_argument("--plant", choices=sorted(FAULTS), help="plant a known porting bug in the PyTorch twin to see what the harness reports: "
                   + "; ".join(f"{k}: {v}" for k, v in FAULTS.items()))
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS,
                   help=f"intra-op threads of each framework (default {DEFAULT_THREADS}: fastest for these small models, and reproducible)")
    p.add_argument("--quiet", action="store_true", help="print only the one-line verdict")
    return p


def cmd_run(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    if args.format and not args.data:
        raise UsageError("--format needs --data PATH")
    tolerance = None
    if args.atol is not None or args.rtol is not None:
        tolerance = Tolerance(rel=args.rtol or 0.0, abs=args.atol or 0.0)
    opts = Options(
        steps=args.steps, optimizers=("sgd", "adam") if args.optimizer == "both" else (args.optimizer,),
        seed=args.seed, dtype=args.dtype, batch_size=args.batch_size, tolerance=tolerance,
        onnx=not args.no_onnx, fault=args.plant, quiet=args.quiet, threads=args.threads,
    )
    if args.steps == 0:
        opts.optimizers = ()
    cases = [user_case(args)] if args.data else builtin_cases(args.task, args.model, args.dtype, args.seed)
    report = run_checks(cases, opts, Path(args.out))
    if args.quiet:
        from shared.report import summary_line

        print(summary_line(report))
    return EXIT_OK if report["passed"] else EXIT_PARITY


def cmd_data(argv) -> int:
    p = _Parser(prog="compare.py data", description="Show what a loader reads: item counts per split, label counts, input shape.")
    p.add_argument("name", nargs="?", choices=("digits", "breast_cancer", "multilabel", "regression"), help="a built-in dataset (or use --data/--format)")
    p.add_argument("--data", metavar="PATH")
    p.add_argument("--format", choices=("pascal", "biwi", "csv"))
    p.add_argument("--task", choices=TASKS, help="task of a CSV")
    p.add_argument("--target", action="append", metavar="COLUMN")
    p.add_argument("--image-size", type=_positive_int, default=32)
    p.add_argument("--items", metavar="FILE.csv", help="write every item with its split and target")
    p.add_argument("--show", type=_positive_int, metavar="N", help="save a grid of N validation images with their labels (needs --png)")
    p.add_argument("--png", metavar="FILE", help="where --show writes its grid")
    args = p.parse_args(argv)
    from shared import loaders, show

    if bool(args.name) == bool(args.data):
        raise UsageError("give a built-in name or --data PATH --format F (one of them)")
    if args.show and not args.png:
        raise UsageError("--show needs --png FILE")
    if args.data:
        if not args.format:
            raise UsageError("--data needs --format pascal|biwi|csv")
        kw = dict(task=args.task, target=args.target) if args.format == "csv" else dict(image_size=args.image_size)
        if args.format == "csv" and not args.task:
            raise UsageError("--format csv needs --task")
        ds = loaders.load(args.data, args.format, **kw)
    else:
        fmt = {"multilabel": "builtin-multilabel", "regression": "builtin-regression"}.get(args.name, args.name)
        ds = loaders.load(None, fmt)
    print(show.describe(ds))
    if args.items:
        show.write_items_csv(ds, args.items)
        print(f"items written to {args.items}")
    if args.show:
        show.show_grid(ds, args.show, args.png)
        print(f"grid of {args.show} images written to {args.png}")
    return EXIT_OK


def cmd_export(argv) -> int:
    p = _Parser(prog="compare.py export", description="Write the Keras and PyTorch ONNX exports of a model and its portable weights, atomically.")
    p.add_argument("--task", choices=TASKS, help="pick the built-in pair of this task")
    p.add_argument("--model", choices=MODELS, help="pick the built-in pair of this model")
    p.add_argument("--weights", metavar="FILE.safetensors", help="export these portable weights (their sidecar gives the model) instead of a fresh built-in model")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the pinned one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (created, or replaced atomically)")
    args = p.parse_args(argv)
    from shared import onnx_check
    from shared.atomic import atomic_dir
    from shared.portable import load_portable

    opset = args.opset if args.opset is not None else onnx_check.ONNX_OPSET
    onnx_check.validate_opset(opset)
    out = Path(args.out)
    _check_writable(out)
    fw = frameworks()
    from keras_impl import export as kx
    from torch_impl import export as tx

    if args.weights:
        tensors, sidecar, cfg = load_portable(args.weights)
        classes = sidecar.get("classes", [])
    else:
        from shared.registry import PAIRS

        pairs = [q for q in PAIRS if (not args.task or q.task == args.task) and (not args.model or q.model == args.model)]
        if not pairs:
            raise UsageError(f"no built-in pair has task={args.task!r} and model={args.model!r}")
        cfg, classes = pairs[0].config(), []
        tensors = fw.kw.to_portable(fw.km.build_model(cfg, seed=args.seed), cfg)
    k, t = fw.km.build_model(cfg), fw.tm.build_model(cfg)
    fw.kw.from_portable(k, cfg, tensors)
    fw.tw.from_portable(t, cfg, tensors)
    with atomic_dir(out) as work:
        work = Path(work)
        fw.tw.save_weights(t, cfg, work / "weights.safetensors", classes=classes)
        kx.export_onnx(k, cfg, work / "keras.onnx", opset=opset)
        tx.export_onnx(t, cfg, work / "torch.onnx", opset=opset)
    for name in ("keras.onnx", "torch.onnx"):
        info = onnx_check.check_model(out / name)
        print(f"{out / name}: opset {info['opset']}, inputs {info['inputs']}, outputs {info['outputs']}, ops {info['ops']}")
    print(f"{out / 'weights.safetensors'} (+ weights.json): {cfg.model}/{cfg.task}")
    return EXIT_OK


def _check_writable(out: Path) -> None:
    parent = out.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UsageError(f"cannot write the output folder {out}: {probe} is not a writable directory")
    if out.exists() and not out.is_dir():
        raise UsageError(f"cannot write the output folder {out}: it exists and is not a directory")


def _port_inputs(path: str | None, graph, batch: int, seed: int) -> list:
    """--data: a .npy (one input) or .npz (arrays named after the inputs, or in
    order) in PyTorch's layout; without it, seeded random inputs."""
    from shared import port_check as pc

    if path is None:
        return pc.random_inputs(graph, batch, seed)
    p = Path(path)
    if not p.is_file() or p.suffix not in (".npy", ".npz"):
        raise UsageError(f"--data {path}: expected an existing .npy or .npz file of inputs in PyTorch's layout")
    if p.suffix == ".npy":
        arrays = [np.load(p)]
    else:
        with np.load(p) as z:
            arrays = [z[n] for n in graph.inputs] if all(n in z for n in graph.inputs) else [z[k] for k in z.files]
    if len(arrays) != len(graph.inputs):
        raise UsageError(f"--data {path}: {len(arrays)} arrays for the model's {len(graph.inputs)} inputs {graph.inputs}")
    for name, a in zip(graph.inputs, arrays):
        want = graph.tensors[name].shape
        if a.ndim != len(want) or any(w is not None and w != s for w, s in zip(want[1:], a.shape[1:])):
            raise UsageError(f"--data {path}: input {name!r} has shape {a.shape}, expected (N, {', '.join(map(str, want[1:]))}) "
                             "(PyTorch layout: channels first for images)")
    return [a.astype(graph.tensors[n].dtype) if a.dtype.kind == "f" else a for n, a in zip(graph.inputs, arrays)]


def cmd_port(argv) -> int:
    p = _Parser(prog="compare.py port", description="Port a Keras model to a readable standalone PyTorch model.py + "
                "weights.safetensors, and prove the port (forward per node, gradients, float32 and float64).")
    p.add_argument("model", metavar="MODEL", help="a .keras or .h5 file, or package.module:function / path/file.py:function returning a Keras model")
    p.add_argument("--out", required=True, help="output folder (created, or replaced atomically)")
    p.add_argument("--unsafe", action="store_true", help="allow Lambda layers carrying code (Keras' safe_mode off): only for models you trust")
    p.add_argument("--data", metavar="FILE", help="inputs as .npy/.npz in PyTorch's layout (default: seeded random inputs of the model's shape)")
    p.add_argument("--batch-size", type=_positive_int, default=4, help="batch of the random inputs (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=DEFAULT_THREADS)
    p.add_argument("--quiet", action="store_true", help="print only the one-line verdict")
    p.add_argument("--input-shape", metavar="C,H,W", type=_shape_arg,
                   help="PyTorch to Keras: MODEL is path/file.py:NAME or package.module:NAME (an nn.Module class or a "
                        "function returning one), its input shape without the batch")
    p.add_argument("--torch-weights", metavar="FILE", help="PyTorch to Keras: a state_dict (.pt/.pth or .safetensors)")
    p.add_argument("--no-onnx", action="store_true", help="PyTorch to Keras: skip the two ONNX exports")
    args = p.parse_args(argv)
    out = Path(args.out)
    _check_writable(out)
    if args.input_shape is not None or args.torch_weights is not None:
        return cmd_port_reverse(args, out)
    fw = frameworks(args.threads)
    from keras_impl import port as kp
    from shared import report as rpt
    from shared.atomic import atomic_write_text

    keras_model = kp.load_model(args.model, unsafe=args.unsafe)
    from keras_impl.graph import read_graph

    xs = _port_inputs(args.data, read_graph(keras_model), args.batch_size, args.seed)
    res = port_checks(keras_model, xs, seed=args.seed)
    ui = _UI(args.quiet)
    with _workdir(out) as work, ui:
        atomic_write_text(work / "model.py", res.source)
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in res.module.state_dict().items()}, str(work / "weights.safetensors"))
        env = rpt.environment(fw.versions(), seed=args.seed, dtype="float32", threads=fw.threads())
        data = [{"case": f"port {res.graph.name}", "model": args.model, "inputs": "--data " + args.data if args.data else
                 f"seeded random, batch {len(xs[0])}", **res.info["layouts"]}]
        report = rpt.build_report(res.checks, environment=env, data=data,
                                  artifacts={"model.py": "model.py", "weights": "weights.safetensors", "loss": res.info["loss"],
                                             "timings_s": res.info["timings_s"], "graph_nodes": res.info["nodes"]})
        atomic_write_text(work / "report.json", rpt.dumps(report))
        atomic_write_text(work / "report.md", rpt.markdown(report, res.checks))
    if args.quiet:
        print(rpt.summary_line(report))
    else:
        rpt.console_table(res.checks, ui.out, only_failures=len(res.checks) > 60)
        ui.out.print(rpt.summary_line(report) + f"; model.py, weights and report in {out}")
    return EXIT_OK if report["passed"] else EXIT_PARITY


def _shape_arg(s: str) -> tuple:
    try:
        dims = tuple(int(a) for a in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r}: expected sizes separated by commas, e.g. 3,64,64") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{s!r}: sizes must be positive")
    return dims


def cmd_port_reverse(args, out: Path) -> int:
    """compare.py port TORCH_MODEL --input-shape C,H,W --out DIR: PyTorch -> Keras."""
    if args.input_shape is None:
        raise UsageError("PyTorch to Keras needs --input-shape C,H,W (the input without the batch)")
    fw = frameworks(args.threads)
    from shared import report as rpt
    from shared.atomic import atomic_write_text
    from torch_impl import port as tp

    module = tp.load_module(args.model, args.torch_weights)
    from torch_impl.read import read_graph

    xs = _port_inputs(args.data, read_graph(module, args.input_shape), args.batch_size, args.seed)
    res = reverse_port_checks(module, args.input_shape, xs, seed=args.seed)
    ui = _UI(args.quiet)
    with _workdir(out) as work, ui:
        atomic_write_text(work / "model_keras.py", res.source)
        res.module.save(str(work / "model.keras"))
        res.module.save_weights(str(work / "model.weights.h5"))
        res.checks.append(_plain_load_check(work / "model.keras", res, xs, work))
        if not args.no_onnx:
            res.checks += _reverse_onnx(fw, module, res, xs, work)
        env = rpt.environment(fw.versions(), seed=args.seed, dtype="float32", threads=fw.threads())
        data = [{"case": f"port {res.graph.name} (PyTorch -> Keras)", "model": args.model,
                 "inputs": "--data " + args.data if args.data else f"seeded random, batch {len(xs[0])}", **res.info["layouts"]}]
        report = rpt.build_report(res.checks, environment=env, data=data,
                                  artifacts={"model.keras": "model.keras", "model_keras.py": "model_keras.py",
                                             "weights": "model.weights.h5", "loss": res.info["loss"],
                                             "timings_s": res.info["timings_s"], "graph_nodes": res.info["nodes"]})
        atomic_write_text(work / "report.json", rpt.dumps(report))
        atomic_write_text(work / "report.md", rpt.markdown(report, res.checks))
    if args.quiet:
        print(rpt.summary_line(report))
    else:
        rpt.console_table(res.checks, ui.out, only_failures=len(res.checks) > 60)
        ui.out.print(rpt.summary_line(report) + f"; model.keras, model_keras.py, weights and report in {out}")
    return EXIT_OK if report["passed"] else EXIT_PARITY


def _reverse_onnx(fw, module, res, xs, work: Path) -> list:
    """keras.onnx (tf2onnx) and torch.onnx (torch.onnx.export) of the two
    models, validated, run in onnxruntime and compared four ways (batch as
    given), for a single image input and a 2-d output (classification logits)."""
    from keras_impl import export as kx
    from shared import onnx_check
    from shared.config import ModelConfig
    from torch_impl import export as tx

    graph = res.graph
    x_spec, y_spec = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    if len(x_spec.shape) != 4 or len(y_spec.shape) != 2:
        return [Check("ONNX exports", "torch", "keras", 0.0, 0.0, 0.0, True, "skipped: only image input -> 2-d output models",
                      model=graph.name, dtype="float32", info=True)]
    c, h, w = (int(v) for v in x_spec.shape[1:])
    cfg = ModelConfig(model="cnn", task="multiclass", input_shape=(h, w, c), num_outputs=int(y_spec.shape[1]))
    kp = kx.export_onnx(res.module, cfg, work / "keras.onnx")
    tp = tx.export_onnx(module, cfg, work / "torch.onnx")
    onnx_check.check_model(kp), onnx_check.check_model(tp)
    xt = np.ascontiguousarray(xs[0].astype(np.float32))
    xk = np.ascontiguousarray(np.transpose(xt, (0, 2, 3, 1)))
    with fw.torch.no_grad():
        t_out = module(fw.torch.as_tensor(xt)).numpy()
    outputs = {"keras": np.asarray(res.module(xk, training=False)), "torch": t_out,
               "onnx(keras)": onnx_check.run_onnx(kp, xk), "onnx(torch)": onnx_check.run_onnx(tp, xt)}
    out_row = next(r for r in res.checks if r.check.startswith("output ") and r.dtype == "float32")
    from shared.tolerances import Tolerance

    tol = Tolerance(rel=for_check("onnx", "float32").rel, abs=out_row.tolerance)  # the output row's own float32 allowance
    return onnx_check.four_way_checks(outputs, task="multiclass", dtype="float32", tolerance=tol, model=graph.name)


_PLAIN_LOAD = """
import sys, numpy as np, keras
m = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], keras.ops.convert_to_numpy(m(np.load(sys.argv[2]), training=False)))
"""


def _plain_load_check(path: Path, res, xs, work: Path) -> Check:
    """Load model.keras with plain keras.models.load_model in a fresh, isolated
    Python (-I: nothing of this project importable) and compare its output."""
    import subprocess

    from keras_impl.write import graph_values as keras_values

    graph = res.graph
    perm = graph.tensors[graph.inputs[0]].keras_perm
    x = xs[0] if perm is None else np.transpose(xs[0], np.argsort(perm))
    np.save(work / ".x.npy", np.ascontiguousarray(x))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-I", "-c", _PLAIN_LOAD, str(path), str(work / ".x.npy"), str(work / ".y.npy")],
                          capture_output=True, text=True, env=env, cwd=str(work))
    tol = for_check("forward", "float32")
    name = "plain keras.models.load_model(model.keras), fresh process"
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        (work / ".x.npy").unlink()
        return Check(name, "model.keras", "in memory", float("inf"), float("inf"), tol.rel, False, f"load failed: {tail}",
                     model=graph.name, dtype="float32")
    y = np.load(work / ".y.npy")
    for f in (".x.npy", ".y.npy"):
        (work / f).unlink()
    mine = keras_values(res.module, graph, xs)[graph.outputs[0]]
    operm = graph.tensors[graph.outputs[0]].keras_perm
    y = y if operm is None else np.transpose(y, operm)
    return compare_arrays(name, y, mine, tol, a_name="model.keras", b_name="in memory", model=graph.name, dtype="float32")


def cmd_bench(argv) -> int:
    from shared.bench import main as bench_main

    return bench_main(argv)


COMMANDS = {"data": cmd_data, "export": cmd_export, "bench": cmd_bench, "port": cmd_port}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = COMMANDS.get(argv[0]) if argv else None
    try:
        return cmd(argv[1:]) if cmd else cmd_run(argv)
    except ParityFailure as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_PARITY
    except (ParityError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except Exception:  # a bug in this tool: never let it pass for a parity verdict (exit 1)
        import traceback

        traceback.print_exc()
        print("internal error: the traceback above is a bug in keras-torch-parity, not a parity result; "
              "nothing was written", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
