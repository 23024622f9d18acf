"""Every tolerance the project uses, named, with where its value comes from.

A tolerance is relative to the scale of what is compared, with a floor of 1:
allowed = abs + rel * max(1, max|reference|). So "16 float32 epsilons of the
output scale" is Tolerance(rel=16 * F32_EPS): about 1.9e-6 for outputs near 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["F32_EPS", "F64_EPS", "Tolerance", "FORWARD", "GRADIENT", "TRAINING", "TRAINING_BATCHNORM", "ONNX", "for_check"]

F32_EPS = float(np.finfo(np.float32).eps)  # 1.19e-07
F64_EPS = float(np.finfo(np.float64).eps)  # 2.22e-16


@dataclass(frozen=True)
class Tolerance:
    """allowed = abs + rel * max(1, scale).

    `note` says where the numbers come from (shown in every report row);
    empty for the named constants below, which `derivation` then describes.
    """

    rel: float
    abs: float = 0.0
    note: str = ""

    @property
    def derivation(self) -> str:
        if self.note:
            return self.note
        parts = []
        if self.rel:
            parts.append(f"{self.rel:.3g} x max(1, |reference|)")
        if self.abs:
            parts.append(f"{self.abs:.3g} absolute")
        return "fixed: " + (" + ".join(parts) if parts else "exact")

    def allowed(self, scale: float) -> float:
        return self.abs + self.rel * max(1.0, float(scale))


FORWARD = {
    # The twin-models issue's target: 16 float32 epsilons of the output scale
    # (~2e-6 near 1). Summation order differs between oneDNN and ATen kernels,
    # so a few ulps per layer are expected; measured max ~1e-6 at scale ~2.4.
    "float32": Tolerance(rel=16 * F32_EPS),
    # The float64 target, 1e-12 (measured ~3e-15).
    "float64": Tolerance(rel=1e-12),
}

GRADIENT = {
    # Gradients sum over the batch, so rounding grows with batch size and depth.
    # 64 float32 epsilons of the largest gradient (~7.6e-6 near 1); HF's
    # PT<->TF tests allow 1e-5 absolute for the same reason.
    "float32": Tolerance(rel=64 * F32_EPS),
    "float64": Tolerance(rel=1e-12),
}

TRAINING = {
    # After tens of optimizer steps the float32 rounding differences compound;
    # HF relaxes its 1e-5 to 2e-4 for such cases ("every time the error was
    # above 1e-5, I found a bug" holds for one step, not fifty). 1e-4 relative.
    "float32": Tolerance(rel=1e-4),
    # float64 trajectories stay ~1e-13 apart after 50 steps; 1e-10 leaves room.
    "float64": Tolerance(rel=1e-10),
}

TRAINING_BATCHNORM = {
    # A network with BatchNorm + ReLU centres activations on the ReLU's kink:
    # in float32 an input that is exactly 0 in one framework is +4e-9 in the
    # other (the batch mean summed in another order), the gradient passes on
    # one side only, and later steps amplify the jump. Measured over 16 seeded
    # 50-step runs: worst final tensor 3.7e-3 relative (torch float32 against
    # torch float64 alone: 3e-4), while the float64 twins agree to ~1e-14; so
    # this is arithmetic, not a porting bug. The harness saw 3.6e-3 on the
    # built-in multi-label images (30 Adam steps). 1e-2 relative: 2.7x the
    # worst measured, because the size of a kink event depends on the data.
    # This check shows practical agreement only; optimizer bugs are caught by
    # the float64 training check (1e-10) and by float32 MLPs (1e-4), where the
    # known ones miss by 171x to 3050x (tests/twins/test_optimizer_traps.py).
    "float32": Tolerance(rel=1e-2),
    "float64": TRAINING["float64"],
}

ONNX = {
    # The exports are compared with the same budget as native forward passes.
    "float32": FORWARD["float32"],
    "float64": FORWARD["float64"],
}

_BY_KIND = {"forward": FORWARD, "gradient": GRADIENT, "training": TRAINING, "onnx": ONNX}


def for_check(kind: str, dtype: str, override: Tolerance | None = None, *, batchnorm: bool = False) -> Tolerance:
    """The tolerance for a kind of check ("forward", "gradient", "training", "onnx").

    Args:
        batchnorm: the model has BatchNorm before a ReLU (training trajectories
            then get TRAINING_BATCHNORM).
    """
    if override is not None:
        return override
    if kind == "training" and batchnorm:
        return TRAINING_BATCHNORM[dtype]
    return _BY_KIND[kind][dtype]


# --------------------------------------------------------------------------
# float32 tolerances derived from the computation (issue 10)
# --------------------------------------------------------------------------
# A float32 comparison between the frameworks is judged against how far each
# framework's own float32 result lies from a float64 reference computed from
# the same weights and inputs. With a64 ~= b64 (the float64 twins agree to
# ~1e-14, checked strictly), the triangle inequality gives
#     |a32 - b32| <= |a32 - a64| + |a64 - b64| + |b64 - b32|,
# so a difference up to the frameworks' own rounding error e_a + e_b is
# rounding. ROUNDING_MULTIPLE leaves room for the two errors not peaking at the
# same element or step; beyond it, something other than rounding differs.
# Measured over the legitimate runs (scripts/legit_runs.py, README "Verdicts"):
# the worst |a32 - b32| / (e_a + e_b) was below 1 for forward passes and
# gradients and below 2 for 30-step trajectories; 4 leaves 2x on the worst.
ROUNDING_MULTIPLE = 4.0
# In forward passes (continuous in the inputs: no ReLU-kink jumps), the side
# under test (b: the port, where the planted faults go) has its own error
# counted for at most this many times the reference's (a: the model being
# ported, in every flow) or the floor: a bug in the port's float32 path only (a
# cast, a float16 kernel) also moves that side away from its own float64
# result, and must not buy itself a tolerance as large as the bug. Legitimate
# forward rounding errors of the two frameworks differ by a few times at most
# (README, "Verdicts"); 16 leaves room. The reference's own error is not capped:
# it is the model's own arithmetic (TF's float32 convolutions in keras.io's
# TokenLearner: 4.7e-4 from its float64 result, torch's 7e-7; float64 agrees).
# Gradients and trajectories are not capped.
MAX_ASYMMETRY = 16.0
# A floor for outputs that happen to round the same in float32 and float64 on
# both sides (e_a = e_b = 0): a few ulps of the scale, so a one-ulp difference
# from summation order is not a failure. 4 float32 epsilons.
FLOOR_ULPS = 4.0


def _capped(e_a, e_b, floor, max_asymmetry=MAX_ASYMMETRY):
    """(e_a, e_b with e_b at most max_asymmetry times e_a or the floor); None: no cap.
    a is the reference (the model being ported), b the side under test."""
    if max_asymmetry is None:
        return e_a, e_b
    return e_a, np.minimum(e_b, max_asymmetry * np.maximum(e_a, floor))


# own_error and the scale of derived_tolerance read this many elements at a
# time (32 MiB of float64), not whole: VGG11-BN's classifier gradient would
# make 0.8 GB temporaries while its float32 and float64 copies are loaded
# (issue 18). The chunk of shared/verdict/checks.py's lean compare_arrays.
CHUNK = 1 << 22


def _chunks(*arrays):
    flat = [np.asarray(x).reshape(-1) for x in arrays]
    for start in range(0, flat[0].size, CHUNK):
        yield [np.asarray(f[start:start + CHUNK], dtype=np.float64) for f in flat]


def own_error(x32, x64) -> float:
    """How far one framework's float32 result lies from its own float64 one:
    max |x32 - x64| over the finite pairs (inf when they part on finiteness)."""
    x32, x64 = np.asarray(x32), np.asarray(x64)
    if x32.shape != x64.shape:
        raise ValueError(f"float32 and float64 results differ in shape: {x32.shape} vs {x64.shape}")
    out = 0.0
    for a, b in _chunks(x32, x64):
        fa, fb = np.isfinite(a), np.isfinite(b)
        if (fa != fb).any():
            return float("inf")
        fin = fa & fb
        if fin.any():
            out = max(out, float(np.max(np.abs(a[fin] - b[fin]))))
    return out


def _finite_absmax(x) -> float:
    out = 0.0
    for (v,) in _chunks(x):
        v = v[np.isfinite(v)]
        if v.size:
            out = max(out, float(np.max(np.abs(v))))
    return out


def derived_tolerance(a32, a64, b32, b64, *, multiple: float = ROUNDING_MULTIPLE, floor_ulps: float = FLOOR_ULPS,
                      a_name: str = "keras", b_name: str = "torch", max_asymmetry: float | None = MAX_ASYMMETRY) -> Tolerance:
    """The float32 tolerance for comparing a32 with b32, from each side's own rounding.

    Args:
        a32, b32: the two frameworks' float32 results (same shape).
        a64, b64: the same computation in float64, from the same weights and
            inputs (each framework's own float64 twin).
        multiple: how many times the frameworks' own rounding error is still rounding.
        floor_ulps: the smallest tolerance, in float32 epsilons of max(1, |b32|).
        max_asymmetry: cap on b's error relative to a's (a: the reference); None
            for gradients and trajectories, where a ReLU kink legitimately
            moves one side far from its own float64 run (an input exactly 0 in
            float32 and 1e-17 in float64) while the other side's stays put.

    A float32-only bug in the port (b) also moves it from its own float64
    result; b's error is therefore capped at MAX_ASYMMETRY times a's, so such
    a bug cannot buy itself a tolerance as large as itself.

    Returns:
        Tolerance(abs=multiple * (e_a + e_b) + floor, rel=0) with a note saying
        how it was derived, e.g. "derived: 4 x (keras 1.2e-07 + torch 9.5e-08)
        own float32-vs-float64 error + 4 ulp floor".
    """
    e_a, e_b = own_error(a32, a64), own_error(b32, b64)
    scale = max(1.0, _finite_absmax(b32))
    floor = floor_ulps * F32_EPS * scale
    c_a, c_b = _capped(e_a, e_b, floor, max_asymmetry)
    allowed = multiple * (c_a + c_b) + floor
    capped = f" ({b_name}'s capped at {max_asymmetry:g}x {a_name}'s)" if (c_a, c_b) != (e_a, e_b) else ""
    note = (f"derived: {multiple:g} x ({a_name} {e_a:.2g} + {b_name} {e_b:.2g}) own float32-vs-float64 error"
            f"{capped} + {floor_ulps:g} ulp floor")
    return Tolerance(rel=0.0, abs=allowed, note=note)


def trajectory_envelope(a32, a64, b32, b64, *, multiple: float = ROUNDING_MULTIPLE,
                        floor_ulps: float = FLOOR_ULPS) -> np.ndarray:
    """Step-by-step allowed differences for two float32 trajectories (loss curves).

    At step i the allowed |a32[i] - b32[i]| is multiple times the largest
    float32-vs-float64 divergence either side has shown up to step i
    (divergence only grows: a ReLU kink or a BatchNorm batch that amplified it
    once keeps it amplified), plus the ulp floor of that step's scale. No
    asymmetry cap: a ReLU kink legitimately moves one side alone. Chaotic
    growth that each framework shows against its own float64 run is rounding;
    a Keras-vs-torch divergence beyond it is a formula that differs.

    Args:
        a32, a64, b32, b64: 1-D arrays, one value per step.

    Returns:
        (steps,) allowed differences.
    """
    arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for v in (a32, a64, b32, b64)]
    if len({v.shape for v in arrays}) != 1:
        raise ValueError(f"trajectories differ in length: {[v.shape for v in arrays]}")
    a32, a64, b32, b64 = arrays
    scale = np.maximum(1.0, np.where(np.isfinite(b32), np.abs(b32), 1.0))
    floor = floor_ulps * F32_EPS * scale
    with np.errstate(invalid="ignore"):
        e_a, e_b = np.abs(a32 - a64), np.abs(b32 - b64)
    e_a, e_b = (np.where(np.isfinite(e), e, np.inf) for e in (e_a, e_b))
    if e_a.size:
        e_a, e_b = np.maximum.accumulate(e_a), np.maximum.accumulate(e_b)
    return multiple * (e_a + e_b) + floor


__all__ += ["ROUNDING_MULTIPLE", "FLOOR_ULPS", "MAX_ASYMMETRY", "own_error", "derived_tolerance", "trajectory_envelope"]
