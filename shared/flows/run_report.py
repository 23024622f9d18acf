"""The default run's cases, one after the other, into one report folder (framework-free).

compare.py hands in `check_case` (one case's two backends through the engine)
and the frameworks' versions and threads; everything else, the console lines,
the plots, report.json and report.md, is the same whichever frameworks ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from shared.report import build as rpt
from shared.core.atomic import atomic_write_text, optional_atomic_dir
from shared.data.cases import data_record
from shared.core.console import ConsoleUI
from shared.verdict.tolerances import for_check

__all__ = ["run_cases"]


def run_cases(cases: list, opts, out: Path | None, check_case: Callable, *, versions: dict, threads: dict) -> dict:
    """Run every case with `check_case(case, opts, ui, work)`; write the report
    atomically into `out` (if given); print one line per pair (every check with
    opts.verbose) and the verdict. Returns the report (its checks under "_checks")."""
    all_checks, data, curves, sweeps, diffs, onnx_info, timings = [], [], {}, {}, {}, {}, {}
    ui = ConsoleUI(opts.quiet)
    with optional_atomic_dir(out) as work, ui:
        for case in cases:
            ui.log(f"[bold]{case.name}[/bold] ({case.config.task}, {case.config.model}, {case.config.dtype}): "
                   f"{len(case.dataset.x_train)} train / {len(case.dataset.x_valid)} valid items")
            r = check_case(case, opts, ui, work)
            all_checks += r.checks
            curves.update(r.curves)
            if r.sweep:
                sweeps[case.name] = r.sweep
            if r.logit_diffs is not None:
                diffs[case.name] = r.logit_diffs
            onnx_info[case.name], timings[case.name] = r.onnx, r.timings
            data.append(data_record(case))
        plots = _write_plots(work, curves, sweeps, diffs, opts)
        env = rpt.environment(versions, seed=opts.seed, dtype=opts.dtype, threads=threads)
        report = rpt.build_report(all_checks, environment=env, data=data,
                                  artifacts={"plots": plots, "onnx": onnx_info, "timings_s": timings,
                                             "options": {"steps": opts.steps, "optimizers": list(opts.optimizers),
                                                         "batch_size": opts.batch_size, "fault": opts.fault}})
        if work is not None:
            atomic_write_text(work / "report.json", rpt.dumps(report))
            atomic_write_text(work / "report.md", rpt.markdown(report, all_checks))
    if opts.verbose:
        rpt.console_table(all_checks, ui.out)
    else:  # one line per pair, then every failure in full (the table: --verbose, report.md)
        for line in rpt.pair_lines(all_checks):
            ui.out.print(line, markup=False, highlight=False, soft_wrap=True)
    ui.out.print(rpt.summary_line(report) + (f"; report in {out}" if out else ""))
    report["_checks"] = all_checks
    return report


def _write_plots(work: Path | None, curves, sweeps, diffs, opts) -> list:
    if work is None:
        return []
    from shared.report import plots

    return plots.write_plots(work, curves, sweeps, diffs, for_check("forward", opts.dtype, opts.tolerance).allowed(1.0))
