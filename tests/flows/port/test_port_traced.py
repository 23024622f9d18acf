"""`compare.py port` of custom Keras layers without a converter: traced into
their inner layers and keras.ops (keras_impl/read/trace.py), named under the
layer, their own variables trainable, untraceable calls refused (exit 2)."""

from __future__ import annotations

import port_helpers  # noqa: F401  (torch before TensorFlow)

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers, ops

import compare
from port_helpers import F64_REL, port_ok, randomise, worst


class TransformerBlock(layers.Layer):
    """keras.io "Text classification with Transformer" (text_classification_with_transformer.py)."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kw):
        super().__init__(**kw)
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs, training=False):
        attn_output = self.dropout1(self.att(inputs, inputs), training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.dropout2(self.ffn(out1), training=training)
        return self.layernorm2(out1 + ffn_output)


class TokenAndPositionEmbedding(layers.Layer):
    """keras.io's, same file: the position table is read through ops.arange (a concrete tensor)."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kw):
        super().__init__(**kw)
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))
        return self.token_emb(x) + positions


class Affine(layers.Layer):
    """Owns its weights (add_weight) and reads them with keras.ops."""

    def __init__(self, units, **kw):
        super().__init__(**kw)
        self.units = units

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], self.units), name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

    def call(self, x):
        return ops.matmul(x, self.w) + self.b


class Residual(layers.Layer):
    """A custom layer around another custom layer (nested tracing)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.inner = Affine(6)

    def call(self, x):
        return x + ops.erf(self.inner(x))


def text_model(maxlen=8, vocab=20, dim=8):
    i = layers.Input((maxlen,), dtype="int32")
    x = TokenAndPositionEmbedding(maxlen, vocab, dim, name="embed")(i)
    x = TransformerBlock(dim, 2, 16, name="block")(x)
    return keras.Model(i, layers.Dense(3)(layers.GlobalAveragePooling1D()(x)))


def test_keras_io_transformer_block_and_position_embedding_port():
    r = port_ok(randomise(text_model()))
    nodes = [n.name for n in r.graph.nodes]
    # 17 nodes: 4 in the embedding (two lookups, the arange constant, add), 10 in the block, pool and head
    assert len(nodes) == 17, nodes
    assert {"embed_pos_emb", "embed_constant", "block_att", "block_ffn_dense", "block_ffn_dense_2", "block_layernorm2"} <= set(nodes)
    grads = {c.check for c in r.checks if c.check.startswith("grad ") and c.dtype == "float64"}
    assert any("embed.pos_emb.weight" in g for g in grads), grads  # the position table stays trainable
    for check in ("node", "grad ", "output"):
        assert worst(r, check, "float64") <= F64_REL, (check, worst(r, check, "float64"))
    assert worst(r, "node", "float64") < 1e-14
    assert "h = self.constant()  # (8)\n        h = self.pos_emb(h)  # (8, 8)" in r.source  # in class TokenAndPositionEmbedding (issue 20)


def test_own_variables_are_trainable_parameters_and_nested_layers_are_traced():
    i = layers.Input((6,))
    shared = Residual(name="res")
    m = randomise(keras.Model(i, layers.Dense(2)(shared(shared(i)))))
    r = port_ok(m)
    src = r.source
    assert "self.w = Variable((6, 6))" in src and "self.b = Variable((6,))" in src  # class Affine
    assert src.count("= Variable(") == 2  # the second call of `res` reads the same parameters
    assert "torch.erf(" in src and "torch.matmul(" in src
    grads = {c.check for c in r.checks if c.check.startswith("grad ") and c.dtype == "float64"}
    assert any("res.inner.w.weight" in g for g in grads), grads
    assert worst(r, "grad ", "float64") <= F64_REL and worst(r, "node", "float64") < 1e-14


class PythonIf(layers.Layer):
    def compute_output_shape(self, shape):  # Keras builds the model without running call()
        return shape

    def call(self, x):
        if ops.sum(x) > 0:  # Python control flow on a tensor value
            return x
        return -x


class TfCall(layers.Layer):
    def call(self, x):
        return tf.math.cumsum(x, axis=-1)


@pytest.mark.parametrize("cls, where", [(PythonIf, "if ops.sum(x) > 0"), (TfCall, "tf.math.cumsum")])
def test_untraceable_layer_is_refused_naming_layer_class_and_call(cls, where):
    from keras_impl.read.trace import UntraceableLayerError

    i = layers.Input((4,))
    m = keras.Model(i, layers.Dense(2)(cls(name="odd")(i)))
    with pytest.raises(UntraceableLayerError) as e:
        compare.keras_to_torch(m)
    msg = str(e.value)
    assert "'odd'" in msg and f"class {cls.__name__}" in msg and where in msg and "test_port_traced.py" in msg
    assert "@keras_converter" in msg


def test_registered_converter_keeps_priority():
    from keras_impl.read.registry import CONVERTERS, keras_converter

    i = layers.Input((6,))
    m = randomise(keras.Model(i, Affine(6, name="aff")(i)))
    traced = compare.port_checks(m)
    assert [n.op for n in traced.graph.nodes] == ["variable", "matmul", "variable", "add"]

    @keras_converter("Affine")
    def affine(ctx, layer, call):
        ctx.emit("linear", [call.inputs[0]], call.outputs[0], attrs={"in_features": 6, "out_features": 6, "bias": True},
                 weights={"weight": (layer.w, [("transpose", (1, 0))]), "bias": (layer.b, [])})

    try:
        r = compare.port_checks(m)
        assert [n.op for n in r.graph.nodes] == ["linear"]
        assert not [c for c in r.checks if not c.passed]
    finally:
        CONVERTERS.pop("Affine")
