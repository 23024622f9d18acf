"""Issue 22: verify matches Hugging Face idioms in hand-written torch ports.

Tiny Keras models of stock layers against torch modules written the way
transformers writes them (its own modules where practical, built from
config-free constructors: nothing downloads).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow
pytest.importorskip("tensorflow")

from tests.tv import load_torchvision  # noqa: E402

load_torchvision()  # before transformers (tests/tv.py)
pytorch_utils = pytest.importorskip("transformers.pytorch_utils")

import keras  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import compare  # noqa: E402

D, T = 8, 5


def failing(res):
    return [c for c in res.checks if not c.passed and not c.info]


def check(res, name, dtype):
    return next(c for c in res.checks if c.check == name and c.dtype == dtype)


def gpt2_mlp_keras():
    """GPT-2's MLP: Dense(4D, gelu tanh) -> Dense(D), on (T, D) tokens."""
    keras.utils.set_random_seed(0)
    x = keras.Input((T, D))
    y = keras.ops.gelu(keras.layers.Dense(4 * D, name="c_fc")(x), approximate=True)
    y = keras.layers.Dense(D, name="c_proj")(y)
    y = keras.layers.GlobalAveragePooling1D(name="pool")(y)
    model = keras.Model(x, keras.layers.Dense(2, name="head")(y))
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.Adam(1e-2))
    return model


class GPT2MLP(nn.Module):
    """transformers' GPT2MLP layout: two HF Conv1D (weight (in, out)), gelu_new."""

    def __init__(self):
        super().__init__()
        self.c_fc = pytorch_utils.Conv1D(4 * D, D)
        self.c_proj = pytorch_utils.Conv1D(D, 4 * D)
        self.head = nn.Linear(D, 2)

    def forward(self, x):
        y = self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))
        return self.head(y.mean(1))


def test_hf_conv1d_is_a_linear_with_its_weight_transposed():
    port = GPT2MLP()
    res = compare.verify_models(gpt2_mlp_keras(), port, train_steps=2)
    assert res.passed, [(c.dtype, c.check, c.max_abs_diff) for c in failing(res)]
    assert [(p.keras, p.torch, p.kind) for p in res.mapping.pairs] == [
        ("c_fc", "c_fc", "linear"), ("c_proj", "c_proj", "linear"), ("head", "head", "linear")]
    kernel = gpt2_mlp_keras().get_layer("c_fc").kernel.numpy()
    assert np.array_equal(port.c_fc.weight.detach().numpy(), kernel)  # Conv1D keeps Keras' (in, out) as it is
    g = check(res, "gradient c_fc.weight <-> torch 'c_fc.weight'", "float64")
    assert g.max_abs_diff < 1e-15, g
    print(f"HF Conv1D: float64 output {check(res, 'model output', 'float64').max_abs_diff:.2g}, c_fc gradient {g.max_abs_diff:.2g}")


def test_gpt2_conv1d_weight_copied_into_linear_untransposed_is_caught():
    """The trap: Conv1D's (in, out) weight loaded into nn.Linear as is (square here, so it fits)."""
    class LinearPort(GPT2MLP):
        def __init__(self):
            super().__init__()
            self.c_fc, self.c_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
    keras_model, good = gpt2_mlp_keras(), GPT2MLP()
    compare.verify_models(keras_model, good, train_steps=0, gradients=False)  # Keras' weights into the HF port
    bad = LinearPort()
    state = good.state_dict()
    bad.load_state_dict({k: (v.reshape(bad.state_dict()[k].shape) if "c_" in k and k.endswith("weight") else v)
                         for k, v in state.items()})  # the classic: a reshape instead of a transpose
    res = compare.verify_models(keras_model, bad, weights="as-is", train_steps=0, gradients=False)
    out = check(res, "model output", "float64")
    assert not res.passed and res.localisation["first_differing"] == "c_fc", res.localisation
    print(f"GPT-2 Conv1D weight reshaped, not transposed: c_fc first differing, model output off by {out.max_abs_diff:.3g}")


# ---- traps of HF ports (sizes for TRAPS.md, "Hugging Face ports"); pytest -s prints them
V = 11  # vocabulary


def text_keras():
    """Embedding -> LayerNormalization(eps=1e-12, BERT's) -> mean -> Dense: ids (T,)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((T,), dtype="int32")
    y = keras.layers.Embedding(V, D, name="wte")(x)
    y = keras.layers.LayerNormalization(epsilon=1e-12, name="ln")(y)
    y = keras.layers.GlobalAveragePooling1D(name="pool")(y)
    model = keras.Model(x, keras.layers.Dense(2, name="head")(y))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.SGD(0.5))
    return model


class TextPort(nn.Module):
    padding_idx, ln_eps = None, 1e-12

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, D, padding_idx=self.padding_idx)
        self.ln = nn.LayerNorm(D, eps=self.ln_eps)
        self.head = nn.Linear(D, 2)

    def forward(self, ids):
        return self.head(self.ln(self.wte(ids)).mean(1))


def test_text_port_passes():
    res = compare.verify_models(text_keras(), TextPort(), train_steps=2)
    assert res.passed, [(c.dtype, c.check, c.max_abs_diff) for c in failing(res)]


def test_padding_idx_row_is_frozen_in_torch_and_trained_in_keras():
    class PaddingIdx(TextPort):
        padding_idx = 0  # HF's pad_token_id: no gradient for row 0; Keras' Embedding trains it
    res = compare.verify_models(text_keras(), PaddingIdx(), train_steps=2)
    row = check(res, "wte.weight after training <-> torch 'wte.weight'", "float64")
    grad = check(res, "gradient wte.weight <-> torch 'wte.weight'", "float64")
    assert check(res, "model output", "float64").passed  # inference agrees
    assert not grad.passed and grad.where.startswith("[0,"), grad.where  # row 0 located
    assert not row.passed and row.where.startswith("[0,"), row.where
    print(f"padding_idx=0: gradient of row 0 off by {grad.max_abs_diff:.3g}, trained row 0 by {row.max_abs_diff:.3g} after 2 SGD(0.5) steps")


def test_layer_norm_eps_bert_vs_torch_default():
    class Eps(TextPort):
        ln_eps = 1e-5  # torch's default for BERT's 1e-12
    res = compare.verify_models(text_keras(), Eps(), train_steps=0, gradients=False)
    ln = check(res, "output of ln <-> torch 'ln'", "float64")
    assert res.localisation["first_differing"] == "ln" and not ln.passed
    assert any("LayerNorm epsilon differs: Keras 1e-12, torch 'ln' 1e-05" in d for d in res.diagnoses), res.diagnoses
    print(f"LayerNorm eps 1e-5 for 1e-12: ln output off by {ln.max_abs_diff:.3g} (float64), located at ln")
