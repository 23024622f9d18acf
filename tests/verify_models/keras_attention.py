"""A one-block Transformer encoder in Keras that the verify tests port by hand
(torch_attention_ports.py): MultiHeadAttention self-attention -> Add ->
LayerNormalization -> Dense FFN -> Add -> LayerNormalization ->
GlobalAveragePooling1D -> Dense, trained with Adam."""

import keras
import numpy as np

STEPS, DIM, HEADS, KEY_DIM, FFN, CLASSES = 5, 8, 2, 4, 16, 3


def build(key_dim: int = KEY_DIM, causal: bool = False, dropout: float = 0.0):
    keras.utils.set_random_seed(0)
    x = keras.Input((STEPS, DIM), name="x")
    a = keras.layers.MultiHeadAttention(HEADS, key_dim, dropout=dropout, name="mha")(x, x, use_causal_mask=causal)
    y = keras.layers.LayerNormalization(name="ln1")(keras.layers.Add(name="res1")([x, a]))
    f = keras.layers.Dense(FFN, activation="relu", name="ffn1")(y)
    f = keras.layers.Dense(DIM, name="ffn2")(f)
    y = keras.layers.LayerNormalization(name="ln2")(keras.layers.Add(name="res2")([y, f]))
    y = keras.layers.GlobalAveragePooling1D(name="pool")(y)
    model = keras.Model(x, keras.layers.Dense(CLASSES, name="head")(y), name="encoder")
    rng = np.random.default_rng(3)
    for v in model.weights:  # Keras starts biases and betas at 0, gammas at 1: a swapped bias would go unseen
        if v.name in ("bias", "beta", "gamma"):
            v.assign((1.0 if v.name == "gamma" else 0.0) + rng.normal(0, 0.2, v.shape))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.Adam(0.01))
    return model


VOCAB = 11


def build_masked(causal: bool = False):
    """The same block on token ids: Embedding(mask_zero=True), so Keras' attention
    masks padded keys (and padded queries: those rows are fully masked, uniform in
    Keras) and GlobalAveragePooling1D averages the kept steps only."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    x = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="emb")(ids)
    a = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="mha")(x, x, use_causal_mask=causal)
    y = keras.layers.LayerNormalization(name="ln1")(keras.layers.Add(name="res1")([x, a]))
    f = keras.layers.Dense(FFN, activation="relu", name="ffn1")(y)
    f = keras.layers.Dense(DIM, name="ffn2")(f)
    y = keras.layers.LayerNormalization(name="ln2")(keras.layers.Add(name="res2")([y, f]))
    y = keras.layers.GlobalAveragePooling1D(name="pool")(y)
    model = keras.Model(ids, keras.layers.Dense(CLASSES, name="head")(y), name="masked_encoder")
    rng = np.random.default_rng(3)
    for v in model.weights:
        if v.name in ("bias", "beta", "gamma"):
            v.assign((1.0 if v.name == "gamma" else 0.0) + rng.normal(0, 0.2, v.shape))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.SGD(0.1))
    return model


def padded_ids(batch: int = 4, seed: int = 0):
    """Right-padded ids (0 = padding), every row at least one token: no fully masked key row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (batch, STEPS))
    lengths = np.resize([STEPS, 2, 4, 1], batch)
    ids[np.arange(STEPS)[None, :] >= lengths[:, None]] = 0
    return ids.astype(np.int32)


def build_cross():
    """Attention from the sequence to a narrower memory of it (Dense(6)): key and value
    projections read 6 features, the query 8 (nn.MultiheadAttention's kdim/vdim)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((STEPS, DIM), name="x")
    memory = keras.layers.Dense(6, name="memory")(x)
    a = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="mha")(x, memory)
    y = keras.layers.GlobalAveragePooling1D(name="pool")(a)
    model = keras.Model(x, keras.layers.Dense(CLASSES, name="head")(y), name="cross")
    rng = np.random.default_rng(3)
    for v in model.weights:
        if v.name == "bias":
            v.assign(rng.normal(0, 0.2, v.shape))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.SGD(0.1))
    return model


def build_two_blocks():
    """Two encoder blocks on Embedding(mask_zero=True). The first MultiHeadAttention
    removes the padding mask from the tensors it reads (keras_impl/masks.py), so at
    run time the second block attends to padded steps too; the pooling stays masked."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    y = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="emb")(ids)
    for i in (1, 2):
        a = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name=f"mha{i}")(y, y)
        y = keras.layers.LayerNormalization(name=f"b{i}_ln1")(keras.layers.Add(name=f"b{i}_res1")([y, a]))
        f = keras.layers.Dense(DIM, name=f"b{i}_ffn")(y)
        y = keras.layers.LayerNormalization(name=f"b{i}_ln2")(keras.layers.Add(name=f"b{i}_res2")([y, f]))
    y = keras.layers.GlobalAveragePooling1D(name="pool")(y)
    model = keras.Model(ids, keras.layers.Dense(CLASSES, name="head")(y), name="two_blocks")
    rng = np.random.default_rng(3)
    for v in model.weights:
        if v.name in ("bias", "beta", "gamma"):
            v.assign((1.0 if v.name == "gamma" else 0.0) + rng.normal(0, 0.2, v.shape))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=keras.optimizers.SGD(0.1))
    return model
