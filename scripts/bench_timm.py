"""The timm sample through the reverse port's proof (not a test; issue 21).

Each model of tests/timm_sample.py runs in its own child process (one at a
time): timm.create_model, then compare.reverse_port_checks (every node,
gradients, 3 SGD steps, float32 and float64; no ONNX). Per model: pass/fail,
the first failing check or the refusal, the float64 worst output difference,
wall time and the child's peak resident memory (its own ru_maxrss).

    python scripts/bench_timm.py [--only resnet18d,vit_tiny_patch16_224] [--json out.json] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_one(name: str, threads: int) -> dict:
    """In the child: the proof of one sample model, as a dict."""
    sys.path.insert(0, str(REPO))
    import compare
    from tests.timm_sample import SAMPLE, create

    compare.frameworks(threads)
    kw, shape = next((k, s) for n, k, s in SAMPLE if n == name)
    t0 = time.perf_counter()
    try:
        module = create(name, kw)
        res = compare.reverse_port_checks(module, shape)
    except Exception as e:  # a refusal: report it
        return {"result": "refused", "why": f"{type(e).__name__}: {str(e)[:300]}", "s": time.perf_counter() - t0}
    failed = [c for c in res.checks if not c.passed]
    out64 = [c.max_abs_diff for c in res.checks if c.dtype == "float64" and c.check.startswith("output") and not c.info]
    return {"result": "fail" if failed else "pass", "s": time.perf_counter() - t0,
            "params": sum(p.numel() for p in module.parameters()), "nodes": len(res.graph.nodes),
            "capture": res.graph.meta.get("capture"), "out64": max(out64) if out64 else None,
            "why": "; ".join(f"{c.check} {c.max_abs_diff:.2e} (tol {c.tolerance:.1e}) {c.where}" for c in failed[:3])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help="comma-separated timm names")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(run_one(args.child, args.threads)), flush=True)
        return 0
    sys.path.insert(0, str(REPO))
    from tests.timm_sample import SAMPLE

    names = args.only.split(",") if args.only else [n for n, _, _ in SAMPLE]
    rows = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TF_CPP_MIN_LOG_LEVEL="3")
    for name in names:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--child", name, "--threads", str(args.threads)], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = proc.stdout.read()
        _, status, ru = os.wait4(proc.pid, 0)  # this child's own peak memory (reaped here, not by Popen)
        proc.returncode = os.waitstatus_to_exitcode(status)
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        row = json.loads(line[7:]) if line else {"result": "crash", "why": out.strip().splitlines()[-1:] }
        row["wall_s"] = time.perf_counter() - t0
        row["peak_rss_mib"] = ru.ru_maxrss / 1024  # KiB on Linux
        rows[name] = row
        out64 = f"{row['out64']:.1e}" if row.get("out64") is not None else "-"
        print(f"{name:30s} {row['result']:7s} out64 {out64:8s} {row['wall_s']:6.1f} s {row['peak_rss_mib']:6.0f} MiB  "
              f"{row.get('why', '')}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
