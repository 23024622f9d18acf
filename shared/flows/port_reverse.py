"""The proof of the reverse port (PyTorch -> Keras), framework-free.

It drives two sides (shared/flows/side.py) made by the classes the caller hands
in (compare.py passes torch_impl.side.TorchSide as `t` and
keras_impl.side.KerasSide as `k`; both take and give numpy in the graph's
neutral layout): the torch module is read into the graph (torch.fx,
`t.read`), the graph written as model_keras.py and built (`k.from_graph`),
then, with the torch module as the reference (a):

1. the output and every node's tensor, float32 and float64;
2. the loss and every parameter's gradient, in both dtypes (inference mode);
3. three SGD+momentum steps in training mode, float64, batches of at least
   TRAIN_MIN_BATCH images: losses per step and every weight after
   (BatchNorm's running variance an information row);
4. on request (the CLI): model.keras reloaded by plain Keras in a fresh
   process, and both ONNX exports compared four ways in onnxruntime.

Every row is made by the one verdict policy (shared/verdict/policy.py): float32 rows
against each side's own float32-vs-float64 error, float64 rows against the
fixed bound and, where it is not met, the float32 error scaled by eps64/eps32
(forward, gradients) or the conditioning of training (below).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.flows import port_check as pc
from shared.verdict import policy as verdict
from shared.core.memory import TF2ONNX_BYTES_PER_PARAMETER, MemoryLog, available_mib, export_memory_refusal, release
from shared.core.spill import spill
from shared.verdict.checks import Check, compare_arrays, compare_named
from shared.data.config import TrainConfig
from shared.verdict.tolerances import Tolerance, for_check

__all__ = ["ReverseResult", "torch_to_keras", "reverse_port_checks", "plain_load_check", "onnx_checks",
           "TRAIN_STEPS", "TRAIN_LR", "TRAIN_MOMENTUM", "TRAIN_MIN_BATCH"]

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
# orders of magnitude more than that; it stays caught (tests/flows/reverse/test_reverse_conditioning.py).
PERTURB_MIN_REL = float(np.finfo(np.float64).eps)
CONDITIONING_FACTOR = 4.0


# The training check's optimizer, as shared.data.config.TrainConfig (Side.train_steps).
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


def _judged(prefix: str, kind: str, dtype: str, mine: tuple, other: tuple | None, ctx: dict) -> list:
    """One row per name (torch's first, then Keras-only ones; a name on one side
    only fails), each made by shared/verdict/policy.py against the other dtype's results."""
    a, b = mine
    rows = []
    for n in list(a) + [n for n in b if n not in a]:
        if n not in a or n not in b:
            rows.append(Check(f"{prefix}{n}", ctx["a_name"], ctx["b_name"], float("inf"), float("inf"), 0.0, False,
                              f"only in {ctx['a_name'] if n in a else ctx['b_name']}",
                              **{k: v for k, v in ctx.items() if k not in ("a_name", "b_name")}))
        else:
            rows.append(verdict.judge(f"{prefix}{n}", kind, dtype, a[n], b[n], **verdict.against(kind, dtype, n, mine, other),
                                      **ctx))
    return rows


def _dtype_rows(k, t, graph, ts: dict, ks: dict, loss, dtype, other=None) -> list:
    """The rows of one dtype: output, every node, loss, gradients, each made by
    the one verdict policy (shared/verdict/policy.py); `other`: (torch, Keras) sides of
    the other dtype (float32 rows derive their tolerances from float64's,
    float64 rows use float32's where the fixed bound is not met), or None."""
    ctx = {"a_name": t.name, "b_name": k.name, "model": graph.name}

    def pair(key):
        return (ts[key], ks[key]), (None if other is None else (other[0][key], other[1][key]))

    values, values_other = pair("values")
    nodes = pc.node_checks(graph, values[0], values[1], lambda check, n, a, b: verdict.judge(
        check, "forward", dtype, a, b, **verdict.against("forward", dtype, n, values, values_other), **ctx),
        dtype=dtype, a_name=t.name, b_name=k.name)
    outs = ({o: values[0][o] for o in graph.outputs}, {o: values[1][o] for o in graph.outputs})
    rows = _judged("output ", "forward", dtype, outs, values_other, ctx)
    first = pc.first_differing(graph, nodes)
    rows += ([first] if first else []) + nodes
    losses = ({"loss": ts["loss"]}, {"loss": ks["loss"]})
    losses_other = None if other is None else ({"loss": other[0]["loss"]}, {"loss": other[1]["loss"]})
    rows += [dataclasses.replace(c, check=f"loss ({loss['kind']})") for c in _judged("", "forward", dtype, losses, losses_other, ctx)]
    return rows + _judged("grad ", "gradient", dtype, *pair("grads"), ctx)


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


def _conditioning(sensitivity, rel: float, key, torch_result):
    """The float64 error model of one training row (shared/verdict/policy.py): torch's
    own run from a start perturbed by `rel` (sensitivity(): (losses, weights),
    run at most once, only when some row misses the fixed bound); the row may
    differ by CONDITIONING_FACTOR x how far that moves torch's own result."""
    def model(fixed):
        if "run" not in sensitivity:
            sensitivity["run"] = sensitivity["start"]()
        pl, pw = sensitivity["run"]
        own = np.array(pl) if key is None else pw[key]
        a = torch_result()
        spread = float(np.max(np.abs(np.subtract(a, own, dtype=np.float64)))) if np.size(a) else 0.0
        note = (f"ill-conditioned: torch's start perturbed by {rel:.2g} relative (the measured float64 forward "
                f"difference) moves torch's own result by {spread:.3g}; {CONDITIONING_FACTOR:g} x that")
        return verdict.conditioning_model(CONDITIONING_FACTOR * spread, note)(fixed)
    return model


def _training_rows(k, t, graph, trained_t, trained_k, sensitivity=None, perturb_rel: float = PERTURB_MIN_REL) -> list:
    """TRAIN_STEPS SGD+momentum steps in training mode (BatchNorm on batch
    statistics), float64, same start, same batches: losses per step and every
    weight after, each row made by shared/verdict/policy.py: the fixed bound, then (with
    `sensitivity`, a function giving torch's run from a perturbed start) the
    conditioning model. BatchNorm's running variance is an information row:
    torch updates it with the unbiased batch variance, Keras with the biased one."""
    dtype = "float64"
    (tl, tw), (kl, kw) = trained_t, trained_k
    ctx = {"a_name": t.name, "b_name": k.name, "model": graph.name}
    lazy = {"start": sensitivity}

    def models(key, torch_result):
        return [] if sensitivity is None else [_conditioning(lazy, perturb_rel, key, torch_result)]

    name = f"training loss per step (SGD, {TRAIN_STEPS} steps)"
    step = verdict.diverged_together(tl, kl)
    if step is not None:  # both trainings blew up alike (shared/verdict/policy.py): not a porting difference
        return verdict.diverged_rows(name, step, tl, kl, dtype=dtype, **ctx)
    rows = [verdict.judge(name, "training", dtype, np.array(tl), np.array(kl), models=models(None, lambda: np.array(tl)), **ctx)]
    var_keys = {key for key in tw if key.endswith(".running_var")}
    for n in [n for n in tw if n not in var_keys] + [n for n in kw if n not in tw and n not in var_keys]:
        if n not in tw or n not in kw:
            rows.append(Check(f"trained {n}", t.name, k.name, float("inf"), float("inf"), 0.0, False,
                              f"only in {t.name if n in tw else k.name}", model=graph.name, dtype=dtype))
        else:
            rows.append(verdict.judge(f"trained {n}", "training", dtype, tw[n], kw[n],
                                      models=models(n, lambda n=n: tw[n]), **ctx))
    if var_keys:
        diffs = compare_named("v", tw.only(var_keys), kw.only(var_keys), for_check("training", dtype), dtype=dtype, **ctx)
        w = max(diffs, key=lambda c: c.max_abs_diff)
        rows.append(verdict.info_row(
            "trained BatchNorm running_var (torch: unbiased batch variance, Keras: biased; not a port error)",
            "torch's BatchNorm stores the unbiased batch variance, Keras the biased one", f"{w.check[2:]} {w.where}",
            a_name=w.a, b_name=w.b, max_abs_diff=w.max_abs_diff, max_rel_diff=w.max_rel_diff, tolerance=w.tolerance,
            model=graph.name, dtype=dtype))
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
    waits on disk (shared/core/spill.py) until the comparisons, which come last,
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
    """float32 rows, float64 rows (each dtype judged with the other's results, shared/verdict/policy.py), training rows."""
    checks = []
    dtypes = sorted({d for d, _ in sides}, key=lambda d: d != "float32")
    for dtype in dtypes:
        o = next((d for d in dtypes if d != dtype), None)
        other = None if o is None else (sides[o, "torch"], sides[o, "keras"])
        with _clock(timings, dtype):
            checks += _dtype_rows(k, t, graph, sides[dtype, "torch"], sides[dtype, "keras"], loss, dtype, other)
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
    from shared.onnx.onnx_export import ExportError

    why = export_memory_refusal("tf2onnx", parameter_count(graph), TF2ONNX_BYTES_PER_PARAMETER, available=available_mib())
    if why is not None:
        raise ExportError(why)
    return ks.export_onnx(path, config=cfg)


def onnx_checks(res: ReverseResult, x: np.ndarray, work: Path, shown_as: Path | None = None) -> list:
    """keras.onnx and torch.onnx, validated, run in onnxruntime, compared four
    ways; image input -> 2-d output (classification logits) models only. A
    failing exporter is one information row and the other export is still
    compared three ways (shared.onnx.onnx_check.proven_exports).

    shown_as: the name messages give `work` (the output folder)."""
    from shared.onnx import onnx_check
    from shared.data.config import ModelConfig

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
