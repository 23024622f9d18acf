"""Keras text models with a padding mask (`Embedding(mask_zero=True)`) that the
verify tests port by hand with pack_padded_sequence (torch_masked_ports.py):

- `build_stacked`: Embedding -> LSTM(return_sequences) -> LSTM -> Dense;
- `build_bigru`: Embedding -> Bidirectional(GRU) -> Dense;
- `build_pooled`: Embedding -> LSTM(return_sequences) -> GlobalAveragePooling1D
  (a masked mean) -> Dense.

Ids are right-padded with 0; biases are set away from zero so that a
mistake on them shows. Trained with SGD (Keras' Adam on an Embedding's
sparse gradient follows no dense torch optimizer: tests/flows/port/test_port_sequences.py).
"""

import keras
import numpy as np

VOCAB, STEPS, DIM, HIDDEN, CLASSES = 11, 7, 5, 6, 3


def _finish(ids, y, name: str):
    model = keras.Model(ids, keras.layers.Dense(CLASSES, name="head")(y), name=name)
    rng = np.random.default_rng(3)
    for v in model.weights:
        if v.name == "bias":
            v.assign(rng.normal(0, 0.2, v.shape))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.SGD(0.1))
    return model


def _embedded():
    keras.utils.set_random_seed(0)
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    return ids, keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="emb")(ids)


def build_stacked():
    ids, y = _embedded()
    y = keras.layers.LSTM(HIDDEN, return_sequences=True, name="lstm1")(y)
    y = keras.layers.LSTM(HIDDEN, name="lstm2")(y)
    return _finish(ids, y, "masked_stacked")


def build_bigru():
    ids, y = _embedded()
    y = keras.layers.Bidirectional(keras.layers.GRU(HIDDEN), name="bigru")(y)
    return _finish(ids, y, "masked_bigru")


def build_pooled():
    ids, y = _embedded()
    y = keras.layers.LSTM(HIDDEN, return_sequences=True, name="lstm")(y)
    y = keras.layers.GlobalAveragePooling1D(name="pool")(y)
    return _finish(ids, y, "masked_pooled")
