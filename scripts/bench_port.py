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


def main(argv=None) -> int:
    from port_apps import APPS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", help="comma-separated architecture names")
    p.add_argument("--no-verdict", action="store_true", help="speed comparison only")
    p.add_argument("--no-speed", action="store_true", help="verdict times only")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import compare

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
            print(f"{name:18s} exit {code}  verdict {elapsed:6.1f} s  float32 worst {worst['float32']:.2e}  "
                  f"float64 worst {worst['float64']:.2e}", flush=True)
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
