"""The proof of the reverse port (PyTorch -> Keras), framework-free.

It drives two sides handed in by the caller (compare.py passes the modules
torch_impl/reverse.py as `t` and keras_impl/reverse.py as `k`; both take and
give numpy in the graph's neutral layout): the torch module is read into the
graph (torch.fx), the graph written as model_keras.py and built, then, with
the torch module as the reference (a):

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared import port_check as pc
from shared.memory import MemoryLog, release
from shared.spill import spill
from shared.checks import Check, compare_arrays, compare_named
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


@dataclass
class ReverseResult:
    graph: object
    model: object  # the float32 Keras model
    source: str  # model_keras.py
    plan: dict
    checks: list
    info: dict = field(default_factory=dict)


def torch_to_keras(k, t, module, input_shape, dtype: str = "float32") -> tuple:
    """(Keras model, model_keras.py source, plan, graph) for a torch module."""
    graph = t.read(module, tuple(input_shape))
    model, source, plan = k.build(graph, dtype=dtype)
    return model, source, plan, graph


def _keras_half(k, graph, source, plan, xd, y, loss, dtype, keep: bool, mem) -> tuple:
    """The Keras side of one dtype, run first (its loss sets loss["keras_uses_logits"],
    which the torch side reads): (node values, loss, gradients, the model or
    None), the arrays parked on disk and the model dropped unless `keep`."""
    km = k.build(graph, source, plan, dtype=dtype)[0]
    mem.mark(f"{dtype}: Keras model built")
    b = spill(k.values(km, graph, xd))
    kl, kg = k.loss_and_grads(km, graph, xd, y, loss)
    kg = spill(kg)
    mem.mark(f"{dtype}: Keras values + gradients")
    if not keep:
        del km
        km = None
        release()
    return b, kl, kg, km


def _torch_half(t, module, graph, xd, y, loss, dtype, mem) -> tuple:
    """The torch side of one dtype: (node values, loss, gradients); the dtype copy is dropped."""
    mod = t.cast(module, dtype)
    a = t.values(mod, graph, xd)
    tl, tg = t.loss_and_grads(mod, graph, xd, y, loss)
    del mod
    release()
    mem.mark(f"{dtype}: torch values + gradients")
    return a, tl, tg


def _own_error(x: np.ndarray, reference) -> float:
    """max |x - reference|, x widened to float64 (one temporary)."""
    d = np.subtract(x, reference, dtype=np.float64)
    return float(max(d.max(), -d.min())) if d.size else 0.0


def _grad_rows(tg, kg, truth, dtype, ctx) -> list:
    gtol = for_check("gradient", dtype)
    if not (dtype == "float32" and truth is not None):
        return compare_named("grad", tg, kg, gtol, **ctx)
    rows = []  # the same allowance as the nodes, on torch's own gradient error
    for key in tg:
        own = _own_error(tg[key], truth[1][key]) if key in truth[1] else 0.0
        if key in kg:
            rows.append(compare_arrays(f"grad {key}", tg[key], kg[key], Tolerance(rel=gtol.rel, abs=F32_OWN_ERROR_FACTOR * own), **ctx))
    rows += compare_named("grad", {}, {key: kg[key] for key in kg if key not in tg}, gtol, **ctx)
    rows += compare_named("grad", {key: v for key, v in tg.items() if key not in kg}, {}, gtol, **ctx)
    return rows


def _dtype_checks(k, t, module, graph, source, plan, xs, y, loss, dtype, truth, mem) -> tuple:
    """(rows, torch values and gradients parked on disk, Keras model or None) of one dtype:
    output, every node, loss, gradients. The Keras model is kept for float32 only."""
    xd = [x.astype(dtype) if x.dtype.kind == "f" else x for x in xs]
    tol = for_check("forward", dtype)
    b, kl, kg, km = _keras_half(k, graph, source, plan, xd, y, loss, dtype, dtype == "float32", mem)
    a, tl, tg = _torch_half(t, module, graph, xd, y, loss, dtype, mem)
    node_tol = tol
    if dtype == "float32" and truth is not None:
        def node_tol(name):
            own = _own_error(a[name], truth[0][name]) if name in truth[0] and name in a else 0.0
            return Tolerance(rel=tol.rel, abs=F32_OWN_ERROR_FACTOR * own)
    ctx = {"a_name": t.NAME, "b_name": k.NAME, "model": graph.name, "dtype": dtype}
    nodes = pc.node_checks(graph, a, b, node_tol, dtype=dtype, a_name=t.NAME, b_name=k.NAME)
    rows = [compare_arrays(f"output {o}", a[o], b[o], node_tol(o) if callable(node_tol) else tol, **ctx) for o in graph.outputs]
    first = pc.first_differing(graph, nodes)
    rows += ([first] if first else []) + nodes
    b.close()
    rows.append(compare_arrays(f"loss ({loss['kind']})", tl, kl, tol, **ctx))
    rows += _grad_rows(tg, kg, truth, dtype, ctx)
    kg.close()
    mem.mark(f"{dtype}: compared")
    return rows, (spill(a), spill(tg)) if dtype == "float64" else None, km


def _training_checks(k, t, module, graph, source, plan, loss, batch, seed, mem) -> list:
    """TRAIN_STEPS SGD+momentum steps in training mode (BatchNorm on batch
    statistics), float64, same start, same batches. BatchNorm's running
    variance is an information row: torch updates it with the unbiased batch
    variance, Keras with the biased one. Keras trains first, its weights parked
    on disk and its model dropped before torch's copy is made."""
    dtype = "float64"
    batches = []
    for i in range(TRAIN_STEPS):
        xs = [x.astype(dtype) for x in pc.random_inputs(graph, batch, seed + 100 + i)]
        batches.append((xs, pc.random_targets(graph, loss, batch, seed + 100 + i)))
    km = k.build(graph, source, plan, dtype=dtype)[0]
    kl, kw = k.sgd_steps(km, graph, batches, loss, TRAIN_LR, TRAIN_MOMENTUM)
    kw = spill(kw)
    del km
    release()
    mem.mark("training: Keras steps")
    mod = t.cast(module, dtype)
    tl, tw = t.sgd_steps(mod, graph, batches, loss, TRAIN_LR, TRAIN_MOMENTUM)
    del mod
    release()
    mem.mark("training: torch steps")
    tol = for_check("training", dtype)
    ctx = {"a_name": t.NAME, "b_name": k.NAME, "model": graph.name, "dtype": dtype}
    rows = [compare_arrays(f"training loss per step (SGD, {TRAIN_STEPS} steps)", np.array(tl), np.array(kl), tol, **ctx)]
    var_keys = {key for key in tw if key.endswith(".running_var")}
    rows += compare_named("trained", {n: v for n, v in tw.items() if n not in var_keys},
                          kw.only(n for n in kw if n not in var_keys), tol, **ctx)
    if var_keys:
        diffs = compare_named("v", {n: tw[n] for n in var_keys}, kw.only(var_keys), tol, **ctx)
        w = max(diffs, key=lambda c: c.max_abs_diff)
        rows.append(Check("trained BatchNorm running_var (torch: unbiased batch variance, Keras: biased; not a port error)",
                          w.a, w.b, w.max_abs_diff, w.max_rel_diff, w.tolerance, True, f"{w.check[2:]} {w.where}",
                          model=graph.name, dtype=dtype, info=True))
    kw.close()
    return rows


def reverse_port_checks(k, t, module, input_shape, inputs=None, *, seed: int = 0, batch: int = 4,
                        dtypes=("float32", "float64"), training: bool = True) -> ReverseResult:
    """Port `module` to Keras and prove it (see the module docstring).
    `inputs`: numpy arrays in PyTorch's layout (default: seeded random ones).

    Memory (issue 18): one model copy of one dtype and one framework at a
    time besides the float32 torch module; the arrays a later comparison needs
    wait on disk (shared/spill.py). The run order is float64, training,
    float32 (the float32 Keras model, the one kept, is built last); the rows
    keep their order: float32, float64, training."""
    t0 = time.perf_counter()
    mem = MemoryLog()
    mem.mark("start")
    model, source, plan, graph = torch_to_keras(k, t, module, input_shape)
    mem.mark("read + build")
    info = {"layouts": pc.layouts(graph), "nodes": len(graph.nodes), "timings_s": {"port": time.perf_counter() - t0},
            "memory": mem}
    xs = list(inputs) if inputs is not None else pc.random_inputs(graph, batch, seed)
    loss = k.infer_loss(model, graph)
    y = pc.random_targets(graph, loss, len(xs[0]), seed)
    info["loss"] = loss
    if "float32" in dtypes:  # rebuilt by the float32 checks, last
        model = None
        release()
    checks, train_rows, truth = [], [], None
    for dtype in sorted(dtypes, key=lambda d: d != "float64"):  # float64 first: the float32 rows measure against it
        if dtype == "float32" and training:
            train_rows = _timed_training(k, t, module, graph, source, plan, loss, max(len(xs[0]), TRAIN_MIN_BATCH), seed, info)
        t0 = time.perf_counter()
        rows, values, km = _dtype_checks(k, t, module, graph, source, plan, xs, y, loss, dtype, truth, mem)
        truth = values if dtype == "float64" else truth
        checks = rows + checks if dtype == "float32" else checks + rows
        model = km if dtype == "float32" else model
        info["timings_s"][dtype] = time.perf_counter() - t0
        mem.mark(f"{dtype} checks done")
    if training and "float32" not in dtypes:
        train_rows = _timed_training(k, t, module, graph, source, plan, loss, max(len(xs[0]), TRAIN_MIN_BATCH), seed, info)
    for arrays in truth or ():
        arrays.close()
    return ReverseResult(graph, model, source, plan, checks + train_rows, info)


def _timed_training(k, t, module, graph, source, plan, loss, batch, seed, info) -> list:
    t0 = time.perf_counter()
    rows = _training_checks(k, t, module, graph, source, plan, loss, batch, seed, info["memory"])
    info["timings_s"]["training"] = time.perf_counter() - t0
    info["memory"].mark("training")
    return rows


def plain_load_check(k, res: ReverseResult, x: np.ndarray, path: Path, work: Path) -> Check:
    """model.keras loaded by plain keras.models.load_model in a fresh process
    computes what the in-memory model computes."""
    graph = res.graph
    tol = for_check("forward", "float32")
    name = "plain keras.models.load_model(model.keras), fresh process"
    y, error = k.load_in_fresh_process(path, graph, x, work)
    if error is not None:
        return Check(name, "model.keras", "in memory", float("inf"), float("inf"), tol.rel, False, f"load failed: {error}",
                     model=graph.name, dtype="float32")
    mine = k.forward(res.model, graph, x)
    return compare_arrays(name, y, mine, tol, a_name="model.keras", b_name="in memory", model=graph.name, dtype="float32")


def onnx_checks(k, t, module, res: ReverseResult, x: np.ndarray, work: Path) -> list:
    """keras.onnx and torch.onnx, validated, run in onnxruntime, compared four
    ways; image input -> 2-d output (classification logits) models only."""
    from shared import onnx_check
    from shared.config import ModelConfig

    graph = res.graph
    x_spec, y_spec = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    if len(x_spec.shape) != 4 or len(y_spec.shape) != 2:
        return [Check("ONNX exports", t.NAME, k.NAME, 0.0, 0.0, 0.0, True, "skipped: only image input -> 2-d output models",
                      model=graph.name, dtype="float32", info=True)]
    c, h, w = (int(v) for v in x_spec.shape[1:])
    cfg = ModelConfig(model="cnn", task="multiclass", input_shape=(h, w, c), num_outputs=int(y_spec.shape[1]))
    kp, tp = k.export_onnx(res.model, cfg, work / "keras.onnx"), t.export_onnx(module, cfg, work / "torch.onnx")
    onnx_check.check_model(kp), onnx_check.check_model(tp)
    xt = np.ascontiguousarray(x.astype(np.float32))
    xk = np.ascontiguousarray(np.transpose(xt, (0, 2, 3, 1)))
    outputs = {k.NAME: k.forward(res.model, graph, xt), t.NAME: t.forward(module, graph, xt),
               f"onnx({k.NAME})": onnx_check.run_onnx(kp, xk), f"onnx({t.NAME})": onnx_check.run_onnx(tp, xt)}
    out_row = next(r for r in res.checks if r.check.startswith("output ") and r.dtype == "float32")
    # the output row's own float32 allowance (it may include torch's own float32 error)
    tol = Tolerance(rel=for_check("onnx", "float32").rel, abs=out_row.tolerance)
    return onnx_check.four_way_checks(outputs, task="multiclass", dtype="float32", tolerance=tol, model=graph.name)
