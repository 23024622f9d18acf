"""`compare.py verify`: run every check of a hand-written port against its Keras model.

Framework-free: it drives a Keras side (keras_impl/verify/__init__.py) and a torch side
(torch_impl/verify/__init__.py) through numpy, channels first. The order:

1. trace the torch model on one input, list the Keras layers, match them
   (shared/flows/verify.py) or check a given mapping; copy the Keras weights into
   the torch model through the mapping (`--weights keras`) or leave both as
   they are (`--weights as-is`);
2. eval-mode sanity: dropout called with training=True in eval mode, and two
   eval forward passes that differ, are failures of their own;
3. forward in float64 (pair by pair, then the output: rounding is ~1e-15
   there, so a bug whose effect is 1e-5 of the output misses the tolerance by
   seven orders of magnitude) and in float32 (the output; pairs as
   information rows, float32 rounding being ~1e-7);
4. gradients of the compiled loss on one batch, inference mode, per pair and
   parameter, float64 and float32;
5. training: N steps from the same start on the same batches with the compile
   config's loss and optimizer carried to torch, dropout switched off on both
   sides (the report says so), float64 and float32: per-step losses, final
   weights, BatchNorm moving mean and variance.

BatchNorm moving variance. Stock torch BatchNorm stores the *unbiased* batch
variance in running_var, Keras the biased one: even a port with momentum =
1 - keras_momentum and the same epsilon drifts by n/(n-1) on every update
(n = values per channel in the batch). Inference after training then differs
between the frameworks, so this is reported as a failure (not a warning),
with the trap named and the fix: update running_var with the biased variance
(torch_impl/models.py `BatchNorm2dKeras` does it), or accept the drift
knowingly. The float32 training check uses TRAINING_BATCHNORM where the model
has BatchNorm (ReLU-kink events, shared/verdict/tolerances.py); the float64 one stays
strict, and it is the one that catches such a drift.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from shared.verdict import policy as verdict
from shared.verdict.checks import Check, compare_arrays
from shared.verdict.tolerances import for_check
from shared.core.training import stock_training_row
from shared.flows.verify import (SAME_WEIGHT, Mapping, attribute_notes, check_mapping, functional_notes, localise, mask_notes,
                           match, padding_notes, weight_notes, weights_to_torch)
from shared.flows.verify_attention import swapped_projections
from shared.flows.verify_data import draw_data, make_targets
from shared.flows.verify_evidence import supported_notes
from shared.flows.verify_idioms import broadcast_outputs, torch_name
from shared.flows.verify_io import flat, nrows

__all__ = ["VerifyOptions", "VerifyResult", "run_verify", "make_targets"]

DTYPES = ("float64", "float32")
# The BatchNorm diagnosis reads ratios of one float64 update (rounding ~1e-15):
# "equal to n/(n-1)" within 1e-6 (the factor itself is 1 + 1/(n-1), >= 1e-5 away
# from 1 for n up to 1e5), "moved at all" above 1e-9.
RATIO_RTOL = 1e-6
# Why a float32 pair row is information: the float64 pair rows locate a bug
# (rounding ~1e-15); float32 rounding of ~1e-7 per layer says nothing more.
PAIR_FLOAT32_REASON = "float32 pair outputs: the float64 pair rows locate a difference; float32 shows only rounding here"
MOVED = 1e-9
# The float64 checks take Keras as TF computes it (float32 constants) only where the port is far
# closer to it than to the exact forms: a port keeping TF's constants is ~1e-15 from it and ~1e-8
# from the exact forms (keras_impl/verify/exact.py), while a port with a real difference (exact gelu
# for tanh gelu: ~1e-5) is as far from both, and the exact copy then localises it (the first pair
# that differs is the real one, not an attention scale's 1e-8).
TF_CONSTANTS_CLOSER = 100.0
# Weights whose gradient is zero in exact arithmetic: an attention key projection's
# bias adds q.b_key to every score of a softmax row, which the softmax ignores.
# Their computed gradient is rounding noise (measured on the tests' encoder, key_dim=4:
# 7.9e-9 in float32, 1.4e-17 in float64, against 0.19 for the value bias), which
# Adam divides by sqrt(v) + epsilon (1e-7): each framework moves the bias by its own
# noise, ~0.07 * learning rate per float32 step (1.4e-4 apart after 3 steps at lr=0.01,
# TRAINING allows 1e-4). The float32 comparison after training is information; the
# float64 one (1.1e-13 apart) and the gradient checks stay strict.
ZERO_GRADIENT = {("key", "bias")}
ZERO_GRADIENT_NOTE = ("{w}: its gradient is zero in exact arithmetic (the softmax ignores q.b_key, the same for a whole "
                      "row of scores), so float32 training moves it by rounding noise that Adam divides by sqrt(v) + "
                      "epsilon: compared as information in float32, strictly in float64")
ZERO_GRADIENT_REASON = "a weight whose gradient is zero in exact arithmetic: float32 Adam moves it by rounding noise"


@dataclass
class VerifyOptions:
    weights: str = "keras"  # "keras": copy Keras' weights by structure; "as-is": keep both
    mapping: Mapping | None = None
    batch: int = 4
    seed: int = 0
    steps: int = 3
    gradients: bool = True
    x: np.ndarray | None = None  # channels-first inputs; None: seeded random of the model's input shape
    y: np.ndarray | None = None


@dataclass
class VerifyResult:
    checks: list
    mapping: Mapping
    localisation: dict | None
    diagnoses: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed or c.info for c in self.checks)

    def report(self) -> dict:
        import json

        return {"passed": self.passed, "localisation": self.localisation, "diagnoses": self.diagnoses,
                "notes": self.notes, "config": self.config, "mapping": json.loads(self.mapping.to_json()),
                "checks": [c.to_dict() for c in self.checks]}


def _to_torch(kweights: dict, mapping: Mapping) -> dict:
    """{torch record: {torch name: array}}; a module using its own parameters takes several Keras layers' weights."""
    out = {}
    for p in mapping.pairs:
        for n, a in kweights[p.keras].items():
            out.setdefault(p.torch, {})[torch_name(p, n)] = weights_to_torch(p, n, a)
    return out


def run_verify(ks, ts, opts: VerifyOptions) -> VerifyResult:
    """Every check of the port; raises MatchError (exit 2) when the models cannot be matched."""
    rng = np.random.default_rng(opts.seed)
    loss, optimizer = ks.loss_spec(), ks.optimizer_spec()
    ts.bind(ks.input_names, ks.output_names)
    x, y, batches = draw_data(ks, loss, opts, rng, ts)
    krecs, trecs = ks.records(), ts.trace(x)
    if opts.mapping is not None:
        check_mapping(opts.mapping, krecs, trecs)
        mapping = opts.mapping
    else:
        mapping = match(krecs, trecs, strict_bias=opts.weights == "keras")
    kw0 = ks.record_weights()
    if opts.weights == "keras":
        ts.set_record_weights(_to_torch(kw0, mapping))
    notes = [n for n in (loss.get("note"), optimizer.get("note")) if n]
    notes += [f"{p.keras} <-> {p.torch}: {p.note}" for p in mapping.pairs if p.note]
    notes += list(getattr(ts, "tied", [])) + list(getattr(ts, "unused", {}).values())
    kby, tby = {k.name: k for k in krecs}, {t.path: t for t in trecs}
    suspects = [(p.keras, kby[p.keras].layer, n) for p in mapping.pairs for n in attribute_notes(kby[p.keras], tby[p.torch])]
    diagnoses = []
    if opts.weights == "as-is":
        tw0 = ts.record_weights()
        diagnoses += [n for p in mapping.pairs for n in weight_notes(p, kw0[p.keras], tw0[p.torch])]
        diagnoses += swapped_projections(mapping.pairs, kby, kw0, tw0, SAME_WEIGHT)
    checks = _eval_sanity(ts, x, diagnoses)
    sides = {d: (ks.with_dtype(d), ts.with_dtype(d)) for d in DTYPES}
    exact = ks.exact_float64()
    if exact:
        keras64, note = _float64_keras(ks, sides["float64"][1], x, exact)
        sides["float64"] = (keras64, sides["float64"][1])
        notes.append(note)
    pair_pass = {}
    whole = {p.torch: f"output of {kby[p.keras].layer} <-> torch '{tby[p.torch].module}' (whole module)"
             for p in mapping.pairs if tby[p.torch].whole_output}
    outputs64 = {}  # float64 first: the float32 output rows derive their tolerances from it
    for d in DTYPES:
        checks += _forward(sides[d], mapping, x, d, pair_pass if d == "float64" else None, whole, outputs64)
    pairs = [(p.keras, kby[p.keras].layer, p.torch) for p in mapping.pairs] + [("model output", "", "output")]
    where = localise(ks.layer_order(), pairs, pair_pass)
    if where is not None:
        _describe_gap(where, ks, ts, kby, {p.keras: tby[p.torch] for p in mapping.pairs})
        first = kby.get(where["first_differing"])
        if first is not None and first.name in {p.keras for p in mapping.pairs} and not isinstance(x, dict):
            where["diagnoses"] += padding_notes(first, tby[next(p.torch for p in mapping.pairs if p.keras == first.name)],
                                                np.asarray(x), ks.mask_value())
        diagnoses += [d for d in where["diagnoses"] if d not in diagnoses]
    if opts.gradients:
        grads64 = {}
        for d in DTYPES:  # float64 first: the float32 rows derive their tolerances from it
            checks += _gradients(sides[d], mapping, x, y, loss, d, grads64)
    bn = any(k.kind == "batch_norm" for k in krecs)
    if opts.steps:
        dropped = ks.dropout_layers()
        notes.append(f"training checks ran with dropout switched off on both sides (Keras {dropped or 'none'}: rate 0; "
                     "torch: every dropout function made the identity)")
        noise = {(p.keras, w) for p in mapping.pairs for role, w in ZERO_GRADIENT
                 if kby[p.keras].attrs.get("role") == role and optimizer["class"] in ("Adam", "AdamW")}
        notes += [ZERO_GRADIENT_NOTE.format(w=f"{k}.{w}") for k, w in sorted(noise)]
        ref = {}  # float64 first: the float32 rows derive their tolerances from it
        for d in DTYPES:
            checks += _training(sides[d], mapping, batches, loss, optimizer, d, bn, noise, ref)
        notes += [f"{c.check}: max relative difference {c.max_rel_diff:.3g} after {len(batches)} steps. "
                  f"{c.detail['diagnosis']}" for c in checks
                  if c.info and not c.passed and c.check.startswith("stock torch")]
        diagnoses += _bn_variance_diagnosis(sides["float64"], mapping, kby, tby, batches, loss, optimizer, checks)
    supported, unsupported = supported_notes(suspects, checks, where)  # attributes alone are no evidence
    diagnoses = [n for n in supported if n not in diagnoses] + diagnoses
    notes += unsupported
    diagnoses += [f"{c.check}: {c.detail['trap']}" for c in checks if c.detail.get("trap")]
    config = {"loss": {k: v for k, v in loss.items() if k != "config"}, "optimizer": {k: v for k, v in optimizer.items() if k != "config"},
              "weights": opts.weights, "batch": nrows(x), "steps": opts.steps, "seed": opts.seed}
    return VerifyResult(checks, mapping, where, diagnoses, notes, config)


def _float64_keras(ks, ts64, x, exact: list) -> tuple:
    """(the Keras float64 side the float64 checks use, a note saying which).

    TF's leaky_relu / gelu kernels, dot-product attention's scale and
    Rescaling keep a float32 constant even in float64
    (keras_impl/verify/exact.py has the measured table): a hand-written port computes them exactly, a port that
    reproduces TF (`compare.py port`'s model.py does) keeps the constant.
    Both are faithful, and they differ by ~1e-9, a thousand times the float64
    tolerance; so the float64 checks take the Keras copy whose model output
    is closer to the port's (any real bug is orders of magnitude larger)."""
    exact_side, as_tf = ks.with_dtype("float64"), ks.with_dtype("float64", exact=False)
    t = flat(ts64.outputs(x))
    d_exact = float(np.max(np.abs(flat(exact_side.outputs(x)) - t)))
    d_tf = float(np.max(np.abs(flat(as_tf.outputs(x)) - t)))
    why = ("TF's leaky_relu / gelu kernels, dot-product attention's 1/sqrt(key_dim) scale and Rescaling keep a "
           "float32 constant even in float64")
    if d_tf * TF_CONSTANTS_CLOSER < d_exact:
        return as_tf, (f"float64 checks: the port keeps TF's float32 constants in {exact} ({why}), so they use Keras "
                       f"as TF computes it (model output {d_tf:.3g} from it, {d_exact:.3g} from the exact forms)")
    return exact_side, (f"float64 checks: {exact} computed exactly in the Keras copy, as the port does ({why}; model "
                        f"output {d_exact:.3g} from it, {d_tf:.3g} from TF's float32 constants); the float32 checks "
                        "use Keras as it is")


def _describe_gap(where: dict, ks, ts, kby: dict, ts_records: dict) -> None:
    """Add what each side computes between the last agreeing pair and the first differing one."""
    desc = ks.describe()
    last = kby.get(where["last_agreeing"]) if where["last_agreeing"] else None
    keras_ops = [f"{last.name}'s activation: {last.attrs['activation']}"] if last and last.attrs.get("activation") else []
    keras_ops += [f"{n}: {desc[n]}" for n in where["between"] if n in desc]
    first = kby.get(where["first_differing"])
    if first is not None and first.attrs.get("role") == "output" and first.layer in desc:
        keras_ops.append(f"{first.layer}: {desc[first.layer]}")  # the attention itself, before its output projection
    last_t = ts_records.get(where["last_agreeing"]) if where["last_agreeing"] else None
    # ops are recorded after modules; a split module's parts have none between them
    after = "" if last_t is None else (last_t.module if last_t.whole_output else None) if last_t.module else last_t.path
    torch_ops = ts.ops_after.get(after, []) if after is not None else []
    where["keras_ops"], where["torch_ops"] = keras_ops, torch_ops
    where["diagnoses"] = (attribute_notes(first, ts_records[first.name]) + mask_notes(first, ts_records[first.name])
                          if first else []) + functional_notes(keras_ops, torch_ops)
    if keras_ops or torch_ops:
        where["text"] += (f". Keras computes: {'; '.join(keras_ops) or 'nothing'}. torch ran: "
                          f"{'; '.join(torch_ops) or 'nothing'}")


def _known_trap(name: str, a, b, **context) -> str | None:
    """shared/verdict/diagnose.py's verdict on a failing comparison (None where that module is absent)."""
    try:
        from shared.verdict.diagnose import diagnose
    except ImportError:
        return None
    return diagnose(name, a, b, **context)


def _eval_sanity(ts, x, diagnoses) -> list:
    checks = []
    if ts.dropout_calls:
        first = ts.dropout_calls[0]
        fix = "" if "dropout_p" in first else (". F.dropout's `training` defaults to True: pass training=self.training, "
                                               "or use an nn.Dropout module")
        diagnoses.append(f"dropout is on in eval mode: {first}{fix}")
        checks.append(Check("torch dropout in eval mode", "keras", "torch", float("inf"), float("inf"), 0.0, False,
                            "; ".join(ts.dropout_calls), dtype=ts.dtype))
    a, b = flat(ts.outputs(x)), flat(ts.outputs(x))
    c = compare_arrays("torch eval forward twice (deterministic)", a, b, for_check("forward", ts.dtype), a_name="torch",
                       b_name="torch", dtype=ts.dtype)
    if not c.passed:
        diagnoses.append("the torch model gives different outputs for the same input in eval mode: something random "
                         "(dropout, noise) is still on")
    return checks + [c]


def _forward(sides, mapping, x, dtype, pair_pass, whole=None, ref=None) -> list:
    """Per-pair outputs and the model output; whole: {torch record path: check
    name} for the parts whose output is their whole split module's
    (TorchRecord.whole_output), compared with the Keras layer's output.
    ref: filled by the float64 run with its model outputs; the float32 output
    rows derive their tolerances from them (shared/verdict/policy.py)."""
    whole = whole or {}
    ks, ts = sides
    tol = for_check("forward", dtype)
    kv = ks.pair_outputs(x)
    tv = ts.pair_outputs(x, [p.torch for p in mapping.pairs])
    checks = []
    for p in mapping.pairs:
        if p.transform == "params":
            continue  # parameters used directly: the module's output is not this Keras layer's
        if p.torch in tv and p.torch in whole:  # a split module's output: the Keras layer's (if the shapes can agree)
            k_out = kv.get(f"{p.keras}@layer")
            if k_out is None or k_out.shape[-1] != tv[p.torch].shape[-1]:
                continue  # e.g. Bidirectional merge_mode="sum": torch adds the halves after the module
        elif p.keras not in kv or p.torch not in tv:
            continue
        else:
            k_out = kv[p.keras]
        t_out = tv[p.torch]
        if p.kind.startswith("rnn") and k_out.ndim == 2 and t_out.ndim == 3:
            t_out = _final_state(k_out, t_out, tv.get(f"{p.torch}@h_n"))
        mask = kv.get(f"{p.keras}@layer@mask" if p.torch in whole else f"{p.keras}@mask")
        name = whole.get(p.torch, f"output of {p.keras} <-> torch '{p.torch}'")
        k_out, t_out, kept = _kept_steps(k_out, t_out, mask)
        k_out, t_out, wide = broadcast_outputs(k_out, t_out)  # HF's (1, T, H) position table: shared/flows/verify_idioms.py
        kept = "; ".join(w for w in (kept, wide) if w)
        c = verdict.judge(name + (" (steps the Keras mask keeps)" if kept and not wide else ""), "forward", dtype, k_out,
                          t_out, reason=PAIR_FLOAT32_REASON if dtype == "float32" else None,
                          **({"tolerance_from": f"{tol.derivation}; {kept}"} if kept else {}))
        checks.append(c)
        if pair_pass is not None:
            if not c.passed and all(pair_pass.values()):  # the first differing pair
                c.detail["trap"] = _known_trap(f"{p.keras} output", k_out, t_out, layer=p.keras)
            pair_pass[p.keras] = c.passed
    k_all, t_all = ks.outputs(x), ts.outputs(x)
    ref = {} if ref is None else ref  # float64 (run first) leaves its outputs; float32 derives from them
    kept = ""
    if isinstance(k_all, list):  # several outputs: one row each, named
        named = {f"model output {n}": (a, b) for n, a, b in zip(ks.output_names, k_all, t_all)}
    else:
        k_out, t_out, kept = _kept_steps(k_all, t_all, ks.output_mask(x))
        named = {"model output" + (" (steps the Keras mask keeps)" if kept else ""): (k_out, t_out)}
    if dtype == "float64":
        ref.update(named)
    outs = [verdict.judge(n, "forward", dtype, a, b, ref=ref.get(n) if dtype == "float32" else None) for n, (a, b) in named.items()]
    if kept:
        outs = [dataclasses.replace(c, tolerance_from=f"{c.tolerance_from}; {kept}; the loss skips the others too") for c in outs]
    if pair_pass is not None:
        pair_pass["model output"] = all(c.passed for c in outs)
    return checks + outs


def _kept_steps(k_out: np.ndarray, t_out: np.ndarray, mask) -> tuple:
    """(k_out, t_out, note): a sequence output compared only at the steps its Keras
    mask keeps, the masked ones set to 0 on both sides (positions stay readable).

    Masked steps are not part of what the model computes: a Keras RNN with
    return_sequences repeats the previous step's output there
    (zero_output_for_mask is False outside Bidirectional, keras/src/layers/rnn/rnn.py
    and backend/tensorflow/rnn.py, `tf.where(mask_t, output, prev_output)`), a
    packed torch RNN leaves zeros (pad_packed_sequence); every later masked
    layer ignores those steps. note is "" where no mask applies."""
    if mask is None or k_out.ndim < 3 or k_out.shape[:2] != mask.shape or mask.all():
        return k_out, t_out, ""
    if t_out.ndim == k_out.ndim and t_out.shape[0] == k_out.shape[0] and t_out.shape[1] < k_out.shape[1]:
        t_out = np.concatenate([t_out, np.zeros((t_out.shape[0], k_out.shape[1] - t_out.shape[1], *t_out.shape[2:]))], 1)
    if t_out.shape != k_out.shape:
        return k_out, t_out, ""
    keep = mask.reshape(*mask.shape, *[1] * (k_out.ndim - 2))
    note = (f"compared at the {int(mask.sum())} of {mask.size} (row, step) positions the Keras mask keeps; "
            "masked steps are set to 0 on both sides")
    return np.where(keep, k_out, 0.0), np.where(keep, t_out, 0.0), note


def _final_state(k_out: np.ndarray, t_out: np.ndarray, h_n) -> np.ndarray:
    """The torch counterpart of a Keras RNN without return_sequences: the final
    hidden state (h_n: the last valid step of a packed sequence; for a
    bidirectional module the last layer's two directions, forward first, as
    Keras' Bidirectional concatenates them); the last step where h_n is unknown."""
    if h_n is None:
        return t_out[:, -1]
    hidden = h_n.shape[-1]
    if k_out.shape[-1] == 2 * hidden and h_n.shape[0] >= 2:
        return np.concatenate([h_n[-2], h_n[-1]], axis=-1)
    return h_n[-1]


def _gradients(sides, mapping, x, y, loss, dtype, ref: dict) -> list:
    """Loss and gradient rows. ref: filled in float64 (run first) with each
    row's two float64 results; the float32 rows derive their tolerances from
    them (shared/verdict/policy.py: a gradient that is zero in exact arithmetic, whose
    float32 values are rounding noise, passes by that side's own error)."""
    ks, ts = sides
    kl, kg = ks.record_loss_and_grads(x, y, loss)
    tl, tg = ts.record_loss_and_grads(x, y, loss, ks.output_mask(x))  # Keras' loss skips masked output steps
    rows = {"loss (one batch, inference mode)": ("forward", kl, tl)}
    for p in mapping.pairs:
        for name, g in kg.get(p.keras, {}).items():
            a, b = weights_to_torch(p, name, g), tg[p.torch].get(torch_name(p, name), np.full(g.shape, np.nan))
            rows[f"gradient {p.keras}.{name} <-> torch '{p.torch}.{name}'"] = ("gradient", a, b)
    if dtype == "float64":
        ref.update({n: (a, b) for n, (_, a, b) in rows.items()})
    return [verdict.judge(n, kind, dtype, a, b, ref=ref.get(n) if dtype == "float32" else None)
            for n, (kind, a, b) in rows.items()]


def _training(sides, mapping, batches, loss, optimizer, dtype, bn, noise=frozenset(), ref=None) -> list:
    """noise: (Keras record, weight name) compared as information in float32 (ZERO_GRADIENT).
    ref: filled by the float64 run with its results; the float32 run then
    derives its tolerances from them as the engine does (shared/verdict/judge.py):
    4 x each side's own float32-vs-float64 error (+ 4 ulp), the loss curve
    step by step (shared/verdict/policy.py trajectory)."""
    ks, ts = sides
    tol = for_check("training", dtype, batchnorm=bn)
    kl, kw = ks.train(batches, loss, optimizer)
    masks = [ks.output_mask(x) for x, _ in batches]
    if any(m is not None for m in masks):  # a per-step output of a masked model: its loss skips masked steps
        batches = [(x, y, m) for (x, y), m in zip(batches, masks)]
    tl, tw = ts.train(batches, loss, optimizer)
    ref = {} if ref is None else ref
    derive = dtype == "float32" and "float64" in ref
    if dtype == "float64":
        ref["float64"] = (kl, kw, tl, tw)
    ctx = {"dtype": dtype}
    name = f"training loss per step ({len(batches)} steps, {optimizer['class']})"
    kl64, kw64, tl64, tw64 = ref["float64"] if derive else (None, {}, None, {})
    step = verdict.diverged_together(kl, tl)
    if step is not None:  # both trainings blew up alike (shared/verdict/policy.py): not a porting difference
        return verdict.diverged_rows(name, step, kl, tl, kl64, tl64, dtype=dtype)
    checks = [verdict.trajectory(name, kl, tl, kl64, tl64, dtype=dtype, batchnorm=bn)]
    for p in mapping.pairs:
        for name, a in kw[p.keras].items():
            reason = ZERO_GRADIENT_REASON if dtype == "float32" and (p.keras, name) in noise else None
            a, b = weights_to_torch(p, name, a), tw[p.torch][torch_name(p, name)]
            r64 = ((weights_to_torch(p, name, kw64[p.keras][name]), tw64[p.torch][torch_name(p, name)])
                   if derive else None)
            c = verdict.judge(f"{p.keras}.{name} after training <-> torch '{p.torch}.{name}'", "training", dtype, a, b,
                              ref=r64, batchnorm=bn, reason=reason, detail={"pair": p.keras, "name": name})
            if not c.passed and dtype == "float64":
                c.detail["trap"] = _known_trap(f"{p.keras}.{name}", a, b)
            checks.append(c)
    stock = getattr(ts, "record_stock_training", None)  # torch only: dense Embedding gradients
    dense = stock(batches, loss, optimizer) if stock is not None and dtype == "float64" else None
    if dense is not None:  # Keras' sparse Embedding update vs a stock torch loop (TRAPS.md)
        rows = [compare_arrays(f"{p.keras}.{name}", weights_to_torch(p, name, a), dense[1][p.torch][torch_name(p, name)], tol, **ctx)
                for p in mapping.pairs for name, a in kw[p.keras].items()]
        checks.append(stock_training_row(rows, optimizer["class"]))
    return checks


def _bn_variance_diagnosis(sides, mapping, kby, tby, batches, loss, optimizer, checks) -> list:
    """Name the BatchNorm statistics convention behind a failing float64 moving-statistics check."""
    failing = {c.detail.get("pair") for c in checks if c.dtype == "float64" and not c.passed
               and c.detail.get("name", "").startswith("running")}
    if not failing:
        return []
    ks, ts = sides
    k0, t0 = ks.record_weights(), ts.record_weights()
    _, k1 = ks.train(batches[:1], loss, optimizer)
    _, t1 = ts.train(batches[:1], loss, optimizer)
    out = []
    for p in mapping.pairs:
        if p.keras not in failing or kby[p.keras].kind != "batch_norm":
            continue
        k, t = kby[p.keras], tby[p.torch]
        n = int(nrows(batches[0][0]) * np.prod(t.in_shape[2:]))
        mk, tm = k.attrs["momentum"], t.attrs.get("momentum") or 0.0  # both in torch's meaning
        kb, tb = k0[p.keras], t0[p.torch]
        if not all(np.allclose(kb[s], tb[s]) for s in ("running_mean", "running_var")):
            continue  # different starting statistics: the ratios below mean nothing
        dk = k1[p.keras]["running_mean"] - kb["running_mean"]
        dt = t1[p.torch]["running_mean"] - tb["running_mean"]
        ok = np.abs(dk) > MOVED
        if tm and ok.any() and not np.isclose(tm, mk, rtol=1e-9):
            r = float(np.median(dt[ok] / dk[ok]))
            if np.isclose(r, tm / mk, rtol=RATIO_RTOL):
                out.append(f"{p.keras}: BatchNorm momentum convention: torch '{p.torch}' momentum={tm:.6g} moves the statistics "
                           f"{r:.4g}x as fast as Keras (Keras momentum {1 - mk:.6g} is torch momentum {mk:.6g})")
            continue
        # batch variance each side put into running_var: (new - (1-m)*old) / m
        bk = (k1[p.keras]["running_var"] - (1 - mk) * kb["running_var"]) / mk
        bt = (t1[p.torch]["running_var"] - (1 - mk) * tb["running_var"]) / mk
        r = float(np.median(bt / bk))
        if np.isclose(r, n / (n - 1), rtol=RATIO_RTOL):
            out.append(f"{p.keras}: torch '{p.torch}' stores the unbiased batch variance in running_var, Keras the biased "
                       f"one: each update differs by n/(n-1) = {n}/{n - 1} (n = values per channel in a batch). Fix: update "
                       "running_var with the biased variance (torch_impl/models.py BatchNorm2dKeras), momentum = 1 - Keras momentum")
    return out

