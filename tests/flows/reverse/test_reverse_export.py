"""PyTorch -> Keras through torch.export (issue 21): modules torch.fx cannot
trace (shape control flow, keyword and integer inputs, ModelOutput) are
captured with torch.export; known modules stay named Keras layers, the rest is
read as ATen operations (torch_impl/read/capture.py, read_aten.py). Tiny modules;
transformers and timm models are slow tests that skip when absent."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow
nn = torch.nn

import compare  # noqa: E402
from shared.core.errors import UsageError  # noqa: E402
from shared.core.inputs import InputSpec, parse_input_shape  # noqa: E402


class ShapeFlow(nn.Module):
    """torch.fx cannot trace it: `if` on a shape, slicing with x.size(1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 8).view(1, 8, 1, 1))
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x))) * self.scale
        if y.shape[1] > 4:
            half = y.size(1) // 2
            y = y[:, :half] + y[:, half:]
        y = nn.functional.pad(y, (1, 1, 1, 1))
        return self.fc(y.mean(dim=(2, 3)))


class Tagger(nn.Module):
    """Keyword integer inputs, a padding mask built in forward, a dict output."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, 6, 8) * 0.1)
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, ids, mask):
        h = self.emb(ids) + self.pos[:, : ids.shape[1]]
        q = self.proj(h).view(ids.shape[0], ids.shape[1], 2, 4).transpose(1, 2)
        keep = (mask > 0)[:, None, None, :]
        a = nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=keep)
        h = self.norm(h + a.transpose(1, 2).reshape(ids.shape[0], ids.shape[1], 8))
        return {"hidden": h, "pooled": torch.tanh(h[:, 0])}


class Cumsum(nn.Module):
    def forward(self, x):
        if x.shape[1] > 1:
            x = torch.cumsum(x, dim=1)
        return x


def _worst(res, dtype, prefix):
    rows = [c for c in res.checks if c.dtype == dtype and c.check.startswith(prefix) and not c.info]
    assert rows, prefix
    return max(c.max_abs_diff for c in rows)


def test_input_shape_forms():
    assert parse_input_shape("3,32,32") == (3, 32, 32)
    specs = parse_input_shape("input_ids=16:int64,attention_mask=16:int64:2,pixels=3x8x8")
    assert specs == (InputSpec("input_ids", (16,), "int64"), InputSpec("attention_mask", (16,), "int64", 2),
                     InputSpec("pixels", (3, 8, 8), "float32"))
    for bad in ("ids=16:int8", "ids=0", "1x=3", "a=3,a=4", "ids=16:float32:5"):
        with pytest.raises(ValueError):
            parse_input_shape(bad)


def test_shape_control_flow_ports_through_torch_export():
    from torch_impl.read.capture import capture

    torch.manual_seed(0)
    module = ShapeFlow().eval()
    assert capture(module, (3, 8, 8)).how == "export"  # torch.fx refuses the `if` on a shape
    res = compare.reverse_port_checks(module, (3, 8, 8))
    assert not [c for c in res.checks if not c.passed], [c for c in res.checks if not c.passed][:3]
    assert _worst(res, "float64", "output") < 1e-12 and _worst(res, "float64", "grad") < 1e-12
    assert _worst(res, "float64", "trained") < 1e-10  # BatchNorm in training mode through the captured graph
    src = res.source
    assert "layers.Conv2D(8, (3, 3), padding='same', name='conv')" in src and "name='bn'" in src
    assert "layers.Dense(8, use_bias=False, name='scale')" in src  # the module's own parameter is a Keras weight
    assert "import torch" not in src
    assert sorted(res.graph.weight_sources) == sorted(["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                                       "bn.running_var", "scale.weight", "fc.weight", "fc.bias"])


def test_keyword_integer_inputs_and_dict_output():
    torch.manual_seed(0)
    module = Tagger().eval()
    specs = parse_input_shape("ids=6:int64,mask=6:int64")
    res = compare.reverse_port_checks(module, specs)
    assert not [c for c in res.checks if not c.passed], [c for c in res.checks if not c.passed][:3]
    assert res.graph.inputs == ["ids", "mask"] and res.graph.meta["input_high"] == {"ids": 20, "mask": 2}
    assert res.graph.meta["output_names"] == ["hidden", "pooled"]
    assert _worst(res, "float64", "output") < 1e-12 and _worst(res, "float64", "grad") < 1e-12
    assert "ops.stop_gradient(emb)" in res.source  # torch: no gradient for padding_idx
    assert "dtype='int64'" in res.source


def test_unsupported_aten_op_names_op_and_source_line():
    with pytest.raises(UsageError) as e:
        compare.torch_to_keras(Cumsum().eval(), (4,))
    msg = str(e.value)
    assert "aten.cumsum" in msg and "test_reverse_export.py:" in msg and "torch.cumsum(x, dim=1)" in msg


# ----------------------------------------------------- transformers, timm ---
def _transformers():
    import tests.tv

    tests.tv.load_torchvision()
    return pytest.importorskip("transformers")


def _passes(res):
    failed = [c for c in res.checks if not c.passed]
    assert not failed, [(c.check, c.max_abs_diff, c.where) for c in failed[:5]]
    assert _worst(res, "float64", "output") < 1e-12 and _worst(res, "float64", "grad") < 1e-12


@pytest.mark.slow
def test_hf_vit_bert_gpt2():
    tr = _transformers()
    torch.manual_seed(0)
    vit = tr.ViTModel(tr.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                   image_size=32, patch_size=8))  # ViT-Base: hidden 768, 12 layers
    res = compare.reverse_port_checks(vit, (3, 32, 32))
    _passes(res)
    assert "name='embeddings_cls_token'" in res.source and res.graph.meta["output_names"] == ["last_hidden_state", "pooler_output"]
    bert = tr.BertModel(tr.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                      vocab_size=100, max_position_embeddings=32))
    _passes(compare.reverse_port_checks(bert, parse_input_shape(
        "input_ids=16:int64,attention_mask=16:int64,token_type_ids=16:int64")))
    gpt2 = tr.GPT2Model(tr.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=32))
    res = compare.reverse_port_checks(gpt2, parse_input_shape("input_ids=16:int64,attention_mask=16:int64"))
    _passes(res)
    assert "layers.Dense(96, name='h_0_attn_c_attn')" in res.source  # transformers' Conv1D
