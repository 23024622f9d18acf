"""A Keras sequence model the verify tests port by hand (torch_seq_ports.py):
Embedding -> LSTM (last step) -> Dense, trained with SGD."""

import keras
import numpy as np

VOCAB, STEPS, DIM, HIDDEN, CLASSES = 20, 5, 6, 8, 3


def build():
    keras.utils.set_random_seed(0)
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    y = keras.layers.Embedding(VOCAB, DIM, name="emb")(ids)
    y = keras.layers.LSTM(HIDDEN, name="lstm")(y)
    y = keras.layers.Dense(CLASSES, name="head")(y)
    model = keras.Model(ids, y, name="verify_seq")
    rng = np.random.default_rng(3)
    for v in model.weights:
        if v.name == "bias":
            v.assign(rng.normal(0, 0.2, v.shape))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.SGD(0.1))
    return model
