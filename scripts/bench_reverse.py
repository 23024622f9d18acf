"""Benchmark: time to a verdict of the reverse port (PyTorch -> Keras) per
torchvision family at 64x64, batch 2, float32 + float64 proof. Prints one row
per family; run with 2 threads: `OMP_NUM_THREADS=2 python scripts/bench_reverse.py [names]`.
Figures go to BENCHMARKS.md by hand (no timed assertions in tests)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402  (before TensorFlow)

from tests.reverse_families import FAMILIES, build  # noqa: E402
from tests.tv import load_torchvision  # noqa: E402


def main(names) -> None:
    import compare

    threads = int(__import__("os").environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    compare.frameworks(threads)
    tv = load_torchvision()
    if tv is None:
        sys.exit("torchvision is not installed")
    print("| family | nodes | params | verdict | port s | float32 s | float64 s | total s | worst f32 node | worst f64 node | worst f64 grad |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        module, shape = build(tv, name)
        t0 = time.perf_counter()
        res = compare.reverse_port_checks(module, shape, batch=2)
        total = time.perf_counter() - t0
        t = res.info["timings_s"]

        def worst(dtype, prefix):
            return max(c.max_abs_diff for c in res.checks if c.dtype == dtype and c.check.startswith(prefix))

        ok = "pass" if all(c.passed for c in res.checks) else "FAIL"
        n_params = sum(p.numel() for p in module.parameters())
        print(f"| {name} | {res.info['nodes']} | {n_params / 1e6:.1f}M | {ok} | {t['port']:.1f} | {t['float32']:.1f} | "
              f"{t['float64']:.1f} | {total:.1f} | {worst('float32', 'node '):.1e} | {worst('float64', 'node '):.1e} | "
              f"{worst('float64', 'grad '):.1e} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(FAMILIES))
