"""Check a hand-written PyTorch port against its Keras model: the framework-free part.

`compare.py verify KERAS_MODEL TORCH_MODEL` (issue 12). The user's torch model
has no layer names in common with Keras, so the two are matched by structure:

- The Keras side lists its parametrized layers in execution order
  (keras_impl/verify/__init__.py, from the neutral graph of shared/graph/ir.py: weights
  already in torch layout) as `KerasRecord`s; the torch side traces one forward
  pass with hooks and lists the modules that own parameters, in the order
  they first ran (torch_impl/verify/__init__.py) as `TorchRecord`s.
- `match` pairs them in order by kind and weight shape. Where the record at
  the same position does not fit, a unique later fit is taken; several fits
  are ambiguous and none is impossible: both raise `MatchError` (exit 2)
  naming the first unmatched Keras layer, the torch module and why
  (`head: Keras Dense has a bias, torch Linear 'head' has none`).
- Every pair gets its transform. The neutral weights are already torch layout
  (Dense transpose, HWIO -> OIHW, depthwise, BatchNorm statistics are the
  reader's), except the Flatten order: a Keras Dense after a Flatten reads
  (H, W, C) order; the torch Linear reads whatever its input's flatten made
  of the source feature map. The torch tracer replays that chain of
  reshapes/permutes on an index tensor, so the transform holds the exact
  column order ("chw" for a plain NCHW flatten, "hwc" when the port permuted
  to NHWC first, or an explicit index otherwise).
- The mapping (`Mapping.to_json`) is the user-editable artifact: written with
  the report, read back with `--mapping FILE`.

Localisation (`localise`): the outputs of matched pairs compared in order in
float64 (where rounding is ~1e-15, so even a 1e-5 effect stands out by ten
orders of magnitude); the first that differs is named with the Keras layers
between it and the last agreeing pair ("between `dw` (agrees) and `fc`
(differs): dw_act, pool, flat"): those are done functionally in torch and have
no module of their own, so the bug is in one of them or in the pair itself.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from shared.core.errors import UsageError
from shared.flows.verify_attention import attention_notes, by_role, other_role, packed_attention
from shared.flows.verify_idioms import KIND_FITS, match_params, to_torch_shape

__all__ = ["KerasRecord", "TorchRecord", "MatchError", "Pair", "Mapping", "match", "why_not", "flatten_columns",
           "weights_to_torch", "localise", "attribute_notes", "padding_notes", "mask_notes", "weight_notes", "functional_notes", "check_mapping", "MAPPING_VERSION"]

MAPPING_VERSION = 1

# "This torch weight is that Keras weight": both are copies of float32 values,
# so a correct copy is exact; these only absorb a float32 -> float64 round trip.
SAME_WEIGHT = {"rtol": 1e-6, "atol": 1e-7}

# Readable names of the kinds, for messages.
_KIND_WORDS = {"linear": "dense/linear", "rnn_lstm": "LSTM", "rnn_gru": "GRU (reset_after)", "rnn_simple": "simple RNN",
               "rnn_gru_reset_before": "GRU with reset_after=False (no torch module)", "embedding": "embedding", "conv1d": "1-D convolution", "conv2d": "2-D convolution",
               "conv3d": "3-D convolution", "depthwise2d": "depthwise convolution",
               "depthwise1d": "1-D depthwise convolution", "batch_norm": "batch normalisation",
               "layer_norm": "layer normalisation", "variable": "variable read by ops",
               "params": "module using its own parameters directly"}


class MatchError(UsageError):
    """The two models cannot be matched by structure (exit 2)."""


@dataclass
class KerasRecord:
    """One parametrized Keras node (a SeparableConv2D gives two).

    name: the graph node's name (the Keras layer name, or `<layer>_depthwise`);
    layer: the Keras layer; cls: its class; kind: see _KIND_WORDS;
    weights: {torch-style name: shape in torch layout}; attrs: the neutral
    node's attributes (padding as (before, after) per axis, eps, momentum in
    torch's meaning, ...); flatten_from: the per-sample Keras shape of the
    tensor a Flatten turned into this Dense's input, e.g. (H, W, C); None
    otherwise; compare: False where the Keras output of this node is not
    observable on its own (the depthwise half of a SeparableConv2D).
    """

    name: str
    layer: str
    cls: str
    kind: str
    weights: dict
    attrs: dict = field(default_factory=dict)
    flatten_from: tuple | None = None
    compare: bool = True


@dataclass
class TorchRecord:
    """One torch module that owns parameters, in the order it first ran.

    path: its qualified name in the model (`features.0`); cls: its class;
    kind: as KerasRecord; params: {name: shape} (parameters and the buffers
    running_mean / running_var); attrs: stride, padding, dilation, groups,
    eps, momentum, ...; in_shape / out_shape: traced, with batch;
    flatten: {"source_shape": [C, *spatial], "index": [...]} when its input
    came from a feature map through reshapes/permutes (index[j] = the
    position, in the source's channels-first per-sample order, of input j);
    calls: how often it ran in one forward pass; module: the real module
    when this record is one part of a module that does the work of several
    Keras layers (an nn.LSTM with num_layers=2 or bidirectional=True: path
    `lstm[l1_reverse]`); whole_output: this part's output is the whole
    module's (its last part), compared with the output of the Keras layer
    the part is matched to.
    """

    path: str
    cls: str
    kind: str
    params: dict
    attrs: dict = field(default_factory=dict)
    in_shape: tuple = ()
    out_shape: tuple = ()
    flatten: dict | None = None
    calls: int = 1
    module: str = ""
    whole_output: bool = False


@dataclass
class Pair:
    """One mapped pair; `transform` is "copy" or "flatten" (then `flatten`
    says the column order: {"keras_shape": [...], "torch_order": "chw"} or
    {"keras_shape": [...], "torch_index": [...]})."""

    keras: str
    torch: str
    kind: str
    keras_class: str = ""
    torch_class: str = ""
    transform: str = "copy"
    flatten: dict | None = None
    note: str = ""


@dataclass
class Mapping:
    pairs: list

    def to_json(self) -> str:
        return json.dumps({"version": MAPPING_VERSION, "pairs": [asdict(p) for p in self.pairs]}, indent=1)

    @staticmethod
    def from_json(text: str, source: str = "mapping") -> "Mapping":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"{source}: not JSON ({e})") from None
        if not isinstance(d, dict) or d.get("version") != MAPPING_VERSION or not isinstance(d.get("pairs"), list):
            raise UsageError(f"{source}: expected {{\"version\": {MAPPING_VERSION}, \"pairs\": [...]}}")
        pairs = []
        for i, p in enumerate(d["pairs"]):
            if not isinstance(p, dict) or not {"keras", "torch", "kind"} <= set(p):
                raise UsageError(f"{source}: pair {i} needs keys keras, torch, kind")
            pairs.append(Pair(**{k: p[k] for k in Pair.__dataclass_fields__ if k in p}))
        return Mapping(pairs)


# ---------------------------------------------------------------- matching
def _has(rec_weights: dict, name: str) -> bool:
    return name in rec_weights


def why_not(k: KerasRecord, t: TorchRecord, *, strict_bias: bool = True) -> str | None:
    """Why torch module `t` cannot take Keras layer `k`'s weights; None when it can."""
    tname = f"torch {t.cls} '{t.path}'"
    if k.kind != t.kind and (k.kind, t.kind) not in KIND_FITS:
        return f"Keras {k.cls} is a {_KIND_WORDS.get(k.kind, k.kind)}, {tname} is a {_KIND_WORDS.get(t.kind, t.kind)}"
    for w, what in (("bias", "a bias"), ("weight", "a scale (gamma)" if k.kind.endswith("norm") else "a weight")):
        if _has(k.weights, w) != _has(t.params, w) and (strict_bias or w != "bias"):
            if _has(k.weights, w):
                return f"Keras {k.cls} has {what}, {tname} has none"
            return f"Keras {k.cls} has no {what.split(' ', 1)[1]}, {tname} has one"
    for w, shape in k.weights.items():
        if w in t.params and tuple(t.params[w]) != tuple(shape):
            return (f"Keras {k.cls} {w} is {tuple(shape)} in torch layout, {tname} has {tuple(t.params[w])}"
                    + packed_attention(k, t))
    if t.calls > 1:
        return f"{tname} runs {t.calls} times in one forward pass; map a shared module by hand (--mapping)"
    return None


def _transform(k: KerasRecord, t: TorchRecord) -> tuple:
    """(transform, flatten dict, note) for a compatible pair."""
    if k.kind != "linear" or k.flatten_from is None:
        return "copy", None, ""
    keras_shape = [int(s) for s in k.flatten_from]
    if t.flatten is None:
        return "copy", None, (f"the torch Linear's input was not traced to a feature map: Keras' flatten order "
                              f"{tuple(keras_shape)} assumed")
    src = [int(s) for s in t.flatten["source_shape"]]
    if src != [keras_shape[-1], *keras_shape[:-1]]:
        raise MatchError(f"{k.name}: Keras Flatten reads a {tuple(keras_shape)} map (channels last), torch "
                         f"{t.cls} '{t.path}' reads a flattened {tuple(src)} tensor (channels first expected "
                         f"{(keras_shape[-1], *keras_shape[:-1])})")
    index = np.asarray(t.flatten["index"], dtype=np.int64)
    order = _named_order(index, src)
    flat = {"keras_shape": keras_shape, **({"torch_order": order} if order else {"torch_index": index.tolist()})}
    return "flatten", flat, ""


def _named_order(index: np.ndarray, src: list) -> str | None:
    """"chw" / "hwc" / ... when the index is a plain flatten of a permutation of (C, *spatial)."""
    letters = "c" + "hwd"[: len(src) - 1] if len(src) <= 4 else None
    if letters is None:
        return None
    grid = np.arange(int(np.prod(src))).reshape(src)
    for perm in itertools.permutations(range(len(src))):
        if np.array_equal(np.transpose(grid, perm).ravel(), index):
            return "".join(letters[i] for i in perm)
    return None


def match(keras: list, torch: list, *, strict_bias: bool = True) -> Mapping:
    """Pair Keras records with torch records in execution order (see the module docstring).

    Raises:
        MatchError naming the first unmatched Keras layer, the torch module and why.
    """
    order = {k.name: i for i, k in enumerate(keras)}
    direct, keras, remaining = match_params(keras, torch)  # shared/flows/verify_idioms.py
    pairs = []
    for k in keras:
        if not remaining:
            raise MatchError(f"{k.name}: Keras {k.cls} has no torch module left to take its weights "
                             f"(Keras has {len(order)} parametrized layers, torch {len(torch)} modules with parameters)")
        why = why_not(k, remaining[0], strict_bias=strict_bias)
        named = by_role(k, remaining, lambda u, k=k: why_not(k, u, strict_bias=strict_bias) is None)
        if named is not None:  # an attention projection run out of Keras' order (k before q): taken by its name
            t = named
        elif why is None:
            t = remaining[0]
        else:
            fits = [u for u in remaining[1:] if why_not(k, u, strict_bias=strict_bias) is None and not other_role(k, u)]
            if len(fits) > 1:
                raise MatchError(f"{k.name}: {why}; {len(fits)} later torch modules would fit "
                                 f"({', '.join(repr(u.path) for u in fits[:4])}): ambiguous, map it by hand with --mapping")
            if not fits:
                raise MatchError(f"{k.name}: {why}")
            t = fits[0]
        remaining.remove(t)
        transform, flat, note = _transform(k, t)
        if why_not(k, t, strict_bias=True) is not None:
            note = (note + "; " if note else "") + why_not(k, t, strict_bias=True)
        pairs.append(Pair(k.name, t.path, k.kind, k.cls, t.cls, transform, flat, note))
    if remaining:
        t = remaining[0]
        raise MatchError(f"torch {t.cls} '{t.path}' has parameters {sorted(t.params)} but no Keras layer is left "
                         f"to match it (Keras has {len(order)} parametrized layers, torch {len(torch)})")
    return Mapping(sorted(pairs + direct, key=lambda p: order[p.keras]))


def check_mapping(mapping: Mapping, keras: list, torch: list) -> None:
    """A hand-edited mapping: every name exists, every Keras and torch record used once, shapes fit."""
    kby = {k.name: k for k in keras}
    tby = {t.path: t for t in torch}
    for p in mapping.pairs:
        if p.keras not in kby:
            raise MatchError(f"mapping: Keras layer {p.keras!r} is not a parametrized layer of the model (known: {sorted(kby)})")
        if p.torch not in tby:
            raise MatchError(f"mapping: torch module {p.torch!r} owns no parameters or does not exist (known: {sorted(tby)})")
        k, t = kby[p.keras], tby[p.torch]
        why = why_not(k, t, strict_bias=True)
        if why is not None and "runs" not in why:
            raise MatchError(f"mapping: {p.keras}: {why}")
    for what, names, used in (("Keras layer", kby, [p.keras for p in mapping.pairs]),
                              ("torch module", tby, [p.torch for p in mapping.pairs])):
        missing = [n for n in names if n not in used]
        dup = sorted({n for n in used if used.count(n) > 1})
        if missing or dup:
            raise MatchError(f"mapping: {what} {missing[0] if missing else dup[0]!r} is "
                             f"{'not mapped' if missing else 'mapped twice'}")


# ---------------------------------------------------------------- weights
def flatten_columns(flat: dict) -> np.ndarray:
    """cols such that torch_weight = neutral_weight[:, cols].

    The neutral (Keras-order) Dense weight's column r reads element r of the
    Keras flatten, i.e. position (*spatial, c) of the (spatial..., C) map; the
    torch Linear's column j reads the element its own chain put there.
    """
    ks = [int(s) for s in flat["keras_shape"]]
    src = [ks[-1], *ks[:-1]]  # channels first
    # keras_row[c, *spatial]: the Keras flatten position of that source element
    keras_row = np.transpose(np.arange(int(np.prod(ks))).reshape(ks), (len(ks) - 1, *range(len(ks) - 1)))
    if "torch_order" in flat:
        letters = "c" + "hwd"[: len(src) - 1]
        perm = [letters.index(ch) for ch in flat["torch_order"]]
        return np.ascontiguousarray(np.transpose(keras_row, perm).ravel())
    index = np.asarray(flat["torch_index"], dtype=np.int64)
    return keras_row.ravel()[index]


def weights_to_torch(pair: Pair, name: str, a: np.ndarray) -> np.ndarray:
    """A neutral (torch-layout, Keras-flatten-order) array of `pair` -> the user's torch layout."""
    if pair.transform == "flatten" and name == "weight":
        return np.ascontiguousarray(a[:, flatten_columns(pair.flatten)])
    return np.ascontiguousarray(to_torch_shape(pair, name, a))


# ---------------------------------------------------------------- localisation
def localise(order: list, pairs: list, passed: dict) -> dict | None:
    """Name the first differing pair and the Keras layers between it and the last agreeing one.

    Args:
        order: every Keras layer name in execution order.
        pairs: (keras node name, keras layer name, torch path) in pair order.
        passed: keras node name -> True/False (pairs not compared are absent).

    Returns:
        None when every compared pair agrees; else {"first_differing",
        "torch_module", "last_agreeing", "last_torch_module", "between", "text"}.
    """
    last_ok = None
    for node, layer, tpath in pairs:
        if node not in passed:
            continue
        if passed[node]:
            last_ok = (node, layer, tpath)
            continue
        start = order.index(last_ok[1]) + 1 if last_ok and last_ok[1] in order else 0
        end = order.index(layer) if layer in order else len(order)
        between = [n for n in order[start:end] if n != layer]
        if last_ok:
            text = f"between `{last_ok[0]}` (agrees) and `{node}` (differs, torch '{tpath}')"
        else:
            text = f"`{node}` (torch '{tpath}') is the first matched pair and already differs"
            text += "; before it" if between else ""
        if between:
            text += f": {', '.join(between)}"
        return {"first_differing": node, "torch_module": tpath, "last_agreeing": last_ok[0] if last_ok else None,
                "last_torch_module": last_ok[2] if last_ok else None, "between": between, "text": text}
    return None


def attribute_notes(k: KerasRecord, t: TorchRecord) -> list:
    """Hyperparameters of a pair that differ, each with the trap and its fix."""
    notes = []
    ka, ta = k.attrs, t.attrs
    if k.kind == "batch_norm":
        if "eps" in ta and not np.isclose(ka.get("eps", 0.0), ta["eps"], rtol=1e-9, atol=0.0):
            notes.append(f"{k.name}: BatchNorm epsilon differs: Keras {ka['eps']:.10g}, torch '{t.path}' {ta['eps']:.10g} "
                         f"(torch's default is 1e-5, Keras' 1e-3): pass eps={ka['eps']:.10g}")
        tm = ta.get("momentum")
        if tm is None:
            notes.append(f"{k.name}: torch '{t.path}' has momentum=None (a cumulative average); Keras keeps "
                         f"moving = {1 - ka['momentum']:.6g}*moving + {ka['momentum']:.6g}*batch: pass momentum={ka['momentum']:.6g}")
        elif not np.isclose(ka.get("momentum", 0.0), tm, rtol=1e-9, atol=1e-12):
            notes.append(f"{k.name}: BatchNorm momentum differs: torch '{t.path}' momentum={tm:.6g}, Keras momentum "
                         f"{1 - ka['momentum']:.6g} means torch momentum={ka['momentum']:.6g} (torch weighs the batch by m, Keras the old value)")
    if k.kind.startswith("rnn"):
        if ta.get("batch_first") is False:
            notes.append(f"{k.name}: torch '{t.path}' has batch_first=False; Keras sequences are (batch, time, features)")
        if k.kind == "rnn_lstm" and ta.get("bias_hh_trainable"):
            notes.append(f"{k.name}: Keras LSTM has one bias, torch '{t.path}' trains two (bias_ih_l0 + bias_hh_l0, "
                         "each with the same gradient): the bias learns twice as fast. Fix: zero bias_hh_l0 and "
                         "bias_hh_l0.requires_grad_(False)")
    if "num_heads" in ka and k.attrs.get("role") == "query":
        if "num_heads" in ta and ta["num_heads"] != ka["num_heads"]:
            notes.append(f"{k.layer}: Keras MultiHeadAttention has num_heads={ka['num_heads']} (key_dim={ka['key_dim']}), "
                         f"torch '{t.module or t.path}' num_heads={ta['num_heads']}")
        if ta.get("batch_first") is False:
            notes.append(f"{k.layer}: torch '{t.module or t.path}' has batch_first=False (it reads (time, batch, "
                         "features)); Keras sequences are (batch, time, features): pass batch_first=True")
    if k.kind == "layer_norm" and "eps" in ta and not np.isclose(ka.get("eps", 0.0), ta["eps"], rtol=1e-9, atol=0.0):
        notes.append(f"{k.name}: LayerNorm epsilon differs: Keras {ka['eps']:.10g}, torch '{t.path}' {ta['eps']:.10g} "
                     f"(torch's default is 1e-5, Keras' 1e-3): pass eps={ka['eps']:.10g}")
    if k.kind.startswith(("conv", "depthwise")):
        for key in ("stride", "dilation"):
            if key in ta and tuple(ka.get(key, ())) != tuple(ta[key]):
                notes.append(f"{k.name}: {key} differs: Keras {tuple(ka[key])}, torch '{t.path}' {tuple(ta[key])}")
        kp = [tuple(p) for p in ka.get("padding", [])]
        tp = ta.get("padding")
        same_input = tuple(t.in_shape[2:]) == tuple(ka.get("in_spatial", ()))
        if isinstance(tp, (list, tuple)) and same_input and kp and [tuple((p, p)) for p in tp] != kp:
            asym = any(a != b for a, b in kp)
            notes.append(f"{k.name}: padding differs: Keras pads {kp} (before, after) per spatial axis"
                         + (" (TF 'same' puts the odd extra row/column after)" if asym else "")
                         + f", torch '{t.path}' pads {list(tp)} on both sides"
                         + ("; fix: F.pad(x, (left, right, top, bottom)) with TF's amounts, then padding=0" if asym else ""))
    return notes


def mask_notes(k: KerasRecord, t: TorchRecord) -> list:
    """A Keras RNN that skips masked steps against a torch RNN run over the padded
    tensor (not a PackedSequence): the trap and the fix. Said only where the pair
    differs: on right-padded rows an unpacked RNN whose later steps are dropped
    (a packed RNN after it, a masked mean) is still the same model."""
    if not (k.kind.startswith("rnn") and k.attrs.get("masked") and t.attrs.get("packed_input") is False):
        return []
    return [f"{k.name}: Keras' {k.cls} skips the masked (padded) steps of its input (the Embedding's mask_zero mask), "
            f"torch '{t.path}' runs over them (its input is a padded tensor, not a PackedSequence): the final state is "
            "the one after the padding, and a backward direction starts in it. Fix: lengths = (ids != 0).sum(1); "
            "pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False) before the RNN"]


def padding_notes(k: KerasRecord, t: TorchRecord, x: np.ndarray, pad) -> list:
    """A Keras RNN that skips masked steps against a packed torch RNN, on given
    rows that are not right-padded (padding before or between tokens): Keras
    skips every masked step wherever it is, pack_padded_sequence keeps each
    row's first `length` steps, so on those rows the port is another model."""
    if pad is None or x.ndim != 2 or not (k.kind.startswith("rnn") and k.attrs.get("masked") and t.attrs.get("packed_input")):
        return []
    real = x != pad
    lengths = real.sum(1)
    right = real == (np.arange(x.shape[1])[None, :] < lengths[:, None])
    rows = np.flatnonzero(~right.all(1))
    if not rows.size:
        return []
    return [f"{k.name}: input rows {rows[:10].tolist()}{' and more' if rows.size > 10 else ''} are not right-padded (the "
            f"mask value {pad:g} before or between tokens): Keras' {k.cls} skips every masked step wherever it is, "
            f"torch '{t.path}' packs each row's first (ids != {pad:g}).sum() steps, so on these rows the two differ "
            "by design. Pad on the right (or gather each row's tokens to the front before packing)"]


def weight_notes(pair: Pair, keras_w: dict, torch_w: dict) -> list:
    """With --weights as-is: the user's torch weights that are not Keras', and the
    known copying mistake each matches (flatten order, flipped kernel, stats left
    at their initial values)."""
    notes = []
    for name, k in keras_w.items():
        t = torch_w.get(name)
        if t is None or t.shape != k.shape and pair.transform != "flatten":
            continue
        want = weights_to_torch(pair, name, k)
        if t.shape == want.shape and np.allclose(t, want, **SAME_WEIGHT):
            continue
        where = f"{pair.keras}.{name} (torch '{pair.torch}.{name}')"
        if pair.transform == "flatten" and name == "weight" and np.allclose(t, k, **SAME_WEIGHT):
            shape = tuple(pair.flatten["keras_shape"])
            notes.append(f"{where}: the Dense kernel was copied as K.T, in Keras' {shape} (channels-last) flatten order, "
                         f"but the torch Linear reads a ({pair.flatten.get('torch_order', 'traced')}) flatten: permute its "
                         "columns (shared/graph/layout.py flatten_dense_kernel_to_weight) or flatten NHWC in torch")
        elif name == "weight" and t.ndim == 2 and t.shape == want.T.shape and np.allclose(t, want.T, **SAME_WEIGHT):
            notes.append(f"{where}: the Dense kernel was copied without transposing: Keras computes x @ K, torch x @ W.T, "
                         "so W = K.T")
        elif name == "weight" and t.ndim == 4 and t.shape == want.transpose(0, 1, 3, 2).shape \
                and np.allclose(t, want.transpose(0, 1, 3, 2), **SAME_WEIGHT):
            notes.append(f"{where}: the kernel's height and width are swapped: HWIO -> OIHW is K.transpose(3, 2, 0, 1)")
        elif name == "weight" and t.ndim >= 3 and np.allclose(t, np.flip(want, axis=tuple(range(2, t.ndim))), **SAME_WEIGHT):
            notes.append(f"{where}: the kernel is flipped spatially (true convolution vs cross-correlation): copy it unflipped")
        elif pair.kind.startswith("rnn_gru") and name.startswith(("weight", "bias")) and t.shape == want.shape \
                and np.allclose(t, _gate_blocks(want, (1, 0, 2)), **SAME_WEIGHT):
            notes.append(f"{where}: the GRU gates are in Keras' order z,r,h; torch's nn.GRU reads r,z,n: swap the first "
                         "two blocks of rows (and of each bias)")
        elif pair.kind.startswith("rnn") and name.startswith("weight") and t.ndim == 2 and t.shape == want.T.shape \
                and np.allclose(t, want.T, **SAME_WEIGHT):
            notes.append(f"{where}: the recurrent kernel was copied without transposing: torch keeps (gates*units, inputs)")
        elif name in ("running_mean", "running_var") and np.allclose(t, 0.0 if name == "running_mean" else 1.0):
            notes.append(f"{where}: still torch's initial value: the Keras moving statistics were not copied")
        else:
            diff = float(np.max(np.abs(t - want))) if t.shape == want.shape else float("inf")
            notes.append(f"{where}: differs from the Keras weight in torch layout (max |diff| {diff:.3g}): not copied, "
                         "or copied with another layout")
    return notes


def _gate_blocks(a: np.ndarray, order) -> np.ndarray:
    """a's rows in `order` of len(order) equal blocks (GRU gates r,z,n <-> z,r,h: (1, 0, 2) both ways)."""
    parts = np.split(a, len(order), axis=0)
    return np.concatenate([parts[i] for i in order], axis=0)


_SLOPE = re.compile(r"leaky_relu\(negative_slope=([-+\d.e]+)")
_GELU = re.compile(r"gelu\(approximate=('?\w+'?)")


def functional_notes(keras_ops: list, torch_ops: list) -> list:
    """Known traps among the functional ops between two pairs (strings from
    KerasSide.describe and the torch trace): LeakyReLU slope, gelu's
    approximation, "same" average pooling that counts the padded cells."""
    k, t = " ".join(keras_ops), " ".join(torch_ops)
    notes = []
    ks, ts = _SLOPE.findall(k), _SLOPE.findall(t)
    if ks and ts and not np.isclose(float(ks[0]), float(ts[0]), rtol=SAME_WEIGHT["rtol"], atol=0.0):
        notes.append(f"LeakyReLU slope: Keras {float(ks[0]):g}, torch {float(ts[0]):g} (defaults differ: Keras' LeakyReLU "
                     "layer 0.3, keras.activations.leaky_relu 0.2, torch 0.01): pass negative_slope explicitly")
    kg, tg = _GELU.findall(k), _GELU.findall(t) or (["'none'"] if re.search(r"\bgelu\(\)", t) else [])  # F.gelu(x): exact
    if kg and tg and (kg[0] == "True") != (tg[0].strip("'") == "tanh"):
        notes.append(f"gelu: Keras approximate={kg[0]}, torch approximate={tg[0]}: use approximate="
                     f"{chr(39) + 'tanh' + chr(39) if kg[0] == 'True' else chr(39) + 'none' + chr(39)}")
    notes += attention_notes(k, t)
    if "count_include_pad=False" in k and re.search(r"avg_pool\(.*padding=\[\((?!0, 0)", k) and "avg_pool" in t \
            and "count_include_pad=False" not in t and re.search(r"avg_pool\dd\([^)]*padding=[1-9]", t):
        notes.append("AveragePooling 'same': Keras pads asymmetrically (the odd cell after) and does not count the padded "
                     "cells; torch's avg_pool padding= is symmetric and counts them (count_include_pad=True): F.pad with "
                     "TF's amounts, then divide by the pooled count of ones")
    return notes
