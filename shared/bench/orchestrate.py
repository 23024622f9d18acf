"""`python compare.py bench`: speed and memory of both implementations.

Framework-free orchestrator. Each part runs in its own process, so that the
import boundaries hold and each part's import time and peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`, read by the part itself) are
its own:

  python -m keras_impl.bench --pair P --settings JSON --json FILE   Keras (TensorFlow backend)
  python -m torch_impl.bench --pair P --settings JSON --json FILE   PyTorch
  python -m shared.bench.bench_ort --pair P --settings JSON --json FILE   onnxruntime on both exports
  python compare.py --out TMP --quiet                               the harness itself (its cost)

The framework parts run one after the other (never two at once: they would
share the cores). Each returns, per repeat, the figures listed in
keras_impl/bench.py; this module takes medians and spread over the repeats,
forms the ratios (PyTorch/Keras, onnxruntime/native, project/plain), prints
rich tables (shared/bench/bench_render.py) and writes `bench.json` and `bench.txt` into `--out`
(default reports/bench) with shared.core.atomic.

What the three parts share (`DEFAULTS`, `bench_inputs`, `per_call`,
`peak_rss_mib`, `part_main`) is shared/bench/bench_parts.py; it imports nothing
heavier than numpy and the data layer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


__all__ = [
    "DEFAULTS",
    "TINY",
    "ORT_BENCH_LEVEL",
    "peak_rss_mib",
    "machine_info",
    "bench_inputs",
    "per_call",
    "throughput",
    "part_main",
    "stats",
    "ratio",
    "summarize",
    "harness_env",
    "harness_cost",
    "main",
]

from shared.bench.bench_parts import (DEFAULTS, ORT_BENCH_LEVEL, TINY, _jsonable, bench_inputs, machine_info,  # noqa: F401
                                 part_main, peak_rss_mib, per_call, throughput)

ROOT = Path(__file__).resolve().parents[2]


# ==========================================================================
# Statistics (pure, tested with synthetic numbers)
# ==========================================================================
from shared.bench.bench_stats import bare_estimate, ratio, stats, summarize  # noqa: E402,F401  (re-exported)
from shared.core.user_code import EXIT_OOM, mentions_out_of_memory  # noqa: E402


def _run(cmd: list, timeout: float, env: dict | None = None) -> dict:
    """Run a child to the end: its wall time, exit status, output tail and peak RSS.

    The peak RSS comes from the child's own rusage (os.wait4), i.e. the same
    ru_maxrss the parts read themselves, for children that cannot report it
    (the harness run).
    """
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        tail = log.read().decode(errors="replace")[-3000:]
    rss = ru.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru.ru_maxrss / 1024
    r = {"rc": proc.returncode, "wall_s": wall, "tail": tail, "peak_rss_mib": rss}
    if proc.returncode == -9 and wall >= timeout:
        r["error"] = f"timed out after {timeout:.0f} s"
    return r


def run_part(module: str, pair: str, settings: dict, workdir: Path) -> dict:
    """`python -m MODULE --pair PAIR ...` in its own process; its JSON result (or {"error": ...})."""
    out = workdir / f"{module.replace('.', '_')}_{pair.replace('/', '_')}.json"
    cmd = [sys.executable, "-m", module, "--pair", pair, "--settings", json.dumps(settings, default=str),
           "--json", str(out)]
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    r = _run(cmd, float(settings["timeout_s"]))
    if r["rc"] != 0 or not out.is_file():
        return {"error": r.get("error") or f"exit status {r['rc']}", "tail": r["tail"], "process_wall_s": r["wall_s"]}
    result = json.loads(out.read_text())
    result["process_wall_s"] = r["wall_s"]
    result["load_average_before"] = load  # 1, 5, 15 min: other work on the machine skews every figure
    result["process_peak_rss_mib"] = r["peak_rss_mib"]  # os.wait4: the same figure, seen from outside
    return result


_IMPORTS_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import compare
compare.frameworks()
import onnx, onnxruntime, tf2onnx, rich, matplotlib
import shared.report.build, shared.report.plots, shared.onnx.onnx_check, shared.data.loaders, keras_impl.export, torch_impl.export
t1 = time.perf_counter()
from shared.data import loaders
from shared.data.registry import PAIRS
for p in PAIRS:
    loaders.load(None, p.dataset)
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "data_s": t2 - t1}))
"""


def harness_env(settings: dict) -> dict:
    """Environment of the harness run: nothing added by default; with --threads N, the thread
    counts torch (OMP_NUM_THREADS) and TensorFlow (TF_NUM_INTRAOP/INTEROP_THREADS) read at start-up."""
    n = settings.get("threads")
    if not n:
        return {}
    return {"OMP_NUM_THREADS": str(n), "TF_NUM_INTRAOP_THREADS": str(n), "TF_NUM_INTEROP_THREADS": str(n)}


def harness_cost(settings: dict, workdir: Path, bare: dict | None = None) -> dict:
    """Wall time of the default `python compare.py` and where it goes.

    Runs `python compare.py --out TMP --quiet` `harness_repeats` times (with
    `harness_env(settings)`: the frameworks' default threads unless --threads; wall
    time from the parent, peak RSS from os.wait4), reads
    artifacts.timings_s of its report.json (per case: port, forward,
    gradients, training, float64, onnx) and, in a separate process, times
    the imports the run needs and the built-in data loading (cache warm, as
    in the run after the first). "other" is what remains: interpreter start,
    plots, report writing, console output.
    """
    runs = []
    for i in range(int(settings["harness_repeats"])):
        out = workdir / f"harness_{i}"
        r = _run([sys.executable, "compare.py", "--out", str(out), "--quiet"], float(settings["timeout_s"]),
                 env=harness_env(settings))
        run = {"rc": r["rc"], "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"], "tail": r["tail"][-1500:],
               "env": harness_env(settings)}
        rep = out / "report.json"
        if rep.is_file():
            report = json.loads(rep.read_text())
            run["passed"] = report.get("passed")
            run["timings_s"] = report.get("artifacts", {}).get("timings_s", {})
        else:
            run["error"] = f"no report.json (exit status {r['rc']})"
        runs.append(run)
    probe = _run([sys.executable, "-c", _IMPORTS_PROBE], float(settings["timeout_s"]), env=harness_env(settings))
    try:
        split0 = json.loads(probe["tail"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        split0 = {"error": probe["tail"][-500:]}
    return _harness_split(runs, split0, bare)


def _harness_split(runs: list, probe: dict, bare: dict | None) -> dict:
    """Fold the runs and the import/data probe into {wall_s stats, split_s, overhead}."""
    ok = [r for r in runs if r.get("timings_s")]
    phases = ("port", "forward", "gradients", "float64", "training", "onnx")
    per_run = []
    for r in ok:
        tot = {p: sum(c.get(p, 0.0) for c in r["timings_s"].values()) for p in phases}
        per_run.append(tot)
    split = {}
    if per_run:
        for p in phases:
            split[p] = float(np.median([t[p] for t in per_run]))
    wall = stats([r["wall_s"] for r in runs])
    res = {"runs": runs, "wall_s": wall, "probe": probe,
           "peak_rss_mib": max((r.get("peak_rss_mib") or 0.0 for r in runs), default=None)}
    if split and wall:
        imports, data = probe.get("imports_s"), probe.get("data_s")
        grouped = {
            "imports (torch, TF/Keras, onnx, tf2onnx, rich, matplotlib)": imports,
            "data (4 built-in sets, cache warm)": data,
            "port (build models, weights both ways)": split["port"],
            "checks (forward, gradients, float64)": split["forward"] + split["gradients"] + split["float64"],
            "training (2 optimizers x 2 frameworks)": split["training"],
            "onnx (export both, check, run onnxruntime)": split["onnx"],
        }
        known = sum(v for v in grouped.values() if v is not None)
        grouped["other (interpreter start, plots, report, console)"] = wall["median"] - known
        res["split_s"] = grouped
        res["phases_s"] = split
        res["per_case_s"] = ok[0]["timings_s"]
        if bare:
            b = bare["total_s"]
            res["bare_s"] = b
            checks_and_training = split["forward"] + split["gradients"] + split["float64"] + split["training"]
            res["overhead"] = {
                "checks+training / bare forward+backward+steps": checks_and_training / b["all"] if b["all"] else None,
                "training phase / bare steps": split["training"] / b["training"] if b["training"] else None,
                "forward+gradients+float64 phases / bare passes": (
                    (split["forward"] + split["gradients"] + split["float64"]) / (b["forward"] + b["gradients"])
                    if b["forward"] + b["gradients"] else None),
                "whole run / bare": wall["median"] / b["all"] if b["all"] else None,
            }
    return res

def _parser() -> argparse.ArgumentParser:
    from shared.data.registry import PAIRS

    p = argparse.ArgumentParser(
        prog="compare.py bench",
        description="Speed and memory of both implementations, each in its own process: training throughput "
                    "(project path and the plain recommended one), inference latency (batch 1) and throughput "
                    "(batch 256) in Keras, PyTorch and onnxruntime, peak RSS, and the default run's own cost.")
    p.add_argument("--pairs", nargs="+", metavar="PAIR", default=[q.name for q in PAIRS],
                   help=f"built-in pairs (default all: {' '.join(q.name for q in PAIRS)})")
    p.add_argument("--repeats", type=int, default=DEFAULTS["repeats"], help=f"repeats per figure (default {DEFAULTS['repeats']})")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"], help=f"timed training steps per repeat (default {DEFAULTS['steps']})")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help=f"training batch size (default {DEFAULTS['batch_size']})")
    p.add_argument("--out", default="reports/bench", help="folder for bench.json and bench.txt (default reports/bench)")
    p.add_argument("--tiny", action="store_true", help="smoke-test setting: 1 pair, 2 repeats, few steps, no harness, no compiled paths")
    p.add_argument("--skip-harness", action="store_true", help="do not time the default `python compare.py` run")
    p.add_argument("--no-compiled", action="store_true", help="skip the XLA / torch.compile training figures")
    p.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads for torch, TensorFlow and onnxruntime (default: each one's own default); "
                        "the harness run gets OMP_NUM_THREADS / TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS=N")
    p.add_argument("--harness-repeats", type=int, default=DEFAULTS["harness_repeats"], help="runs of the default harness (default 1)")
    return p


def main(argv=None) -> int:
    """`compare.py bench [options]`. Exit 0 when every part ran, 1 when one failed, 2 on bad usage,
    4 when one ran out of memory (shared/core/user_code.py)."""
    from rich.console import Console

    from shared.core.atomic import atomic_write_text
    from shared.data.registry import pair_by_name

    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    settings = dict(DEFAULTS)
    pairs = args.pairs
    explicit = {"repeats": args.repeats != DEFAULTS["repeats"], "steps": args.steps != DEFAULTS["steps"],
                "batch_size": args.batch_size != DEFAULTS["batch_size"]}
    if args.tiny:
        tiny = dict(TINY)
        pairs = tiny.pop("pairs") if args.pairs == _parser().get_default("pairs") else pairs
        settings.update(tiny)
    for key in ("repeats", "steps", "batch_size"):
        if explicit[key] or not args.tiny:
            settings[key] = getattr(args, key)
    settings["harness_repeats"] = args.harness_repeats
    settings["threads"] = args.threads
    if args.skip_harness:
        settings["harness"] = False
    if args.no_compiled:
        settings["compiled"] = False
    for key in ("repeats", "steps", "batch_size", "harness_repeats", "threads"):
        if settings[key] is not None and settings[key] < 1:
            print(f"error: --{key.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    try:
        pairs = [pair_by_name(n).name for n in pairs]
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2

    console = Console(record=True, width=max(Console().width, 170))
    t_start = time.perf_counter()
    result = {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
              "settings": {**settings, "pairs": pairs, "ort_level": ORT_BENCH_LEVEL}, "pairs": {}}
    failed = out_of_memory = False
    with tempfile.TemporaryDirectory(prefix="ktp-bench-") as tmp:
        work = Path(tmp)
        for pair in pairs:
            console.print(f"[bold]{pair}[/bold]: Keras ...", end="")
            onnx_dir = work / pair.replace("/", "_")
            onnx_dir.mkdir(parents=True, exist_ok=True)
            parts = {}
            for fw, module in (("keras", "keras_impl.bench"), ("torch", "torch_impl.bench")):
                s = dict(settings, export_path=str(onnx_dir / f"{fw}.onnx"))
                parts[fw] = run_part(module, pair, s, work)
                console.print(" PyTorch ..." if fw == "keras" else " onnxruntime ...", end="")
            paths = {fw: str(onnx_dir / f"{fw}.onnx") for fw in ("keras", "torch") if (onnx_dir / f"{fw}.onnx").is_file()}
            parts["ort"] = run_part("shared.bench.bench_ort", pair, dict(settings, onnx_paths=paths), work)
            console.print(f" done ({time.perf_counter() - t_start:.0f} s)")
            failed |= any("error" in p for p in parts.values())
            out_of_memory |= any(mentions_out_of_memory(f"{p['error']}\n{p.get('tail', '')}") for p in parts.values() if "error" in p)
            result["pairs"][pair] = {"parts": parts, "summary": summarize(parts, settings)}
        k = next((p["parts"]["keras"] for p in result["pairs"].values() if "threads" in p["parts"]["keras"]), {})
        t = next((p["parts"]["torch"] for p in result["pairs"].values() if "threads" in p["parts"]["torch"]), {})
        o = next((p["parts"]["ort"] for p in result["pairs"].values() if "threads" in p["parts"]["ort"]), {})
        result["threads"] = {**k.get("threads", {}), **t.get("threads", {}), "ort": o.get("threads", {}).get("ort")}
        result["versions"] = {**k.get("versions", {}), **t.get("versions", {}), **o.get("versions", {})}
        if settings["harness"]:
            console.print("default `python compare.py` (harness cost) ...")
            bare = bare_estimate(result["pairs"], settings) if len(pairs) == len(_parser().get_default("pairs")) else None
            result["harness"] = harness_cost(settings, work, bare)
            failed |= not result["harness"].get("split_s")
    result["bench_wall_s"] = time.perf_counter() - t_start
    from shared.bench.bench_render import render

    render(result, console)
    out = Path(args.out)
    atomic_write_text(out / "bench.json", json.dumps(result, indent=1, default=_jsonable))
    atomic_write_text(out / "bench.txt", console.export_text())
    console.print(f"bench.json and bench.txt in {out} ({result['bench_wall_s']:.0f} s)")
    return EXIT_OOM if out_of_memory else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
