"""keras.ops with a kernel of their own (keras_impl/read/ops_nn.py):
extract_patches, dot_product_attention, fft2, each a small helper function
in model.py that says which Keras semantics it reproduces."""

from __future__ import annotations

from torch_impl.write.registry import Emitted, fmt, torch_emitter
from torch_impl.write.helpers import HELPERS

__all__ = []

HELPERS.update({
    "extract_patches": '''
def extract_patches(x, size, stride, dilation, pads):
    """keras.ops.image.extract_patches: (N, C, H, W) -> (N, H', W', kh*kw*C), each
    window's pixels in (row, column, channel) order, as Keras' identity-kernel
    convolution lays them out; `pads` is TF's "same" padding made explicit."""
    if any(pads):
        x = F.pad(x, pads)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = size, stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    cols = F.unfold(x, size, dilation=dilation, stride=stride)  # (N, C*kh*kw, H'*W')
    return cols.view(n, c, kh * kw, oh, ow).permute(0, 3, 4, 2, 1).reshape(n, oh, ow, kh * kw * c)
''',
    "keras_dot_product_attention": '''
def keras_dot_product_attention(q, k, v, scale, bias=None, mask=None, causal=False):
    """keras.ops.dot_product_attention on (B, T, heads, head_dim) tensors (TF backend):
    logits q.k * scale (+ bias); where the mask (and the causal triangle) is False the
    logits are replaced by -0.7 * float32 max, so a fully masked row is uniform."""
    if k.shape[2] != q.shape[2]:  # grouped-query attention: key/value heads repeated
        k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
        v = v.repeat_interleave(q.shape[2] // v.shape[2], dim=2)
    logits = torch.einsum("btnh,bsnh->bnts", q, k) * scale
    if bias is not None:
        logits = logits + bias
    keep = mask
    if causal:
        tril = torch.ones(q.shape[1], k.shape[1], dtype=torch.bool, device=q.device).tril()
        keep = tril if keep is None else keep & tril
    if keep is not None:
        logits = logits.masked_fill(~keep, -0.7 * 3.38953e38)
    return torch.einsum("bnts,bsnh->btnh", torch.softmax(logits, dim=-1), v)
''',
})


@torch_emitter("extract_patches")
def extract_patches(node, args, module, graph=None):
    a = node.attrs
    call = f"{args[0]}, {fmt(tuple(a['size']))}, {fmt(tuple(a['stride']))}, {fmt(tuple(a['dilation']))}, {fmt(tuple(a['pads']))}"
    return Emitted(None, f"extract_patches({call})", ("extract_patches",))


@torch_emitter("dot_product_attention")
def dot_product_attention(node, args, module, graph=None):
    a = node.attrs
    extra = "".join(f", {name}={arg}" for name, arg in zip(a["extras"], args[3:]))
    causal = ", causal=True" if a["causal"] else ""
    return Emitted(None, f"keras_dot_product_attention({', '.join(args[:3])}, {fmt(float(a['scale']))}{extra}{causal})",
                   ("keras_dot_product_attention",))


@torch_emitter("fft2")
def fft2(node, args, module, graph=None):
    return Emitted(None, f"torch.fft.fft2(torch.complex({args[0]}, {args[1]})).{node.attrs['part']}")
