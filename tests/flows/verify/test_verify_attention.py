"""`compare.py verify` on hand-written attention ports (issue 13).

A one-block Transformer encoder in Keras (tests/verify_models/keras_attention.py)
against its torch ports (tests/verify_models/torch_attention_ports.py): four
nn.Linear with F.scaled_dot_product_attention or a hand-written softmax, and
nn.MultiheadAttention, whose packed in_proj_weight and out_proj are split into
Keras' four projections. Correct ports pass (forward, gradients, training,
float64 within 1e-12); planted bugs are located at the attention and named.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow
pytest.importorskip("tensorflow")

import compare  # noqa: E402
from shared.core.errors import UsageError  # noqa: E402
from shared.flows.verify import MatchError  # noqa: E402
from tests.verify_models import keras_attention as KA  # noqa: E402
from tests.verify_models import torch_attention_ports as TP  # noqa: E402

STEPS = 2
FLOAT64 = 1e-12  # the float64 target of the verify checks (shared/verdict/tolerances.py FORWARD/GRADIENT)
TARGETS = np.array([0, 1, 2, 1])


def failing(res):
    return [c for c in res.checks if not c.passed and not c.info]


def worst64(res) -> float:
    """The largest relative difference of the float64 checks (the trained key bias aside, see shared/flows/verify_run.py)."""
    return max(c.max_rel_diff for c in res.checks if c.dtype == "float64" and not c.info and "after training" not in c.check)


def port_for(kind: str, causal: bool = False, bug=None, key_dim: int = KA.KEY_DIM):
    if kind == "packed":
        return TP.PackedPort(causal=causal, bug=bug)
    return TP.ExplicitPort(key_dim=key_dim, causal=causal, softmax=kind == "softmax", bug=bug)


@pytest.mark.parametrize("kind,causal", [("sdpa", False), ("packed", False), ("softmax", True), ("packed", True)])
def test_correct_attention_ports_verify(kind, causal):
    res = compare.verify_models(KA.build(causal=causal), port_for(kind, causal), train_steps=STEPS)
    assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
    assert res.localisation is None
    a = "attn" if kind == "packed" else None
    want = [f"{a}[{r}]" for r in ("query", "key", "value", "output")] if a else ["q", "k", "v", "o"]
    assert [p.torch for p in res.mapping.pairs] == want + ["ln1", "ffn1", "ffn2", "ln2", "head"]
    assert [p.keras for p in res.mapping.pairs][:4] == ["mha[query]", "mha[key]", "mha[value]", "mha[output]"]
    assert all(p.kind == "linear" for p in res.mapping.pairs[:4])
    kinds = {c.check.split(" ")[0] for c in res.checks if c.dtype == "float64"}
    assert {"output", "model", "gradient", "training"} <= kinds
    if a:  # the whole module's output against the Keras layer's; out_proj is no record of its own
        whole = [c for c in res.checks if c.dtype == "float64" and "(whole module)" in c.check]
        assert len(whole) == 1 and whole[0].passed and "output of mha" in whole[0].check
        assert not any("out_proj" in p.torch for p in res.mapping.pairs)
        trained = [c for c in res.checks if c.dtype == "float64" and "after training <-> torch 'attn[key].weight'" in c.check]
        assert trained and trained[0].passed  # the in_proj_weight rows are trained and compared
    assert worst64(res) <= FLOAT64, worst64(res)
    key_bias = [c for c in res.checks if ".bias after training" in c.check and c.check.startswith("mha[key]")]
    assert len(key_bias) == 2 and key_bias[1].info and key_bias[1].dtype == "float32"  # Adam: rounding noise, see ZERO_GRADIENT
    assert key_bias[0].dtype == "float64" and key_bias[0].passed and not key_bias[0].info
    print(f"{kind} causal={causal}: float64 worst {worst64(res):.2g}, {len(res.checks)} checks; key bias after "
          f"{STEPS} Adam steps: float32 {key_bias[1].max_rel_diff:.2g} relative (information), float64 {key_bias[0].max_rel_diff:.2g}")


def test_projections_called_out_of_order_are_matched_by_name():
    """v(x), k(x), q(x): four (8, 8) Linear in call order would take Keras' query weights into v."""
    port = port_for("sdpa")
    port.key_first = True
    res = compare.verify_models(KA.build(), port, train_steps=0)
    assert [(p.keras, p.torch) for p in res.mapping.pairs[:4]] == [
        ("mha[query]", "q"), ("mha[key]", "k"), ("mha[value]", "v"), ("mha[output]", "o")]
    assert res.passed, [c.check for c in failing(res)]


@pytest.mark.parametrize("which", ["transformer_encoder_layer", "kdim_vdim"])
def test_other_nn_multihead_attention_ports_verify(which):
    """nn.TransformerEncoderLayer (its self_attn, norm1, linear1, linear2, norm2 in Keras' order)
    and an nn.MultiheadAttention with kdim/vdim (separate q/k/v_proj_weight)."""
    model, port = (KA.build(), TP.LayerPort()) if which != "kdim_vdim" else (KA.build_cross(), TP.CrossPort())
    res = compare.verify_models(model, port, train_steps=STEPS)
    assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
    attn = "block.self_attn" if which != "kdim_vdim" else "attn"
    assert [p.torch for p in res.mapping.pairs if p.keras.startswith("mha")] == [
        f"{attn}[{r}]" for r in ("query", "key", "value", "output")]
    assert worst64(res) <= FLOAT64


@pytest.mark.parametrize("kind", ["sdpa", "packed"])
def test_attention_dropout_is_switched_off_for_training(kind):
    """Keras MultiHeadAttention(dropout=0.1) (its einsum path): dropout off on both sides for
    the training checks, including F.scaled_dot_product_attention's dropout_p and
    nn.MultiheadAttention's dropout, which no F.dropout call shows."""
    port = TP.PackedPort(dropout=0.1) if kind == "packed" else port_for(kind)
    port.dropout = 0.1
    res = compare.verify_models(KA.build(dropout=0.1), port, train_steps=STEPS)
    assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
    assert worst64(res) <= FLOAT64 and any("dropout switched off" in n for n in res.notes)


def test_scaled_dot_product_attention_dropout_in_eval_mode_is_caught():
    port = port_for("sdpa", bug="eval_dropout")
    port.dropout = 0.1
    res = compare.verify_models(KA.build(dropout=0.1), port, train_steps=0, gradients=False)
    assert not res.passed
    assert any("scaled_dot_product_attention(dropout_p=0.1)" in d and "self.training" in d for d in res.diagnoses), res.diagnoses


@pytest.mark.parametrize("style", ["chunk", "view"])
def test_fused_qkv_linear_is_split_into_three_projections(style):
    """One nn.Linear(8, 24) for q, k, v (nanoGPT's chunk(3, -1), timm's view(B, T, 3, H, dk)):
    its row blocks take Keras' query, key and value weights, each compared on its own slice."""
    res = compare.verify_models(KA.build(), TP.FusedPort(style=style), train_steps=STEPS)
    assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
    assert [p.torch for p in res.mapping.pairs[:4]] == ["qkv[query]", "qkv[key]", "qkv[value]", "proj"]
    sliced = [c for c in res.checks if c.dtype == "float64" and c.check.startswith("output of mha[key] <-> torch 'qkv[key]'")]
    assert len(sliced) == 1 and sliced[0].passed
    assert worst64(res) <= FLOAT64


# bug, Keras causal, port, first differing pair, what the diagnosis says
BUGS = [
    ("scale", False, "sdpa", "mha[output]", "1/sqrt(key_dim) = 1/sqrt(4) = 0.5, torch by 0.353553 = 1/sqrt(8)"),
    ("head_order", False, "softmax", "mha[output]", "view(B, T, 4, 2) = (B, T, key_dim, heads)"),
    ("no_causal", True, "sdpa", "mha[output]", "use_causal_mask=True"),
    ("no_causal", True, "packed", "mha[output]", "use_causal_mask=True"),
    ("ln_eps", False, "packed", "ln1", "LayerNorm epsilon differs: Keras 0.001, torch 'ln1' 1e-05"),
]


@pytest.mark.parametrize("bug,causal,kind,first,diagnosis", BUGS, ids=[f"{b[0]}-{b[2]}" for b in BUGS])
def test_planted_attention_bugs_are_caught_and_located(bug, causal, kind, first, diagnosis):
    res = compare.verify_models(KA.build(causal=causal), port_for(kind, causal, bug), train_steps=0, gradients=False)
    assert not res.passed
    loc = res.localisation
    assert loc["first_differing"] == first, loc
    if first == "mha[output]" and kind != "packed":
        assert loc["last_agreeing"] == "mha[value]", loc  # the projections agree: the bug is in the attention
        assert "attention(num_heads=2, key_dim=4" in loc["text"], loc["text"]
    if first == "ln1":  # after the whole nn.MultiheadAttention: the residual add on both sides
        assert loc["last_agreeing"] == "mha[output]" and loc["between"] == ["res1"], loc
        assert "torch ran: add()" in loc["text"], loc["text"]
    pair = next(c for c in failing(res) if c.dtype == "float64" and c.check.startswith("output of "))
    assert pair.check.startswith(f"output of {first if kind != 'packed' else first.split('[')[0] + ' '}"), pair.check
    assert pair.max_abs_diff > 1e6 * pair.tolerance, pair
    print(f"{bug} ({kind}): {pair.check} differs by {pair.max_rel_diff:.3g} relative (float64)")
    assert any(diagnosis in d for d in res.diagnoses), res.diagnoses


def test_key_dim_other_than_width_over_heads_explicit_port_passes():
    """key_dim=3 with D=8, 2 heads: no nn.MultiheadAttention can do it; four Linear (8 -> 6, 6 -> 8) can.
    1/sqrt(3) is not a float32 number: the float64 Keras copy scales exactly (keras_impl/verify/__init__.py)."""
    res = compare.verify_models(KA.build(key_dim=3), port_for("sdpa", key_dim=3), train_steps=STEPS)
    assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
    assert res.mapping.pairs[0].keras == "mha[query]" and worst64(res) <= FLOAT64
    assert any("['mha'] computed exactly" in n for n in res.notes), res.notes


def test_keras_float64_attention_scale_is_a_float32_constant():
    """The false alarm the exact float64 copy removes: Keras as it is, cast to float64, scales by
    float32(1/sqrt(3)) and is ~1e-9 relative off a correct port, 1000x the float64 tolerance."""
    from keras_impl.read import cast_model
    from keras_impl.side import KerasSide

    x = np.random.default_rng(0).standard_normal((4, KA.STEPS, KA.DIM))
    model = KA.build(key_dim=3)
    exact = KerasSide.for_verify(model).with_dtype("float64").outputs(x)
    as_is = KerasSide.for_verify(cast_model(model, "float64")).outputs(x)
    rel = float(np.max(np.abs(as_is - exact)) / np.max(np.abs(exact)))
    assert 1e3 * FLOAT64 < rel < 1e-6, rel
    print(f"float64 Keras with its float32 scale: {rel:.2g} relative off the exact one")


def test_nn_multihead_attention_cannot_take_key_dim_other_than_width_over_heads():
    with pytest.raises(MatchError) as e:
        compare.verify_models(KA.build(key_dim=3), TP.PackedPort(), train_steps=0, gradients=False)
    msg = str(e.value)
    assert msg.startswith("mha[query]: Keras MultiHeadAttention weight is (6, 8)"), msg
    assert "num_heads*key_dim = 2*3 = 6" in msg and "embed_dim = 8" in msg and "four nn.Linear" in msg, msg


def test_num_heads_mismatch_is_named():
    port = TP.PackedPort()
    port.attn = torch.nn.MultiheadAttention(KA.DIM, 4, batch_first=True)  # same shapes, other heads
    res = compare.verify_models(KA.build(), port, train_steps=0, gradients=False)
    assert not res.passed and res.localisation["first_differing"] == "mha[output]"
    assert any("num_heads=2 (key_dim=4), torch 'attn' num_heads=4" in d for d in res.diagnoses), res.diagnoses


def test_add_bias_kv_is_refused():
    port = TP.PackedPort()
    port.attn = torch.nn.MultiheadAttention(KA.DIM, 2, batch_first=True, add_bias_kv=True)
    with pytest.raises(UsageError, match="add_bias_kv"):
        compare.verify_models(KA.build(), port, train_steps=0, gradients=False)


def test_masked_port_with_keras_mask_semantics_passes_everywhere():
    """Keras' mask on padded tokens (query AND key masks, fully masked rows uniform)
    written out in torch: every pair agrees at every step."""
    res = compare.verify_models(KA.build_masked(), TP.MaskedEncoder(), KA.padded_ids(), targets=TARGETS, train_steps=STEPS)
    assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
    assert worst64(res) <= FLOAT64
    from keras_impl.side import KerasSide

    assert "masks=['query', 'value']" in KerasSide.for_verify(KA.build_masked()).describe()["mha"]  # Keras did mask


@pytest.mark.parametrize("causal", [False, True])
def test_key_padding_mask_port_agrees_on_the_real_tokens(causal):
    """nn.MultiheadAttention(key_padding_mask=ids == 0) (+ is_causal) passes: the
    attention output agrees at every real token (at padded query rows Keras' fully
    masked rows are uniform, torch attends to the real tokens: the masked pooling
    drops both, and verify compares sequences at the steps Keras' mask keeps)."""
    from keras_impl.side import KerasSide
    from torch_impl.side import TorchSide

    ids = KA.padded_ids()
    port = TP.MaskedEncoder(causal=causal, packed=True)
    model = KA.build_masked(causal)
    res = compare.verify_models(model, port, ids, targets=TARGETS, train_steps=STEPS)
    # per-pair sequence outputs are compared where Keras' mask keeps the step (the mask
    # survives MultiHeadAttention, which strips it from its inputs, to the residual Add)
    assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
    assert worst64(res) <= FLOAT64
    masked = [c for c in res.checks if c.dtype == "float64" and c.check.startswith(("output of ln1", "output of ffn1"))]
    assert len(masked) == 2 and all(c.passed for c in masked)
    keep = ids != 0
    k64 = KerasSide.for_verify(model).with_dtype("float64").pair_outputs(ids)["mha[output]@layer"]
    t64 = TorchSide(port).with_dtype("float64").pair_outputs(ids, ["attn[output]"])["attn[output]"]
    diff = np.abs(k64 - t64)
    assert diff[keep].max() <= FLOAT64 * max(1.0, np.abs(k64).max()), diff[keep].max()
    assert diff[~keep].max() > 1e-3  # the padded rows do differ: a masked comparison is needed there


def _packed_state(model, swap_qk: bool = False) -> dict:
    """PackedPort's state_dict from the Keras model's neutral weights, copied by hand
    (in_proj rows query, key, value; swap_qk: the key rows first, the classic slip)."""
    from keras_impl.read import read_graph

    w = {f"{n.name}.{k}": torch.from_numpy(np.asarray(v, dtype=np.float32)) for n in read_graph(model).nodes
         for k, v in n.weights.items()}
    order = ("key", "query", "value") if swap_qk else ("query", "key", "value")
    state = {"attn.in_proj_weight": torch.cat([w[f"mha.{r}.weight"] for r in order]),
             "attn.in_proj_bias": torch.cat([w[f"mha.{r}.bias"] for r in order]),
             "attn.out_proj.weight": w["mha.output.weight"], "attn.out_proj.bias": w["mha.output.bias"]}
    for layer in ("ln1", "ffn1", "ffn2", "ln2", "head"):
        state.update({f"{layer}.{k}": w[f"{layer}.{k}"] for k in ("weight", "bias")})
    return state


@pytest.mark.parametrize("swap_qk", [False, True])
def test_hand_copied_nn_multihead_attention_weights_as_is(swap_qk):
    """--weights as-is reads the in_proj_weight rows as the four records' weights: a correct
    hand copy passes; query and key rows swapped fail at the attention and are named."""
    model = KA.build()
    port = TP.PackedPort()
    port.load_state_dict(_packed_state(model, swap_qk), strict=True)
    res = compare.verify_models(model, port, weights="as-is", train_steps=0)
    if not swap_qk:
        assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
        assert not res.diagnoses, res.diagnoses
        return
    assert not res.passed and res.localisation["first_differing"] == "mha[output]", res.localisation
    assert any("mha[query]: torch 'attn[query]' holds Keras' key projection" in d for d in res.diagnoses), res.diagnoses
    assert any("mha[key]: torch 'attn[key]' holds Keras' query projection" in d for d in res.diagnoses), res.diagnoses


@pytest.mark.parametrize("second_mask", [None, "keys"])
def test_second_block_after_keras_dropped_the_mask(second_mask):
    """Two masked blocks: Keras' first MultiHeadAttention strips the padding mask from its
    inputs, so its second one attends to padded steps (the pooling stays masked). A port
    doing the same passes (the per-pair comparisons keep the steps Keras keeps and agree);
    the natural port, masking both blocks, differs at the second attention, named."""
    res = compare.verify_models(KA.build_two_blocks(), TP.TwoBlocks(second_mask=second_mask), KA.padded_ids(),
                                targets=TARGETS, train_steps=0 if second_mask else STEPS)
    if second_mask is None:
        assert res.passed, [f"{c.check} [{c.dtype}] {c.max_rel_diff:.3g}" for c in failing(res)]
        assert worst64(res) <= FLOAT64
        return
    assert not res.passed and res.localisation["first_differing"] == "mha2[output]", res.localisation
    assert res.localisation["last_agreeing"] == "mha2[value]"
    assert any(d.startswith("padding mask: no mask reaches this Keras MultiHeadAttention") for d in res.diagnoses), res.diagnoses
    pair = next(c for c in failing(res) if c.dtype == "float64" and c.check.startswith("output of mha2[output]"))
    print(f"second block masked in torch only: {pair.check} differs by {pair.max_rel_diff:.3g} relative (float64)")

