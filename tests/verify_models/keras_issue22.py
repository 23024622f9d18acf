"""Keras models of issue 22's false alarms (tests/flows/verify/test_verify_real.py).

build_cnn: a small CNN with every "ported by hand" idiom that verify once
flagged although the port (tests/verify_models/torch_issue22.py) was correct:
stride-2 "same" Conv2D, BatchNormalization with Keras' defaults,
DepthwiseConv2D with a bias, LeakyReLU(0.2), AveragePooling2D "same"
(padded cells not counted), Flatten, Dense with exact gelu, Adam.
"""

import keras
import numpy as np

H = W = 8
C_IN = 3
CLASSES = 4


def build_cnn():
    keras.utils.set_random_seed(0)
    x = keras.Input((H, W, C_IN), name="image")
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(x)
    y = keras.layers.BatchNormalization(name="bn")(y)  # momentum 0.99, epsilon 1e-3
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=True, name="dw")(y)
    y = keras.layers.LeakyReLU(negative_slope=0.2, name="leaky")(y)
    y = keras.layers.AveragePooling2D(3, strides=2, padding="same", name="avg")(y)
    y = keras.layers.Flatten(name="flat")(y)
    y = keras.layers.Dense(16, activation="gelu", name="fc")(y)
    y = keras.layers.Dense(CLASSES, name="head")(y)
    model = keras.Model(x, y, name="issue22_cnn")
    rng = np.random.default_rng(22)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.3, 8), rng.uniform(0.5, 2.0, 8)])
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.Adam(1e-2))
    return model
