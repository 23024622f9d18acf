"""The engine's checks on outputs beyond the forward pass: stability at extreme
logits, and the ONNX exports run in onnxruntime.

Part of shared/flows/engine.py (split along the seam between the frameworks' own
passes and what is derived from them). Framework-free.
"""

from __future__ import annotations

import numpy as np

from shared.verdict.checks import Check, compare_arrays
from shared.verdict.diagnose import diagnose
from shared.flows.engine import _CLASS_TASKS, EXTREME_LOGIT_SCALE, PairData, _sides
from shared.verdict.judge import Judge

__all__ = ["stability_checks", "onnx_checks"]


def stability_checks(a, b, logits_a: np.ndarray, data: PairData, judge: Judge, ctx: dict, refs=None) -> list:
    """The from-logits losses at extreme logits (a check: both must stay finite
    and agree; a loss computed on probabilities fails here), and the naive
    path's failure (information rows)."""
    _, yv = data.valid(a.dtype)
    _, rows = data.labels()
    big = (logits_a.astype(np.float64) * EXTREME_LOGIT_SCALE).astype(a.dtype)
    sa, sb = a.loss_outputs(big, yv, naive=True), b.loss_outputs(big, yv, naive=True)
    la64 = lb64 = None
    if refs is not None:  # the same extreme logits, widened: each side's own float64 loss code
        _, y64 = data.valid("float64")
        la64 = refs[0].loss_outputs(big.astype(np.float64), y64)["per-sample loss"]
        lb64 = refs[1].loss_outputs(big.astype(np.float64), y64)["per-sample loss"]
    name = f"stability from_logits x{EXTREME_LOGIT_SCALE:g}"
    c = judge.compare(name, "forward", sa["per-sample loss"], sb["per-sample loss"], la64, lb64, labels=rows,
                      **_sides(a, b), **ctx)
    c.detail = {"finite": bool(np.isfinite(sa["per-sample loss"]).all() and np.isfinite(sb["per-sample loss"]).all())}
    if not c.passed:
        hint = diagnose("per-sample loss", sa["per-sample loss"], sb["per-sample loss"])
        if hint:
            c.detail["diagnosis"] = hint
    out = [c]
    sctx = dict(ctx, info=True)
    for side, s in ((a.name, sa), (b.name, sb)):
        c = compare_arrays(f"stability naive probabilities->log x{EXTREME_LOGIT_SCALE:g}", s["naive loss"],
                           s["per-sample loss"], judge.named("forward", a.dtype), a_name=f"{side} naive",
                           b_name=f"{side} from_logits", labels=rows, **sctx)
        c.detail = {"nonfinite": int((~np.isfinite(s["naive loss"])).sum())}
        out.append(c)
    return out


def onnx_checks(a, b, data: PairData, outdir, progress, name: str, ctx: dict, judge: Judge | None = None,
                f64=None) -> tuple:
    """Export both, validate, run in onnxruntime, compare the four backends on every edge.

    onnxruntime is a backend like the others (forward only): the four outputs
    are compared pairwise by shared.onnx.onnx_check.edge_checks.

    Returns:
        (checks, info for the report: per side the checker's summary and the
        exporter that ran).
    """
    from shared.onnx import onnx_check

    xv, _ = data.valid(a.dtype)
    outdir.mkdir(parents=True, exist_ok=True)
    task_id = progress.task(f"{name} ONNX export", total=2)
    exported = {}
    for side in (a, b):
        how: dict = {}
        path = side.export_onnx(outdir / f"{side.name}.onnx", onnx_check.ONNX_OPSET, info=how)
        exported[side.name] = (side.onnx_side(path), {**onnx_check.check_model(path), **how})
        progress.advance(task_id)
    progress.done(task_id)
    info = {s: i for s, (_, i) in exported.items()}
    info.update(ort_level=str(onnx_check.ORT_LEVEL), opset=onnx_check.ONNX_OPSET)
    runners = [a, b] + [o for o, _ in exported.values()]
    try:
        outputs = {r.name: r.forward([xv])[0] for r in runners}
    except onnx_check.OnnxModelError as exc:
        return [Check("onnx skipped", a.name, b.name, 0.0, 0.0, 0.0, True, f"onnxruntime cannot run the exports: {exc}",
                      info=True, **ctx)], info
    classes = data.classes if data.task in _CLASS_TASKS else None
    exporters = {s: i["exporter"] for s, i in info.items() if isinstance(i, dict)}
    judge = judge or Judge()
    # Each output's own float64 reference: its framework's float64 twin (an
    # export runs the weights its framework holds, on the same inputs).
    refs = {}
    if f64 is not None:
        refs = {a.name: f64[0], b.name: f64[1]}
        for side in (a, b):
            refs[exported[side.name][0].name] = refs[side.name]

    def tolerance(x, y):
        return judge.tolerance("onnx", a.dtype, outputs[x], outputs[y], refs.get(x), refs.get(y), (x, y))

    checks = onnx_check.edge_checks(outputs, class_names=classes, detail={"exporters": exporters},
                                    tolerance=tolerance, **ctx)
    for o, _ in exported.values():  # dynamic batch: item 0 alone gives what it gave inside the batch
        checks.append(compare_arrays("onnx batch 1 vs full batch", o.forward([xv[:1]])[0], outputs[o.name][:1],
                                     judge.named("onnx", a.dtype), a_name=f"{o.name} batch 1",
                                     b_name=f"{o.name} batch {len(xv)}", **ctx))
    return checks, info


