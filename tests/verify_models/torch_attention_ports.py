"""Hand-written PyTorch ports of keras_attention.build: explicit projections
(four nn.Linear, F.scaled_dot_product_attention or a hand-written softmax) and
nn.MultiheadAttention; `bug` plants one classic mistake."""

import math

import torch
import torch.nn.functional as F
from torch import nn

KERAS_LN_EPS = 1e-3  # keras LayerNormalization(epsilon=1e-3); torch's nn.LayerNorm default is 1e-5


class Encoder(nn.Module):
    """The layers after the attention, shared by both ports."""

    def __init__(self, d=8, ffn=16, classes=3, ln_eps=KERAS_LN_EPS):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=ln_eps)
        self.ffn1 = nn.Linear(d, ffn)
        self.ffn2 = nn.Linear(ffn, d)
        self.ln2 = nn.LayerNorm(d, eps=ln_eps)
        self.head = nn.Linear(d, classes)

    def block(self, x, a):  # (B, T, D), attention output (B, T, D) -> logits (B, classes)
        y = self.ln1(x + a)
        y = self.ln2(y + self.ffn2(F.relu(self.ffn1(y))))
        return self.head(y.mean(dim=1))


class ExplicitPort(Encoder):
    """key_first: value, key, query projections called in that order. bug: None, "scale" (1/sqrt(D)), "head_order" (view (B,T,key_dim,H)), "no_causal", "ln_eps" (torch's 1e-5),
    "eval_dropout" (dropout_p passed in eval mode too)."""

    def __init__(self, d=8, heads=2, key_dim=4, causal=False, softmax=False, bug=None):
        super().__init__(d, ln_eps=1e-5 if bug == "ln_eps" else KERAS_LN_EPS)
        self.heads, self.key_dim, self.causal, self.softmax, self.bug = heads, key_dim, causal, softmax, bug
        self.key_first = False
        self.dropout = 0.0  # on the attention probabilities, as Keras' MultiHeadAttention(dropout=...)
        self.q = nn.Linear(d, heads * key_dim)
        self.k = nn.Linear(d, heads * key_dim)
        self.v = nn.Linear(d, heads * key_dim)
        self.o = nn.Linear(heads * key_dim, d)

    def split(self, y):  # (B, T, H*dk) -> (B, H, T, dk)
        b, t, _ = y.shape
        if self.bug == "head_order":
            return y.view(b, t, self.key_dim, self.heads).permute(0, 3, 1, 2)
        return y.view(b, t, self.heads, self.key_dim).transpose(1, 2)

    def forward(self, x):
        b, t, d = x.shape
        if self.key_first:  # the same computation, the projections called in another order
            v, k, q = self.split(self.v(x)), self.split(self.k(x)), self.split(self.q(x))
        else:
            q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scale = 1 / math.sqrt(d if self.bug == "scale" else self.key_dim)
        causal = self.causal and self.bug != "no_causal"
        if self.softmax:
            scores = q @ k.transpose(-2, -1) * scale
            if causal:
                scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
            a = torch.softmax(scores, dim=-1) @ v
        else:
            p = self.dropout if self.training or self.bug == "eval_dropout" else 0.0
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal, scale=scale)
        return self.block(x, self.o(a.transpose(1, 2).reshape(b, t, -1)))


class PackedPort(Encoder):
    """nn.MultiheadAttention: packed in_proj_weight (3E, E), out_proj read by F.multi_head_attention_forward."""

    def __init__(self, d=8, heads=2, causal=False, bug=None, dropout=0.0):
        super().__init__(d, ln_eps=1e-5 if bug == "ln_eps" else KERAS_LN_EPS)
        self.causal = causal and bug != "no_causal"
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True, dropout=dropout)

    def forward(self, x):
        t = x.shape[1]
        mask = torch.ones(t, t, dtype=torch.bool).triu(1) if self.causal else None  # True: not allowed
        a, _ = self.attn(x, x, x, attn_mask=mask, need_weights=False, is_causal=self.causal)
        return self.block(x, a)


KERAS_MASKED_LOGIT = -0.7 * 3.38953e38  # keras/src/backend/tensorflow/nn.py _get_large_negative (float32 max * -0.7)


class MaskedEncoder(Encoder):
    """Ports of keras_attention.build_masked: Embedding(padding 0) -> attention -> ... -> masked mean.

    packed=True: nn.MultiheadAttention(key_padding_mask=ids == 0), the usual port (padded
    query rows then attend to the real tokens, where Keras' fully masked rows are
    uniform; the pooling drops those rows either way). packed=False: explicit
    projections with Keras' own mask (query AND key masks, masked logits set to
    KERAS_MASKED_LOGIT), equal to Keras at every step."""

    def __init__(self, vocab=11, d=8, heads=2, key_dim=4, causal=False, packed=False):
        super().__init__(d)
        self.heads, self.key_dim, self.causal, self.packed = heads, key_dim, causal, packed
        self.emb = nn.Embedding(vocab, d)
        if packed:
            self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        else:
            self.q, self.k = nn.Linear(d, heads * key_dim), nn.Linear(d, heads * key_dim)
            self.v, self.o = nn.Linear(d, heads * key_dim), nn.Linear(heads * key_dim, d)

    def attend(self, x, keep):  # keep: (B, T) bool, True for real tokens
        b, t, _ = x.shape
        future = torch.ones(t, t, dtype=torch.bool).triu(1)
        if self.packed:
            a, _ = self.attn(x, x, x, key_padding_mask=~keep, need_weights=False,
                             attn_mask=future if self.causal else None, is_causal=self.causal)
            return a
        split = lambda y: y.view(b, t, self.heads, self.key_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        allowed = keep[:, None, :, None] & keep[:, None, None, :]  # Keras: query mask AND key mask
        if self.causal:
            allowed = allowed & ~future
        scores = (q @ k.transpose(-2, -1) / math.sqrt(self.key_dim)).masked_fill(~allowed, KERAS_MASKED_LOGIT)
        return self.o((torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, -1))

    def forward(self, ids):
        keep = ids != 0
        x = self.emb(ids)
        y = self.ln1(x + self.attend(x, keep))
        y = self.ln2(y + self.ffn2(F.relu(self.ffn1(y))))
        w = keep.unsqueeze(-1).to(y.dtype)
        return self.head((y * w).sum(1) / w.sum(1))


class LayerPort(nn.Module):
    """keras_attention.build as torch's own nn.TransformerEncoderLayer (post-norm, ReLU, no dropout)."""

    def __init__(self, d=8, heads=2, ffn=16, classes=3):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(d, heads, dim_feedforward=ffn, dropout=0.0, batch_first=True,
                                                layer_norm_eps=KERAS_LN_EPS)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.block(x).mean(dim=1))


class CrossPort(nn.Module):
    """keras_attention.build_cross: nn.MultiheadAttention with kdim = vdim = 6 (q/k/v_proj_weight, no in_proj_weight)."""

    def __init__(self, d=8, memory=6, heads=2, classes=3):
        super().__init__()
        self.memory = nn.Linear(d, memory)
        self.attn = nn.MultiheadAttention(d, heads, kdim=memory, vdim=memory, batch_first=True)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        m = self.memory(x)
        a, _ = self.attn(x, m, m, need_weights=False)
        return self.head(a.mean(dim=1))


class FusedPort(Encoder):
    """One fused qkv nn.Linear (d -> 3*heads*key_dim), split as nanoGPT does (style="chunk":
    .chunk(3, dim=-1)) or as timm does (style="view": .view(B, T, 3, H, dk).permute(2, 0, 3, 1, 4))."""

    def __init__(self, d=8, heads=2, key_dim=4, style="chunk"):
        super().__init__(d)
        self.heads, self.key_dim, self.style = heads, key_dim, style
        self.qkv = nn.Linear(d, 3 * heads * key_dim)
        self.proj = nn.Linear(heads * key_dim, d)

    def forward(self, x):
        b, t, _ = x.shape
        if self.style == "chunk":
            q, k, v = (y.view(b, t, self.heads, self.key_dim).transpose(1, 2) for y in self.qkv(x).chunk(3, dim=-1))
        else:
            q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.key_dim).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(self.key_dim))
        return self.block(x, self.proj(a.transpose(1, 2).reshape(b, t, -1)))


class Block(nn.Module):
    """One post-norm encoder block with explicit projections. mask: "keras" (Keras'
    query AND key mask, masked logits KERAS_MASKED_LOGIT: fully masked rows uniform),
    "keys" (the usual key padding mask), or None."""

    def __init__(self, d=8, heads=2, key_dim=4):
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.q, self.k = nn.Linear(d, heads * key_dim), nn.Linear(d, heads * key_dim)
        self.v, self.o = nn.Linear(d, heads * key_dim), nn.Linear(heads * key_dim, d)
        self.ln1, self.ffn, self.ln2 = nn.LayerNorm(d, eps=KERAS_LN_EPS), nn.Linear(d, d), nn.LayerNorm(d, eps=KERAS_LN_EPS)

    def forward(self, x, keep, mask):
        b, t, _ = x.shape
        split = lambda y: y.view(b, t, self.heads, self.key_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.key_dim)
        if mask == "keras":
            scores = scores.masked_fill(~(keep[:, None, :, None] & keep[:, None, None, :]), KERAS_MASKED_LOGIT)
        elif mask == "keys":
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        y = self.ln1(x + self.o((torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, -1)))
        return self.ln2(y + self.ffn(y))


class TwoBlocks(nn.Module):
    """keras_attention.build_two_blocks. second_mask="keys" is the natural port (both
    blocks mask the padding); Keras' second block runs unmasked (second_mask=None)."""

    def __init__(self, vocab=11, d=8, classes=3, second_mask=None):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.b1, self.b2 = Block(d), Block(d)
        self.head = nn.Linear(d, classes)
        self.second_mask = second_mask

    def forward(self, ids):
        keep = ids != 0
        y = self.b2(self.b1(self.emb(ids), keep, "keras"), keep, self.second_mask)
        w = keep.unsqueeze(-1).to(y.dtype)
        return self.head((y * w).sum(1) / w.sum(1))
