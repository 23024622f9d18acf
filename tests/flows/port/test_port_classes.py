"""model.py writes a traced custom layer as an nn.Module class of the same
name, instantiated once per use (issue 20; torch_impl/write/scopes.py): one
class for four uses, nested classes, a shared layer's second call reusing its
module, and one class with a constructor argument for sizes that differ."""

from __future__ import annotations

import port_helpers  # noqa: F401  (torch before TensorFlow)

import re

import keras
import numpy as np
from keras import layers

from port_helpers import F64_REL, port_ok, randomise, standalone_outputs, worst
from test_port_traced import Residual, TokenAndPositionEmbedding, TransformerBlock


def _proven(model, **kw):
    """port_ok, plus every float64 node, gradient and output within the issue's 1e-12."""
    r = port_ok(randomise(model), **kw)
    for check in ("node", "grad ", "output"):
        assert worst(r, check, "float64") <= F64_REL, (check, worst(r, check, "float64"))
    return r


def _node_checks(r) -> set:
    return {c.check.split()[1] for c in r.checks if c.check.startswith("node") and c.dtype == "float64"}


def test_a_block_used_four_times_is_one_class_and_four_attributes(tmp_path):
    i = layers.Input((8,), dtype="int32")
    x = TokenAndPositionEmbedding(8, 20, 8, name="embed")(i)
    for k in range(1, 5):
        x = TransformerBlock(8, 2, 16, name=f"block_{k}")(x)
    m = keras.Model(i, layers.Dense(3)(layers.GlobalAveragePooling1D()(x)))
    r = _proven(m)
    src = r.source
    assert src.count("class TransformerBlock(nn.Module):") == 1 and "class TransformerBlock_2" not in src
    assert [f"block_{k}" for k in range(1, 5)] == re.findall(r"self\.(\w+) = TransformerBlock\(\)", src)
    assert "def forward(self, inputs):" in src and "self.ffn_dense = nn.Linear(8, 16)" in src  # call()'s names
    assert "x = self.block_2(x)  # (N, 8, 8)\n        x = self.block_3(x)  # (N, 8, 8)" in src
    # each class's forward chains, frees and runs activations in place too (torch_impl/write/forward_plan.py)
    assert "x = self.ffn_dense(layernorm1)  # (N, 8, 16)\n        x = F.relu(x, inplace=True)  # ffn/dense: (N, 8, 16)" in src
    assert "x = layernorm1 + x  # add_2: (N, 8, 8)\n        del layernorm1\n" in src
    keys = set(r.torch_side.state_dict())
    assert {"block_3.ffn_dense.weight", "block_3.att.query.weight", "embed.pos_emb.weight"} <= keys
    assert {"block_3/ffn/dense", "block_4/att", "embed/constant"} <= _node_checks(r)  # inner tensors still checked
    # model.py alone (torch only, a fresh process) gives Keras' output
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "model.py").write_text(src)
    from safetensors.numpy import save_file

    save_file(r.torch_side.state_dict(), str(tmp_path / "o" / "weights.safetensors"))
    ids = np.random.default_rng(1).integers(0, 20, (3, 8)).astype(np.int32)
    got = standalone_outputs(tmp_path / "o", ids, tmp_path)
    want = keras.ops.convert_to_numpy(m(ids))
    # float32 in both: a few ulp of the logits (~1), far below a porting error
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


class FeedForward(layers.Layer):
    def __init__(self, dim, hidden, **kw):
        super().__init__(**kw)
        self.up = layers.Dense(hidden, activation="gelu")
        self.down = layers.Dense(dim)

    def call(self, x):
        return self.down(self.up(x))


class Block(layers.Layer):
    def __init__(self, dim, **kw):
        super().__init__(**kw)
        self.norm = layers.LayerNormalization()
        self.ff = FeedForward(dim, 2 * dim)

    def call(self, x):
        return x + self.ff(self.norm(x))


class Encoder(layers.Layer):
    """A custom layer of custom layers of custom layers."""

    def __init__(self, dim, depth, **kw):
        super().__init__(**kw)
        self.blocks = [Block(dim, name=f"block_{k}") for k in range(depth)]
        self.scale = None

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x * self.scale


def test_nested_custom_layers_are_nested_classes_and_a_shared_layer_one_module():
    i = layers.Input((5, 6))
    shared = Residual(name="res")
    x = Encoder(6, 2, name="enc")(shared(shared(i)))
    r = _proven(keras.Model(i, layers.Dense(2)(layers.Flatten()(x))))
    src = r.source
    order = [src.index(f"class {c}(nn.Module):") for c in ("Affine", "Residual", "FeedForward", "Block", "Encoder", "Model")]
    assert order == sorted(order)  # a class before the classes that use it
    assert "self.inner = Affine()" in src and src.count("self.ff = FeedForward()") == 1
    # two Blocks of a list: attributes of their own (the list's names, Keras' uid suffix dropped), one class
    assert re.findall(r"self\.(\w+) = Block\(\)", src) == ["block", "block_2"] and "class Block_2" not in src
    assert src.count("= Residual()") == 1 and len(re.findall(r"= self\.res\(", src)) == 2  # called twice, one module
    keys = set(r.torch_side.state_dict())
    assert "res.inner.w.weight" in keys and "enc.scale.weight" in keys
    assert any(re.fullmatch(r"enc\.\w+\.ff\.up\.weight", k) for k in keys), sorted(keys)
    grads = {c.check.split()[1] for c in r.checks if c.check.startswith("grad ") and c.dtype == "float64"}
    assert grads == {k for k in keys}, sorted(keys ^ grads)  # every parameter's gradient compared


def test_sizes_that_differ_become_constructor_arguments_other_code_another_class():
    i = layers.Input((8, 8))
    x = TransformerBlock(8, 2, 16, name="narrow")(i)
    x = TransformerBlock(8, 2, 32, name="wide")(x)
    x = layers.Dense(12)(x)
    x = TransformerBlock(12, 2, 16, name="other")(x)  # other key_dim: other attention code
    r = _proven(keras.Model(i, layers.Dense(3)(layers.GlobalAveragePooling1D()(x))))
    src = r.source
    assert "def __init__(self, ff_dim):" in src
    assert "self.ffn_dense = nn.Linear(8, ff_dim)" in src and "self.ffn_dense_2 = nn.Linear(ff_dim, 8)" in src
    assert "self.narrow = TransformerBlock(ff_dim=16)" in src and "self.wide = TransformerBlock(ff_dim=32)" in src
    assert "self.other = TransformerBlock_2()  # TransformerBlock 'other'" in src
    assert "x = F.relu(x, inplace=True)  # ffn/dense: (N, 8, ff_dim)" in src  # a size the instances differ in


def test_graph_records_the_scopes_without_framework_objects():
    from keras_impl.read import read_graph

    i = layers.Input((6,))
    m = keras.Model(i, Residual(name="res")(i))
    g = read_graph(m)
    [outer, inner] = g.meta["scopes"]
    assert (outer["class"], outer["attr"], outer["parent"]) == ("Residual", "res", None)
    assert (inner["class"], inner["attr"], inner["parent"]) == ("Affine", "inner", outer["id"])
    assert outer["inputs"] == {g.inputs[0]: "x"} and outer["outputs"] == g.outputs
    w = g.node("res_inner_w")
    assert w.source["scope"] == [outer["id"], inner["id"]] and w.source["local"] == "w"
    assert g.weight_key(w, "weight") == "res.inner.w.weight" and "res.inner.w.weight" in g.weight_sources
    g.to_json()  # plain data
