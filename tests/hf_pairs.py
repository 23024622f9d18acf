"""Tiny keras-hub backbones and their transformers twins, with the HF weights
copied into keras-hub by keras-hub's own converters
(keras_hub/src/utils/transformers/convert_bert.py, convert_gpt2.py,
convert_vit.py), read from an in-memory state dict: nothing downloads.

The configs are the libraries' real defaults except where a test says so;
where the two libraries differ for real, `hf_*(..., match=True)` configures
the transformers side like keras-hub (the "correct pair"), match=False keeps
transformers' default (the difference verify must find and name):

- BERT: keras-hub's BertBackbone uses tanh gelu (keras_hub/src/models/bert/
  bert_backbone.py, activation=gelu_approximate), BertConfig's default
  hidden_act is "gelu" (exact); BertConfig.pad_token_id=0 makes
  word_embeddings an nn.Embedding(padding_idx=0) whose row 0 never trains.
- ViT: keras-hub's ViTBackbone LayerNorm epsilon is 1e-6 (vit_backbone.py),
  ViTConfig's layer_norm_eps 1e-12.
- GPT-2: both use tanh gelu and LayerNorm epsilon 1e-5.
"""

from __future__ import annotations

import re

import numpy as np

from tests.tv import load_torchvision

load_torchvision()  # before transformers (tests/tv.py)

import keras_hub  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from keras_hub.src.utils.transformers import convert_bert, convert_gpt2, convert_vit  # noqa: E402

V, T, H, HEADS, FF, LAYERS = 50, 16, 16, 2, 32, 2  # vocabulary, positions, width, heads, MLP width, blocks
IMAGE, PATCH = 16, 4
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


# transformers 5 renamed ViT's modules; its checkpoints (and keras-hub's
# convert_vit.py) keep the old keys: new name pattern -> checkpoint key.
_CHECKPOINT_KEYS = [
    (r"^layers\.(\d+)\.attention\.q_proj\.", r"encoder.layer.\1.attention.attention.query."),
    (r"^layers\.(\d+)\.attention\.k_proj\.", r"encoder.layer.\1.attention.attention.key."),
    (r"^layers\.(\d+)\.attention\.v_proj\.", r"encoder.layer.\1.attention.attention.value."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"encoder.layer.\1.attention.output.dense."),
    (r"^layers\.(\d+)\.mlp\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
    (r"^layers\.(\d+)\.mlp\.fc2\.", r"encoder.layer.\1.output.dense."),
    (r"^layers\.(\d+)\.", r"encoder.layer.\1."),
]


def checkpoint_key(key: str) -> str:
    for pattern, repl in _CHECKPOINT_KEYS:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return key


class _StateDictLoader:
    """keras-hub's SafetensorLoader interface (port_weight, get_tensor) over an
    in-memory HF state dict; keys match with or without the model prefix
    ("vit.", "bert."), as get_prefixed_key does."""

    def __init__(self, state: dict):
        self.state = {checkpoint_key(k): v.detach().cpu().numpy() for k, v in state.items()}

    def get_tensor(self, key: str) -> np.ndarray:
        if key in self.state:
            return self.state[key]
        short = key.split(".", 1)[1] if "." in key else key
        hits = [k for k in self.state if k == short or k.endswith("." + key)]
        if len(hits) != 1:
            raise KeyError(key)
        return self.state[hits[0]]

    def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
        a = self.get_tensor(hf_weight_key)
        if hook_fn:
            a = hook_fn(a, list(keras_variable.shape))
        keras_variable.assign(np.asarray(a, dtype="float32"))


def randomise_torch(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Every parameter seeded normal(0, std), LayerNorm scales around 1, so no
    layer is checked at its trivial initial weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * std
            p.copy_(1.0 + noise if ("LayerNorm" in name or "layernorm" in name or ".ln_" in name or "ln_f" in name)
                    and name.endswith("weight") else noise)
    return model


def _copy(converter, backbone, hf) -> None:
    converter.convert_weights(backbone, _StateDictLoader(hf.state_dict()), hf.config.to_dict())


def bert_pair(match: bool = True, seed: int = 0, **hf_config):
    """(keras-hub BertBackbone, transformers BertModel), HF weights copied into keras-hub."""
    cfg = dict(vocab_size=V, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FF,
               max_position_embeddings=T, type_vocab_size=2, **NO_DROPOUT)
    if match:
        cfg.update(hidden_act="gelu_new", pad_token_id=None)  # keras-hub: tanh gelu, every embedding row trains
    cfg.update(hf_config)
    hf = randomise_torch(transformers.BertModel(transformers.BertConfig(**cfg)), seed).eval()
    backbone = keras_hub.models.BertBackbone(vocabulary_size=V, num_layers=LAYERS, num_heads=HEADS, hidden_dim=H,
                                             intermediate_dim=FF, max_sequence_length=T, dropout=0.0)
    _copy(convert_bert, backbone, hf)
    return backbone, hf


def gpt2_pair(seed: int = 0, lm_head: bool = False, **hf_config):
    """(keras-hub GPT2Backbone, transformers GPT2Model); lm_head: GPT2CausalLM
    (logits through the tied token embedding) and GPT2LMHeadModel."""
    cfg = dict(vocab_size=V, n_positions=T, n_embd=H, n_layer=LAYERS, n_head=HEADS, n_inner=FF,
               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    cfg.update(hf_config)
    config = transformers.GPT2Config(**cfg)
    hf = randomise_torch((transformers.GPT2LMHeadModel if lm_head else transformers.GPT2Model)(config), seed).eval()
    # keras-hub's default dropout (inference ignores it; verify's training checks switch it off): with
    # dropout=0.0 Keras' MultiHeadAttention calls ops.dot_product_attention, which the reader does not convert
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=V, num_layers=LAYERS, num_heads=HEADS, hidden_dim=H,
                                             intermediate_dim=FF, max_sequence_length=T)
    _copy(convert_gpt2, backbone, hf.transformer if lm_head else hf)
    if lm_head:
        return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None), hf
    return backbone, hf


def vit_pair(match: bool = True, seed: int = 0, **hf_config):
    """(keras-hub ViTBackbone, transformers ViTModel), HF weights copied into keras-hub."""
    cfg = dict(image_size=IMAGE, patch_size=PATCH, num_channels=3, hidden_size=H, num_hidden_layers=LAYERS,
               num_attention_heads=HEADS, intermediate_size=FF, qkv_bias=True, **NO_DROPOUT)
    if match:
        cfg.update(layer_norm_eps=1e-6)  # keras-hub's ViT LayerNorm epsilon
    cfg.update(hf_config)
    hf = randomise_torch(transformers.ViTModel(transformers.ViTConfig(**cfg)), seed).eval()
    backbone = keras_hub.models.ViTBackbone(image_shape=(IMAGE, IMAGE, 3), patch_size=PATCH, num_layers=LAYERS,
                                            num_heads=HEADS, hidden_dim=H, mlp_dim=FF, dropout_rate=0.0,
                                            attention_dropout=0.0)
    _copy(convert_vit, backbone, hf)
    return backbone, hf
