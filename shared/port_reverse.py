"""The proof of the reverse port (PyTorch -> Keras), framework-free.

It drives two sides (shared/side.py) made by the classes the caller hands
in (compare.py passes torch_impl.side.TorchSide as `t` and
keras_impl.side.KerasSide as `k`; both take and give numpy in the graph's
neutral layout): the torch module is read into the graph (torch.fx,
`t.read`), the graph written as model_keras.py and built (`k.from_graph`),
then, with the torch module as the reference (a):

1. the output and every node's tensor, float64 first, then float32 (each
   float32 row may also use 4x torch's own float32 error on that tensor);
2. the loss and every parameter's gradient, in both dtypes (inference mode;
   float32 gradients get the same own-error allowance);
3. three SGD+momentum steps in training mode, float64, batches of at least
   TRAIN_MIN_BATCH images: losses per step and every weight after
   (BatchNorm's running variance an information row);
4. on request (the CLI): model.keras reloaded by plain Keras in a fresh
   process, and both ONNX exports compared four ways in onnxruntime.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared import port_check as pc
from shared.memory import TF2ONNX_BYTES_PER_PARAMETER, MemoryLog, available_mib, export_memory_refusal, release
from shared.spill import spill
from shared.checks import Check, compare_arrays, compare_named
from shared.config import TrainConfig
from shared.tolerances import Tolerance, for_check

__all__ = ["ReverseResult", "torch_to_keras", "reverse_port_checks", "plain_load_check", "onnx_checks",
           "F32_OWN_ERROR_FACTOR", "TRAIN_STEPS", "TRAIN_LR", "TRAIN_MOMENTUM", "TRAIN_MIN_BATCH"]

# float32 per-node (and per-gradient) allowance: besides the float32 tolerance
# of the scale, 4x torch's own float32 error on that tensor (|torch float32 -
# torch float64|, same inputs). VGG11-BN's float32 gradients differ by up to
# 2e-4 (max-pool near-ties and ReLU kinks picked differently) while float64
# agrees to 1e-15. Deep nets accumulate float32 rounding past 16 eps (ConvNeXt-T
# at 64x64: 7.4e-6 on a 2x2 stride-2 conv over 1536 inputs, torch's own error
# there 3e-6) while float64 agrees to 1e-14; a porting bug shows in float64.
F32_OWN_ERROR_FACTOR = 4.0
TRAIN_STEPS = 3  # SGD steps of the training check (float64, training mode)
TRAIN_LR, TRAIN_MOMENTUM = 0.01, 0.9
# At least this many images per training batch: BatchNorm in training mode on
# ShuffleNet's 2x2 maps of a batch of 2 normalises 8 numbers per channel, so ill
# conditioned that float64 weights part by 3e-9 after 3 steps (tolerance 1e-10);
# with 8 images RegNet-X-400MF still parts by 5.6e-10; with 16 both pass.
TRAIN_MIN_BATCH = 16
# Ill-conditioned training (an untrained Inception-V3 at 75x75: logits of 1e8,
# BatchNorm in training mode on 1x1 maps): float64 weights after 3 steps part
# by 7.6e-9 against the fixed 1e-10 while every float64 node and gradient agrees
# to 1e-14 relative. Where a float64 training row misses the fixed bound,
# torch's own run is repeated from a start whose parameters are perturbed by
# the relative size of the measured float64 forward difference between the two
# frameworks (the worst float64 node or output row, at least PERTURB_MIN_REL: one
# ulp), and the row is judged against CONDITIONING_FACTOR x how far that moves
# torch's own result (the factor 4 of the float32 own-error rule). A porting
# bug that shows only in training moves a well-conditioned model's weights by
# orders of magnitude more than that; it stays caught (tests/test_reverse_conditioning.py).
PERTURB_MIN_REL = float(np.finfo(np.float64).eps)
CONDITIONING_FACTOR = 4.0


# The training check's optimizer, as shared.config.TrainConfig (Side.train_steps).
TRAIN_CONFIG = TrainConfig("sgd", TRAIN_LR, momentum=TRAIN_MOMENTUM, steps=TRAIN_STEPS)


@dataclass
class ReverseResult:
    graph: object
    keras_side: object  # keras_impl.side.KerasSide, float32 (.model, .source, .plan)
    torch_side: object  # torch_impl.side.TorchSide of the user's module
    checks: list
    info: dict = field(default_factory=dict)

    @property
    def model(self):
        """The float32 Keras model."""
        return self.keras_side.model

    @property
    def source(self) -> str:
        """model_keras.py."""
        return self.keras_side.source


def torch_to_keras(k, t, module, input_shape, dtype: str = "float32") -> tuple:
    """(Keras side, torch side) for a torch module: `t.read` reads it into the
    graph (the torch side's .graph), `k.from_graph` writes and builds the Keras
    model (.model, .source, .plan)."""
    ts = t.read(module, tuple(input_shape))
    return k.from_graph(ts.graph, dtype=dtype), ts


def _torch_side(ts, xd, y, loss, dtype, mem) -> dict:
    """torch's node values, loss and gradients in one dtype, the arrays parked on
    disk; the dtype copy of the module is dropped."""
    side = ts.with_dtype(dtype)
    a = side.values(xd)
    tl, tg = side.loss_and_grads(xd, y, loss)
    if side is not ts:
        side.forget()  # its cached capture would keep the copy alive
    del side
    release()
    mem.mark(f"{dtype}: torch values + gradients")
    return {"values": spill(a), "loss": tl, "grads": spill(tg)}


def _keras_side(ks, xd, y, loss, dtype, mem) -> dict:
    """Keras' node values, loss and gradients of side `ks`, the arrays parked on disk.
    Its loss sets loss["keras_uses_logits"], which torch's loss then reads."""
    b = spill(ks.values(xd))
    kl, kg = ks.loss_and_grads(xd, y, loss)
    mem.mark(f"{dtype}: Keras values + gradients")
    return {"values": b, "loss": kl, "grads": spill(kg)}


# _own_error's float64 difference is taken this many elements at a time (32
# MiB), not whole: VGG11-BN's classifier gradient would make a 0.8 GB temporary
# while its float32 and float64 copies are loaded (issue 18). The chunk of
# shared/checks.py's lean compare_arrays.
OWN_ERROR_CHUNK = 1 << 22


def _own_error(x: np.ndarray, reference) -> float:
    """max |x - reference|, x widened to float64, a chunk at a time (max is exact: same figure)."""
    x, reference = np.asarray(x), np.asarray(reference)
    if x.shape != reference.shape:  # broadcasting: the whole-array difference, as before
        d = np.subtract(x, reference, dtype=np.float64)
        return float(max(d.max(), -d.min())) if d.size else 0.0
    fx, fr = x.reshape(-1), reference.reshape(-1)
    out = None
    for start in range(0, fx.size, OWN_ERROR_CHUNK):
        d = np.subtract(fx[start:start + OWN_ERROR_CHUNK], fr[start:start + OWN_ERROR_CHUNK], dtype=np.float64)
        m = max(d.max(), -d.min())
        out = m if out is None or m > out else out
    return float(out) if out is not None else 0.0


def _grad_rows(tg, kg, truth, dtype, ctx) -> list:
    gtol = for_check("gradient", dtype)
    if truth is None:
        return compare_named("grad", tg, kg, gtol, **ctx)
    rows = []  # float32: the same allowance as the nodes, on torch's own gradient error
    for key in tg:
        own = _own_error(tg[key], truth["grads"][key]) if key in truth["grads"] else 0.0
        if key in kg:
            rows.append(compare_arrays(f"grad {key}", tg[key], kg[key], Tolerance(rel=gtol.rel, abs=F32_OWN_ERROR_FACTOR * own), **ctx))
    rows += compare_named("grad", {}, kg.only(key for key in kg if key not in tg), gtol, **ctx)
    rows += compare_named("grad", tg.only(key for key in tg if key not in kg), {}, gtol, **ctx)
    return rows


def _dtype_rows(k, t, graph, ts: dict, ks: dict, loss, dtype, truth) -> list:
    """The rows of one dtype: output, every node, loss, gradients; `truth`: torch's
    float64 side, for the float32 rows' own-error allowance (None for float64)."""
    a, b = ts["values"], ks["values"]
    tol = for_check("forward", dtype)
    node_tol = tol
    if truth is not None:
        def node_tol(name):
            own = _own_error(a[name], truth["values"][name]) if name in truth["values"] and name in a else 0.0
            return Tolerance(rel=tol.rel, abs=F32_OWN_ERROR_FACTOR * own)
    ctx = {"a_name": t.name, "b_name": k.name, "model": graph.name, "dtype": dtype}
    nodes = pc.node_checks(graph, a, b, node_tol, dtype=dtype, a_name=t.name, b_name=k.name)
    rows = [compare_arrays(f"output {o}", a[o], b[o], node_tol(o) if callable(node_tol) else tol, **ctx) for o in graph.outputs]
    first = pc.first_differing(graph, nodes)
    rows += ([first] if first else []) + nodes
    loss_tol = tol if truth is None else Tolerance(rel=tol.rel, abs=F32_OWN_ERROR_FACTOR * abs(ts["loss"] - truth["loss"]))
    rows.append(compare_arrays(f"loss ({loss['kind']})", ts["loss"], ks["loss"], loss_tol, **ctx))
    return rows + _grad_rows(ts["grads"], ks["grads"], truth, dtype, ctx)


def _train_batches(graph, loss, batch, seed) -> list:
    dtype = "float64"
    batches = []
    for i in range(TRAIN_STEPS):
        xs = [x.astype(dtype) if x.dtype.kind == "f" else x for x in pc.random_inputs(graph, batch, seed + 100 + i)]
        batches.append((xs, pc.random_targets(graph, loss, batch, seed + 100 + i)))
    return batches


def _torch_training(ts, batches, loss, mem) -> tuple:
    """TRAIN_STEPS SGD+momentum steps of a float64 copy in training mode: (losses, weights on disk)."""
    side = ts.with_dtype("float64")
    side = side.copy() if side is ts else side  # the user's module stays untrained
    tl, tw = side.train_steps(batches, loss, TRAIN_CONFIG, training=True)
    side.forget()  # its cached capture would keep the copy alive
    del side
    release()
    mem.mark("training: torch steps")
    return tl, spill(tw)


def _keras_training(k, graph, source, plan, batches, loss, mem, km=None) -> tuple:
    """The Keras twin of _torch_training; km: the float64 side of the float64
    checks (inference mode leaves its weights as built), else one is built."""
    km = k.from_graph(graph, source, plan, dtype="float64") if km is None else km
    kl, kw = km.train_steps(batches, loss, TRAIN_CONFIG, training=True, lazy=True)
    kw = spill(kw)  # written as converted, one weight at a time
    del km
    release()
    mem.mark("training: Keras steps")
    return kl, kw


def _torch_sensitivity(ts, batches, loss, rel: float) -> tuple:
    """torch's own training from a start perturbed by `rel`: (losses, weights on disk)."""
    side = ts.perturbed("float64", rel)
    tl, tw = side.train_steps(batches, loss, TRAIN_CONFIG, training=True)
    side.forget()  # its cached capture would keep the copy alive
    del side
    release()
    return tl, spill(tw)


def _conditioned(rows: list, own: tuple, torch_run: tuple, keras_run: tuple, ctx: dict, rel: float) -> list:
    """Failing float64 training rows made again against CONDITIONING_FACTOR x the
    distance a start perturbed by `rel` moves torch's own run (`own` vs `torch_run`, each
    (losses, weights)); rows within the fixed bound stay as they are."""
    (pl, pw), (tl, tw), (kl, kw) = own, torch_run, keras_run
    fixed = for_check("training", "float64")
    out = []
    for c in rows:
        key = c.check[len("trained "):] if c.check.startswith("trained ") else None
        if c.passed or c.info or (key is None and not c.check.startswith("training loss")):
            out.append(c)
            continue
        a, b, own_a = (np.array(tl), np.array(kl), np.array(pl)) if key is None else (tw[key], kw[key], pw[key])
        spread = float(np.max(np.abs(np.subtract(a, own_a, dtype=np.float64)))) if np.size(a) else 0.0
        tol = Tolerance(rel=fixed.rel, abs=CONDITIONING_FACTOR * spread,
                        note=f"ill-conditioned: torch's start perturbed by {rel:.2g} relative (the measured float64 "
                             f"forward difference) moves torch's own result by {spread:.3g}; "
                             f"{CONDITIONING_FACTOR:g} x that + the fixed {fixed.rel:g} relative")
        out.append(compare_arrays(c.check, a, b, tol, **ctx))
    return out


def _training_rows(k, t, graph, trained_t, trained_k, sensitivity=None, perturb_rel: float = PERTURB_MIN_REL) -> list:
    """TRAIN_STEPS SGD+momentum steps in training mode (BatchNorm on batch
    statistics), float64, same start, same batches: losses per step and every
    weight after. BatchNorm's running variance is an information row: torch
    updates it with the unbiased batch variance, Keras with the biased one."""
    dtype = "float64"
    (tl, tw), (kl, kw) = trained_t, trained_k
    tol = for_check("training", dtype)
    ctx = {"a_name": t.name, "b_name": k.name, "model": graph.name, "dtype": dtype}
    rows = [compare_arrays(f"training loss per step (SGD, {TRAIN_STEPS} steps)", np.array(tl), np.array(kl), tol, **ctx)]
    var_keys = {key for key in tw if key.endswith(".running_var")}
    rows += compare_named("trained", tw.only(n for n in tw if n not in var_keys),
                          kw.only(n for n in kw if n not in var_keys), tol, **ctx)
    if sensitivity is not None and any(not c.passed and not c.info for c in rows):
        rows = _conditioned(rows, sensitivity(), (tl, tw), (kl, kw), ctx, perturb_rel)
    if var_keys:
        diffs = compare_named("v", tw.only(var_keys), kw.only(var_keys), tol, **ctx)
        w = max(diffs, key=lambda c: c.max_abs_diff)
        rows.append(Check("trained BatchNorm running_var (torch: unbiased batch variance, Keras: biased; not a port error)",
                          w.a, w.b, w.max_abs_diff, w.max_rel_diff, w.tolerance, True, f"{w.check[2:]} {w.where}",
                          model=graph.name, dtype=dtype, info=True))
    return rows


def reverse_port_checks(k, t, module, input_shape, inputs=None, *, seed: int = 0, batch: int = 4,
                        dtypes=("float32", "float64"), training: bool = True) -> ReverseResult:
    """Port `module` to Keras and prove it (see the module docstring).
    `inputs`: numpy arrays in PyTorch's layout (default: seeded random ones).

    Memory (issue 18): TensorFlow's oneDNN allocator keeps the most it ever
    held, so the torch work (every dtype, training) runs while the Keras side
    holds only the float32 model, then the Keras work with torch's copies gone;
    one model copy of one dtype at a time (the float64 Keras model serves the
    float64 checks, then the training steps), and every array a comparison needs
    waits on disk (shared/spill.py) until the comparisons, which come last,
    in the rows' order: float32, float64, training."""
    t0 = time.perf_counter()
    mem = MemoryLog()
    mem.mark("start")
    ks, ts = torch_to_keras(k, t, module, input_shape)
    graph, source, plan = ts.graph, ks.source, ks.plan
    mem.mark("read + build")
    timings = {"port": time.perf_counter() - t0}
    info = {"layouts": pc.layouts(graph), "nodes": len(graph.nodes), "timings_s": timings, "memory": mem}
    xs = list(inputs) if inputs is not None else pc.random_inputs(graph, batch, seed)
    loss = ks.infer_loss()
    y = pc.random_targets(graph, loss, len(xs[0]), seed)
    info["loss"] = loss
    order = sorted(dtypes, key=lambda d: d != "float32")  # float32 first: its Keras model exists already
    xd = {d: [x.astype(d) if x.dtype.kind == "f" else x for x in xs] for d in order}
    sides = {}
    with _clock(timings, order[0]):
        sides[order[0], "keras"] = _keras_side(ks, xd[order[0]], y, loss, order[0], mem)  # sets keras_uses_logits
    ks = None  # rebuilt at the end: meanwhile its memory serves the other copies
    release()
    for dtype in order:
        with _clock(timings, dtype):
            sides[dtype, "torch"] = _torch_side(ts, xd[dtype], y, loss, dtype, mem)
    trained = {}
    if training:
        batches = _train_batches(graph, loss, max(len(xs[0]), TRAIN_MIN_BATCH), seed)
        with _clock(timings, "training"):
            trained["torch"] = _torch_training(ts, batches, loss, mem)
    km = None  # the float64 side, kept for the training steps (one float64 copy, not two)
    for dtype in order[1:]:
        with _clock(timings, dtype):
            km = k.from_graph(graph, source, plan, dtype=dtype)
            sides[dtype, "keras"] = _keras_side(km, xd[dtype], y, loss, dtype, mem)
            if not (training and dtype == "float64"):
                km = None
                release()
    if training:
        with _clock(timings, "training"):
            trained["keras"] = _keras_training(k, graph, source, plan, batches, loss, mem, km)
    km = None
    release()
    with _clock(timings, "float32"):
        ks = k.from_graph(graph, source, plan, dtype="float32")
    mem.mark("float32 model rebuilt")
    sensitivity = (lambda rel: _torch_sensitivity(ts, batches, loss, rel)) if training else None
    checks = _all_rows(k, t, graph, sides, trained, loss, timings, sensitivity)
    for side in list(sides.values()) + [w for _, w in trained.values()]:
        for arrays in (side["values"], side["grads"]) if isinstance(side, dict) else (side,):
            arrays.close()
    mem.mark("compared")
    return ReverseResult(graph, ks, ts, checks, info)


def _all_rows(k, t, graph, sides, trained, loss, timings, sensitivity=None) -> list:
    """float32 rows (measured against torch's float64 side when there is one), float64 rows, training rows."""
    checks = []
    for dtype in sorted({d for d, _ in sides}, key=lambda d: d != "float32"):
        truth = sides.get(("float64", "torch")) if dtype == "float32" else None
        with _clock(timings, dtype):
            checks += _dtype_rows(k, t, graph, sides[dtype, "torch"], sides[dtype, "keras"], loss, dtype, truth)
    if trained:
        forward = [c.max_rel_diff for c in checks if c.dtype == "float64" and c.check.startswith(("output ", "node "))]
        rel = max([PERTURB_MIN_REL] + forward)  # the measured float64 forward difference between the frameworks
        with _clock(timings, "training"):
            checks += _training_rows(k, t, graph, trained["torch"], trained["keras"],
                                     sensitivity and (lambda: sensitivity(rel)), rel)
    return checks


@contextmanager
def _clock(timings: dict, key: str):
    """Add the block's wall time to timings[key] (a dtype's work is spread over the run)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0


def plain_load_check(res: ReverseResult, x, path: Path, work: Path) -> Check:
    """model.keras loaded by plain keras.models.load_model in a fresh process
    computes what the in-memory model computes (x: the input, or one per input;
    both outputs in the neutral layout)."""
    graph = res.graph
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    tol = for_check("forward", "float32")
    name = "plain keras.models.load_model(model.keras), fresh process"
    y, error = res.keras_side.load_in_fresh_process(path, xs, work)
    if error is not None:
        return Check(name, "model.keras", "in memory", float("inf"), float("inf"), tol.rel, False, f"load failed: {error}",
                     model=graph.name, dtype="float32")
    mine = res.keras_side.forward(xs)[0]
    return compare_arrays(name, y, mine, tol, a_name="model.keras", b_name="in memory", model=graph.name, dtype="float32")


def parameter_count(graph) -> int:
    """Elements of every mapped weight (the graph's state keys)."""
    return sum(int(np.prod(s["source_shape"])) for s in graph.weight_sources.values())


def _keras_export(ks, graph, cfg, path: Path):
    """ks.export_onnx, or ExportError (one information row, proven_exports) when
    tf2onnx's estimated memory need is over the budget (issue 18: VGG11-BN's
    export alone outgrows 13.5 GiB)."""
    from shared.onnx_export import ExportError

    why = export_memory_refusal("tf2onnx", parameter_count(graph), TF2ONNX_BYTES_PER_PARAMETER, available=available_mib())
    if why is not None:
        raise ExportError(why)
    return ks.export_onnx(path, config=cfg)


def onnx_checks(res: ReverseResult, x: np.ndarray, work: Path, shown_as: Path | None = None) -> list:
    """keras.onnx and torch.onnx, validated, run in onnxruntime, compared four
    ways; image input -> 2-d output (classification logits) models only. A
    failing exporter is one information row and the other export is still
    compared three ways (shared.onnx_check.proven_exports).

    shown_as: the name messages give `work` (the output folder)."""
    from shared import onnx_check
    from shared.config import ModelConfig

    graph, ks, ts = res.graph, res.keras_side, res.torch_side
    x_spec, y_spec = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    if len(x_spec.shape) != 4 or len(y_spec.shape) != 2:
        return [Check("ONNX exports", ts.name, ks.name, 0.0, 0.0, 0.0, True, "skipped: only image input -> 2-d output models",
                      model=graph.name, dtype="float32", info=True)]
    c, h, w = (int(v) for v in x_spec.shape[1:])
    cfg = ModelConfig(model="cnn", task="multiclass", input_shape=(h, w, c), num_outputs=int(y_spec.shape[1]))
    xt = np.ascontiguousarray(x.astype(np.float32))
    xk = np.ascontiguousarray(np.transpose(xt, (0, 2, 3, 1)))
    sides = [onnx_check.OnnxSide(ks.name, ks.forward([xt])[0],
                                 lambda: _keras_export(ks, graph, cfg, work / "keras.onnx"),
                                 lambda p: onnx_check.run_onnx(p, xk)),
             onnx_check.OnnxSide(ts.name, ts.forward([xt])[0],
                                 lambda: ts.export_onnx(work / "torch.onnx", config=cfg),
                                 lambda p: onnx_check.run_onnx(p, xt))]
    out_row = next(r for r in res.checks if r.check.startswith("output ") and r.dtype == "float32")
    # the output row's own float32 allowance (it may include torch's own float32 error)
    tol = Tolerance(rel=for_check("onnx", "float32").rel, abs=out_row.tolerance)
    return onnx_check.proven_exports(sides, model=graph.name, shown={work: shown_as} if shown_as is not None else {},
                                     task="multiclass", dtype="float32", tolerance=tol)
