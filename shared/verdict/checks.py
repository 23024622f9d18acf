"""One comparison primitive, used by the tests, the harness and the user API.

A comparison never says "OK" alone: every `Check` states what was compared
(`check`, `a`, `b`), the largest difference, where it occurred, the
tolerance it was held to and where that tolerance came from.

The rules of `compare_arrays` (each pinned by tests/shared/test_checks.py):
1. the shapes must be equal;
2. a non-finite value agrees only with the identical infinity on the other
   side (+inf with +inf, -inf with -inf); NaN never agrees, not even with NaN,
   and a non-finite value against a finite one fails;
3. the allowed difference is tolerance.abs + tolerance.rel * max(1, scale),
   scale = the largest finite |b| (b is the reference);
4. it passes when the largest |a - b| over the finite pairs is <= allowed;
5. `where` names the index of the largest difference (or of the first
   non-finite disagreement) and both values there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from shared.verdict.tolerances import Tolerance

__all__ = ["Check", "compare_arrays", "compare_envelope", "compare_named", "format_check", "ParityFailure", "assert_checks"]


@dataclass
class Check:
    """One row of the report. Keys are stable: CI scripts read them."""

    check: str
    a: str
    b: str
    max_abs_diff: float
    max_rel_diff: float
    tolerance: float
    passed: bool
    where: str
    task: str = ""
    model: str = ""
    dtype: str = ""
    info: bool = False  # informational rows never fail a run
    detail: dict = field(default_factory=dict)
    # How `tolerance` was set: a named constant, a user override, or derived
    # from each framework's own float32-vs-float64 error (shared/verdict/tolerances.py).
    tolerance_from: str = ""
    # Why an informational row is information (shared/verdict/policy.py).
    reason: str = ""

    def __setattr__(self, name, value):
        # One status per row, decided when the row is made (shared/verdict/policy.py,
        # issue 19): `info` and `passed` are not changed afterwards.
        if name in _STATUS and name in self.__dict__ and self.__dict__[name] != value:
            raise AttributeError(f"Check.{name} is decided when the row is made (shared/verdict/policy.py); "
                                 "make a new row (dataclasses.replace) instead")
        object.__setattr__(self, name, value)

    @property
    def status(self) -> str:
        """"pass", "fail" or "info" (with `reason`): exactly one per row."""
        return "info" if self.info else ("pass" if self.passed else "fail")

    @property
    def margin(self) -> float:
        """max_abs_diff / tolerance: below 1 passes; inf for a zero tolerance with a difference."""
        if self.max_abs_diff == 0:
            return 0.0
        return self.max_abs_diff / self.tolerance if self.tolerance > 0 else float("inf")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["margin"] = self.margin
        d["status"] = self.status
        return d


_STATUS = ("info", "passed")


def _where(index: tuple, labels=None) -> str:
    if not index:
        return "scalar"
    parts = [str(i) for i in index]
    if labels:
        for axis, names in labels.items():
            if names is not None and axis < len(index) and index[axis] < len(names):
                parts[axis] = f"{index[axis]} ({names[index[axis]]})"
    return "[" + ", ".join(parts) + "]"


def compare_arrays(
    check: str,
    a,
    b,
    tolerance: Tolerance,
    *,
    a_name: str = "keras",
    b_name: str = "torch",
    labels: dict | None = None,
    **context,
) -> Check:
    """Compare two arrays of the same shape; `b` is the reference for the scale.

    Args:
        check: what is compared ("logits", "grad conv1.weight", ...).
        a, b: array-likes (numpy-convertible).
        tolerance: allowed = abs + rel * max(1, max|b|).
        a_name, b_name: the two sides, as the report shows them.
        labels: optional {axis: names} to make `where` readable, e.g.
            {1: class_names}.
        context: task, model, dtype, info, detail.

    A shape mismatch, or a NaN/inf on one side only, fails with where saying so.
    """
    a, b = np.asarray(a), np.asarray(b)
    context.setdefault("tolerance_from", tolerance.derivation)
    if a.shape == b.shape and a.ndim and a.size and _lean_dtype(a) and _lean_dtype(b) and np.isfinite(a).all() and np.isfinite(b).all():
        return _compare_finite(check, a, b, tolerance, a_name, b_name, labels, context)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return Check(check, a_name, b_name, float("inf"), float("inf"), 0.0, False,
                     f"shape {a.shape} vs {b.shape}", **context)
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    scale = float(np.max(np.abs(b[finite_b]))) if finite_b.any() else 0.0
    allowed = tolerance.allowed(scale)
    # Rule 2: only identical infinities agree; NaN agrees with nothing.
    both_inf_same = np.isinf(a) & np.isinf(b) & (a == b)
    bad = (~finite_a | ~finite_b) & ~both_inf_same
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return Check(check, a_name, b_name, float("inf"), float("inf"), allowed, False,
                     f"{_where(idx, labels)}: {a[idx]} vs {b[idx]} ({int(bad.sum())} non-finite disagreement(s))",
                     **context)
    with np.errstate(invalid="ignore"):  # inf - inf at agreeing infinities: masked out
        diff = np.where(finite_a & finite_b, np.abs(a - b), 0.0)
    if diff.size == 0:
        return Check(check, a_name, b_name, 0.0, 0.0, allowed, True, "empty", **context)
    flat = int(np.argmax(diff))
    idx = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    max_abs = float(diff.flat[flat])
    where = _where(idx, labels)
    if diff.ndim:
        where += f": {a[idx]:.9g} vs {b[idx]:.9g}"
    return Check(check, a_name, b_name, max_abs, max_abs / max(1.0, scale), allowed, bool(max_abs <= allowed), where,
                 **context)


# |a - b| of the lean path is computed this many elements at a time (32 MiB of
# float64): a 133M-parameter model's largest gradient would take 0.8 GB at once.
_COMPARE_CHUNK = 1 << 22


def _lean_dtype(x) -> bool:
    return x.dtype in (np.float32, np.float64)


def _compare_finite(check, a, b, tolerance, a_name, b_name, labels, context) -> Check:
    """compare_arrays for same-shape, non-empty, non-scalar, all-finite float32/float64
    arrays: the same figures without the five whole-array float64 temporaries
    (a 133M-parameter model's largest gradient is 0.8 GB in float64): max|b|
    as max(max b, -min b), |a - b| in chunks, float32 values widened exactly."""
    scale = float(max(b.max(), -b.min()))
    allowed = tolerance.allowed(scale)
    fa, fb = a.reshape(-1), b.reshape(-1)
    max_abs, flat = -1.0, 0
    for start in range(0, fa.size, _COMPARE_CHUNK):  # first largest |a - b|, as np.argmax over the whole
        diff = np.subtract(fa[start:start + _COMPARE_CHUNK], fb[start:start + _COMPARE_CHUNK], dtype=np.float64)
        np.abs(diff, out=diff)
        i = int(np.argmax(diff))
        if diff[i] > max_abs:
            max_abs, flat = float(diff[i]), start + i
    idx = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    where = _where(idx, labels)
    if a.ndim:
        where += f": {float(a[idx]):.9g} vs {float(b[idx]):.9g}"
    return Check(check, a_name, b_name, max_abs, max_abs / max(1.0, scale), allowed, bool(max_abs <= allowed), where,
                 **context)


def compare_envelope(check: str, a, b, allowed, note: str, *, a_name: str = "keras", b_name: str = "torch",
                     labels: dict | None = None, **context) -> Check:
    """compare_arrays with one allowed difference per element (a trajectory's
    step-by-step envelope, shared.verdict.tolerances.trajectory_envelope).

    The same rules (shape, non-finite values); it passes when every
    |a[i] - b[i]| <= allowed[i]. The row reports the element with the worst
    margin |a - b| / allowed: its difference and its allowed value; the
    largest difference anywhere is in detail["largest |diff|"].
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), b.shape) if a.shape == b.shape else allowed
    base = compare_arrays(check, a, b, Tolerance(rel=float("inf")), a_name=a_name, b_name=b_name, labels=labels,
                          tolerance_from=note, **context)
    if not base.passed or a.size == 0:  # shape or non-finite disagreement: already failed (or empty)
        return dataclasses.replace(base, tolerance=0.0) if not base.passed else base
    diff = np.abs(a - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        margins = np.where(diff == 0, 0.0, diff / allowed)
    flat = int(np.argmax(margins))
    idx = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    scale = max(1.0, float(np.max(np.abs(b))))
    where = _where(idx, labels) + (f": {a[idx]:.9g} vs {b[idx]:.9g}" if diff.ndim else "")
    detail = dict(context.pop("detail", {}) or {})
    detail["largest |diff|"] = float(diff.max())
    return Check(check, a_name, b_name, float(diff[idx]), float(diff[idx]) / scale, float(allowed[idx]),
                 bool((diff <= allowed).all()), where, detail=detail, tolerance_from=note, **context)


def compare_named(prefix: str, a: dict, b: dict, tolerance: Tolerance, **kw) -> list:
    """compare_arrays over two dicts of arrays, name by name (HF's recursive check).

    A name present on one side only is a failing Check of its own.
    """
    out = []
    for name in list(a) + [n for n in b if n not in a]:
        if name not in a or name not in b:
            side = kw.get("a_name", "keras") if name in a else kw.get("b_name", "torch")
            out.append(Check(f"{prefix} {name}", kw.get("a_name", "keras"), kw.get("b_name", "torch"),
                             float("inf"), float("inf"), 0.0, False, f"only in {side}",
                             **{k: v for k, v in kw.items() if k not in ("a_name", "b_name", "labels")}))
            continue
        out.append(compare_arrays(f"{prefix} {name}", a[name], b[name], tolerance, **kw))
    return out


def format_check(c: Check) -> str:
    """One line: what, the two sides, largest difference, where, tolerance, verdict."""
    verdict = {"info": "info", "pass": "pass", "fail": "FAIL"}[c.status]
    ctx = "/".join(x for x in (c.task, c.model, c.dtype) if x)
    line = (f"{verdict:4} {ctx + ' ' if ctx else ''}{c.check}: {c.a} vs {c.b}, max |diff| {c.max_abs_diff:.3g} "
            f"at {c.where}, tolerance {c.tolerance:.3g}")
    if c.tolerance_from:
        line += f" ({c.tolerance_from})"
    hint = c.detail.get("diagnosis") if isinstance(c.detail, dict) else None
    if hint and not c.passed:
        line += f"; likely: {hint}"
    return line


class ParityFailure(AssertionError):
    """Raised by assert_checks; its message lists every failing check."""


def assert_checks(checks: list) -> list:
    """Raise ParityFailure naming every failing (non-info) check; return checks."""
    bad = [c for c in checks if not c.passed and not c.info]
    if bad:
        raise ParityFailure("parity failed:\n" + "\n".join(format_check(c) for c in bad))
    return checks
