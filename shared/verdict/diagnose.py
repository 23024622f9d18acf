"""Name the likely porting trap behind a failing check, from the numbers alone.

Given what a failing check compared (its name and the two arrays, plus what
the caller knows: the layer, the batch size, the starting values), each rule
looks for the fingerprint a known trap leaves (TRAPS.md) and returns one line:
the trap and its fix. A rule that does not match says nothing; `diagnose`
returns the first match, or None.

Framework-free (numpy only). Arrays are in PyTorch's layout (NCHW, OIHW).
"""

from __future__ import annotations

import numpy as np

__all__ = ["diagnose", "RULES"]

# Relative closeness for "these numbers match the pattern".
MATCH_RTOL = 1e-3


def _close(x, y, rtol=MATCH_RTOL) -> bool:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.size == 0:
        return False
    scale = max(float(np.max(np.abs(y))), 1e-30)
    return float(np.max(np.abs(x - y))) <= rtol * scale


def _ratio(a, b, start=None):
    """Per-element (b - start) / (a - start) where a moved; None if nothing moved."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    s = np.zeros_like(a) if start is None else np.asarray(start, np.float64)
    da, db = a - s, b - s
    keep = np.abs(da) > 1e-8 * max(1.0, float(np.max(np.abs(a))))
    return (db[keep] / da[keep]) if keep.any() else None


def unbiased_variance(name, a, b, *, count=None, start=None, momentum=0.99, steps=1, **_):
    """Moving variance off by n/(n-1): torch's running_var uses the unbiased batch variance.

    After `steps` updates from `start` with the same batch variances v_k on
    both sides, moving - momentum^steps * start = (1 - m) sum m^(steps-k) v_k,
    times n/(n-1) on the unbiased side: the ratio is exact.
    """
    if not name.endswith("running_var"):
        return None
    s = None if start is None else np.asarray(start, np.float64) * momentum ** steps
    r = _ratio(a, b, s)
    if r is None or not np.all(r > 1):
        return None
    n = count if count and count >= 2 else round(1 + 1 / (float(np.median(r)) - 1))  # r = n/(n-1)
    if n < 2:
        return None
    want = n / (n - 1)
    if np.allclose(r, want, rtol=1e-2 * (want - 1) + 1e-6):
        return (f"moving variance off by n/(n-1) = {want:.6g} (n = {n} values per channel): torch's running_var "
                "uses the unbiased batch variance, Keras the biased one; scale the batch variance by (n-1)/n "
                "on one side (TRAPS.md, BatchNorm statistics)")
    return None


def bn_momentum(name, a, b, *, start=None, momentum=0.99, steps=1, **_):
    """Moving statistics moved far too fast: Keras momentum passed to torch unchanged.

    With batch statistics that vary little, Keras moves a fraction 1 - m^steps
    of the way from `start`, torch with momentum=m (its weight of the NEW
    value) 1 - (1 - m)^steps: the ratio of the two moves.
    """
    if not name.endswith(("running_mean", "running_var")) or start is None:
        return None
    a, b, s = (np.asarray(v, np.float64) for v in (a, b, start))
    moved_a = float(np.linalg.norm(a - s))
    if moved_a == 0:
        return None
    r = float(np.linalg.norm(b - s)) / moved_a
    m = momentum
    want = (1 - (1 - m) ** steps) / (1 - m ** steps)
    if want > 1.5 and want / 3 <= r <= 3 * want:
        return (f"moving statistics moved {r:.3g}x as far as Keras' (expected ~{want:.3g}x for "
                f"{steps} step(s)): Keras BatchNorm momentum {m:g} passed to torch unchanged; torch's momentum weighs "
                f"the new value: use momentum = 1 - {m:g} (TRAPS.md, BatchNorm momentum)")
    return None


def one_pixel_shift(name, a, b, **_):
    """4-D activations equal up to a one-pixel shift: symmetric vs TF's asymmetric "same" padding."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 4 or a.shape != b.shape or min(a.shape[2:]) < 3:
        return None
    base = float(np.max(np.abs(a - b)))
    if base == 0:
        return None
    for dh, dw in ((1, 0), (0, 1), (1, 1), (-1, 0), (0, -1), (-1, -1)):
        sa = a[:, :, max(dh, 0): a.shape[2] + min(dh, 0), max(dw, 0): a.shape[3] + min(dw, 0)]
        sb = b[:, :, max(-dh, 0): b.shape[2] + min(-dh, 0), max(-dw, 0): b.shape[3] + min(-dw, 0)]
        inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
        if float(np.max(np.abs(sa[inner] - sb[inner]))) < 1e-3 * base:
            return (f"outputs of {name} shifted by ({dh}, {dw}) pixel(s): torch's symmetric padding=1 against TF's "
                    "\"same\" padding, which puts the odd extra row/column at the bottom/right for stride 2 on an "
                    "even size; pad explicitly with the TF formula (TRAPS.md, \"same\" padding)")
    return None


def kernel_transform(name, a, b, **_):
    """A weight equal to the other side's flipped or with H and W swapped."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 4 or a.shape[:2] != b.shape[:2]:
        return None
    if a.shape == b.shape and _close(b, a[..., ::-1, ::-1]) and not _close(a, b):
        return (f"{name} is the other side's kernel flipped in H and W (a correlation ported as a convolution): "
                "copy the kernel without flipping (TRAPS.md, Conv2D layout)")
    if a.shape[2:] == b.shape[2:][::-1] or a.shape == b.shape:
        if _close(b, np.swapaxes(a, 2, 3)) and not _close(a, b):
            return (f"{name} has H and W swapped (OIWH instead of OIHW): HWIO -> OIHW is transpose(3, 2, 0, 1), "
                    "not (3, 2, 1, 0) (TRAPS.md, Conv2D layout)")
    return None


def permuted_columns(name, a, b, *, flatten_hwc=None, **_):
    """A Dense weight after Flatten whose columns are permuted: Flatten order."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or a.shape != b.shape or _close(a, b):
        return None
    if not _close(np.sort(a, axis=1), np.sort(b, axis=1)):
        return None
    hint = ""
    if flatten_hwc is not None:
        h, w, c = flatten_hwc
        perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
        if _close(b[:, perm], a) or _close(a[:, perm], b):
            hint = f" (exactly the (H,W,C) = {tuple(flatten_hwc)} vs (C,H,W) order)"
    return (f"{name}: the same values in another column order{hint}: Keras flattens (H,W,C), torch (C,H,W); "
            "permute the Dense kernel's rows K.reshape(H,W,C,F).transpose(3,2,0,1) (TRAPS.md, Flatten -> Dense)")


def constant_ratio(name, a, b, *, layer=None, **_):
    """Per-channel constant ratio slightly above/below 1 at a BatchNorm layer: epsilon."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    is_bn = (layer or name).startswith("bn") or "bn" in (layer or "")
    if not is_bn or a.ndim < 2 or a.shape != b.shape:
        return None
    # Centre per channel (beta unknown): the spread about the channel mean scales by sqrt((v+e_a)/(v+e_b)).
    axes = (0,) + tuple(range(2, a.ndim))
    ca, cb = a - a.mean(axis=axes, keepdims=True), b - b.mean(axis=axes, keepdims=True)
    sa, sb = ca.std(axis=axes), cb.std(axis=axes)
    keep = sa > 1e-6
    if not keep.any():
        return None
    r = sb[keep] / sa[keep]
    if np.all(np.abs(r - 1) > 1e-5) and np.all(np.abs(r - 1) < 0.5) and _close(cb, ca * (sb / np.where(keep, sa, 1)).reshape(
            (1, -1) + (1,) * (a.ndim - 2)), rtol=1e-3):
        return (f"{layer or name}: outputs scaled per channel by {r.min():.6g}..{r.max():.6g} around their mean, "
                "the signature of a different BatchNorm epsilon (Keras 1e-3, torch 1e-5): ratio "
                "sqrt((var + eps_torch) / (var + eps_keras)); pass eps=1e-3 to torch (TRAPS.md, BatchNorm epsilon)")
    return None


def clipped_probabilities(name, a, b, **_):
    """Losses capped at -log(1e-7) = 16.118 on one side: BCE computed on clipped probabilities."""
    cap = -np.log(1e-7)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if "loss" not in name or a.shape != b.shape:
        return None
    for side, x, y in (("keras", a, b), ("torch", b, a)):
        at_cap = np.abs(x - cap) < 1e-3
        if at_cap.any() and np.all(y[at_cap] > cap + 1e-3):
            return (f"{side}'s loss is capped at -log(1e-7) = {cap:.4g} where the other exceeds it: binary "
                    "cross-entropy on probabilities clipped to [1e-7, 1-1e-7]; compute it from logits on both "
                    "sides (from_logits=True / BCEWithLogitsLoss) (TRAPS.md, BCE on probabilities)")
    return None


def labels_off_by_one(name, a, b, **_):
    """Integer targets equal up to +-1: labels off by one in one data path."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind not in "iu" or b.dtype.kind not in "iu" or np.array_equal(a, b):
        return None
    d = np.unique(b.astype(np.int64) - a.astype(np.int64))
    if len(d) == 1 and abs(int(d[0])) == 1:
        return (f"{name}: every label differs by {int(d[0]):+d}: one data path shifts the class indices "
                "(1-based vocabulary, or a background class); use one vocabulary on both sides (TRAPS.md, data path)")
    return None


def channel_order(name, a, b, **_):
    """Images equal up to the channel order: RGB against BGR."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 4 or a.shape != b.shape or a.shape[1] != 3 or _close(a, b):
        return None
    if _close(b, a[:, ::-1]):
        return (f"{name}: the channels are reversed (RGB vs BGR, e.g. OpenCV's imread): convert one side with "
                "[..., ::-1] before the model (TRAPS.md, data path)")
    return None


def resampled_image(name, a, b, **_):
    """Images of the same mean and a small, smooth difference: another resize filter."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 4 or a.shape != b.shape or _close(a, b) or not name.startswith(("input", "images", "x")):
        return None
    rng = max(float(a.max() - a.min()), 1e-12)
    if abs(a.mean() - b.mean()) < 0.02 * rng and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9:
        return (f"{name}: the same pictures resampled differently (mean equal, pixels differ up to "
                f"{np.abs(a - b).max():.3g}): the two data paths resize with different filters; resize once, in the "
                "shared data layer (TRAPS.md, data path)")
    return None


def sign_or_scale(name, a, b, **_):
    """b = k * a for a constant k (a sign flip, a sum against a mean, a factor 2)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.size < 2 or _close(a, b):
        return None
    keep = np.abs(a) > 1e-6 * max(1.0, float(np.max(np.abs(a))))
    if not keep.any():
        return None
    k = float(np.median(b[keep] / a[keep]))
    if abs(k - 1) > 1e-3 and _close(b, k * a, rtol=1e-4):
        what = "opposite signs" if abs(k + 1) < 1e-3 else f"a constant factor {k:.6g}"
        return (f"{name}: torch = keras x {k:.6g} ({what}): a reduction (sum vs mean over {abs(k):.3g} elements), a "
                "sign convention or a learning-rate scale differs (TRAPS.md, loss reduction)")
    return None


def conv_output(name, a, b, *, layer=None, first_layer=False, **_):
    """A conv layer is the first whose output differs (its input agrees)."""
    layer = layer or name
    a = np.asarray(a)
    if not first_layer or not layer.startswith("conv") or a.ndim != 4:
        return None
    return (f"{layer} is the first layer that differs, its input agrees: the conv itself is ported wrong. For a "
            "stride-2 conv on an even size, torch's symmetric padding=1 against TF's \"same\" (the extra row/column "
            "goes bottom/right only: pad explicitly); otherwise the kernel layout (HWIO -> OIHW is "
            "transpose(3, 2, 0, 1), no flip) (TRAPS.md, Layers)")


def dense_output(name, a, b, *, layer=None, first_layer=False, **_):
    """A Dense layer is the first whose output differs (its input agrees)."""
    layer = layer or name
    if not first_layer or not layer.startswith(("fc", "dense", "head")):
        return None
    after = " after Flatten: Keras flattens (H,W,C), torch (C,H,W); permute the kernel's rows" if layer == "fc1" else ""
    return (f"{layer} is the first layer that differs, its input agrees: its weight is ported wrong (Keras' kernel "
            f"is (in, out): W = K.T, not a reshape){after} (TRAPS.md, Layers)")


RULES = [unbiased_variance, bn_momentum, kernel_transform, permuted_columns, channel_order, labels_off_by_one,
         one_pixel_shift, clipped_probabilities, constant_ratio, resampled_image, sign_or_scale, conv_output,
         dense_output]


def diagnose(name: str, a, b, **context) -> str | None:
    """The likely trap and its fix for a failing comparison of a (keras) with b (torch).

    Args:
        name: what was compared: a tensor name ("bn2.running_var"), a layer
            ("conv2"), a loss, "labels", "inputs".
        a, b: the compared arrays, PyTorch layout.
        context: optional count (values per channel in a BatchNorm batch),
            start (values before training), momentum (Keras convention),
            layer, flatten_hwc, first_layer (the arrays are the outputs of
            the first layer that differs: its input agrees).

    Returns:
        One line naming the trap and its fix, or None when no pattern matches.
    """
    for rule in RULES:
        try:
            hint = rule(name, a, b, **context)
        except (ValueError, FloatingPointError):
            hint = None
        if hint:
            return hint
    return None
