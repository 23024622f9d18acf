"""Both twins build from one ModelConfig with the same layer names, tensor names,
shapes, parameter counts and dtypes; ModelConfig round-trips and refuses bad
values naming them."""

import torch  # noqa: F401  (torch before TensorFlow/Keras, as Keras' own tests do)

import re

import numpy as np
import pytest

from helpers import pair_dtype_params
from keras_impl import models as kmodels
from keras_impl import weights as kweights
from shared.data.config import ModelConfig, layer_names, parameter_spec
from shared.data.registry import PAIRS
from torch_impl import models as tmodels
from torch_impl import weights as tweights

PARAMS = pair_dtype_params()

# Pinned parameter counts (keras-hub style), BatchNorm moving statistics
# included (Keras count_params counts non-trainable weights too):
#   digits/mlp 64 -> 25 -> 15 -> 10:
#     64*25+25 = 1625, 25*15+15 = 390, 15*10+10 = 160            -> 2175
#   breast_cancer/mlp 30 -> 25 -> 15 -> 1:
#     30*25+25 = 775, 390, 15*1+1 = 16                            -> 1181
#   builtin-multilabel/cnn, 32x32x3, conv (8, 16), fc 32, 10 outputs:
#     conv1 3*3*3*8 = 216 (no bias), bn1 4*8 = 32,
#     conv2 3*3*8*16 = 1152, bn2 4*16 = 64,
#     flatten 8*8*16 = 1024 -> fc1 1024*32+32 = 32800, head 32*10+10 = 330
#                                                                 -> 34594
#   builtin-regression/cnn: same with a 2-wide head 32*2+2 = 66  -> 34330
PARAM_COUNTS = {
    "digits/mlp": 2175,
    "breast_cancer/mlp": 1181,
    "builtin-multilabel/cnn": 34594,
    "builtin-regression/cnn": 34330,
}
# Trainable only (moving mean/variance excluded): cnn minus 2*8 + 2*16 = 48.
TRAINABLE_COUNTS = {
    "digits/mlp": 2175,
    "breast_cancer/mlp": 1181,
    "builtin-multilabel/cnn": 34594 - 48,
    "builtin-regression/cnn": 34330 - 48,
}


@pytest.fixture(scope="module")
def built():
    """(keras model, torch model) per (pair name, dtype), built once per module."""
    cache = {}

    def get(pair, dtype):
        key = (pair.name, dtype)
        if key not in cache:
            config = pair.config(dtype)
            cache[key] = (config, kmodels.build_model(config, seed=0), tmodels.build_model(config, seed=0))
        return cache[key]

    return get


def test_param_counts_cover_every_pair():
    assert sorted(PARAM_COUNTS) == sorted(p.name for p in PAIRS)


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_layer_names(built, pair, dtype):
    config, k, t = built(pair, dtype)
    want = layer_names(config)
    assert [layer.name for layer in k.layers] == want
    assert [n for n, _ in t.named_children()] == want


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_portable_names_and_shapes(built, pair, dtype):
    config, k, t = built(pair, dtype)
    spec = parameter_spec(config)
    k_tensors = kweights.to_portable(k, config)
    t_tensors = tweights.to_portable(t, config)
    # Same names in the same (spec) order on both sides.
    assert list(k_tensors) == list(spec)
    assert list(t_tensors) == list(spec)
    assert {n: a.shape for n, a in k_tensors.items()} == spec
    assert {n: a.shape for n, a in t_tensors.items()} == spec
    # The torch state_dict holds exactly the spec plus BN's num_batches_tracked.
    extra = set(t.state_dict()) - set(spec)
    assert extra == {n for n in t.state_dict() if n.endswith("num_batches_tracked")}
    assert len(extra) == (2 if config.model == "cnn" else 0)


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_parameter_counts(built, pair, dtype):
    config, k, t = built(pair, dtype)
    torch_total = sum(p.numel() for p in t.parameters()) + sum(
        b.numel() for n, b in t.named_buffers() if not n.endswith("num_batches_tracked")
    )
    assert k.count_params() == PARAM_COUNTS[pair.name]
    assert torch_total == PARAM_COUNTS[pair.name]
    assert sum(int(np.prod(s)) for s in parameter_spec(config).values()) == PARAM_COUNTS[pair.name]
    k_trainable = sum(int(np.prod(v.shape)) for v in k.trainable_weights)
    t_trainable = sum(p.numel() for p in t.parameters() if p.requires_grad)
    assert k_trainable == t_trainable == TRAINABLE_COUNTS[pair.name]


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_weight_dtypes(built, pair, dtype):
    config, k, t = built(pair, dtype)
    assert {v.path: str(v.dtype) for v in k.weights} == {v.path: dtype for v in k.weights}
    want = {"float32": torch.float32, "float64": torch.float64}[dtype]
    state = t.state_dict()
    assert {n: state[n].dtype for n in parameter_spec(config)} == {n: want for n in parameter_spec(config)}
    # And the portable arrays carry it.
    assert {str(a.dtype) for a in kweights.to_portable(k, config).values()} == {dtype}
    assert {str(a.dtype) for a in tweights.to_portable(t, config).values()} == {dtype}


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_activation_dtypes(built, pair, dtype):
    """float64 must survive the whole forward pass (Keras casts float64 input to
    float32 unless every layer is float64: TRAPS.md, Numerics)."""
    config, k, t = built(pair, dtype)
    x = np.zeros((2, *config.input_shape), dtype=dtype)  # (2, features) or (2, H, W, C)
    assert {str(a.dtype) for a in kmodels.layer_outputs(k, x).values()} == {dtype}
    x_t = np.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x
    assert {str(a.dtype) for a in tmodels.layer_outputs(t, x_t).values()} == {dtype}


@pytest.mark.parametrize("pair, dtype", PARAMS)
def test_config_round_trip(pair, dtype):
    config = pair.config(dtype, hidden=(7, 5), conv_channels=(4, 6), dense_units=9, bn_epsilon=1e-4)
    d = config.to_dict()
    assert d["input_shape"] == list(pair.input_shape)  # JSON-friendly lists
    assert d["dtype"] == dtype
    back = ModelConfig.from_dict(d)
    assert back == config
    assert back.to_dict() == d


def test_config_from_dict_rejects_unknown_field():
    d = PAIRS[0].config().to_dict()
    d["units"] = 3
    with pytest.raises(ValueError, match=r"unknown ModelConfig fields: \['units'\]"):
        ModelConfig.from_dict(d)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(model="resnet"), r"model=\'resnet\'"),
        (dict(task="ranking"), r"task=\'ranking\'"),
        (dict(dtype="float16"), r"dtype=\'float16\'"),
        (dict(num_outputs=0), r"num_outputs=0"),
        (dict(input_shape=(8, 8, 3)), r"input_shape=\(8, 8, 3\)"),  # mlp takes (features,)
        (dict(model="cnn", input_shape=(64,)), r"input_shape=\(64,\)"),  # cnn takes (H, W, C)
        (dict(model="cnn", input_shape=(8, 8, 3), conv_channels=(4, 8, 16)), r"\(4, 8, 16\)"),
    ],
    ids=["model", "task", "dtype", "num_outputs", "mlp-input_shape", "cnn-input_shape", "conv_channels"],
)
def test_config_rejects_bad_values(changes, message):
    base = dict(model="mlp", task="multiclass", input_shape=(64,), num_outputs=10)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **changes})


@pytest.mark.parametrize(
    "changes, fragment",
    [
        (dict(hidden=(0, 15)), "hidden=(0, 15)"),
        (dict(dense_units=0), "dense_units=0"),
        (dict(bn_epsilon=-1.0), "bn_epsilon=-1.0"),
        (dict(bn_momentum=5.0), "bn_momentum=5.0"),
    ],
    ids=["zero-width", "zero-units", "negative-eps", "momentum-above-1"],
)
def test_config_rejects_sizes_and_bn_settings_that_would_fail_inside_a_framework(changes, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        ModelConfig("cnn", "multilabel", (8, 8, 3), 2, **changes)


def test_config_rejects_images_too_small_for_the_cnn():
    # 2x2 -> stride-2 conv 1x1 -> 2x2 pool 0x0: nothing left to flatten.
    with pytest.raises(ValueError, match=r"at least 3x3.*input_shape=\(2, 2, 3\)"):
        ModelConfig("cnn", "multilabel", (2, 2, 3), 2)
    assert ModelConfig("cnn", "multilabel", (4, 4, 3), 2).flatten_hwc == (1, 1, 16)
