"""Issue 22: `verify` on real pairs: keras-hub's BertBackbone, GPT2Backbone and
ViTBackbone against transformers' BertModel, GPT2Model and ViTModel (tiny
configs, HF weights copied into keras-hub by keras-hub's own converters:
tests/hf_pairs.py). Correct pairs pass in float64 within 1e-12; the real
differences between the libraries and planted bugs are located and named.
`pytest -s` prints the measured sizes. Skipped without keras_hub or transformers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow
pytest.importorskip("tensorflow")
pytest.importorskip("keras_hub")
pytest.importorskip("transformers")

import compare  # noqa: E402
from tests import hf_pairs  # noqa: E402

F64 = 1e-12  # the float64 target (relative)


def failing(res):
    return [c for c in res.checks if not c.passed and not c.info]


def check(res, name, dtype="float64"):
    return next(c for c in res.checks if c.check == name and c.dtype == dtype)


def worst(res, prefix, dtype="float64"):
    return max(c.max_rel_diff for c in res.checks if c.check.startswith(prefix) and c.dtype == dtype)


def run(pair, **kw):
    t = time.time()
    res = compare.verify_models(*pair, **kw)
    return res, time.time() - t


def _correct(name, pair, **kw):
    res, secs = run(pair, **kw)
    assert res.passed, [(c.dtype, c.check, c.max_abs_diff) for c in failing(res)][:6]
    out, grad = worst(res, "model output"), worst(res, "gradient ")
    assert out <= F64 and grad <= F64, (out, grad)
    trained = max(c.max_rel_diff for c in res.checks if "after training" in c.check and c.dtype == "float64")
    print(f"{name}: PASS in {secs:.1f} s, float64 relative: model output {out:.2g}, gradients {grad:.2g}, "
          f"weights after training {trained:.2g}")
    return res


def test_bert_pair_passes():
    res = _correct("BERT", hf_pairs.bert_pair(), train_steps=2)
    pairs = {p.keras: p.torch for p in res.mapping.pairs}
    assert pairs["token_embedding_embeddings"] == "embeddings.word_embeddings"  # a traced ReversibleEmbedding
    assert pairs["position_embedding_embeddings"] == "embeddings.position_embeddings"
    assert pairs["transformer_layer_0_self_attention_layer[query]"] == "encoder.layer.0.attention.self.query"
    assert pairs["pooled_dense"] == "pooler.dense"
    assert {"model output pooled_output", "model output sequence_output"} <= {c.check for c in res.checks}


def test_gpt2_pair_passes():
    res = _correct("GPT-2", hf_pairs.gpt2_pair(), train_steps=2)
    pairs = {p.keras: p.torch for p in res.mapping.pairs}
    # keras-hub's CachedMultiHeadAttention traced: EinsumDense projections; GPT-2's fused c_attn split in three
    assert pairs["transformer_layer_0_self_attention_layer_key_dense"] == "h.0.attn.c_attn[key]"
    assert pairs["transformer_layer_1_self_attention_layer_query_dense"] == "h.1.attn.c_attn[query]"


def test_vit_pair_passes_with_the_unused_pooler_noted():
    res = _correct("ViT", hf_pairs.vit_pair(), train_steps=2)
    pairs = {p.keras: (p.torch, p.transform) for p in res.mapping.pairs}
    assert pairs["vit_patching_and_embedding_class_token"] == ("embeddings", "params")  # cls_token used directly
    assert pairs["vit_patching_and_embedding_position_embedding"] == ("embeddings", "params")  # (1, 17, H) for (17, H)
    assert any("'pooler.dense'" in n and "not matched" in n for n in res.notes), res.notes


# ---- real differences between the libraries, left in
def test_bert_exact_gelu_for_keras_hub_tanh_gelu_is_located_and_named():
    res, _ = run(hf_pairs.bert_pair(hidden_act="gelu"), train_steps=0, gradients=False)  # BertConfig's default
    where = res.localisation
    assert where["first_differing"] == "transformer_layer_0_feedforward_output_dense", where
    assert any(d.startswith("gelu: Keras approximate=True, torch approximate='none'") for d in res.diagnoses), res.diagnoses
    c = check(res, "output of transformer_layer_0_feedforward_output_dense <-> torch 'encoder.layer.0.output.dense'")
    print(f"BERT exact gelu (HF default) for keras-hub's tanh gelu: located at {where['first_differing']}, "
          f"{c.max_abs_diff:.3g} there, model output {check(res, 'model output sequence_output').max_abs_diff:.3g}")


def test_vit_layer_norm_eps_is_located_and_named():
    res, _ = run(hf_pairs.vit_pair(match=False), train_steps=0, gradients=False)  # ViTConfig's 1e-12, keras-hub 1e-6
    first = res.localisation["first_differing"]
    assert first == "vit_encoder_transformer_block_1_layer_norm_1", first
    assert any("LayerNorm epsilon differs: Keras 1e-06, torch 'layers.0.layernorm_before' 1e-12" in d
               for d in res.diagnoses), res.diagnoses
    c = check(res, "model output")
    assert not c.passed
    print(f"ViT LayerNorm eps 1e-12 for 1e-6: first at {first}, model output off by {c.max_abs_diff:.3g}")


def test_bert_padding_idx_row_never_trains():
    res, _ = run(hf_pairs.bert_pair(pad_token_id=0), train_steps=2)  # BertConfig's default pad_token_id
    row = check(res, "token_embedding_embeddings.weight after training <-> torch 'embeddings.word_embeddings.weight'")
    assert check(res, "model output sequence_output").passed  # inference agrees
    assert not row.passed and row.where.startswith("[0,"), row.where
    print(f"BERT padding_idx=0: word_embeddings row 0 off by {row.max_abs_diff:.3g} after 2 Adam steps, at {row.where}")


# ---- planted bugs, caught and located
def test_planted_layer_norm_eps_gpt2():
    keras_model, hf = hf_pairs.gpt2_pair()
    hf.h[1].ln_2.eps = 1e-3
    res, _ = run((keras_model, hf), train_steps=0, gradients=False)
    assert res.localisation["first_differing"] == "transformer_layer_1_feedforward_layer_norm", res.localisation
    assert any("LayerNorm epsilon differs: Keras 1e-05, torch 'h.1.ln_2' 0.001" in d for d in res.diagnoses), res.diagnoses
    print(f"planted ln eps (GPT-2 h.1.ln_2): {check(res, 'model output').max_abs_diff:.3g} at the output")


def test_planted_gelu_variant_gpt2():
    res, _ = run(hf_pairs.gpt2_pair(activation_function="gelu"), train_steps=0, gradients=False)
    assert res.localisation["first_differing"] == "transformer_layer_0_feedforward_output_dense", res.localisation
    assert any(d.startswith("gelu: Keras approximate=True, torch approximate='none'") for d in res.diagnoses), res.diagnoses
    print(f"planted exact gelu (GPT-2): model output {check(res, 'model output').max_abs_diff:.3g}")


class _ShiftedPositions(torch.nn.Module):
    """GPT-2 with position ids shifted by one (arange(1, T + 1)): the classic off-by-one."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(1, input_ids.shape[1] + 1).clamp(max=hf_pairs.T - 1)[None]  # the table has T rows
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos)


def test_planted_position_offset_gpt2():
    keras_model, hf = hf_pairs.gpt2_pair()
    rng = np.random.default_rng(0)
    x = {"input_ids": rng.integers(0, hf_pairs.V, (4, hf_pairs.T)), "attention_mask": np.ones((4, hf_pairs.T), np.int64)}
    res, _ = run((keras_model, _ShiftedPositions(hf)), inputs=x, train_steps=0, gradients=False)  # dict by HF names
    first = res.localisation["first_differing"]
    assert first == "transformer_layer_0_self_attention_layer_norm", res.localisation
    print(f"planted position offset (GPT-2): first at {first}; {res.localisation['text'][:160]}")


def test_planted_missing_attention_scale_vit():
    keras_model, hf = hf_pairs.vit_pair()
    hf.layers[1].attention.scaling = 1.0  # no 1/sqrt(head_dim)
    res, _ = run((keras_model, hf), train_steps=0, gradients=False)
    where = res.localisation
    assert where["last_agreeing"] == "vit_encoder_transformer_block_2_mha[value]", where
    assert where["first_differing"] == "vit_encoder_transformer_block_2_mha[output]", where
    print(f"planted missing attention scale (ViT block 2): {where['text'][:200]}")


# ---- the idioms, each on its own
def test_tied_lm_head_counts_once():
    """GPT-2's lm_head.weight is wte.weight: keras-hub's GPT2CausalLM reads its ReversibleEmbedding twice."""
    res, secs = run(hf_pairs.gpt2_pair(lm_head=True), train_steps=1)
    assert res.passed, [(c.dtype, c.check, c.max_abs_diff) for c in failing(res)][:6]
    assert any("'lm_head.weight' is 'transformer.wte.weight' (tied)" in n for n in res.notes), res.notes
    g = check(res, "gradient token_embedding_embeddings.weight <-> torch 'transformer.wte.weight'")
    assert g.max_rel_diff <= F64, g  # the sum over both uses on each side
    print(f"GPT-2 LM head tied to wte: PASS in {secs:.1f} s, wte gradient {g.max_rel_diff:.2g} relative")


class _LayerScale(__import__("keras").layers.Layer):
    """A layer scale: x * gamma, gamma a variable the layer reads itself (traced by the reader)."""

    def build(self, shape):
        self.gamma = self.add_weight(shape=(shape[-1],), initializer="random_normal", name="gamma")

    def call(self, x):
        return x * self.gamma


def _direct_keras():
    import keras
    keras.utils.set_random_seed(0)
    ids = keras.Input((5,), dtype="int32")
    y = keras.layers.Embedding(11, 8, name="tok")(ids)
    y = keras.layers.LayerNormalization(epsilon=1e-12, name="ln")(y)
    y = keras.layers.Dense(8, name="fc")(y)
    y = _LayerScale(name="scale")(y)
    y = keras.layers.GlobalAveragePooling1D()(y)
    model = keras.Model(ids, keras.layers.Dense(2, name="head")(y))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer="adam")
    return model


class _DirectPort(torch.nn.Module):
    """One module owning the embedding table and its LayerNorm's scale and shift (F.layer_norm),
    a block owning a layer scale next to its Linear: parameters used directly."""

    def __init__(self):
        super().__init__()
        self.embeddings = torch.nn.Module()
        self.embeddings.table = torch.nn.Parameter(torch.zeros(11, 8))
        self.embeddings.ln_weight = torch.nn.Parameter(torch.ones(8))
        self.embeddings.ln_bias = torch.nn.Parameter(torch.zeros(8))
        self.block = torch.nn.Module()
        self.block.fc = torch.nn.Linear(8, 8)
        self.block.gamma = torch.nn.Parameter(torch.ones(8))
        self.head = torch.nn.Linear(8, 2)

    def forward(self, ids):
        e = self.embeddings
        x = torch.nn.functional.layer_norm(torch.nn.functional.embedding(ids, e.table), (8,), e.ln_weight, e.ln_bias, 1e-12)
        return self.head((self.block.fc(x) * self.block.gamma).mean(1))


def test_parameters_used_directly_take_several_keras_layers():
    res, _ = run((_direct_keras(), _DirectPort()), train_steps=2)
    assert res.passed, [(c.dtype, c.check, c.max_abs_diff) for c in failing(res)][:6]
    pairs = {p.keras: (p.torch, p.flatten["names"] if p.transform == "params" else None) for p in res.mapping.pairs}
    assert pairs["tok"] == ("embeddings", {"weight": "table"})
    assert pairs["ln"] == ("embeddings", {"weight": "ln_weight", "bias": "ln_bias"})  # one Keras layer, two parameters
    assert pairs["scale_gamma"] == ("block", {"weight": "gamma"})  # the layer scale


def test_broadcast_outputs_are_compared_broadcast():
    from shared.flows.verify_idioms import broadcast_outputs
    table = np.arange(12.0).reshape(1, 3, 4)
    a, b, note = broadcast_outputs(np.repeat(table, 5, 0), table)  # Keras (B, T, H), HF (1, T, H)
    assert a.shape == b.shape == (5, 3, 4) and np.array_equal(a, b) and "broadcast to (5, 3, 4)" in note
    bad = np.repeat(table, 5, 0)
    bad[2, 1, 1] += 1
    a, b, _ = broadcast_outputs(bad, table)
    assert np.argwhere(a != b).tolist() == [[2, 1, 1]]  # located in its row, not "inf, tolerance 0"
    assert broadcast_outputs(np.zeros((2, 3)), np.zeros((2, 4)))[2] == ""  # not broadcastable: left as they are
