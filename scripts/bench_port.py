"""Benchmark of `compare.py port` on keras.applications (not a test).

For each architecture of tests/port_apps.py (64x64, 75x75 where the family
needs it, weights=None, 10 classes):
  1. time to a full verdict: `compare.py port` as a user runs it (port, forward
     per node, loss and gradients in float32 and float64, 5 training steps,
     both ONNX exports), in this process, after one warm-up of the imports;
  2. the generated model's speed against the torchvision model of the same
     architecture, where there is one: median forward time in eval mode,
     float32, batch 8, same threads; speed ratio = torchvision time /
     generated time (>= 0.9 is the goal).

    python scripts/bench_port.py [--threads 2] [--only ResNet50,VGG16] [--no-verdict] [--json out.json]

Peak resident memory of one `compare.py port` run (issue 18): the command runs
in a child process (OMP_NUM_THREADS and --threads set to --threads); its peak
RSS is the child's ru_maxrss (os.wait4; the fresh-process reload it starts is
a grandchild and counts only if larger), printed with the per-stage figures
the port records in report.json (artifacts.memory_mib, current and peak RSS
at each stage boundary). --kill-above MiB kills the child when its current
RSS passes that, so a runaway run cannot take a shared machine down:

    python scripts/bench_port.py --threads 1 --rss -- port tests/reverse_families.py:vgg11_bn --input-shape 3,64,64 --out /tmp/vgg

torchvision is imported with its C++ meta registrations stubbed out
(torchvision._meta_registrations), since its compiled ops cannot load here;
the models used need none of them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

# torchvision counterpart and its constructor kwargs (same head size).
TORCHVISION = {
    "ResNet50": "resnet50", "VGG16": "vgg16", "MobileNetV2": "mobilenet_v2", "MobileNetV3Small": "mobilenet_v3_small",
    "MobileNetV3Large": "mobilenet_v3_large", "EfficientNetB0": "efficientnet_b0", "DenseNet121": "densenet121",
    "ConvNeXtTiny": "convnext_tiny", "InceptionV3": "inception_v3",
}
BATCH = 8
REPEATS = 10
RSS_POLL_S = 0.2  # how often --kill-above reads the child's current RSS


def _torchvision():
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision.models


def median_forwards(torch, modules, x, repeats=REPEATS) -> list:
    """Median forward time of each module, their runs interleaved (a, b, a, b...)
    so that load from other processes hits them alike."""
    times = [[] for _ in modules]
    with torch.no_grad():
        for m in modules:
            for _ in range(2):
                m(x)
        for _ in range(repeats):
            for m, ts in zip(modules, times):
                t0 = time.perf_counter()
                m(x)
                ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def verdict_time(name: str, threads: int) -> tuple:
    import compare

    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()) as out:
        t0 = time.perf_counter()
        code = compare.main(["port", f"{REPO / 'tests' / 'port_apps.py'}:{name.lower()}", "--out", f"{d}/out",
                             "--quiet", "--threads", str(threads)])
        elapsed = time.perf_counter() - t0
        report = json.loads(Path(f"{d}/out/report.json").read_text())
    rows = [c for c in report["checks"] if c["check"].startswith(("node ", "output "))]
    worst = {dt: max((c["max_rel_diff"] for c in rows if c["dtype"] == dt), default=float("nan")) for dt in ("float32", "float64")}
    return code, elapsed, worst, report["artifacts"].get("timings_s", {}), out.getvalue().strip()


def speed(name: str, torch) -> dict:
    from keras_impl.read import read_graph
    from port_apps import build, input_size
    from torch_impl.write import build_module

    module = build_module(read_graph(build(name)))[0]
    size = input_size(name)
    x = torch.randn(BATCH, 3, size, size)
    if name not in TORCHVISION:
        return {"generated_s": median_forwards(torch, [module], x)[0]}
    kw = {"aux_logits": False, "init_weights": False} if name == "InceptionV3" else {}
    hand = getattr(_torchvision(), TORCHVISION[name])(weights=None, num_classes=10, **kw).eval()
    gen, tv = median_forwards(torch, [module, hand], x)
    return {"generated_s": gen, "torchvision_s": tv, "ratio": tv / gen}


def _child_rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:")), 0.0)
    except OSError:
        return 0.0


def _watch(proc, kill_above: float, seen: dict) -> None:
    """Poll the child's RSS (its highest reading into seen["max"]); kill it above `kill_above` MiB."""
    while proc.poll() is None:
        rss = _child_rss_mib(proc.pid)
        seen["max"] = max(seen["max"], rss)
        if kill_above and rss > kill_above:
            seen["killed"] = True
            proc.kill()
            return
        time.sleep(RSS_POLL_S)


def rss_run(port_argv: list, threads: int, kill_above: float, compare_py: Path = REPO / "compare.py") -> int:
    """`python compare.py PORT_ARGV --threads N` in a child; prints its peak RSS and the per-stage figures."""
    import subprocess
    import threading

    cmd = [sys.executable, str(compare_py), *port_argv, "--threads", str(threads), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3", "KTP_MEMORY_TRACE": "1"}
    print("$ " + " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=Path(compare_py).parent, env=env)
    seen = {"max": 0.0, "killed": False}
    watcher = threading.Thread(target=_watch, args=(proc, kill_above, seen), daemon=True)
    watcher.start()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    peak = ru.ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru.ru_maxrss / 1024
    killed = f" (killed above {kill_above:.0f} MiB)" if seen["killed"] else ""
    print(f"exit {proc.returncode}{killed}  wall {wall:.1f} s  peak RSS {peak:,.0f} MiB ({peak / 1024:.2f} GiB)", flush=True)
    out = port_argv[port_argv.index("--out") + 1] if "--out" in port_argv else None
    report = Path(out, "report.json") if out else None
    if report is not None and report.is_file() and not seen["killed"]:
        stages = json.loads(report.read_text())["artifacts"].get("memory_mib", {})
        for stage, row in stages.items():
            print(f"  {stage:28s} rss {row['rss']:9,.0f} MiB  peak {row['peak']:9,.0f} MiB  child peak {row.get('child_peak', 0):7,.0f} MiB")
    return proc.returncode


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    port_argv = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", help="comma-separated architecture names")
    p.add_argument("--no-verdict", action="store_true", help="speed comparison only")
    p.add_argument("--no-speed", action="store_true", help="verdict times only")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--rss", action="store_true", help="peak RSS of the compare.py command after `--` (see above)")
    p.add_argument("--kill-above", type=float, default=0.0, metavar="MiB", help="with --rss: kill the child above this RSS")
    p.add_argument("--compare", type=Path, default=REPO / "compare.py", metavar="PATH",
                   help="with --rss: this compare.py (another checkout: a before/after measurement)")
    args = p.parse_args(argv)
    if args.rss:
        return rss_run(port_argv, args.threads, args.kill_above, args.compare)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import compare
    from port_apps import APPS

    fw = compare.frameworks(args.threads)
    torch = fw.torch
    names = args.only.split(",") if args.only else list(APPS)
    results = {}
    total = 0.0
    for name in names:
        row = {}
        if not args.no_verdict:
            code, elapsed, worst, phases, line = verdict_time(name, args.threads)
            total += elapsed
            row.update(exit=code, verdict_s=elapsed, worst_rel=worst, phases_s=phases)
            stages = "  ".join(f"{k} {v:.1f}" for k, v in phases.items())  # report.json timings_s
            print(f"{name:18s} exit {code}  verdict {elapsed:6.1f} s  float32 worst {worst['float32']:.2e}  "
                  f"float64 worst {worst['float64']:.2e}  ({stages})", flush=True)
        if not args.no_speed:
            torch.set_num_threads(args.threads)
            row.update(speed(name, torch))
            tv = f"torchvision {row['torchvision_s'] * 1e3:7.1f} ms  ratio {row['ratio']:.2f}" if "ratio" in row else "no torchvision model"
            print(f"{name:18s} generated {row['generated_s'] * 1e3:7.1f} ms  {tv}", flush=True)
        results[name] = row
    if not args.no_verdict:
        print(f"total verdict time {total:.1f} s over {len(names)} architectures")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "batch": BATCH, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
