"""`compare.py verify`: the inputs and targets the checks run on.

Seeded random inputs of the Keras model's input spec (right-padded ids for a
model that masks its input: `right_padded`), or the user's `--data` rows,
refused by name where Keras' own output is not finite there or the torch port
cannot take them; targets of the compiled loss' form over the model's output
shape, so a per-step output (a tagger: (batch, steps, classes)) gets per-step
targets.
"""

from __future__ import annotations

import numpy as np

from shared.core import user_code
from shared.core.errors import UsageError
from shared.flows.port_check import UNKNOWN_SEQUENCE_STEPS
from shared.flows.verify_io import is_padding_mask, nrows, right_padded_mask, take

__all__ = ["make_targets", "check_targets", "draw_data", "right_padded"]


def make_targets(rng, out_shape: tuple, loss: dict, batch: int) -> np.ndarray:
    """Seeded targets of the loss' form over the output's shape (batch first; a
    per-step output (batch, steps, C) gets one target per step): class indices,
    one-hot rows, 0/1 labels or floats."""
    c, mid = int(out_shape[-1]), tuple(int(s) for s in out_shape[1:-1])
    if loss["kind"] == "sparse_ce":
        return rng.integers(0, c, (batch, *mid)).astype(np.int64)
    if loss["kind"] == "ce":
        return np.eye(c)[rng.integers(0, c, (batch, *mid))]
    if loss["kind"] == "bce":
        return rng.integers(0, 2, (batch, *mid, c)).astype(np.float64)
    return rng.standard_normal((batch, *mid, c))


def check_targets(y: np.ndarray, n: int, loss: dict, out_shape: tuple) -> np.ndarray:
    """Targets of the loss' form, returned in the shape the checks use: class
    indices (n, *steps) for sparse CE (a trailing axis of 1 dropped, as Keras
    does), else the output's shape (n, *steps, C). UsageError otherwise."""
    width, mid = int(out_shape[-1]), tuple(int(s) for s in out_shape[1:-1])
    if loss["kind"] == "sparse_ce":
        want = (n, *mid)
        ok = y.shape in (want, (*want, 1)) and y.size and np.all(np.mod(y, 1) == 0) and 0 <= y.min() and y.max() < width
        if not ok:
            raise UsageError(f"targets have shape {y.shape} ({y.dtype}); the Keras loss {loss['class']} on a {width}-wide "
                             f"output takes class indices 0..{width - 1}, shape {want}")
        return y.reshape(want)
    if y.shape != (n, *mid, width):
        raise UsageError(f"targets have shape {y.shape}; the Keras loss {loss['class']} on a {width}-wide output takes "
                         f"{(n, *mid, width)}")
    return y


def _named(ks) -> bool:
    """Inputs drawn by name: several inputs, or one of unknown length (keras-hub's token_ids)."""
    specs = ks.input_specs()
    return len(specs) > 1 or any(s is None for shape, _, _ in specs.values() for s in shape[1:])


def _targets(ks, x, loss, rng):
    """Targets of every output (a list for several), shaped by a Keras forward pass where sizes are unknown."""
    if not _named(ks) and len(ks.output_names) == 1:
        return make_targets(rng, ks.output_shape(), loss, nrows(x))
    outs = ks.outputs(x)
    ys = [make_targets(rng, o.shape, loss, nrows(x)) for o in (outs if isinstance(outs, list) else [outs])]
    return ys if len(ys) > 1 else ys[0]


def _draw_named(ks, rng, batch: int) -> dict:
    """{input name: seeded array}: floats N(0, 1), ids in [0, high), padding masks right-padded;
    unknown lengths UNKNOWN_SEQUENCE_STEPS (shared/flows/port_check.py)."""
    out = {}
    for name, (shape, dtype, high) in ks.input_specs().items():
        dims = (batch, *(UNKNOWN_SEQUENCE_STEPS if s is None else int(s) for s in shape[1:]))
        if is_padding_mask(name, dtype, high) and len(dims) == 2:
            out[name] = right_padded_mask(rng, batch, dims[1])
        elif "int" in dtype or dtype == "bool":
            out[name] = rng.integers(0, high or 2, dims).astype(np.int64)
        else:
            out[name] = rng.standard_normal(dims)
    return out


def draw_data(ks, loss, opts, rng, ts=None) -> tuple:
    if opts.x is not None:
        return _given(ks, loss, opts, rng, ts)
    if _named(ks):
        make = lambda: (lambda x: (x, _targets(ks, x, loss, rng)))(_draw_named(ks, rng, opts.batch))  # noqa: E731
        x, y = make()
        return x, y, [make() for _ in range(opts.steps)]
    full, dtype, high = ks.input_spec()
    shape = full[1:]
    pad = ks.mask_value() if "int" in dtype else None
    if pad is not None:
        draw = lambda: right_padded(rng, (opts.batch, *shape), high or 2, int(pad))  # noqa: E731
    elif "int" in dtype:
        draw = lambda: rng.integers(0, high or 2, (opts.batch, *shape)).astype(np.int64)  # noqa: E731
    else:
        draw = lambda: rng.standard_normal((opts.batch, *shape))  # noqa: E731
    make = lambda: (draw(), make_targets(rng, ks.output_shape(), loss, opts.batch))  # noqa: E731
    x, y = make()
    return x, y, [make() for _ in range(opts.steps)]


def _given(ks, loss, opts, rng, ts) -> tuple:
    x = opts.x
    if not isinstance(x, dict):
        x = np.asarray(x)
        x = x if x.dtype.kind in "iu" else x.astype(np.float64)
    if opts.y is not None:
        y = opts.y if isinstance(opts.y, list) else check_targets(np.asarray(opts.y), nrows(x), loss, ks.output_shape())
    else:
        y = _targets(ks, x, loss, rng)
    n = min(opts.batch, nrows(x))
    starts = [(i * n) % (nrows(x) - n + 1) for i in range(opts.steps)]  # full batches, in order, wrapping
    used = sorted({i for s in [0, *starts] for i in range(s, s + n)})
    _check_finite_rows(ks, x, used)
    if ts is not None and not isinstance(x, dict):
        _check_empty_rows(ks, ts, x, used)
    rows = lambda s: slice(s, s + n)  # noqa: E731
    ys = lambda s: [t[rows(s)] for t in y] if isinstance(y, list) else y[rows(s)]  # noqa: E731
    return take(x, rows(0)), ys(0), [(take(x, rows(s)), ys(s)) for s in starts]


def right_padded(rng, shape: tuple, high: int, pad: int) -> np.ndarray:
    """Seeded ids for a model that masks `pad` out of its input (Embedding(mask_zero=True)):
    right-padded sequences as a real text batch has them.

    Uniform ids in [0, high) would put the mask value anywhere, and a packed
    torch port (lengths = (ids != 0).sum(1), pack_padded_sequence) is only
    the same model as Keras' masked one on right-padded rows: an interior pad
    is a gap Keras skips and packing does not (it would count the row one
    shorter and cut its last token). A row of nothing but padding makes Keras
    itself compute nonsense (a masked average over no steps is 0/0 = NaN),
    and pack_padded_sequence refuses length 0. So: ids in [0, high) other than
    `pad`, each row's length in [1, steps], at least one full-length row (the
    padded length is the packed one) and, with two rows or more, one shorter
    row (the masked steps are exercised), in random order (enforce_sorted=False
    must undo its sort)."""
    batch, steps = shape[0], shape[1]
    ids = rng.integers(0, max(high - 1, 1), shape)
    ids = ids + (ids >= pad) if 0 <= pad < high else ids
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0] = steps
    if batch > 1 and steps > 1 and (lengths == steps).all():
        lengths[1] = rng.integers(1, steps)
    lengths = rng.permutation(lengths)
    ids[np.arange(steps)[None, :] >= lengths[:, None]] = pad
    return ids.astype(np.int64)


def _check_finite_rows(ks, x: np.ndarray, used: list) -> None:
    """Given inputs whose Keras float64 output is not finite cannot be compared (NaN
    agrees with nothing): UsageError naming the rows (of those the checks use, by
    their index in x) and, for rows of nothing but the mask value, why (Keras'
    masked average over no steps is 0/0)."""
    out = ks.with_dtype("float64").outputs(take(x, used))
    out = np.concatenate([np.asarray(o).reshape(len(used), -1) for o in (out if isinstance(out, list) else [out])], 1)
    finite = np.isfinite(out).all(axis=1)
    if finite.all():
        return
    bad = np.asarray(used)[~finite]
    rows = f"{bad[:10].tolist()}" + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    what = "NaN" if np.isnan(out[~finite]).any() else "infinite"
    pad = ks.mask_value()
    if pad is not None and not isinstance(x, dict) and x.dtype.kind in "iu" and (x[bad].reshape(len(bad), -1) == pad).all():
        raise UsageError(f"input rows {rows}: every id is the mask value {pad:g}; Keras' own output is {what} there "
                         "(likely a masked average over no steps, 0/0): leave those rows out")
    raise UsageError(f"input rows {rows}: Keras' own float64 output is {what} there, and a non-finite value agrees "
                     "with nothing: leave those rows out")


def _check_empty_rows(ks, ts, x: np.ndarray, used: list) -> None:
    """Given rows of nothing but the mask value (empty sequences) that the torch
    model cannot run (pack_padded_sequence refuses length 0): UsageError naming
    them, instead of the port's exception passing for a bug of verify. Where the
    port takes them, they are compared like any other row."""
    pad = ks.mask_value()
    if pad is None or x.dtype.kind not in "iu":
        return
    empty = [i for i in used if (x[i] == pad).all()]
    if not empty:
        return
    try:
        ts.outputs(x[empty])
    except Exception as e:  # noqa: BLE001  (whatever the user's forward raises on them)
        if user_code.is_out_of_memory(e):  # exit 4, not a verdict on the rows
            raise
        why = (str(e).splitlines() or [""])[0][:200]
        raise UsageError(f"input rows {empty[:10]}{' and more' if len(empty) > 10 else ''}: every id is the mask value "
                         f"{pad:g} (an empty sequence), and the torch model fails on them ({type(e).__name__}: {why}); "
                         "pack_padded_sequence takes no row of length 0: leave those rows out") from None
