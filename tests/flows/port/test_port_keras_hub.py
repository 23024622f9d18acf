"""`compare.py port` of keras-hub backbones (tiny configs, built from their
constructor arguments; nothing downloads): BERT, GPT-2 and ViT port through
tracing (keras_impl/read/trace.py) and pass their own proof, float64 within 1e-12
relative on every node, gradient and output; the dict outputs compared one
by one. Skipped without keras_hub."""

from __future__ import annotations

import port_helpers  # noqa: F401  (torch before TensorFlow)

import pytest

from port_helpers import F64_REL, port_ok, randomise, worst

keras_hub = pytest.importorskip("keras_hub")


def _bert():
    return keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                         intermediate_dim=32, max_sequence_length=16)


def _gpt2():
    return keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                         intermediate_dim=32, max_sequence_length=16)


def _vit():
    return keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2,
                                        hidden_dim=16, mlp_dim=32)


def _proof(model, outputs: int):
    r = port_ok(randomise(model), batch=4)  # the CLI default: GPT-2 then has a fully masked attention row
    for dtype in ("float32", "float64"):
        assert len([c for c in r.checks if c.check.startswith("output") and c.dtype == dtype]) == outputs
    for check in ("node", "grad ", "output"):
        assert worst(r, check, "float64") <= F64_REL, (check, worst(r, check, "float64"))
    assert worst(r, "node", "float32") < 1e-5
    return r


def test_bert_backbone_tiny_ports_with_its_three_inputs_and_dict_outputs():
    r = _proof(_bert(), outputs=2)  # sequence_output and pooled_output
    src = r.source
    assert "def forward(self, padding_mask, segment_ids, token_ids):" in src
    # the position table is broadcast to the run-time batch and stays a parameter
    assert ".expand(padding_mask.shape[0], 16, 16)" in src
    # one class per keras-hub layer class, the encoder's used twice (issue 20)
    assert "class PositionEmbedding(nn.Module):" in src and "self.embeddings = Variable((16, 16))" in src
    assert src.count("class TransformerEncoder(nn.Module):") == 1 and src.count("= TransformerEncoder()") == 2
    grads = {c.check for c in r.checks if c.check.startswith("grad ") and c.dtype == "float64"}
    assert any("position_embedding.embeddings.weight" in g for g in grads), grads
    assert r.graph.meta["input_high"] == {"token_ids": 50, "segment_ids": 2, "padding_mask": 2}
    assert worst(r, "node", "float64") < 1e-14


def test_gpt2_backbone_tiny_ports_with_its_causal_mask():
    r = _proof(_gpt2(), outputs=1)
    src = r.source
    assert "EinsumDense('abc,cde->abde', (16, 2, 8), (2, 8))" in src  # CachedMultiHeadAttention traced
    assert "torch.einsum('aecd,abcd->acbe'" in src and ".masked_fill(~(" in src
    # the causal mask Keras broadcasts to the traced batch is one row, broadcast at run time
    consts = [n for n in r.graph.nodes if n.op == "minimum"]
    assert consts and all(n.weights["const"].shape == (1, 16, 16) for n in consts)
    assert worst(r, "node", "float64") < 1e-14


def test_vit_backbone_tiny_ports_with_its_class_token_tiled_to_the_batch():
    r = _proof(_vit(), outputs=1)
    src = r.source
    assert ".repeat(inputs.shape[0], 1, 1)" in src  # in class ViTPatchingAndEmbedding
    # nested classes: ViTEncoder holds two ViTEncoderBlock, each an MLP (issue 20)
    assert src.count("= ViTEncoderBlock()") == 2 and "self.mlp = MLP()" in src and "self.vit_encoder = ViTEncoder()" in src
    assert "Variable((1, 1, 16))" in src  # the class token stays trainable
    grads = {c.check for c in r.checks if c.check.startswith("grad ") and c.dtype == "float64"}
    assert any("class_token" in g for g in grads), grads
    assert worst(r, "node", "float64") < 1e-14
