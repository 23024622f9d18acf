"""Speed of the generated model.py against torchvision's hand-written model (not a test).

For keras.applications ResNet50, MobileNetV2 and MobileNetV3Small (weights=None,
224x224, 1000 classes), port the model as `compare.py port` does (read the
graph, write model.py, build the module from that source with the graph's
weights), then time, against torchvision's resnet50 / mobilenet_v2 /
mobilenet_v3_small (weights=None):

- forward, eval, float32, torch.no_grad, batch 1 and batch 8;
- one training step (train mode, forward + backward of the mean output), batch 4.

Each measurement: 2 warm-up calls per model, then REPEATS rounds in which every
model runs once, the order rotating per round (a, b / b, a) so that load from
other processes falls on all alike; the median of the rounds. Wall time, and
with --threads 1 the calling thread's CPU time too (time.thread_time: what a
loaded machine disturbs least). ratio = torchvision time / model.py time; the
goal is >= 0.9 (issue 20).

    OMP_NUM_THREADS=1 python scripts/bench_codegen.py [--threads 1] [--only ResNet50] [--before /path/to/checkout] [--json out.json]

--before PATH: also write model.py with the torch writer of another checkout
(e.g. `git worktree add /tmp/before <commit>`) and time it in the same rounds,
for a before/after table. Runtime on a quiet machine, 1 thread: about 1
minute (1.5 with --before: the run in BENCHMARKS.md used 88 s of CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

MODELS = {"ResNet50": "resnet50", "MobileNetV2": "mobilenet_v2", "MobileNetV3Small": "mobilenet_v3_small"}
SIZE = 224
# (label, batch, training, rounds): ~1 min in all on a quiet machine, 1 thread
MODES = [("forward b1", 1, False, 15), ("forward b8", 8, False, 7), ("train step b4", 4, True, 5)]
WARMUP = 2


def _run_once(torch, module, x, training: bool) -> None:
    if training:
        module.zero_grad(set_to_none=True)
        module(x).float().mean().backward()
    else:
        with torch.no_grad():
            module(x)


def interleaved(torch, modules: list, x, training: bool, rounds: int, cpu: bool) -> list:
    """Per module: {"wall": median s, "cpu": median s or None}, runs interleaved and rotated."""
    wall = [[] for _ in modules]
    used = [[] for _ in modules]
    for m in modules:
        m.train(training)
        for _ in range(WARMUP):
            _run_once(torch, m, x, training)
    for r in range(rounds):
        for k in range(len(modules)):
            i = (k + r) % len(modules)
            c0, t0 = time.thread_time(), time.perf_counter()
            _run_once(torch, modules[i], x, training)
            wall[i].append(time.perf_counter() - t0)
            used[i].append(time.thread_time() - c0)
    for m in modules:
        m.eval()
    return [{"wall": statistics.median(w), "cpu": statistics.median(c) if cpu else None} for w, c in zip(wall, used)]


def port(name: str):
    """(graph, model.py source) of keras.applications `name` at SIZE x SIZE."""
    import keras

    from keras_impl.read import read_graph
    from torch_impl.write import write_source

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(SIZE, SIZE, 3))
    graph = read_graph(model)
    return graph, write_source(graph)


def source_from(checkout: Path, graph) -> str:
    """model.py as another checkout's torch writer writes it (a child process; torch only)."""
    with tempfile.TemporaryDirectory() as d:
        gpath, spath = Path(d, "graph.pkl"), Path(d, "model.py")
        gpath.write_bytes(pickle.dumps(graph))
        code = ("import pickle, sys; from pathlib import Path; from torch_impl.write import write_source; "
                f"Path({str(spath)!r}).write_text(write_source(pickle.loads(Path({str(gpath)!r}).read_bytes())))")
        subprocess.run([sys.executable, "-c", code], cwd=checkout, check=True,
                       env={**os.environ, "PYTHONPATH": str(checkout)})
        return spath.read_text()


def module_from(source: str, graph):
    from torch_impl.write import build_module

    return build_module(graph, source)[0]


def bench_model(torch, tvm, name: str, before: Path | None, cpu: bool) -> list:
    graph, source = port(name)
    modules = {"model.py": module_from(source, graph), "torchvision": getattr(tvm, MODELS[name])(weights=None).eval()}
    if before is not None:
        modules["before"] = module_from(source_from(before, graph), graph)
    rows = []
    for label, batch, training, rounds in MODES:
        x = torch.randn(batch, 3, SIZE, SIZE)
        times = dict(zip(modules, interleaved(torch, list(modules.values()), x, training, rounds, cpu)))
        row = {"model": name, "mode": label, "rounds": rounds, **{f"{k} {kind}": v[kind] for k, v in times.items() for kind in v}}
        for kind in ("wall", "cpu"):
            if times["model.py"][kind]:
                row[f"ratio {kind}"] = times["torchvision"][kind] / times["model.py"][kind]
                if before is not None:
                    row[f"ratio before {kind}"] = times["torchvision"][kind] / times["before"][kind]
        rows.append(row)
        print(_line(row, before is not None), flush=True)
    return rows


def _line(row: dict, before: bool) -> str:
    def ms(key):
        return f"{row[key] * 1e3:8.1f}" if row.get(key) else "       -"

    text = f"{row['model']:17s} {row['mode']:14s} wall ms: model.py {ms('model.py wall')} torchvision {ms('torchvision wall')}"
    text += f" ratio {row['ratio wall']:.2f}"
    if before:
        text += f" (before {ms('before wall')}, ratio {row['ratio before wall']:.2f})"
    if row.get("ratio cpu"):
        text += f" | cpu ratio {row['ratio cpu']:.2f}" + (f" (before {row['ratio before cpu']:.2f})" if before else "")
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--before", type=Path, help="another checkout whose torch writer is timed too")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, str(REPO / "tests"))
    import tv  # tests/tv.py: torchvision with its C++ meta registrations stubbed

    import torch

    torchvision = tv.load_torchvision()
    if torchvision is None:
        print("torchvision is not installed (pip install --no-deps torchvision==0.28.0)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    names = args.only.split(",") if args.only else list(MODELS)
    t0 = time.perf_counter()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {SIZE}x{SIZE}, medians of interleaved rounds")
    rows = [row for name in names for row in bench_model(torch, torchvision.models, name, args.before, args.threads == 1)]
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "size": SIZE, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
