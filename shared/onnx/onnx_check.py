"""ONNX side of the parity checks: model checks, an onnxruntime runner and the
four-way (keras, torch, onnx(keras), onnx(torch)) comparison. Framework-free:
onnx, onnxruntime and numpy only.

Writing the files (opsets, exporters' errors, atomic export) is
shared/onnx/onnx_export.py; its public names are re-exported here.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort

from shared.verdict.checks import Check, compare_arrays
from shared.core.errors import ParityError
from shared.onnx.onnx_export import (ONNX_OPSET, SUPPORTED_OPSETS, ExportError, OutputPathError, UnsupportedOpsetError,
                                 atomic_export, check_output_path, quiet_exporter, standardize_io, validate_opset)
from shared.verdict.tolerances import ONNX, Tolerance
from shared.core.user_code import is_out_of_memory

__all__ = [
    "ONNX_OPSET",
    "SUPPORTED_OPSETS",
    "ORT_LEVEL",
    "SIDES",
    "EDGES",
    "edge_checks",
    "ExportError",
    "UnsupportedOpsetError",
    "OutputPathError",
    "OnnxModelError",
    "validate_opset",
    "check_output_path",
    "atomic_export",
    "quiet_exporter",
    "standardize_io",
    "check_model",
    "run_onnx",
    "run_onnx_all",
    "four_way_checks",
    "OnnxSide",
    "EXPORTERS",
    "proven_exports",
    "export_notes",
    "first_line",
]

# Graph optimisation level for parity checks: no onnxruntime rewrite (constant
# folding, Conv+Add/BN fusion, MatMul+Add -> Gemm, layout transforms) so that
# the numbers come from the graph as exported; fusions change results at the
# 1e-7 level (TRAPS.md, "Numerics, metrics, export"). Both exporters already fold
# inference-mode BatchNorm into the Conv weights themselves, at export time.
ORT_LEVEL = "ORT_DISABLE_ALL"

# The four logits arrays four_way_checks compares, and the six edges between
# them (every pair, in this order).
SIDES = ("keras", "torch", "onnx(keras)", "onnx(torch)")
EDGES = tuple(combinations(SIDES, 2))


class OnnxModelError(ParityError):
    """An ONNX file fails onnx.checker, cannot be loaded by onnxruntime, or is
    given an input of the wrong shape."""


# ---- checks ------------------------------------------------------------------
_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def _dims(value_info) -> list:
    out = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append("?")
    return out


def check_model(path) -> dict:
    """onnx.checker.check_model(path, full_check=True), then describe the model.

    Returns:
        {"path", "opset" (ai.onnx domain), "opset_imports" {domain: version},
         "ir_version", "producer_name", "producer_version",
         "inputs"/"outputs": [{"name", "dtype", "shape"}] (symbolic dims as
         strings, unknown as "?"), "ops": {op_type: count} (most frequent
         first), "num_nodes", "num_initializers"}.

    Raises:
        OnnxModelError: missing file or a model the checker rejects.
    """
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{str(path)!r}: no such ONNX file")
    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
    except Exception as e:  # onnx.checker.ValidationError, InferenceError, DecodeError
        if is_out_of_memory(e):  # exit 4, never a model error (shared/core/user_code.py)
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise OnnxModelError(f"{str(path)!r}: invalid ONNX model: {first}") from e
    g = model.graph
    init_names = {t.name for t in g.initializer}
    imports = {o.domain or "ai.onnx": int(o.version) for o in model.opset_import}

    def io(vis):
        return [
            {"name": v.name,
             "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
             "shape": _dims(v)}
            for v in vis if v.name not in init_names
        ]

    ops = Counter(n.op_type for n in g.node)
    return {
        "path": str(path),
        "opset": imports.get("ai.onnx"),
        "opset_imports": imports,
        "ir_version": int(model.ir_version),
        "producer_name": model.producer_name,
        "producer_version": model.producer_version,
        "inputs": io(g.input),
        "outputs": io(g.output),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "num_nodes": len(g.node),
        "num_initializers": len(g.initializer),
    }


_SESSIONS: "OrderedDict[tuple, ort.InferenceSession]" = OrderedDict()
_SESSIONS_MAX = 16
_SESSIONS_LOCK = threading.Lock()


def _level(level) -> ort.GraphOptimizationLevel:
    if isinstance(level, ort.GraphOptimizationLevel):
        return level
    try:
        return ort.GraphOptimizationLevel.__members__[str(level)]
    except KeyError:
        raise ValueError(
            f"unknown onnxruntime graph optimisation level {level!r}; "
            f"one of {list(ort.GraphOptimizationLevel.__members__)}"
        ) from None


def _session(path: Path, level) -> ort.InferenceSession:
    lvl = _level(level)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, lvl.name)
    with _SESSIONS_LOCK:
        sess = _SESSIONS.get(key)
        if sess is not None:
            _SESSIONS.move_to_end(key)
            return sess
    opts = ort.SessionOptions()
    opts.graph_optimization_level = lvl  # intra/inter-op threads: onnxruntime's defaults
    opts.log_severity_level = 3  # errors only
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        if is_out_of_memory(e):  # exit 4, never a model error (shared/core/user_code.py)
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hint = ""
        if "NOT_IMPLEMENTED" in first:
            # e.g. float64 Conv: onnxruntime's CPU provider registers Conv for float only.
            hint = " (onnxruntime's CPUExecutionProvider has no kernel for this op and type; float64 CNNs cannot run)"
        raise OnnxModelError(f"{str(path)!r}: onnxruntime cannot load the model: {first}{hint}") from e
    with _SESSIONS_LOCK:
        # Drop stale entries for the same file (an older mtime) and keep the cache small.
        for k in [k for k in _SESSIONS if k[0] == key[0] and k[1:3] != key[1:3]]:
            del _SESSIONS[k]
        _SESSIONS[key] = sess
        while len(_SESSIONS) > _SESSIONS_MAX:
            _SESSIONS.popitem(last=False)
    return sess


def run_onnx(path, x, level=ORT_LEVEL) -> np.ndarray:
    """Run a single-input, single-output ONNX model on CPU with onnxruntime.

    Args:
        path: the .onnx file. Sessions are cached per (path, mtime, size,
            level), so repeated calls do not re-create them; rewriting the
            file invalidates its entry.
        x: the input batch in the layout the model was exported with (NHWC
            for onnx(keras), NCHW for onnx(torch): shared.graph.layout.nhwc_to_nchw).
            Converted (copy-free when already right) to the model's input dtype.
        level: onnxruntime GraphOptimizationLevel, by name ("ORT_DISABLE_ALL",
            ...) or value; defaults to ORT_LEVEL.

    Returns:
        The first output as a numpy array.

    Raises:
        OnnxModelError: unreadable model, or an input whose rank or fixed
            dimensions do not match the model's input.
    """
    path = Path(path)
    if path.is_file() and len(_session(path, level).get_inputs()) != 1:
        raise OnnxModelError(f"{str(path)!r}: expected one input, the model has {len(_session(path, level).get_inputs())}")
    return run_onnx_all(path, [x], level=level)[0]


def run_onnx_all(path, xs: list, names: list | None = None, level=ORT_LEVEL) -> list:
    """Run an ONNX model of any number of inputs and outputs (run_onnx's rules
    for each input): every output, in the model's order.

    xs: one array per model input, matched by `names` where they are the
    model's input names (exporters keep them), else in the model's input order."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{str(path)!r}: no such ONNX file")
    sess = _session(path, level)
    specs = sess.get_inputs()
    if len(xs) != len(specs):
        raise OnnxModelError(f"{str(path)!r}: the model has {len(specs)} inputs, {len(xs)} given")
    if names is not None and sorted(names) == sorted(s.name for s in specs):
        by_name = dict(zip(names, xs))
        xs = [by_name[s.name] for s in specs]
    feed = {}
    for spec, x in zip(specs, xs):
        x = np.ascontiguousarray(np.asarray(x, dtype=_ONNX_DTYPES.get(spec.type)))
        want = spec.shape
        if x.ndim != len(want) or any(isinstance(w, int) and w != s for w, s in zip(want, x.shape)):
            raise OnnxModelError(
                f"{str(path)!r}: input {spec.name!r} expects shape {want} "
                f"(None/strings are free), got {tuple(x.shape)}"
            )
        feed[spec.name] = x
    try:
        return sess.run(None, feed)
    except Exception as e:
        if is_out_of_memory(e):  # exit 4, never a model error (shared/core/user_code.py)
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise OnnxModelError(f"{str(path)!r}: onnxruntime failed: {first}") from e


_CLASSIFICATION = ("multiclass", "multilabel", "binary")


def _predictions(logits: np.ndarray, task: str):
    """(predictions, rule) or (None, None) for tasks without class predictions."""
    if task == "multiclass":
        return np.argmax(logits, axis=-1), "argmax"
    if task in ("multilabel", "binary"):
        return logits > 0, "logit>0 (sigmoid>0.5)"
    return None, None


def _near_tie(a, b, idx, task, tol: float) -> bool:
    """A flipped prediction that float32 rounding explains: the logit within tol
    of 0 (thresholded tasks), or the two top logits within tol (argmax), on both sides."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if task == "multiclass":
        r = idx[0]
        ca, cb = int(np.argmax(a[r])), int(np.argmax(b[r]))
        return max(abs(a[r, ca] - a[r, cb]), abs(b[r, ca] - b[r, cb])) <= tol
    return max(abs(a[idx]), abs(b[idx])) <= tol


def _prediction_check(name, a_name, b_name, a, b, *, task, dtype, class_names, ort_level, tol: float = 0.0,
                      **context) -> Check:
    pa, rule = _predictions(np.asarray(a), task)
    pb, _ = _predictions(np.asarray(b), task)
    detail = {"rule": rule, "ort_level": ort_level}
    if np.shape(a) != np.shape(b):
        return Check(name, a_name, b_name, float("inf"), float("inf"), 0.0, False,
                     f"shape {np.shape(a)} vs {np.shape(b)}", task=task, dtype=dtype,
                     detail={**detail, **context.pop("detail", {})}, **context)
    flips = pa != pb
    tied = [tuple(int(i) for i in ix) for ix in np.argwhere(flips) if _near_tie(a, b, tuple(ix), task, tol)]
    for ix in tied:
        flips[ix] = False
    n, total = int(flips.sum()), int(flips.size)
    agreement = 1.0 - n / total if total else 1.0
    detail.update(flips=n, total=total, agreement=agreement, near_ties=[list(ix) for ix in tied])
    where = "all agree" if not tied else f"all agree but {len(tied)} near tie(s) within {tol:.2g}: {tied[:5]}"
    if n:
        idx = tuple(int(i) for i in np.argwhere(flips)[0])
        if task == "multiclass":
            ca, cb = int(pa[idx]), int(pb[idx])
            label = (lambda c: f"{c} ({class_names[c]})" if class_names and c < len(class_names) else str(c))
            where = f"row {idx[0]}: {label(ca)} vs {label(cb)}"
        else:
            col = idx[-1]
            lab = f"{col} ({class_names[col]})" if class_names and col < len(class_names) else str(col)
            where = (f"[{idx[0]}, {lab}]: logit {float(np.asarray(a)[idx]):.9g} vs "
                     f"{float(np.asarray(b)[idx]):.9g}")
    detail.update(context.pop("detail", {}))
    return Check(name, a_name, b_name, float(n), n / total if total else 0.0, 0.0, n == 0, where,
                 task=task, dtype=dtype, detail=detail, **context)


def four_way_checks(outputs: dict, *, task: str, dtype: str = "float32", tolerance: Tolerance | None = None,
                    class_names=None, ort_level: str = ORT_LEVEL, **context) -> list:
    """Compare the four logits arrays on all six edges.

    Args:
        outputs: {"keras", "torch", "onnx(keras)", "onnx(torch)"} -> logits
            (same rows, same order; torch/ONNX outputs are (batch, outputs)
            in both layouts, so no transpose is needed).
        task: one of shared.data.config.TASKS; classification tasks also get a
            prediction-agreement check per edge.
        dtype: selects tolerances.ONNX[dtype] unless `tolerance` is given.
        tolerance: override.
        class_names: optional names for `where` (column labels).
        ort_level: the onnxruntime level the ONNX outputs were computed with,
            recorded in each check's detail.
        context: further Check fields (model, info, detail).

    Returns:
        For each edge (a, b) in EDGES: Check "onnx logits {a} vs {b}"
        (compare_arrays, b the reference scale), then for multiclass /
        multilabel / binary Check "onnx predictions {a} vs {b}" (argmax, or
        logit > 0; max_abs_diff = number of flipped predictions, tolerance 0,
        detail has flips/total/agreement).
    """
    missing = [s for s in SIDES if s not in outputs]
    if missing:
        raise KeyError(f"four_way_checks needs logits for {list(SIDES)}; missing {missing}")
    return edge_checks({s: outputs[s] for s in SIDES}, task=task, dtype=dtype, tolerance=tolerance,
                       class_names=class_names, ort_level=ort_level, **context)


def edge_checks(outputs: dict, *, task: str, dtype: str = "float32", tolerance: Tolerance | None = None,
                class_names=None, ort_level: str = ORT_LEVEL, label: str = "logits", **context) -> list:
    """four_way_checks for any number of backends: every pair (a, b) of
    `outputs`' keys, in insertion order, b the reference scale. Two backends
    give one edge, the four of the ONNX check give EDGES. label: what the
    rows call the arrays ("onnx logits keras vs torch"; a model's several
    outputs: "output NAME")."""
    labels = {1: list(class_names)} if class_names is not None else None
    names = list(class_names) if class_names is not None else None
    extra_detail = dict(context.pop("detail", {}) or {})
    checks = []
    for a, b in combinations(list(outputs), 2):
        # tolerance: a Tolerance, or a callable (a name, b name) -> Tolerance (derived per edge)
        tol = tolerance(a, b) if callable(tolerance) else (tolerance if tolerance is not None else ONNX[dtype])
        c = compare_arrays(f"onnx {label} {a} vs {b}", outputs[a], outputs[b], tol, a_name=a, b_name=b,
                           labels=labels, task=task, dtype=dtype,
                           detail={"ort_level": ort_level, **extra_detail}, **context)
        checks.append(c)
        if task in _CLASSIFICATION:
            what = "predictions" if label == "logits" else f"predictions of {label}"
            checks.append(_prediction_check(f"onnx {what} {a} vs {b}", a, b, outputs[a], outputs[b],
                                            task=task, dtype=dtype, class_names=names, ort_level=ort_level,
                                            tol=c.tolerance, detail=dict(extra_detail), **context))
    return checks


# ---- exports that may fail: one row, never a gate -----------------------------
def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type when empty)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _shown(text: str, shown: dict) -> str:
    """`text` with each internal path (a key of `shown`) replaced by what the
    user knows it as (its value): the atomic folder by the output folder."""
    for internal, final in shown.items():
        text = text.replace(str(internal), str(final))
    return text


# How each side's ONNX file is written (both port directions), as the report
# names the exporter: keras_impl/export.py and keras_impl/port.py call
# `Model.export(format="onnx")` (tf2onnx); torch_impl/export.py and
# torch_impl/port.py call `torch.onnx.export(..., dynamo=False)`.
EXPORTERS = {"keras": "tf2onnx (keras Model.export)", "torch": "torch.onnx.export (TorchScript)"}


@dataclass
class OnnxSide:
    """One framework's ONNX export as proven_exports drives it.

    name: "keras" or "torch" (the in-memory side; its file is onnx(name)).
    output: the framework's own output on the checked batch; a model of
        several outputs: a list of them, named by `output_names`.
    export: writes the file; returns its path (raises ExportError on failure).
    run: onnxruntime's output for that path, in the same layout as `output`
        (a list for a list).
    """

    name: str
    output: object
    export: Callable[[], Path]
    run: Callable[[Path], object]
    output_names: list | None = None

    @property
    def exporter(self) -> str:
        return EXPORTERS.get(self.name, self.name)


def _export_and_run(side: OnnxSide) -> np.ndarray:
    """The side's ONNX output; an unusable file is removed (it proves nothing)."""
    path = Path(side.export())
    try:
        check_model(path)
        return side.run(path)
    except OnnxModelError:
        path.unlink(missing_ok=True)
        raise


def _failure_row(side: OnnxSide, why: str, compared: list, model: str) -> Check:
    edges = len(compared) * (len(compared) - 1) // 2
    still = (f"still compared {' vs '.join(compared)} in onnxruntime ({edges} edges)" if edges and len(compared) > 2
             else "no ONNX file left to compare")
    where = f"{side.exporter} failed: {why}; onnx({side.name}) not written; {still}"
    return Check(f"onnx export {side.name} ({side.exporter})", side.name, f"onnx({side.name})", 0.0, 0.0, 0.0, False,
                 where, model=model, dtype="float32", info=True,
                 detail={"export_failed": True, "exporter": side.exporter, "error": why, "compared": compared,
                         "still": still})


def proven_exports(sides: list, *, model: str, shown: dict | None = None, **compare) -> list:
    """Export each side to ONNX, check and run it, and compare every output
    that exists (edge_checks): four ways when both exports work, three ways
    (keras vs torch vs onnx(other)) when one fails.

    An exporter failure (ExportError: the exporter raised, or left
    unconvertible ops the checker rejects) or an unusable file (OnnxModelError:
    onnx.checker, onnxruntime, more than one input) never fails the run: it
    becomes one information row (export_failed in its detail) naming the
    exporter, the first line of its message and what was still compared.

    Args:
        sides: OnnxSide per framework, in SIDES order (keras, torch).
        model: the model's name for the rows.
        shown: {internal path: the path the user knows} for messages (the
            atomic work folder -> the output folder).
        compare: edge_checks' arguments (task, dtype, tolerance, ...).
    """
    shown = shown or {}
    outputs = {s.name: s.output for s in sides}
    failures = []
    for s in sides:
        try:
            outputs[f"onnx({s.name})"] = _export_and_run(s)
        except (UnsupportedOpsetError, OutputPathError):
            raise  # usage errors, not the exporter's
        except (ExportError, OnnxModelError) as e:
            failures.append((s, _shown(first_line(e), shown)))
    compared = list(outputs) if len(outputs) > len(sides) else []
    rows = [_failure_row(s, why, compared, model) for s, why in failures]
    if not compared:
        return rows
    if sides[0].output_names is None:
        return rows + edge_checks(outputs, model=model, **compare)
    for i, name in enumerate(sides[0].output_names):  # several outputs: the edges of each; the task is the first's
        task = compare.get("task") if i == 0 else "regression"
        rows += edge_checks({k: v[i] for k, v in outputs.items()}, model=model, **{**compare, "task": task},
                            label=f"output {name}")
    return rows


def export_notes(checks: list) -> list:
    """One console line per failed export row (proven_exports)."""
    return [f"note: ONNX export of {c.a} ({c.detail['exporter']}) failed, not a parity failure: "
            f"{c.detail['error']}; {c.detail['still']}"
            for c in checks if c.info and isinstance(c.detail, dict) and c.detail.get("export_failed")]
