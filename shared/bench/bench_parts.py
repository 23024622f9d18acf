"""What the three parts of `python compare.py bench` share, run inside each
part's own process (keras_impl/bench.py, torch_impl/bench.py,
shared/bench/bench_ort.py): the default settings, the inputs, the timers, peak
resident memory and the part's command line. They import nothing heavier than
numpy and the data layer. The orchestrator that starts the parts, takes
medians and writes the report is shared/bench/orchestrate.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from shared.data.config import TrainConfig

__all__ = ["DEFAULTS", "TINY", "ORT_BENCH_LEVEL", "peak_rss_mib", "machine_info", "bench_inputs", "per_call",
           "throughput", "train_config", "timed_steps", "guard", "bench_part", "part_main"]

# What one `compare.py bench` measures, unless told otherwise.
DEFAULTS = {
    "batch_size": 32,  # the harness' default batch size (compare.DEFAULT_BATCH_SIZE)
    "steps": 100,  # timed training steps per repeat, after the warm-up
    "warmup": 10,  # untimed steps first (the first one traces / compiles)
    "repeats": 5,  # every timed figure is taken this many times; medians and spread over them
    "infer_batch": 256,  # throughput batch
    "latency_calls": 200,  # batch-1 calls per repeat (the repeat's figure is their median)
    "throughput_batches": 8,  # batches of infer_batch per throughput repeat
    "bare_calls": 5,  # calls per repeat of the bare forward / backward passes
    "learning_rate": 0.01,  # SGD with momentum, the harness' SGD settings
    "momentum": 0.9,
    "seed": 0,
    "compiled": True,  # also XLA (Keras jit_compile=True) and torch.compile training
    "harness": True,  # also run the default `python compare.py` and split its wall time
    "harness_repeats": 1,
    "harness_steps": 30,  # compare.DEFAULT_STEPS: training steps per optimizer in the default run
    "harness_optimizers": 2,  # sgd and adam
    "timeout_s": 900,  # per part
    "threads": None,  # None: each framework's default thread pools; N: N intra-op threads everywhere
}
# `--tiny`: the smoke test's setting (one pair, two repeats, few steps, no harness).
TINY = {
    "pairs": ["digits/mlp"],
    "repeats": 2,
    "steps": 5,
    "warmup": 2,
    "latency_calls": 5,
    "throughput_batches": 1,
    "infer_batch": 64,
    "bare_calls": 1,
    "compiled": False,
    "harness": False,
}
# onnxruntime's graph optimisation for the bench: everything on, as one deploys
# it. The parity checks use shared.onnx.onnx_check.ORT_LEVEL (ORT_DISABLE_ALL).
ORT_BENCH_LEVEL = "ORT_ENABLE_ALL"


# ==========================================================================
# Shared by the parts (run inside each part's process)
# ==========================================================================
def peak_rss_mib() -> float:
    """This process' peak resident set size so far, MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """The machine the figures come from (framework-free part; each part adds its threads)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def bench_inputs(pair_name: str, settings: dict) -> dict:
    """The numpy inputs every part times on, identical in all three (images NHWC).

    Returns:
        {"config": ModelConfig (float32), "train": [(x, y)] warmup+steps batches
        from shared.batches.batch_plan, "batch0": the harness' first training
        batch, "x_valid"/"y_valid": the validation split (what the harness'
        forward checks run on), "x_one": one validation row (batch 1),
        "x_big": `throughput_batches` arrays of `infer_batch` rows (the
        validation split tiled)}.
    """
    from shared.data import loaders
    from shared.data.batches import batch_plan, make_batches
    from shared.data.config import ModelConfig
    from shared.data.registry import pair_by_name

    pair = pair_by_name(pair_name)
    ds = loaders.load(None, pair.dataset)
    cfg = ModelConfig(pair.model, pair.task, ds.input_shape, ds.num_outputs)
    bs = min(int(settings["batch_size"]), len(ds.x_train))
    n = int(settings["warmup"]) + int(settings["steps"])
    train = make_batches(ds.x_train, ds.y_train, batch_plan(len(ds.x_train), bs, n, int(settings["seed"])))
    xv = np.ascontiguousarray(ds.x_valid, dtype=np.float32)
    rows = int(settings["infer_batch"])
    reps = -(-rows // len(xv))
    tiled = np.concatenate([xv] * reps)[:rows]
    x_big = [np.ascontiguousarray(np.roll(tiled, i, axis=0)) for i in range(int(settings["throughput_batches"]))]
    return {
        "config": cfg,
        "batch_size": bs,
        "train": train,
        "batch0": train[0],
        "x_valid": xv,
        "y_valid": ds.y_valid,
        "x_one": np.ascontiguousarray(xv[:1]),
        "x_big": x_big,
    }


def per_call(fn, calls: int, warmup: int = 3) -> float:
    """Median wall time of one `fn()` call over `calls` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, calls)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def throughput(fn, batches: list, rows_per_batch: int) -> float:
    """Samples per second of `fn(batch)` over every batch of `batches` (one pass, timed as a whole)."""
    t0 = time.perf_counter()
    for b in batches:
        fn(b)
    return len(batches) * rows_per_batch / (time.perf_counter() - t0)


def train_config(settings: dict, batch_size: int) -> TrainConfig:
    """The SGD(momentum) settings every training figure uses."""
    return TrainConfig(optimizer="sgd", learning_rate=float(settings["learning_rate"]),
                       momentum=float(settings["momentum"]), batch_size=batch_size, steps=int(settings["steps"]))


def timed_steps(step, tensors: list, warmup: int, repeats: int, batch_size: int) -> dict:
    """First step (trace/compile), the rest of the warm-up, then `repeats` timed passes over the timed batches."""
    t0 = time.perf_counter()
    step(*tensors[0])
    first = time.perf_counter() - t0
    for x, y in tensors[1:warmup]:
        step(x, y)
    timed = tensors[warmup:]
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x, y in timed:
            step(x, y)
        rates.append(len(timed) * batch_size / (time.perf_counter() - t0))
    return {"samples_per_s": rates, "first_step_s": first}


def guard(fn, *args) -> dict:
    """Call fn; a figure that cannot be taken is reported as {"error": ...}, not fatal."""
    try:
        return fn(*args)
    except Exception as e:
        msg = str(e).strip()
        return {"error": f"{type(e).__name__}: {msg.splitlines()[0] if msg else ''}"}


def bench_part(fw, pair_name: str, settings: dict) -> dict:
    """Every figure of one framework for one built-in pair.

    Args:
        fw: keras_impl.bench or torch_impl.bench (the same names on both:
            FRAMEWORK, PATHS, threads, versions, IMPORT_SECONDS,
            RSS_AFTER_IMPORT_MIB, train_project/plain/compiled,
            infer_project/plain, build_plain_model, bare_passes,
            export_project, models).
        pair_name, settings: as bench_pair.
    """
    t_start = time.perf_counter()
    data = bench_inputs(pair_name, settings)
    cfg = data["config"]
    res = {"framework": fw.FRAMEWORK, "pair": pair_name, "paths": fw.PATHS, "threads": fw.threads(),
           "versions": fw.versions(), "import_s": fw.IMPORT_SECONDS, "rss_after_import_mib": fw.RSS_AFTER_IMPORT_MIB,
           "batch_size": data["batch_size"], "train": {}, "infer": {}}
    res["train"]["project"] = fw.train_project(cfg, settings, data)
    res["train"]["plain"] = guard(fw.train_plain, cfg, settings, data)
    if settings.get("compiled"):
        res["train"]["compiled"] = guard(fw.train_compiled, cfg, settings, data)
    model = fw.models.build_model(cfg, seed=int(settings["seed"]))
    res["infer"]["project"] = fw.infer_project(model, cfg, settings, data)
    res["infer"]["plain"] = guard(fw.infer_plain, fw.build_plain_model(cfg), cfg, settings, data)
    res["bare"] = fw.bare_passes(cfg, settings, data)
    builds = []
    for _ in range(int(settings["repeats"])):
        t0 = time.perf_counter()
        fw.models.build_model(cfg)
        builds.append(time.perf_counter() - t0)
    res["build_model_s"] = builds
    if settings.get("export_path"):
        res["export"] = guard(fw.export_project, model, cfg, settings["export_path"])
    res["bench_s"] = time.perf_counter() - t_start
    res["peak_rss_mib"] = peak_rss_mib()
    return res


def part_main(argv, bench_pair, framework: str) -> int:
    """The command line of one part: `--pair P [--settings JSON] [--json FILE]`.

    Prints the result as JSON on stdout unless --json names a file (written atomically).
    """
    p = argparse.ArgumentParser(prog=f"python -m {framework}.bench", description=f"{framework} part of compare.py bench")
    p.add_argument("--pair", required=True, help="a built-in pair, e.g. digits/mlp")
    p.add_argument("--settings", default="{}", help="JSON object overriding shared.bench.orchestrate.DEFAULTS")
    p.add_argument("--json", metavar="FILE", help="write the result here instead of stdout")
    args = p.parse_args(argv)
    settings = {**DEFAULTS, **json.loads(args.settings)}
    result = bench_pair(args.pair, settings)
    text = json.dumps(result, indent=1, default=_jsonable)
    if args.json:
        from shared.core.atomic import atomic_write_text

        atomic_write_text(args.json, text)
    else:
        print(text)
    return 0


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


