"""The Keras CNN the verify tests port by hand (tests/verify_models/torch_ports.py).

Every classic trap in one small model: a stride-2 "same" conv on an even size
(TF pads the odd extra row after), BatchNorm with Keras' epsilon and momentum,
a depthwise conv, pooling, Flatten of an NHWC map into a Dense, dropout, a
linear head. BatchNorm's statistics and affine weights are set away from
their initial values so that every mistake on them shows; the same for the biases.
"""

import keras
import numpy as np

H = W = 8
C_IN = 3
CLASSES = 4


def build(optimizer: str = "adam"):
    keras.utils.set_random_seed(0)
    x = keras.Input((H, W, C_IN), name="image")
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv1")(x)
    y = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(y)
    y = keras.layers.ReLU(name="conv1_relu")(y)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = keras.layers.Activation("relu", name="dw_act")(y)
    y = keras.layers.MaxPooling2D(2, name="pool")(y)
    y = keras.layers.Flatten(name="flat")(y)
    y = keras.layers.Dense(16, activation="relu", name="fc")(y)
    y = keras.layers.Dropout(0.5, name="drop")(y)
    y = keras.layers.Dense(CLASSES, name="head")(y)
    model = keras.Model(x, y, name="verify_cnn")
    bn = model.get_layer("bn1")
    rng = np.random.default_rng(1)
    bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.3, 8), rng.uniform(0.5, 2.0, 8)])
    for layer in model.layers:  # biases as a trained model has them (a missing one must show)
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    opt = keras.optimizers.SGD(0.05, momentum=0.9) if optimizer == "sgd" else keras.optimizers.Adam(1e-2)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=opt)
    return model


def build_sgd():
    return build("sgd")


def build_traps():
    """Activation and normalisation traps: gelu (exact), TF "same" average pooling
    (padded cells not counted, the odd pad after), LeakyReLU's layer default 0.3,
    LayerNormalization's epsilon 1e-3; a softmax head trained with label-smoothed
    categorical cross-entropy on probabilities and SGD with momentum and decoupled
    weight decay."""
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 4), name="image")
    y = keras.layers.Conv2D(6, 3, padding="same", activation="gelu", name="conv")(x)
    y = keras.layers.AveragePooling2D(3, strides=2, padding="same", name="avg")(y)
    y = keras.layers.LeakyReLU(name="leaky")(y)
    y = keras.layers.Flatten(name="flat")(y)
    y = keras.layers.Dense(8, name="fc")(y)
    y = keras.layers.LayerNormalization(name="ln")(y)
    y = keras.layers.Dense(3, activation="softmax", name="head")(y)
    model = keras.Model(x, y, name="verify_traps")
    rng = np.random.default_rng(2)
    for layer in model.layers:
        for v in layer.weights:
            if v.name in ("bias", "beta", "gamma"):
                v.assign(rng.normal(1.0 if v.name == "gamma" else 0.0, 0.2, v.shape))
    model.compile(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                  optimizer=keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-3))
    return model


def build_mlp():
    """A table model for --data CSV: 3 features -> 5 (relu) -> 2 logits."""
    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="features")
    y = keras.layers.Dense(5, activation="relu", name="hidden")(x)
    y = keras.layers.Dense(2, name="out")(y)
    model = keras.Model(x, y, name="verify_mlp")
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.Adam(1e-2))
    return model


def build_separable():
    """SeparableConv2D: one Keras layer, two torch modules (depthwise without bias, pointwise with it)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 3), name="image")
    y = keras.layers.SeparableConv2D(4, 3, padding="same", activation="relu", name="sep")(x)
    y = keras.layers.Flatten(name="flat")(y)
    y = keras.layers.Dense(2, name="head")(y)
    model = keras.Model(x, y, name="verify_separable")
    model.get_layer("sep").bias.assign(np.random.default_rng(4).normal(0, 0.2, 4))
    model.compile(loss="mse", optimizer="sgd")
    return model
