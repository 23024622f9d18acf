#!/usr/bin/env python3
"""The harness' sensitivity: the smallest size of each planted porting bug still caught.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sensitivity.py [--only NAME] [--json FILE]

For each fault of shared/data/faults.py, runs `compare.py --plant NAME=SIZE` on a
pair that has the layer (or loss, optimizer, data path) in question, and
bisects SIZE on a logarithmic grid from 1 down to 1e-7 for the smallest value
that still fails the run (exit 1) with a failing row that locates the fault
(matches the fault's `where`).
Prints one row per fault: the smallest size caught, what it means in the
bug's own units, the first failing row at that size and its margin.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from shared.data.faults import FAULTS  # noqa: E402

GRID = [1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7]
BASE = ["--no-onnx", "--steps", "6"]


def pair_for(fault) -> list:
    if fault.tasks:
        task = fault.tasks[0]
        if task == "multiclass":
            return ["--task", "multiclass"]
        if "cnn" in fault.models and "mlp" not in fault.models:
            return ["--task", "multilabel"]
        return ["--task", task]
    return ["--task", "regression"] if fault.models == ("cnn",) else ["--task", "multiclass"]


def run(fault, size: float, out: Path) -> tuple:
    import contextlib
    import io

    import compare

    argv = [*pair_for(fault), *BASE, "--plant", f"{fault.name}={size:g}", "--out", str(out), "--quiet"]
    argv += ["--optimizer", fault.optimizers[0] if fault.optimizers else "sgd"]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = compare.main(argv)  # in this process: the frameworks are imported once
    if rc not in (0, 1):
        raise RuntimeError(f"{fault.name}={size:g}: exit {rc}: {err.getvalue()[-1500:]}")
    rows = json.loads((out / "report.json").read_text())["checks"]
    bad = [r for r in rows if not r["passed"] and not r["info"]]
    located = [r for r in bad if re.search(fault.where, f"{r['dtype']} {r['check']} {r['where']}")]
    first = max(located, key=lambda r: r.get("margin", 0)) if located else None
    desc = (f"{first['dtype']} {first['check']} margin {first.get('margin', float('nan')):.3g} at {first['where'][:80]}"
            if first else "")
    return rc == 1 and bool(located), desc


def smallest_caught(fault, tmp: Path) -> dict:
    lo, hi = None, 0  # indices into GRID: hi caught, lo not caught
    caught, desc = run(fault, GRID[0], tmp / f"{fault.name}-0")
    if not caught:
        return {"fault": fault.name, "smallest": None, "row": "NOT CAUGHT at size 1"}
    best = (GRID[0], desc)
    lo = len(GRID)
    while lo - hi > 1:
        mid = (lo + hi) // 2
        caught, d = run(fault, GRID[mid], tmp / f"{fault.name}-{mid}")
        if caught:
            hi, best = mid, (GRID[mid], d)
        else:
            lo = mid
    return {"fault": fault.name, "smallest": best[0], "meaning": fault.meaning, "row": best[1],
            "full size": desc}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="faults whose name contains this")
    ap.add_argument("--json")
    ap.add_argument("--skip", action="append", default=[], help="fault names to leave out")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ktp-sens-") as tmp:
        os.environ.setdefault("KTP_CACHE_DIR", str(Path(tmp) / "cache"))
        for f in FAULTS.values():
            if (args.only and args.only not in f.name) or f.name in args.skip:
                continue
            r = smallest_caught(f, Path(tmp))
            rows.append(r)
            print(f"{r['fault']:22} {str(r['smallest']):8} {r.get('meaning', '')[:60]:60} {r['row'][:120]}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["smallest"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
