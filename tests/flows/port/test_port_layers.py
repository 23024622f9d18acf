"""`compare.py port`: every supported layer kind in a tiny functional model,
ported and compared node by node (float32 within the forward tolerance,
float64 within 1e-12 relative), with gradients.

Each case builds the layer(s) on a small input; BatchNorm statistics and
weights are randomised so no output is trivially zero.
"""

from __future__ import annotations

import torch  # noqa: F401  (torch before TensorFlow)

import keras
import numpy as np
import pytest
from keras import layers

import compare
from shared.verdict.checks import format_check

L = layers


def _image(shape=(8, 8, 3)):
    return keras.Input(shape, name="x")


def _randomise(model, seed=0):
    """Non-trivial weights: BatchNorm moving stats away from 0/1, biases non-zero."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
        elif "moving_mean" in v.path or v.path.endswith("bias") or v.path.endswith("beta"):
            v.assign(rng.normal(0, 0.3, v.shape).astype(v.dtype))
    return model


def _model(build, shape=(8, 8, 3)):
    i = keras.Input(shape, name="x")
    return _randomise(keras.Model(i, build(i)))


# (id, builder, input shape). Each builder maps a KerasTensor to the output.
CASES = [
    ("dense", lambda x: L.Dense(5, activation="tanh")(x), (6,)),
    ("dense_rank4", lambda x: L.Dense(4)(x), (5, 5, 3)),
    ("conv2d_valid", lambda x: L.Conv2D(4, 3)(x), (8, 8, 3)),
    ("conv2d_same_s2_even", lambda x: L.Conv2D(4, 3, strides=2, padding="same")(x), (8, 8, 3)),
    ("conv2d_same_s2_odd", lambda x: L.Conv2D(4, (3, 5), strides=2, padding="same")(x), (7, 9, 3)),
    ("conv2d_dilated", lambda x: L.Conv2D(4, 3, dilation_rate=2, padding="same", use_bias=False)(x), (9, 9, 3)),
    ("conv2d_groups", lambda x: L.Conv2D(4, 3, groups=2, padding="same")(x), (8, 8, 4)),
    ("depthwise", lambda x: L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")(x), (8, 8, 3)),
    ("separable", lambda x: L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", activation="relu")(x), (8, 8, 3)),
    ("batchnorm", lambda x: L.BatchNormalization(epsilon=1.001e-5)(L.Conv2D(4, 1)(x)), (6, 6, 3)),
    ("batchnorm_dense", lambda x: L.BatchNormalization(center=True)(x), (6,)),
    ("batchnorm_no_scale", lambda x: L.BatchNormalization(scale=False)(L.Conv2D(4, 1)(x)), (5, 5, 3)),
    ("batchnorm_no_center_no_scale", lambda x: L.BatchNormalization(scale=False, center=False)(x), (6,)),
    ("layernorm_channels", lambda x: L.LayerNormalization(epsilon=1e-6)(L.Conv2D(4, 1)(x)), (5, 5, 3)),
    ("layernorm_table", lambda x: L.LayerNormalization()(x), (6,)),
    ("maxpool_valid", lambda x: L.MaxPooling2D(2)(x), (8, 8, 3)),
    ("maxpool_same", lambda x: L.MaxPooling2D(3, 2, padding="same")(x), (8, 8, 3)),
    ("avgpool_valid", lambda x: L.AveragePooling2D(2)(x), (8, 8, 3)),
    ("avgpool_same_asym", lambda x: L.AveragePooling2D(3, 2, padding="same")(x), (6, 6, 3)),
    ("avgpool_same_sym", lambda x: L.AveragePooling2D(3, 1, padding="same")(x), (6, 6, 3)),
    ("global_avg", lambda x: L.GlobalAveragePooling2D()(x), (5, 5, 3)),
    ("global_max_keepdims", lambda x: L.GlobalMaxPooling2D(keepdims=True)(x), (5, 5, 3)),
    ("zero_padding", lambda x: L.ZeroPadding2D(((0, 1), (2, 1)))(x), (5, 5, 3)),
    ("cropping", lambda x: L.Cropping2D(((1, 0), (1, 2)))(x), (6, 6, 3)),
    ("flatten", lambda x: L.Dense(3)(L.Flatten()(L.Conv2D(4, 3)(x))), (6, 6, 3)),
    ("reshape", lambda x: L.Conv2D(2, 1)(L.Reshape((4, 3, 4))(x)), (6, 8)),
    ("permute", lambda x: L.Permute((2, 1))(x), (4, 6)),
    ("repeat_vector", lambda x: L.RepeatVector(3)(x), (5,)),
    ("rescaling", lambda x: L.Rescaling(1 / 127.5, offset=-1)(x), (4, 4, 3)),
    ("rescaling_channels", lambda x: L.Rescaling([0.5, 2.0, 3.0], offset=[0.1, 0.2, 0.3])(x), (4, 4, 3)),
    ("normalization", lambda x: L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 4.0, 0.0])(x), (4, 4, 3)),
    ("dropout", lambda x: L.Dropout(0.5)(L.SpatialDropout2D(0.3)(x)), (4, 4, 3)),
    ("dropout_noise_shape", lambda x: L.Dropout(0.5, noise_shape=(None, 1, 1, 1))(x), (4, 4, 3)),
    ("merge_add_sub_mul", lambda x: L.Multiply()([L.Subtract()([x, L.Add()([x, x, x])]), x]), (4, 4, 3)),
    ("merge_avg_max_min", lambda x: L.Average()([L.Maximum()([x, -x]), L.Minimum()([x, 2 * x])]), (4, 4, 3)),
    ("concatenate_channels", lambda x: L.Concatenate()([x, L.Conv2D(2, 1)(x)]), (4, 4, 3)),
    ("concatenate_axis1", lambda x: L.Concatenate(axis=1)([x, L.Conv2D(3, 1)(x)]), (4, 4, 3)),
    ("ops_scalars", lambda x: (x + 3.0) * (1 / 6) - 1.0, (4, 4, 3)),
    ("ops_tensor_tensor", lambda x: x * keras.ops.sigmoid(x) / (1.0 + keras.ops.abs(x)), (4, 4, 3)),
    ("ops_left_constant", lambda x: 2.0 - x, (6,)),
    ("softmax_layer_channels", lambda x: L.Softmax()(L.Conv2D(4, 1)(x)), (4, 4, 3)),
    ("conv1d_causal_pool", lambda x: L.MaxPooling1D(3, 2, padding="same")(L.Conv1D(4, 3, padding="causal", dilation_rate=2)(x)), (9, 3)),
    ("conv1d_same_global", lambda x: L.GlobalAveragePooling1D()(L.Conv1D(4, 3, strides=2, padding="same")(x)), (8, 3)),
    ("relu_general", lambda x: L.ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5)(x), (6,)),
    ("leaky_relu_layer", lambda x: L.LeakyReLU()(x), (6,)),
    ("elu_layer", lambda x: L.ELU(alpha=0.7)(x), (6,)),
]

ACTIVATIONS = ["relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "selu", "gelu", "silu",
               "hard_sigmoid", "hard_silu", "leaky_relu", "softplus", "softsign", "exponential", "mish", "linear",
               "celu", "log_sigmoid", "tanh_shrink", "hard_tanh", "soft_shrink", "hard_shrink", "squareplus"]


def _assert_ported(model, **kw):
    res = compare.port_checks(model, **kw)
    bad = [c for c in res.checks if not c.passed and not c.info]
    assert not bad, "\n".join(format_check(c) for c in bad)
    for dtype in ("float32", "float64"):
        nodes = [c for c in res.checks if c.dtype == dtype and c.check.startswith("node ")]
        assert nodes and all(np.isfinite(c.max_abs_diff) for c in nodes)
    f64 = [c for c in res.checks if c.dtype == "float64" and c.check.startswith(("node ", "output "))]
    assert max(c.max_rel_diff for c in f64) <= 1e-12
    return res


@pytest.mark.parametrize("name,build,shape", CASES, ids=[c[0] for c in CASES])
def test_layer_ported(name, build, shape):
    model = _model(build, shape)
    res = _assert_ported(model)
    # the output is not trivially constant (a port that outputs zeros would pass)
    from keras_impl.read import graph_values

    xs = __import__("shared.flows.port_check", fromlist=["x"]).random_inputs(res.graph, 4, 0)
    out = graph_values(model, res.graph, xs)[res.graph.outputs[0]]
    assert np.std(out) > 1e-3


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_ported(act):
    model = _model(lambda x: L.Activation(act)(L.Dense(6)(x)), (5,))
    _assert_ported(model)


def test_dense_activation_and_softmax_head_gradients_use_keras_logits():
    model = _model(lambda x: L.Dense(4, activation="softmax")(L.Dense(6, activation="relu")(x)), (5,))
    res = _assert_ported(model)
    assert res.info["loss"]["kind"] == "sparse_ce" and res.info["loss"]["keras_uses_logits"]
    grads = {c.check for c in res.checks if c.check.startswith("grad ") and c.dtype == "float64"}
    assert len(grads) == 4  # both Dense layers' weight and bias


def test_sequential_model_and_channels_first_signal_input():
    model = _randomise(keras.Sequential([keras.Input((10, 2)), L.Conv1D(3, 3, activation="relu"), L.Flatten(), L.Dense(2)]))
    res = _assert_ported(model)
    assert res.info["layouts"]["inputs"][res.graph.inputs[0]]["shape"] == [None, 2, 10]  # (N, C, L)
    assert "nn.Conv1d(2, 3, kernel_size=(3,))" in res.source and ".permute(0, 2, 1)" in res.source


# One optimizer per family keeps the default suite short (test_port_command trains a small ResNet with SGD
# and a dense model with the compiled Adam).
TRAINED = [("dense_rank4", "adam"), ("batchnorm_no_scale", "sgd"), ("separable", "adam"), ("depthwise", "sgd"),
           ("layernorm_channels", "adam"), ("flatten", "sgd")]


@pytest.mark.parametrize("name,optimizer", TRAINED, ids=[f"{n}-{o}" for n, o in TRAINED])
def test_layer_trains_the_same(name, optimizer):
    """A few optimizer steps from the same start: loss curves and final weights agree."""
    from shared.data.config import TrainConfig

    build, shape = next((b, s) for n, b, s in CASES if n == name)
    res = _assert_ported(_model(build, shape), train_config=TrainConfig(optimizer, steps=3))
    curves = [c for c in res.checks if c.check.startswith("training loss curve")]
    assert len(curves) == 2 and all(c.passed for c in curves)
    assert any(c.check.startswith("trained ") for c in res.checks)
