"""`compare.py port`, framework-free: prove a port and write its folder.

It receives two sides (shared/flows/side.py): `keras_impl.side.KerasSide` (the
Keras model) and a factory of `torch_impl.side.TorchSide` (the generated
module, `TorchSide.from_graph`), and moves numpy between them, as
shared/flows/engine.py does with backends. The checks, in order,
for each dtype (float32, float64):

1. forward: every Keras layer output against the module's tensor of the same
   name (first differing node named), and the outputs of one plain call;
2. the loss (compiled, else inferred from the head) and every parameter's
   gradient, layers in inference mode;
3. a few optimizer steps from the same start (the compiled SGD/Adam, or
   --optimizer): per-step losses and every final weight;

then both ONNX exports, compared four ways (Keras, torch, onnxruntime on each).

Both dtypes are measured first (the arrays parked on disk), then the rows are
made by the one verdict policy (shared/verdict/policy.py): a float32 row against each
side's own float32-vs-float64 error, a float64 row against the fixed bound and,
where that is not met, the float32 error scaled by eps64/eps32.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shared.flows import port_check as pc
from shared.verdict import policy as verdict
from shared.verdict.checks import Check, compare_named
from shared.core.errors import UsageError
from shared.core.spill import spill
from shared.verdict.tolerances import for_check
from shared.core.training import stock_training_row

__all__ = ["PortResult", "port_checks", "load_inputs", "write_port_dir", "written_onnx", "train_info", "port_parser",
           "print_summary", "PORT_TRAIN_STEPS"]

# `compare.py port` trains this many steps on its one batch: enough for the
# optimizers' states (momentum, Adam moments) to come into play.
PORT_TRAIN_STEPS = 5


@dataclass
class PortResult:
    graph: object
    torch_side: object  # torch_impl.side.TorchSide (float32): .module, .source
    checks: list
    info: dict

    @property
    def module(self):
        return self.torch_side.module

    @property
    def source(self) -> str:
        return self.torch_side.source


def _measure(graph, k, t, xs, y, loss, train_config, dtype, seed: int = 0, own=(False, False)) -> dict:
    """Everything one dtype's rows compare, the arrays parked on disk (shared/core/spill.py):
    the rows are made once both dtypes are measured (each judges by the other).
    y None: random targets of the first output's shape as Keras computes it
    (an unknown length included), kept in m["y"] for the next dtype.
    own: (keras, torch), True where that side is this dtype's own copy, made
    for this proof and read by nothing after it: its training steps train it in
    place; otherwise a fresh copy trains (the given models stay untrained). Same
    weights either way, the same numbers (issue 19: one float64 Keras clone and
    one torch module build fewer)."""
    m = {"a": spill(k.values(xs)), "b": spill(t.values(xs))}
    m["straddles"] = pc.kink_straddles(graph, m["a"], m["b"])
    # one plain call of each model too: the node walk bypasses nested models' own __call__
    m["outputs"] = (dict(zip(graph.outputs, k.forward(xs))), dict(zip(graph.outputs, t.forward(xs))))
    if y is None:
        y = pc.random_targets(graph, loss, len(xs[0]), seed, shape=np.shape(m["outputs"][0][graph.outputs[0]]))
    m["y"] = y
    la, ga = k.loss_and_grads(xs, y, loss)  # Keras first: it sets loss["keras_uses_logits"]
    lb, gb = t.loss_and_grads(xs, y, loss)
    m["loss"], m["grads"] = ({"loss": la}, {"loss": lb}), (spill(ga), spill(gb))
    if train_config is not None:
        batches = [(xs, y)] * train_config.steps  # one batch, stepped train_config.steps times
        stock = getattr(t, "stock_training", None)  # torch only: dense Embedding gradients (TRAPS.md)
        # trains a copy of t, made before t itself may train in place
        dense = stock(batches, loss, train_config) if stock is not None and dtype == "float64" else None
        ka, wa = (k if own[0] else k.copy()).train_steps(batches, loss, train_config)
        kb, wb = (t if own[1] else t.copy()).train_steps(batches, loss, train_config)
        m["curve"], m["trained"] = ({"curve": np.array(ka)}, {"curve": np.array(kb)}), (spill(wa), spill(wb))
        m["stock"] = None if dense is None else spill(dense[1])
    return m


def _own(side, copy) -> bool:
    """Whether `copy` (side.with_dtype's result) is a copy of its own, free to
    train in place: not the side itself, and not one a verify side caches for reuse."""
    return copy is not side and not getattr(side, "verifying", False)


def _judged(prefix: str, kind: str, dtype: str, mine: tuple, other: tuple | None, ctx: dict, **kw) -> list:
    """One row per name of mine[0]/mine[1] (a name on one side only: a failing row)."""
    a, b = mine
    rows = []
    for n in list(a) + [n for n in b if n not in a]:
        if n not in a or n not in b:
            rows.append(Check(f"{prefix}{n}", "keras", "torch", float("inf"), float("inf"), 0.0, False,
                              f"only in {'keras' if n in a else 'torch'}", dtype=dtype, **ctx))
        else:
            rows.append(verdict.judge(f"{prefix}{n}", kind, dtype, a[n], b[n], **verdict.against(kind, dtype, n, mine, other),
                                      **kw, **ctx))
    return rows


def _rows(graph, m: dict, other: dict | None, loss, train_config, dtype) -> list:
    """One dtype's rows, each decided when made (shared/verdict/policy.py): outputs, the
    first differing node, every node, the loss and gradients, the training steps."""
    ctx = {"model": graph.name}
    o = (lambda key: other[key]) if other is not None else (lambda key: None)
    nodes = pc.node_checks(graph, m["a"], m["b"], lambda check, n, a, b: verdict.judge(
        check, "forward", dtype, a, b, **verdict.against("forward", dtype, n, (m["a"], m["b"]), None if other is None else (other["a"], other["b"])),
        **ctx), dtype=dtype)
    rows = _judged("output ", "forward", dtype, m["outputs"], o("outputs"), ctx)
    first = pc.first_differing(graph, nodes)
    rows += ([first] if first else []) + nodes
    kinks = verdict.describe_straddles(m["straddles"]) if dtype == "float32" else ""
    if kinks:
        rows.append(verdict.kink_row(m["straddles"], "a float32 gradient row that misses its tolerance is information, "
                                     "a training row is held to the named BatchNorm bound (float64 stays strict)",
                                     dtype=dtype, **ctx))
    rows += [dataclasses.replace(c, check=f"loss ({loss['kind']})")
             for c in _judged("", "forward", dtype, m["loss"], o("loss"), ctx)]
    rows += _judged("grad ", "gradient", dtype, m["grads"], o("grads"), ctx, kinks=kinks or None)
    if "curve" in m:
        rows += _training_rows(m, o, dtype, kinks, train_config, ctx)
    return rows


def _training_rows(m: dict, o, dtype: str, kinks: str, train_config, ctx: dict) -> list:
    ctx = dict(ctx, detail={"optimizer": train_config.optimizer, "steps": train_config.steps})
    name = f"training loss curve ({train_config.optimizer}, {train_config.steps} steps)"
    (ka, kb), ref = (m["curve"][0]["curve"], m["curve"][1]["curve"]), o("curve")
    step = verdict.diverged_together(ka, kb)
    if step is not None:  # both trainings blew up alike: the finite prefix is compared, the weights are not
        return verdict.diverged_rows(name, step, ka, kb, *((ref[0]["curve"], ref[1]["curve"]) if ref else (None, None)),
                                     dtype=dtype, **ctx)
    if dtype == "float32" and ref is not None:
        rows = [verdict.trajectory(name, ka, kb, ref[0]["curve"], ref[1]["curve"], dtype=dtype, **ctx)]
    else:
        rows = [dataclasses.replace(c, check=name) for c in _judged("", "training", dtype, m["curve"], ref, ctx)]
    wa, wb = m["trained"]
    rows += _judged("trained ", "training", dtype, (wa, wb.only(n for n in wa if n in wb)), o("trained"), ctx,
                    kinks=kinks or None)
    if m.get("stock") is not None:
        dense = m["stock"]
        rows.append(stock_training_row(compare_named("trained", wa, {n: dense[n] for n in wa if n in dense},
                                                     for_check("training", dtype), dtype=dtype, **ctx),
                                       train_config.optimizer))
    return rows


def _onnx(graph, k, t, xs, loss, outdir: Path, opset: int, shown_as: Path | None = None) -> list:
    """Both exports compared four ways, every input fed and every output
    compared; a failing exporter is one information row and the other export
    is still compared three ways (shared.onnx.onnx_check.proven_exports)."""
    from shared.onnx import onnx_check

    names = list(graph.inputs)
    several = len(graph.outputs) > 1

    def side(s, file: str):
        feed = lambda: [s.onnx_input(x, n) for n, x in zip(names, xs)]  # noqa: E731
        outs = lambda p: [s.onnx_output(y, o)  # noqa: E731
                          for o, y in zip(graph.outputs, onnx_check.run_onnx_all(p, feed(), s.onnx_input_names()))]
        ref = s.forward(xs)
        return onnx_check.OnnxSide(s.name, ref if several else ref[0], lambda: s.export_onnx(outdir / file, opset),
                                   (lambda p: outs(p)) if several else (lambda p: outs(p)[0]),
                                   output_names=list(graph.outputs) if several else None)

    out = graph.tensors[graph.outputs[0]]
    task = "multiclass" if loss["kind"] in ("sparse_ce", "ce") and len(out.shape) == 2 else "regression"
    shown = {outdir: shown_as} if shown_as is not None else {}
    return onnx_check.proven_exports([side(k, "keras.onnx"), side(t, "torch.onnx")], model=graph.name, shown=shown,
                                     task=task, dtype="float32")


def port_checks(keras_side, torch_side_factory, inputs=None, *, seed: int = 0, batch: int = pc.DEFAULT_BATCH,
                dtypes=("float32", "float64"), train_config=None, onnx_dir=None, opset: int | None = None,
                onnx_dir_shown_as=None) -> PortResult:
    """Port and prove. `keras_side`: a shared.flows.side.Side of the Keras model;
    `torch_side_factory(graph)` builds the float32 torch side (TorchSide.from_graph).

    Args:
        inputs: numpy arrays in PyTorch's layout (default: seeded random ones).
        train_config: shared.data.config.TrainConfig for the training check (None: none).
        onnx_dir: where both ONNX files go (None: no ONNX check).
        onnx_dir_shown_as: the name messages give onnx_dir (the output folder
            when onnx_dir is its atomic work folder); default onnx_dir.
    """
    t0 = time.perf_counter()
    graph = keras_side.graph
    torch_side = torch_side_factory(graph)
    info = {"layouts": pc.layouts(graph), "nodes": len(graph.nodes), "timings_s": {"port": time.perf_counter() - t0}}
    xs = list(inputs) if inputs is not None else pc.random_inputs(graph, batch, seed)
    if pc.note_lengths(graph, xs):
        info["unknown_lengths"] = dict(graph.meta["assumed_steps"])
    if graph.meta.get("integer_inputs"):  # float-declared inputs only an Embedding reads: integer ids
        info["integer_inputs"] = graph.meta["integer_inputs"]
    loss = keras_side.infer_loss()
    y = None  # the targets take the first output's shape as Keras computes it (an unknown length included)
    info["loss"] = loss
    training = train_config if train_config is not None and train_config.steps and graph.weight_sources else None
    measured = {}
    for dtype in dtypes:
        t0 = time.perf_counter()
        k, t = keras_side.with_dtype(dtype), torch_side.with_dtype(dtype)
        xd = [x.astype(dtype) if x.dtype.kind == "f" else x for x in xs]
        measured[dtype] = _measure(graph, k, t, xd, y, loss, training, dtype, seed,
                                   own=(_own(keras_side, k), _own(torch_side, t)))
        y = measured[dtype]["y"]
        info["timings_s"][dtype] = time.perf_counter() - t0
    checks = []
    for dtype in dtypes:  # float32 rows judged by float64's results, float64 rows (where needed) by float32's
        t0 = time.perf_counter()
        other = next((measured[d] for d in dtypes if d != dtype), None)
        checks += _rows(graph, measured[dtype], other, loss, training, dtype)
        info["timings_s"][dtype] += time.perf_counter() - t0
    for m in measured.values():
        for arrays in (m["a"], m["b"], *m["grads"], *m.get("trained", ()), m.get("stock")):
            if arrays is not None:
                arrays.close()
    measured.clear()
    if onnx_dir is not None:
        from shared.onnx.onnx_check import ONNX_OPSET

        t0 = time.perf_counter()
        checks += _onnx(graph, keras_side, torch_side, xs, loss, Path(onnx_dir), opset or ONNX_OPSET, onnx_dir_shown_as)
        info["timings_s"]["onnx"] = time.perf_counter() - t0
    return PortResult(graph, torch_side, checks, info)


def load_inputs(path: str | None, graph, batch: int, seed: int) -> list:
    """--data: a .npy (one input) or .npz with one array per input, named after
    the input (or after its key in the model's dict of inputs; `np.savez(a, b)`'s
    arr_0, arr_1... in the inputs' order) in PyTorch's layout; without it,
    seeded random inputs."""
    if path is None:
        return pc.random_inputs(graph, batch, seed)
    p = Path(path)
    if not p.is_file() or p.suffix not in (".npy", ".npz"):
        raise UsageError(f"--data {path}: expected an existing .npy or .npz file of inputs in PyTorch's layout")
    if p.suffix == ".npy":
        arrays = [np.load(p)]
    else:
        with np.load(p) as z:
            arrays = [z[k] for k in _npz_keys(path, list(z.files), graph)]
    if len(arrays) != len(graph.inputs):
        raise UsageError(f"--data {path}: {len(arrays)} arrays for the model's {len(graph.inputs)} inputs {graph.inputs}")
    for name, a in zip(graph.inputs, arrays):
        want = graph.tensors[name].shape
        if a.ndim != len(want) or any(w is not None and w != s for w, s in zip(want[1:], a.shape[1:])):
            raise UsageError(f"--data {path}: input {name!r} has shape {a.shape}, expected (N, {', '.join(map(str, want[1:]))}) "
                             "(PyTorch layout: channels first for images)")
    return [a.astype(graph.tensors[n].dtype) if a.dtype.kind == "f" else a for n, a in zip(graph.inputs, arrays)]


def _npz_keys(path, files: list, graph) -> list:
    """The .npz keys in graph.inputs order: the input names, or the model's
    dict keys (graph.meta["input_keys"]), or arr_0... in order; a missing or
    an extra key is a UsageError naming it."""
    names = list(graph.inputs)
    keys = [graph.meta.get("input_keys", {}).get(n, n) for n in names]
    if len(files) == len(names) == 1 or files == [f"arr_{i}" for i in range(len(names))]:
        return files
    for wanted in (names, keys):
        if set(files) == set(wanted):
            return wanted
    by = keys if len(set(files) & set(keys)) > len(set(files) & set(names)) else names
    missing = [k for k in by if k not in files]
    extra = [k for k in files if k not in by]
    raise UsageError(f"--data {path}: " + "; ".join(
        part for part in (f"no array for input(s) {missing}" if missing else "",
                          f"array(s) {extra} match no input" if extra else "") if part)
        + f". Expected one array per input, named {names}" + (f" (or by the model's keys {keys})" if keys != names else ""))


def write_port_dir(work: Path, res, side_files, *, environment: dict, model_spec: str, input_source: str,
                   direction: str = "Keras -> PyTorch", train_info: dict | None = None, onnx: bool = True) -> dict:
    """The output folder of either port direction, into `work` (the caller's atomic folder):

    1. the generated source (res.source) as model.py (Keras -> PyTorch) or
       model_keras.py (PyTorch -> Keras);
    2. `side_files(work)`: what the target framework writes (weights.safetensors;
       model.keras and the checks that need it written), returning
       {artifact name: file};
    3. report.json and report.md over res.checks (rows added by step 2 included).

    Returns the report."""
    from shared.report import build as rpt
    from shared.core.atomic import atomic_write_text

    source_name = "model.py" if direction.endswith("PyTorch") else "model_keras.py"
    atomic_write_text(work / source_name, res.source)
    files = side_files(work)
    case = f"port {res.graph.name}" + ("" if direction.endswith("PyTorch") else f" ({direction})")
    data = [{"case": case, "model": model_spec, "input_source": input_source, **res.info["layouts"]}]
    artifacts = {source_name: source_name, **files, "loss": res.info["loss"], "optimizer": train_info,
                 "onnx": written_onnx(work) if onnx else [], "timings_s": res.info["timings_s"],
                 "graph_nodes": res.info["nodes"]}
    if "memory" in res.info:
        artifacts["memory_mib"] = res.info["memory"].stages
    if res.info.get("unknown_lengths"):  # inputs of unknown length: the length they were checked at
        data[0]["checked_lengths"] = res.info["unknown_lengths"]
    if res.info.get("integer_inputs"):  # float-declared inputs only an Embedding reads: integer ids
        data[0]["integer_inputs"] = res.info["integer_inputs"]
    report = rpt.build_report(res.checks, environment=environment, data=data, artifacts=artifacts)
    atomic_write_text(work / "report.json", rpt.dumps(report))
    atomic_write_text(work / "report.md", rpt.markdown(report, res.checks))
    return report


def written_onnx(folder: Path) -> list:
    """The ONNX files the port wrote (a failed or unusable export leaves none)."""
    return [n for n in ("keras.onnx", "torch.onnx") if (Path(folder) / n).is_file()]


def train_info(train_config, source: str) -> dict:
    return {"source": source, **asdict(train_config)}


def port_parser(parser_class, default_threads: int):
    """The `compare.py port` argument parser (parser_class: compare.py's, which exits 2 on errors)."""
    from shared.core.argtypes import input_shape, nonneg_int, positive_int

    p = parser_class(prog="compare.py port", description="Port a Keras model to a readable standalone PyTorch model.py + "
                     "weights.safetensors, and prove the port: forward of every node, gradients, training steps "
                     "(float32 and float64) and both ONNX exports.")
    p.add_argument("model", metavar="MODEL", help="a .keras or .h5 file, or package.module:function / path/file.py:function returning a Keras model")
    p.add_argument("--out", required=True, help="output folder (created, or replaced atomically)")
    p.add_argument("--unsafe", action="store_true", help="allow Lambda layers carrying code (Keras' safe_mode off): only for models you trust")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import this first (repeatable): your custom layers and their @keras_converter functions")
    p.add_argument("--data", metavar="FILE", help="inputs as .npy/.npz in PyTorch's layout (default: seeded random inputs of the model's shape)")
    p.add_argument("--batch-size", type=positive_int, default=pc.DEFAULT_BATCH, help=f"batch of the random inputs (default {pc.DEFAULT_BATCH})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=nonneg_int, default=PORT_TRAIN_STEPS, help=f"training steps on the batch (default {PORT_TRAIN_STEPS}; 0 skips)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="train with this optimizer (Keras defaults) instead of the compiled one")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX exports and their four-way check")
    p.add_argument("--threads", type=positive_int, default=default_threads)
    p.add_argument("--quiet", action="store_true", help="print only the one-line verdict")
    p.add_argument("--input-shape", metavar="C,H,W", type=input_shape,
                   help="PyTorch to Keras: MODEL is path/file.py:NAME or package.module:NAME (an nn.Module class or a "
                        "function returning one), its input shape without the batch; several named inputs (keyword "
                        "arguments): NAME=SHAPE[:DTYPE[:HIGH]],... e.g. input_ids=16:int64,attention_mask=16:int64:2")
    p.add_argument("--torch-weights", metavar="FILE", help="PyTorch to Keras: a state_dict (.pt/.pth or .safetensors)")
    return p


def print_summary(report: dict, res: PortResult, console, out, *, quiet: bool) -> None:
    """One row per dtype and kind of check, the failing rows, the verdict."""
    from shared.report import build as rpt

    if quiet:
        print(rpt.summary_line(report))
        return
    rpt.console_table(pc.summary_rows(res.checks), console)
    for c in res.checks:  # the dense-vs-sparse Embedding update: information the user acts on
        if c.info and c.check.startswith("stock torch") and not c.passed:
            console.print(f"note ({c.dtype}): {c.check}: max relative difference {c.max_rel_diff:.3g} "
                          f"after {c.detail.get('steps')} steps. {c.detail['diagnosis']}")
    probe = res.graph.meta.get("probe_steps")
    for name, steps in res.graph.meta.get("assumed_steps", {}).items():
        why = (f", the shortest from {pc.UNKNOWN_SEQUENCE_STEPS} at which every layer's output is non-empty"
               if probe == steps and probe > pc.UNKNOWN_SEQUENCE_STEPS else "")
        console.print(f"note: input {name!r} has an unknown length: checked on {steps} steps{why} (give --data for "
                      "others); model.py takes any length")
    for name, how in res.graph.meta.get("integer_inputs", {}).items():
        console.print(f"note: input {name!r} is declared {how['declared']} in Keras but only Embedding "
                      f"{', '.join(how['read_by'])} reads it (it casts to int32): the port takes integer ids (int64)")
    from shared.onnx.onnx_check import export_notes

    for line in export_notes(res.checks):  # a failed exporter: information, never the verdict
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not report["passed"]:  # then every failing row, the first differing node among them
        rpt.console_table(res.checks, console, only_failures=True)
    written = "model.py" if report["artifacts"].get("model.py") else "model.keras, model_keras.py"
    console.print(rpt.summary_line(report) + f"; {written}, weights and report in {out}")
