"""Small helpers the generated model.py may need, written into it verbatim.

Each is short and readable on its own; torch_impl/write/__init__.py includes only the
ones the model uses.
"""

from __future__ import annotations

__all__ = ["HELPERS"]

HELPERS = {
    "AvgPoolSame": '''
class AvgPoolSame(nn.Module):
    """TF "same" average pooling: an asymmetric zero pad, and each window is
    divided by the number of cells inside the input (count_include_pad=False)."""

    def __init__(self, kernel_size, stride, pads):
        super().__init__()
        self.kernel_size, self.stride, self.pads = kernel_size, stride, pads

    def forward(self, x):
        pool = F.avg_pool2d if x.dim() == 4 else F.avg_pool3d
        total = pool(F.pad(x, self.pads), self.kernel_size, self.stride, divisor_override=1)
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pads)
        count = pool(ones, self.kernel_size, self.stride, divisor_override=1)
        return total / count
''',
    "Constant": '''
class Constant(nn.Module):
    """A constant array of the Keras graph (its values come with the weights)."""

    def __init__(self, shape, dtype=None):
        super().__init__()
        self.register_buffer("const", torch.zeros(shape, dtype=dtype))

    def forward(self):
        return self.const
''',
    "Variable": '''
class Variable(nn.Module):
    """A trainable array a custom Keras layer owns (self.add_weight) and reads in call()."""

    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))

    def forward(self):
        return self.weight
''',
    "Scale": '''
class Scale(nn.Module):
    """A learned per-channel scale, x * weight (Keras LayerScale)."""

    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shape))

    def forward(self, x):
        return x * self.weight
''',
    "KerasPReLU": '''
class KerasPReLU(nn.Module):
    """Keras PReLU with a slope per position (shared_axes other than the
    spatial ones): relu(x) - weight * relu(-x)."""

    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        return F.relu(x) - self.weight * F.relu(-x)
''',
    "LayerNormAxes": '''
class LayerNormAxes(nn.Module):
    """Keras LayerNormalization over any axes `dims`: (x - mean) / sqrt(var + eps)
    over those axes, then weight and bias broadcast to x."""

    def __init__(self, dims, shape, eps, scale=True, center=True):
        super().__init__()
        self.dims, self.eps = dims, eps
        self.weight = nn.Parameter(torch.ones(shape)) if scale else None
        self.bias = nn.Parameter(torch.zeros(shape)) if center else None

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=self.dims, correction=0, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            x = x * self.weight
        return x + self.bias if self.bias is not None else x
''',
    "Rescale": '''
class Rescale(nn.Module):
    """Keras Rescaling with per-channel constants: x * scale + offset."""

    def __init__(self, scale_shape, offset_shape):
        super().__init__()
        self.register_buffer("scale", torch.ones(scale_shape))
        self.register_buffer("offset", torch.zeros(offset_shape))

    def forward(self, x):
        return x * self.scale + self.offset
''',
    "Normalize": '''
class Normalize(nn.Module):
    """Keras Normalization: (x - mean) / max(sqrt(variance), floor); the floor
    is Keras' epsilon, not an added epsilon. invert=True undoes it."""

    def __init__(self, shape, floor, invert=False):
        super().__init__()
        self.floor, self.invert = floor, invert
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("variance", torch.ones(shape))

    def forward(self, x):
        std = torch.clamp(torch.sqrt(self.variance), min=self.floor)
        return self.mean + x * std if self.invert else (x - self.mean) / std
''',
    "MultiHeadAttention": '''
class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query/key/value projections (batch first)."""

    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__()
        self.num_heads = num_heads
        for part in "qkv":
            self.register_parameter(f"{part}_weight", nn.Parameter(torch.zeros(embed_dim, embed_dim)))
            self.register_parameter(f"{part}_bias", nn.Parameter(torch.zeros(embed_dim)) if bias else None)
        self.out_weight = nn.Parameter(torch.zeros(embed_dim, embed_dim))
        self.out_bias = nn.Parameter(torch.zeros(embed_dim))

    def forward(self, q, k, v):
        n, lq, e = q.shape
        h = self.num_heads

        def heads(x, w, b):
            return F.linear(x, w, b).reshape(n, x.shape[1], h, e // h).transpose(1, 2)

        att = F.scaled_dot_product_attention(heads(q, self.q_weight, self.q_bias), heads(k, self.k_weight, self.k_bias),
                                             heads(v, self.v_weight, self.v_bias))
        return F.linear(att.transpose(1, 2).reshape(n, lq, e), self.out_weight, self.out_bias)
''',
    "Parameter": '''
class Parameter(nn.Module):
    """A trainable array, broadcast over the batch of `like`."""

    def __init__(self, weight_shape, shape):
        super().__init__()
        self.shape = shape
        self.weight = nn.Parameter(torch.zeros(weight_shape))

    def forward(self, like):
        return self.weight.reshape(self.shape).expand(like.shape[0], *self.shape[1:])
''',
    "TakeParameter": '''
class TakeParameter(nn.Module):
    """A trainable table picked by constant indices: weight.reshape(-1)[index], one row."""

    def __init__(self, weight_shape, index_shape):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(weight_shape))
        self.register_buffer("index", torch.zeros(index_shape, dtype=torch.int64))

    def forward(self):
        return self.weight.reshape(-1)[self.index].unsqueeze(0)
''',
    "keras_gelu": '''
def keras_gelu(x, approximate=False):
    """GELU as TensorFlow computes it (tf.nn.gelu): its constants pass through
    float32, so in float64 this differs from F.gelu by ~5e-9; in float32 the two agree."""
    if approximate:
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044714998453855515 * x ** 3)))
    return 0.5 * x * torch.erfc(-x * 0.7071067690849304)
''',
    "resize_bilinear": '''
def _bilinear_axis(n_in, n_out):
    """Source rows for each output row: half-pixel centres, float32 positions
    (tensorflow/core/kernels/image/resize_bilinear_op.cc: scale = in / out and
    (y + 0.5) * scale - 0.5 in float; lower = max(floor, 0), upper = min(ceil, in - 1))."""
    pos = (torch.arange(n_out, dtype=torch.float32) + 0.5) * (torch.tensor(n_in, dtype=torch.float32) / n_out) - 0.5
    low = torch.floor(pos)
    return low.clamp(min=0).long(), torch.ceil(pos).clamp(max=n_in - 1).long(), pos - low


def resize_bilinear(x, size):
    """Bilinear resize of (N, C, H, W) to size=(h, w) as TensorFlow's
    ResizeBilinear does it (half-pixel centres, no antialiasing): in float32,
    lerp along the width then the height, whatever the dtype of x, then cast
    back (F.interpolate(align_corners=False) differs by ~1e-6)."""
    (h, w), f = x.shape[-2:], x.float()
    y0, y1, dy = _bilinear_axis(h, size[0])
    x0, x1, dx = _bilinear_axis(w, size[1])
    top, bottom = f[..., y0, :], f[..., y1, :]
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * dx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * dx
    return (top + (bottom - top) * dy[:, None]).to(x.dtype)
''',
    "resize_nearest": '''
def _nearest_axis(n_in, n_out):
    """Source row of each output row as TensorFlow's ResizeNearestNeighbor
    (half-pixel centres) picks it: floor((y + 0.5) * (in / out)) in float32,
    at most in - 1 (resize_nearest_neighbor_op.cc)."""
    pos = (torch.arange(n_out, dtype=torch.float32) + 0.5) * (torch.tensor(n_in, dtype=torch.float32) / n_out)
    return torch.floor(pos).long().clamp(0, n_in - 1)


def resize_nearest(x, size):
    """Nearest-neighbour resize of (N, C, H, W) to size=(h, w), TF's rule
    (F.interpolate(mode="nearest-exact") is the same rule, with a float64
    scale for float64 input)."""
    return x[..., _nearest_axis(x.shape[-2], size[0]), :][..., _nearest_axis(x.shape[-1], size[1])]
''',
    "sparse_plus": '''
def sparse_plus(x):
    """Keras sparse_plus: 0 below -1, (x + 1)^2 / 4 on (-1, 1), x from 1."""
    return torch.where(x <= -1, torch.zeros_like(x), torch.where(x < 1, 0.25 * (x + 1) ** 2, x))
''',
    "sparsemax": '''
def sparsemax(x, dim=-1):
    """Sparsemax (Martins & Astudillo 2016) as Keras computes it: sort
    descending, find the support, subtract the threshold tau, clip at 0."""
    z, _ = torch.sort(x, dim=dim, descending=True)
    cumsum = torch.cumsum(z, dim=dim)
    shape = [1] * x.dim()
    shape[dim] = -1
    r = torch.arange(1, x.shape[dim] + 1, dtype=x.dtype).reshape(shape)
    support = z - (cumsum - 1) / r > 0
    k = support.to(x.dtype).sum(dim=dim, keepdim=True)
    tau = (torch.where(support, cumsum, torch.zeros_like(cumsum)).sum(dim=dim, keepdim=True) - 1) / k
    return torch.clamp(x - tau, min=0.0)
''',
    "keras_relu": '''
def keras_relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras' general ReLU (keras/src/activations/activations.py, ReLU.static_call)."""
    negative = F.relu(threshold - x) if negative_slope != 0 else None
    x = torch.where(x > threshold, x, torch.zeros_like(x)) if threshold != 0 else F.relu(x)
    if max_value is not None:
        x = torch.clamp(x, 0.0, max_value)
    return x - negative_slope * negative if negative is not None else x
''',
}

from torch_impl.write.seq_helpers import SEQ_HELPERS  # noqa: E402

HELPERS.update(SEQ_HELPERS)
