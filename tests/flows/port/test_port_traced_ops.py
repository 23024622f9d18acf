"""The converters tracing needs for keras-hub, on tiny stock-Keras models:
the batch size used as a value (ops.broadcast_to / ops.tile to ops.shape(x)[0]),
variables read through convert_to_tensor / cast / tile (trainable, not folded),
ops.cast (float casts follow the model's dtype), ops.slice, ops.einsum,
EinsumDense, Softmax with a mask, and activation functions found by tracing."""

from __future__ import annotations

import port_helpers  # noqa: F401  (torch before TensorFlow)

import keras
from keras import layers, ops

from port_helpers import F64_REL, port_ok, randomise, worst


class TableToBatch(layers.Layer):
    """keras-hub's PositionEmbedding in small: a variable sliced and broadcast to the input's shape."""

    def build(self, shape):
        self.table = self.add_weight(shape=(8, shape[-1]), name="table")

    def call(self, x):
        shape = ops.shape(x)
        table = ops.slice(ops.convert_to_tensor(self.table), (0, 0), (shape[1], shape[2]))
        return x + ops.broadcast_to(ops.cast(table, x.dtype), shape)


class TokenTiled(layers.Layer):
    """ViTPatchingAndEmbedding's class token: ops.tile(variable, (batch, 1, 1)), then concatenated."""

    def build(self, shape):
        self.token = self.add_weight(shape=(1, 1, shape[-1]), name="token")

    def call(self, x):
        token = ops.tile(self.token, (ops.shape(x)[0], 1, 1))
        return ops.concatenate([token, x], axis=1)


class MaskedScores(layers.Layer):
    """MultiHeadAttention's einsum path in small: EinsumDense, ops.einsum, Softmax with an int mask."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.proj = layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de", activation="tanh")
        self.softmax = layers.Softmax(axis=-1)

    def call(self, x, mask):
        q = self.proj(x)
        scores = ops.einsum("abnd,acnd->anbc", q, q)
        m = ops.expand_dims(ops.expand_dims(ops.cast(mask, "int32"), 1), 1)  # (N, 1, 1, S)
        return ops.einsum("anbc,acnd->abnd", self.softmax(scores, mask=m), q)


@keras.saving.register_keras_serializable(package="test_port_traced_ops")
def _gelu_tanh(x):  # an activation function by no name the table knows (keras-hub's gelu_approximate)
    return keras.activations.gelu(x, approximate=True)


def test_batch_size_as_value_and_variables_read_by_ops_stay_parameters():
    i = layers.Input((6, 4), name="seq")
    x = TableToBatch(name="pos")(i)
    x = TokenTiled(name="cls")(x)
    m = randomise(keras.Model(i, layers.Dense(3)(layers.Flatten()(x))))
    r = port_ok(m, batch=3)
    src = r.source
    # classes TableToBatch and TokenTiled (issue 20); the batch is read from the model input
    assert "self.table = Variable((8, 4))" in src
    assert "self.token = Variable((1, 1, 4))" in src
    # in the classes the parameter is `x`, so the chained tensor is `h` (torch_impl/write/forward_plan.py)
    assert "h = h[:6]  # slice: (6, 4)" in src  # ops.slice of the table
    assert "# cast: h as is, (6, 4)" in src  # a cast to its own dtype: no statement
    assert "h = h.expand(x.shape[0], 6, 4)  # broadcast_to: (N, 6, 4)\n        add = x + h" in src
    assert "h = h.repeat(seq.shape[0], 1, 1)  # tile: (N, 1, 4)" in src and "x = self.cls(x, seq)" in src
    grads = {c.check.split()[1] for c in r.checks if c.check.startswith("grad ") and c.dtype == "float64"}
    assert {"pos.table.weight", "cls.token.weight"} <= grads, grads
    assert worst(r, "grad ", "float64") <= F64_REL and worst(r, "node", "float64") < 1e-14


def test_einsum_dense_einsum_and_masked_softmax():
    x = layers.Input((5, 4))
    mask = layers.Input((5,), dtype="int32")
    y = MaskedScores(name="att")(x, mask)
    m = randomise(keras.Model([x, mask], layers.Dense(2, activation=_gelu_tanh)(layers.Flatten()(y))))
    r = port_ok(m)
    src = r.source
    assert "EinsumDense('abc,cde->abde', (4, 2, 3), (2, 3))" in src and "torch.tanh(" in src
    assert "torch.einsum('abnd,acnd->anbc'" in src and ".masked_fill(~(" in src and "-1000000000.0" in src
    assert "keras_gelu(" in src and "approximate=True" in src  # the activation function, traced
    assert list(r.graph.meta["input_high"].values()) == [2]  # the int mask is drawn in {0, 1}
    assert worst(r, "node", "float64") < 1e-14 and worst(r, "grad ", "float64") <= F64_REL


class IntToFloat(layers.Layer):
    def call(self, ids):
        return ops.cast(ids, "float32") * 0.5  # a float cast of integers: the model's float dtype


def test_cast_of_integers_to_float_follows_the_model_dtype():
    i = layers.Input((3,), dtype="int32")
    m = randomise(keras.Model(i, layers.Dense(2)(IntToFloat(name="f")(i))))
    r = port_ok(m)
    assert "FloatCast()" in r.source and "torch.float32" not in r.source
    assert worst(r, "output", "float64") <= F64_REL
