"""Speed and memory of onnxruntime on both exports, one built-in pair per process.

`python compare.py bench` (shared/bench/orchestrate.py) starts
`python -m shared.bench.bench_ort --pair P --settings JSON --json FILE` after the
Keras and PyTorch parts have written keras.onnx and torch.onnx
(settings["onnx_paths"]). Framework-free: onnxruntime and numpy.

The sessions use graph optimisation ORT_ENABLE_ALL (shared.bench.bench_parts.ORT_BENCH_LEVEL,
how one deploys a model), CPUExecutionProvider and onnxruntime's default
thread pools; the parity checks run with shared.onnx.onnx_check.ORT_LEVEL
(ORT_DISABLE_ALL) instead, and a batch-1 figure at that level is recorded
too (`latency_b1_disable_all_s`). Inputs are the same numpy arrays the other
parts time (shared.bench.bench_parts.bench_inputs): NHWC for keras.onnx, NCHW for
torch.onnx. Each call is `session.run(None, {input: x})[0]`, numpy in,
numpy out, like the frameworks' forward.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from shared.bench import bench_parts as sb
from shared.graph.layout import nhwc_to_nchw

_T0 = time.perf_counter()
import onnxruntime as ort  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _T0
RSS_AFTER_IMPORT_MIB = sb.peak_rss_mib()

__all__ = ["IMPORT_SECONDS", "session", "bench_model", "bench_pair", "main"]


def session(path, level: str = sb.ORT_BENCH_LEVEL, threads: int | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.__members__[level]
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def bench_model(path, side: str, settings: dict, data: dict) -> dict:
    """Latency at batch 1 and throughput at infer_batch of one exported model, per repeat."""
    layout = (lambda x: nhwc_to_nchw(x) if x.ndim == 4 else x) if side == "torch" else (lambda x: x)
    x_one = np.ascontiguousarray(layout(data["x_one"]))
    x_big = [np.ascontiguousarray(layout(x)) for x in data["x_big"]]
    t0 = time.perf_counter()
    sess = session(path, threads=settings.get("threads"))
    make_s = time.perf_counter() - t0
    name = sess.get_inputs()[0].name
    run = lambda x: sess.run(None, {name: x})[0]  # noqa: E731
    run(x_big[0])
    lat, thr = [], []
    for _ in range(int(settings["repeats"])):
        lat.append(sb.per_call(lambda: run(x_one), int(settings["latency_calls"])))
        thr.append(sb.throughput(run, x_big, int(settings["infer_batch"])))
    plain = session(path, "ORT_DISABLE_ALL", settings.get("threads"))
    lat_off = [sb.per_call(lambda: plain.run(None, {name: x_one}), int(settings["latency_calls"]))
               for _ in range(int(settings["repeats"]))]
    return {"latency_b1_s": lat, "throughput_samples_per_s": thr, "latency_b1_disable_all_s": lat_off,
            "session_s": make_s, "path": str(path)}


def bench_pair(pair_name: str, settings: dict) -> dict:
    settings = {**sb.DEFAULTS, **settings}
    t_start = time.perf_counter()
    data = sb.bench_inputs(pair_name, settings)
    opts = ort.SessionOptions()
    if settings.get("threads"):
        opts.intra_op_num_threads = int(settings["threads"])
    res = {"framework": "onnxruntime", "pair": pair_name, "import_s": IMPORT_SECONDS,
           "rss_after_import_mib": RSS_AFTER_IMPORT_MIB, "versions": {"onnxruntime": ort.__version__},
           "threads": {"ort": f"intra_op {opts.intra_op_num_threads} (0 = onnxruntime default: one per "
                              f"physical core), inter_op {opts.inter_op_num_threads}, {sb.ORT_BENCH_LEVEL}"}}
    for side, path in (settings.get("onnx_paths") or {}).items():
        try:
            res[side] = bench_model(path, side, settings, data)
        except Exception as e:  # a missing or unloadable export is reported, not fatal
            res[side] = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
    res["bench_s"] = time.perf_counter() - t_start
    res["peak_rss_mib"] = sb.peak_rss_mib()
    return res


def main(argv=None) -> int:
    return sb.part_main(sys.argv[1:] if argv is None else argv, bench_pair, "shared")


if __name__ == "__main__":
    sys.exit(main())
