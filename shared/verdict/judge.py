"""The engine's judge: the one verdict policy (shared/verdict/policy.py) bound to a
run's settings, plus the discrete rows.

The engine hands each comparison here with what it has: the two float32
results and, where it computed them, each side's float64 result from the same
weights and inputs. Continuous rows are made by shared.verdict.policy (README,
"Verdicts": the user's --atol/--rtol, else float32 derived from each side's
own float32-vs-float64 error, float64 fixed first and then the measured error
models). Discrete outputs (predictions, metrics at a threshold, mAP, the
chosen threshold) fail only where near ties do not explain the disagreement;
the row lists the ties.

Framework-free (numpy only).
"""

from __future__ import annotations

import numpy as np

from shared.verdict import metrics, ties, policy as verdict
from shared.verdict.checks import Check, compare_arrays, compare_envelope
from shared.verdict.tolerances import F32_EPS, Tolerance, for_check

__all__ = ["Judge", "METRIC_ULPS"]

# A metric's own float32 rounding on top of its inputs' tolerance: a few ulps
# of its value (numpy/sklearn average in float64, the inputs are float32).
METRIC_ULPS = 4.0


class Judge:
    """The tolerance policy of one run.

    Args:
        override: Tolerance from --atol/--rtol (None: derived / named).
        batchnorm: the model has BatchNorm before a ReLU (named float32
            training tolerance when no float64 reference exists).
    """

    def __init__(self, override: Tolerance | None = None, batchnorm: bool = False):
        if override is not None and not override.note:
            override = Tolerance(rel=override.rel, abs=override.abs,
                                 note=f"user: --atol {override.abs:g} --rtol {override.rel:g}")
        self.override = override
        self.batchnorm = batchnorm

    # ---- tolerances -------------------------------------------------------------
    def named(self, kind: str, dtype: str) -> Tolerance:
        """The user's override, or the named constant for (kind, dtype)."""
        return for_check(kind, dtype, self.override, batchnorm=self.batchnorm)

    def tolerance(self, kind: str, dtype: str, a32=None, b32=None, a64=None, b64=None, names=("keras", "torch")) -> Tolerance:
        """Derived from the float64 references when given (float32 only), else named (shared.verdict.policy.tolerance)."""
        return verdict.tolerance(kind, dtype, a32, b32, a64, b64, names=names, override=self.override,
                                 batchnorm=self.batchnorm)

    # ---- continuous rows ---------------------------------------------------------
    def compare(self, check: str, kind: str, a32, b32, a64=None, b64=None, *, dtype: str, a_name="keras",
                b_name="torch", models=(), **kw) -> Check:
        """One row by the one policy (shared.verdict.judge); float64 rows: `models`
        tried where the fixed bound is not met."""
        ref = (a64, b64) if a64 is not None and b64 is not None else None
        return verdict.judge(check, kind, dtype, a32, b32, ref=ref, models=models, override=self.override,
                             batchnorm=self.batchnorm, a_name=a_name, b_name=b_name, **kw)

    def trajectory(self, check: str, a32, b32, a64=None, b64=None, *, dtype: str, a_name="keras", b_name="torch",
                   **kw) -> Check:
        """A loss curve: step-by-step envelope from each side's own float64 run (shared.verdict.policy.trajectory)."""
        return verdict.trajectory(check, a32, b32, a64, b64, dtype=dtype, override=self.override,
                                  batchnorm=self.batchnorm, a_name=a_name, b_name=b_name, **kw)

    # ---- discrete rows -------------------------------------------------------------
    def predictions(self, pa, pb, tol: float, items, *, task: str, a_name="keras", b_name="torch", **ctx) -> Check:
        """Hard predictions: differences near ties (closer than tol) are rounding and listed."""
        explained, unexplained = ties.prediction_ties(task, pa, pb, tol)
        n = len(np.asarray(pa))
        bad = sorted({i for i, _ in unexplained})
        tied = sorted({i for i, _ in explained})
        if unexplained:
            i = bad[0]
            item = items[i] if i < len(items) else i
            where = f"{len(bad)} of {n} differ away from any tie; first: item {i} ({item}): {unexplained[0][1]}"
        else:
            where = f"all {n} equal" if not tied else f"{len(tied)} of {n} differ, all at near ties"
        c = Check("predictions", a_name, b_name, float(len(bad) + len(tied)), float(len(bad) + len(tied)) / max(1, n),
                  0.0, not unexplained, where, tolerance_from=f"near ties: scores within {tol:.2g}", task=task, **ctx)
        c.tolerance = tol
        c.max_abs_diff = float(len(bad))  # margin counts only what ties do not explain
        c.detail = {"ties": ties.describe_ties(explained), "differ": len(bad) + len(tied)}
        return c

    def metrics(self, y, pa, pb, tol: float, *, task: str, a_name="keras", b_name="torch", **ctx) -> Check:
        """The task's metrics, each held to the outputs' tolerance; a metric that
        differs more passes only when near ties explain it (mAP: every swapped
        pair of scores a near tie; thresholded metrics: every flipped
        prediction at the threshold). The row reports the worst metric not
        explained by ties, and lists the ties."""
        ma, mb = metrics.metrics_for(task, y, pa), metrics.metrics_for(task, y, pb)
        rows, notes = [], []
        for name in ma:
            va, vb = float(ma[name]), float(mb[name])
            if np.isnan(va) and np.isnan(vb):
                d = 0.0
            elif not (np.isfinite(va) and np.isfinite(vb)):
                d = 0.0 if va == vb else float("inf")
            else:
                d = abs(va - vb)
            # A metric is an average of outputs or of decisions: it moves by at most the
            # outputs' tolerance (plus its own float32 rounding) unless a decision flips.
            allowed = tol + METRIC_ULPS * F32_EPS * (abs(vb) if np.isfinite(vb) else 0.0)
            ok, tied = d <= allowed, False
            if not ok:
                ok, note = self._metric_ties(task, name, y, pa, pb, tol)
                tied = ok
                if note:
                    notes.append(f"{name} {va:.9g} vs {vb:.9g}: {note}")
            rows.append((name, va, vb, d, allowed, ok, tied))
        judged = [r for r in rows if not r[6]] or rows
        name, va, vb, d, allowed, ok, tied = max(judged, key=lambda r: (not r[5], r[3] / r[4] if r[4] else r[3]))
        if tied:  # every differing metric is explained by ties: report none as a difference
            d = 0.0
        c = Check("metrics", a_name, b_name, d, d / max(1.0, abs(vb) if np.isfinite(vb) else 1.0), allowed,
                  all(r[5] for r in rows), f"{name}: {va:.9g} vs {vb:.9g}",
                  tolerance_from=f"the outputs' {tol:.2g} + {METRIC_ULPS:g} ulp; near ties explain discrete changes",
                  task=task, **ctx)
        c.detail = {a_name: ma, b_name: mb}
        if notes:
            c.detail["ties"] = notes
            c.where += " (" + "; ".join(notes) + ")"
        return c

    @staticmethod
    def _metric_ties(task, name, y, pa, pb, tol) -> tuple:
        """(explained, note) for a metric that differs beyond tol."""
        if name == "mAP":
            explained, unexplained = ties.rank_swaps(y, pa, pb, tol)
            if unexplained:
                return False, f"{len(unexplained)} rank swap(s) away from ties, e.g. {unexplained[0]}"
            return True, ties.describe_ties(explained) + " swap places"
        if task in ("multiclass", "binary", "multilabel") and name in ("accuracy", "accuracy_multi", "f1_samples"):
            explained, unexplained = ties.prediction_ties(task, pa, pb, tol)
            if unexplained:
                return False, f"{len(unexplained)} prediction(s) differ away from ties"
            return True, ties.describe_ties(explained)
        return False, ""

    def sweep_accuracy(self, y, pa, pb, thresholds, acc_a, acc_b, tol: float, *, which: str, a_name="keras",
                       b_name="torch", **ctx) -> Check:
        """accuracy_multi at each threshold: it may differ by the share of decisions
        that lie within tol of that threshold (near ties), and no more."""
        pa, pb = np.asarray(pa, np.float64), np.asarray(pb, np.float64)
        n = pa.size
        counts = np.array([int(np.sum((np.abs(pa - t) <= tol) | (np.abs(pb - t) <= tol))) for t in thresholds])
        allowed = counts / max(n, 1) + METRIC_ULPS * F32_EPS
        labels = {0: [f"t={v:.2f}" for v in thresholds]}
        note = f"the share of probabilities within {tol:.2g} of each threshold (near ties) + {METRIC_ULPS:g} ulp"
        return compare_envelope(f"threshold sweep accuracy ({which})", acc_a, acc_b, allowed, note, a_name=a_name,
                                b_name=b_name, labels=labels, **ctx)

    def chosen_threshold(self, y, pa, pb, thresholds, best_a: float, best_b: float, tol: float, *, which: str,
                         a_name="keras", b_name="torch", **ctx) -> Check:
        """The picked threshold; a different pick passes only if near ties make both picks possible."""
        gap = abs(best_a - best_b)
        ok, note = True, ""
        if best_a != best_b:
            ok, note = ties.choice_explained(y, pa, pb, thresholds, best_a, best_b, tol)
        where = f"{a_name} {best_a:.2f}, {b_name} {best_b:.2f} ({which})" + (f"; {note}" if note else "")
        c = Check("chosen threshold", a_name, b_name, 0.0 if ok else gap, gap, 0.0, ok, where,
                  tolerance_from=f"equal, or both picks possible given probabilities within {tol:.2g} of a threshold",
                  **ctx)
        return c
