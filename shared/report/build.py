"""The harness' report: report.json (stable keys), report.md and the console table.

Framework-free: compare.py collects versions and checks, this module lays
them out. Everything under the output directory is written into a temporary
folder first and renamed into place (shared.core.atomic.atomic_dir), so an
interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import json
import os
import platform
import sys

from shared.verdict.checks import Check

__all__ = ["REPORT_VERSION", "environment", "build_report", "markdown", "console_table", "summary_line", "pair_lines"]

REPORT_VERSION = 1


def environment(versions: dict, *, seed: int, dtype: str, threads: dict) -> dict:
    """The `environment` block: Python, framework versions, seed, dtype, threads, machine."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        **versions,
        "seed": seed,
        "dtype": dtype,
        "threads": threads,
        "argv": sys.argv[1:],
    }


def build_report(checks: list, *, environment: dict, data: list, artifacts: dict | None = None) -> dict:
    """report.json's content. `passed` ignores informational rows."""
    failing = [c for c in checks if not c.passed and not c.info]
    return {
        "report_version": REPORT_VERSION,
        "passed": not failing,
        "counts": {
            "checks": len(checks),
            "failed": len(failing),
            "info": sum(1 for c in checks if c.info),
        },
        "environment": environment,
        "data": data,
        "checks": [c.to_dict() for c in checks],
        "artifacts": artifacts or {},
    }


def _verdict(c: Check) -> str:
    return "info" if c.info else ("pass" if c.passed else "FAIL")


def _fmt(v: float) -> str:
    return f"{v:.3g}"


_COLUMNS = ("task", "model", "dtype", "check", "a", "b", "max |diff|", "where", "tolerance", "margin", "tolerance from",
            "verdict")


def _margin(c: Check) -> str:
    return "" if c.info else f"{c.margin:.2g}"


def _row(c: Check) -> list:
    hint = c.detail.get("diagnosis") if isinstance(c.detail, dict) and not c.passed else None
    where = c.where + (f"; likely: {hint}" if hint else "")
    return [c.task, c.model, c.dtype, c.check, c.a, c.b, _fmt(c.max_abs_diff), where, _fmt(c.tolerance), _margin(c),
            c.tolerance_from, _verdict(c)]


def markdown(report: dict, checks: list) -> str:
    """The same table as the console, for a pull request."""
    env = report["environment"]
    lines = [
        "# keras-torch-parity report",
        "",
        f"**{'PASSED' if report['passed'] else 'FAILED'}**: {report['counts']['checks']} checks, "
        f"{report['counts']['failed']} failed, {report['counts']['info']} informational.",
        "",
        f"TensorFlow {env.get('tensorflow')}, Keras {env.get('keras')}, torch {env.get('torch')}, "
        f"onnx {env.get('onnx')}, onnxruntime {env.get('onnxruntime')}; Python {env.get('python')}; "
        f"seed {env.get('seed')}; threads {env.get('threads')}.",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for c in checks:
        cells = [str(x).replace("|", "\\|") for x in _row(c)]
        if not c.passed and not c.info:
            cells[-1] = "**FAIL**"
        lines.append("| " + " | ".join(cells) + " |")
    plots = report.get("artifacts", {}).get("plots", [])
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


# The console keeps `where` short; report.json and report.md have it whole.
CONSOLE_WHERE_CHARS = 70


def console_table(checks: list, console, *, only_failures: bool = False) -> None:
    """Print the checks as a rich table, one line per check."""
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold", pad_edge=False, box=None)
    for col, kw in (("case", {}), ("check", {}), ("a vs b", {}), ("max |diff|", {"justify": "right"}),
                    ("tolerance", {"justify": "right"}), ("verdict", {}), ("where", {})):
        table.add_column(col, no_wrap=True, **kw)
    for c in checks:
        if only_failures and (c.passed or c.info):
            continue
        style = None if c.passed else ("dim" if c.info else "bold red")
        where = c.where if len(c.where) <= CONSOLE_WHERE_CHARS else c.where[: CONSOLE_WHERE_CHARS - 1] + "…"
        case = f"{c.task}/{c.model}/{c.dtype}".strip("/")
        table.add_row(case, c.check, f"{c.a} vs {c.b}", _fmt(c.max_abs_diff), _fmt(c.tolerance), _verdict(c), where, style=style)
    console.print(table)


def pair_lines(checks: list) -> list:
    """The default console: one line per pair (task/model), then each failure in full.

    A pair's line: its verdict, how many checks, the worst margin (difference
    / tolerance; below 1 passes) and where it occurred. Informational rows
    never count.
    """
    from shared.verdict.checks import format_check

    pairs: dict = {}
    for c in checks:
        pairs.setdefault(f"{c.task}/{c.model}".strip("/"), []).append(c)
    lines = []
    for pair, rows in pairs.items():
        judged = [c for c in rows if not c.info]
        failed = [c for c in judged if not c.passed]
        worst = max(judged, key=lambda c: (not c.passed, c.margin), default=None)
        verdict = "FAIL" if failed else "pass"
        line = f"{verdict} {pair}: {len(judged)} checks"
        if failed:
            line += f", {len(failed)} failed"
        if worst is not None:
            line += f"; worst margin {worst.margin:.2g} ({worst.dtype} {worst.check} at {worst.where})"
        lines.append(line)
        lines += ["  " + format_check(c) for c in failed]
    return lines


def summary_line(report: dict) -> str:
    n = report["counts"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    return f"{verdict}: {n['checks']} checks, {n['failed']} failed, {n['info']} informational"


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=float) + "\n"


__all__.append("dumps")
