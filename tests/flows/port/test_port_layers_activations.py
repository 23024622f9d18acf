"""Every Keras activation, by name, as a layer with parameters and as a
keras.ops call, ported and proven (float64 within 1e-12 relative, float32
within FORWARD, gradients too)."""

from port_helpers import keras, ops_of, port_ok, randomise  # noqa: I001

import pytest

# Every name keras.activations.get accepts (keras/src/activations/__init__.py),
# except linear (no node) and glu: an Activation layer declares its input's
# shape as output, so Keras itself cannot run glu (it halves the axis) as a
# layer; it is tested as keras.ops.glu below.
NAMES = [
    "relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "selu", "gelu", "silu", "swish",
    "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu", "softplus", "softsign", "exponential", "mish",
    "celu", "log_sigmoid", "tanh_shrink", "hard_tanh", "soft_shrink", "hard_shrink", "squareplus",
    "sparse_plus", "sparse_sigmoid", "sparsemax",
]


def _dense_with(act):
    x = keras.Input((6,))
    h = keras.layers.Dense(8)(x)
    y = keras.layers.Activation(act, name="act")(h)
    return randomise(keras.Model(x, keras.layers.Dense(3)(y)))


def test_every_activation_by_name_in_one_model():
    """One model chaining every named activation (each after its own Dense, so
    inputs span both signs); one port, one verdict: quick."""
    x = keras.Input((6,))
    h = x
    for name in NAMES:
        h = keras.layers.Dense(8)(h)
        h = keras.layers.Activation(name, name=f"act_{name}")(h)
    model = randomise(keras.Model(x, keras.layers.Dense(3)(h)), seed=1)
    r = port_ok(model)
    fns = {n.attrs["fn"] for n in r.graph.nodes if n.op == "activation"}
    assert fns >= {"relu", "gelu", "sparsemax", "hard_silu", "sparse_plus", "exp", "leaky_relu"}


def test_activation_in_layer_argument_and_softmax_on_channels():
    """activation= on a conv (softmax over the channel axis of NCHW: dim 1)."""
    x = keras.Input((5, 5, 3))
    h = keras.layers.Conv2D(4, 3, activation="softmax")(x)
    h = keras.layers.Conv2D(4, 1, activation="gelu")(h)
    r = port_ok(randomise(keras.Model(x, keras.layers.Flatten()(h))))
    soft = [n for n in r.graph.nodes if n.op == "activation" and n.attrs["fn"] == "softmax"]
    assert soft and soft[0].attrs["axis"] == 1


LAYERS = {
    "relu_general": lambda: keras.layers.ReLU(max_value=2.5, negative_slope=0.1, threshold=0.3),
    "relu_max6": lambda: keras.layers.ReLU(max_value=6.0),
    "relu_threshold": lambda: keras.layers.ReLU(threshold=0.2),
    "leaky_default": lambda: keras.layers.LeakyReLU(),  # 0.3: the layer's default, not the function's 0.2
    "leaky": lambda: keras.layers.LeakyReLU(negative_slope=0.05),
    "elu": lambda: keras.layers.ELU(alpha=0.7),
    "softmax_axis1": lambda: keras.layers.Softmax(axis=1),
    "prelu": lambda: keras.layers.PReLU(),
    "prelu_shared": lambda: keras.layers.PReLU(shared_axes=[1]),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_activation_layers_with_parameters(kind):
    x = keras.Input((4, 6))
    h = keras.layers.Dense(6)(x)
    model = randomise(keras.Model(x, keras.layers.Dense(2)(LAYERS[kind]()(h))), seed=2)
    port_ok(model)


def test_prelu_per_channel_on_images_is_nn_prelu():
    x = keras.Input((5, 5, 3))
    h = keras.layers.Conv2D(4, 3)(x)
    h = keras.layers.PReLU(shared_axes=[1, 2])(h)
    r = port_ok(randomise(keras.Model(x, keras.layers.GlobalAveragePooling2D()(h)), seed=3))
    assert "nn.PReLU(4)" in r.source


def test_keras_ops_activations_with_parameters():
    """keras.ops calls are graph nodes with their own defaults (ops.gelu is
    approximate=True, the activation gelu is not)."""
    ops = keras.ops
    x = keras.Input((8,))
    h = keras.layers.Dense(8)(x)
    parts = [
        ops.leaky_relu(h, negative_slope=0.15), ops.elu(h, alpha=0.4), ops.celu(h, alpha=0.6), ops.gelu(h),
        ops.gelu(h, approximate=False), ops.soft_shrink(h, threshold=0.3), ops.hard_shrink(h, threshold=0.2),
        ops.squareplus(h, b=2), ops.threshold(h, 0.1, -1.0), ops.sparse_plus(h), ops.sparse_sigmoid(h),
        ops.hard_tanh(h), ops.tanh_shrink(h), ops.log_sigmoid(h), ops.glu(keras.ops.concatenate([h, h], axis=-1)),
        ops.sparsemax(h), ops.softmax(h, axis=-1), ops.log_softmax(h), ops.relu6(h), ops.hard_silu(h),
        keras.activations.relu(h, negative_slope=0.1, max_value=1.5, threshold=0.2),
        keras.activations.relu(h, negative_slope=0.25),
        ops.selu(h), ops.silu(h), ops.softplus(h), ops.softsign(h), ops.hard_sigmoid(h),
    ]
    y = keras.layers.Concatenate()(parts)
    model = randomise(keras.Model(x, keras.layers.Dense(2)(y)), seed=4)
    r = port_ok(model)
    gelus = [n.attrs.get("approximate") for n in r.graph.nodes if n.op == "activation" and n.attrs["fn"] == "gelu"]
    assert sorted(gelus) == [False, True]
    assert ops_of(r).count("activation") >= len(parts)
