"""Keras models built from a shared ModelConfig; layer names equal torch_impl's.

Both models are plain `Sequential` stacks, one layer per named step, so that a
reader can put this file beside torch_impl/models.py and see the same list.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from shared.data.config import ModelConfig

__all__ = ["build_model", "layer_outputs", "forward"]


def build_model(config: ModelConfig, seed: int | None = None) -> keras.Sequential:
    """Build the Keras model for `config` (weights from Keras' own initialisers).

    Args:
        config: the shared description.
        seed: if given, `keras.utils.set_random_seed(seed)` first, so the
            initial weights are reproducible (torch gets them by porting, never
            by matching RNGs: TRAPS.md, Layers, "default init").
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    dt = config.dtype
    stack = [keras.Input(shape=config.input_shape, dtype=dt, name="input")]
    if config.model == "mlp":
        for i, width in enumerate(config.hidden, start=1):
            stack += [layers.Dense(width, name=f"dense{i}", dtype=dt), layers.ReLU(name=f"relu{i}", dtype=dt)]
        stack.append(layers.Dense(config.num_outputs, name="head", dtype=dt))  # linear: logits
    else:
        c1, c2 = config.conv_channels
        bn = dict(momentum=config.bn_momentum, epsilon=config.bn_epsilon, dtype=dt)
        stack += [
            layers.Conv2D(c1, 3, strides=1, padding="same", use_bias=False, name="conv1", dtype=dt),  # (B,H,W,c1)
            layers.BatchNormalization(name="bn1", **bn),
            layers.ReLU(name="relu1", dtype=dt),
            # stride 2 "same" on an even size: TF pads 0 before, 1 after.
            layers.Conv2D(c2, 3, strides=2, padding="same", use_bias=False, name="conv2", dtype=dt),  # (B,H/2,W/2,c2)
            layers.BatchNormalization(name="bn2", **bn),
            layers.ReLU(name="relu2", dtype=dt),
            layers.MaxPooling2D(2, name="pool", dtype=dt),  # (B,H/4,W/4,c2)
            layers.Flatten(name="flatten", dtype=dt),  # (B, H*W*C) in (H,W,C) order
            layers.Dense(config.dense_units, name="fc1", dtype=dt),
            layers.ReLU(name="relu3", dtype=dt),
            layers.Dense(config.num_outputs, name="head", dtype=dt),  # linear: logits
        ]
    return keras.Sequential(stack, name=f"{config.model}_{config.task}")


def forward(model: keras.Model, x: np.ndarray, training: bool = False) -> np.ndarray:
    """Logits as numpy. `training=False` puts BatchNorm in inference mode."""
    return keras.ops.convert_to_numpy(model(x, training=training))


def layer_outputs(model: keras.Model, x: np.ndarray, training: bool = False) -> dict:
    """Every layer's output, by layer name, channels-last (NHWC) as Keras has it."""
    out = {}
    h = keras.ops.convert_to_tensor(x, dtype=model.layers[0].dtype)
    for layer in model.layers:
        h = layer(h, training=training)
        out[layer.name] = keras.ops.convert_to_numpy(h)
    return out
