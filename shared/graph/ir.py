"""A framework-free model graph: the meeting point of every port.

A reader turns a framework's model into a `Graph` (keras_impl/read/__init__.py reads
Keras; torch_impl/read/__init__.py reads a PyTorch module through torch.fx); a writer
turns a `Graph` into source code and a module (torch_impl/write/__init__.py writes
PyTorch; keras_impl/write/__init__.py writes a Keras functional model). The graph holds plain data only:
names, shapes, attributes, numpy weights. Nothing from TensorFlow, Keras or
torch lives in it, so it prints, diffs and serialises to JSON (weights aside,
as numpy / safetensors).

Semantics are NEUTRAL = PyTorch's conventions, so the torch writer is nearly
1:1 and a Keras writer does the layout work in reverse:

- Tensors are channels-first where they carry channels in a conv context
  (N,C,L / N,C,H,W / N,C,D,H,W); tables, token ids and sequences stay
  batch-first as they are. Axes are numbered as torch sees the tensor.
- Weights are in torch layout under torch parameter names (`weight`, `bias`,
  `running_mean`, `running_var`, ...). `Graph.weight_sources` records, per
  state_dict key, the source variable and the exact (copy-only) transform that
  made it, so weights travel both ways (`to_source_layout`).
- `TensorSpec.keras_perm` is the permutation that turns the array Keras holds
  for a tensor into the neutral array (`np.transpose(keras_array, keras_perm)`),
  e.g. (0, 3, 1, 2) for an NHWC feature map; None when they are identical.
- Every tensor that mirrors a source layer's output keeps that layer's name
  (`conv1_relu`, or `layer:1` for a second output / second call), so a
  per-node check compares the two frameworks tensor by tensor. Helper tensors
  a reader adds (a permute for a Flatten, say) are `internal=True`.

Nodes appear in topological order. `Node.name` is unique and a valid Python
identifier (the writer names submodules after it). `Node.source` says where
the node came from: {"framework": "keras", "layer": name, "class": cls}.
Several neutral nodes may come from one source layer.

## Op vocabulary (attrs; weights)

Inputs are tensor names; constants travel in attrs (scalars) or weights (arrays,
already broadcastable against the neutral tensor).

| op | attrs | weights |
|---|---|---|
| `conv` | dims (1/2/3), in_channels, out_channels, kernel_size, stride, dilation, groups, padding = [(before, after)] per spatial dim (asymmetric allowed: TF "same" is made explicit here) | weight (O, I/groups, *k), bias? |
| `linear` | in_features, out_features (acts on the last axis); weight_in_out (transformers' Conv1D: weight is (in, out)) | weight (out, in), bias? |
| `batch_norm` | num_features, eps, momentum (torch meaning: new = (1-m)*old + m*batch), axis=1 | weight?, bias?, running_mean, running_var |
| `layer_norm` | normalized_shape, eps, elementwise_affine, bias (over the last len(normalized_shape) axes) | weight?, bias? |
| `pad` | pads (F.pad order: last axis first, (before, after) pairs flattened), value | |
| `max_pool`, `avg_pool` | dims, kernel_size, stride, padding [(before, after)]; avg_pool: count_include_pad (False = divide by the cells inside the input) | |
| `global_avg_pool`, `global_max_pool` | axes (list), keepdim | |
| `activation` | fn (relu, relu6, sigmoid, tanh, softmax, log_softmax, gelu, silu, elu, selu, leaky_relu, softplus, softsign, hard_sigmoid, hard_silu, exp, erf, mish, identity, relu_general, celu, glu, sparsemax, sparse_plus, sparse_sigmoid, threshold, soft_shrink, hard_shrink, squareplus, ...), plus its parameters (axis, approximate, alpha, negative_slope, max_value, threshold, default_value, b) | |
| `add`, `sub`, `mul`, `div`, `maximum`, `minimum`, `pow` | n-ary over inputs; optional scalar `const` with `const_side` ("right"/"left"); array constant in weights["const"] | const? |
| `conv_transpose` | dims, in_channels, out_channels, kernel_size, stride, dilation, padding (torch, per dim), output_padding, trim (per dim: cells to drop at the end, 0 or negative; TF output sizes torch's output_padding cannot say) | weight (I, O, *k), bias? |
| `upsample` | scale (per spatial dim, integers), mode ("nearest" = repeat, "bilinear" = TF's half-pixel ResizeBilinear in float32) | |
| `resize` | size (out height, width), mode ("nearest": TF's half-pixel ResizeNearestNeighbor, dtype kept; "bilinear": TF's half-pixel ResizeBilinear, computed in float32 whatever the dtype, then cast back, as Keras' Resizing does); channels first (N, C, H, W) | |
| `group_norm` | num_groups, num_channels, eps, scale, center (channels on axis 1) | weight?, bias? |
| `layer_norm_axes` | axes (neutral, without batch), shape (of the weights), eps, scale, center: layer norm over any axes | weight?, bias? (broadcastable, batch excluded) |
| `prelu` | per_channel (True: one slope per axis-1 channel, nn.PReLU), shape | weight ((C,) if per_channel, else broadcastable) |
| `scale` | (x * weight: a learned per-channel scale, Keras LayerScale) | weight (broadcastable) |
| `mean` | n-ary elementwise average of inputs | |
| `concat` | axis | |
| `reshape` | shape (without batch); unbatched=True: shape is the whole shape (a tensor made from a traced layer's variables only, no batch axis); merge_batch=True: axis 0 is the batch merged with (or split from) other axes, -1 in torch | |
| `permute` | dims (with batch, torch permute order) | |
| `flatten` | start_dim | |
| `repeat` | n: (N, F) -> (N, n, F) | |
| `crop` | crops [(before, after)] per spatial axis of a channels-first tensor | |
| `rescale` | scale, offset (scalars) | or scale, offset arrays (broadcastable) |
| `normalize` | floor, invert: (x - mean) / max(sqrt(variance), floor) | mean, variance (broadcastable) |
| `dropout` | p (identity in inference) | |
| `identity` | | |
| `slice` | index: one entry per axis from the batch on: [start, stop, step] (None = open end) or an int (picks one, the axis is dropped) | |
| `parameter` | shape: the output's shape with a leading 1 (broadcast over the batch of input 0, the model input); a trainable array (ViT's class token and position embedding, ConvNeXt's layer scale); trainable=False: a buffer or a constant folded from the example run (BERT's position ids), any dtype | weight (the source's own shape) |
| `take_parameter` | shape (as `parameter`): a trainable table picked by constant indices, `weight.reshape(-1)[index]` (relative position bias tables); one row that broadcasts over any batch | weight (the table, its own shape), index (int64, the output's shape without the batch) |
| `adaptive_avg_pool` | output_size (2-d): torch's adaptive average pooling where windows differ in size | |
| `multi_head_attention` | embed_dim, num_heads, bias; inputs query, key, value (batch first) | q_weight, k_weight, v_weight (E, E), q_bias, k_bias, v_bias, out_weight (E, E), out_bias |
| `embedding` | num_embeddings, embedding_dim (input: integer ids of any shape) | weight (V, D) |
| `not_equal` | const (the padding id): a boolean mask `x != const` (Keras' `mask_zero` mask is this op's node in the functional graph) | |
| `rnn` | kind (simple/lstm/gru/gru_reset_before), input_size, hidden_size, bias, nonlinearity (simple: tanh/relu), return_sequences, return_state, go_backwards. Inputs: x (N, T, F) and optionally a boolean mask (N, T): at a masked step the state and the output are carried over from the previous step (Keras' backend rnn). Outputs: output, then the states (h; lstm: h, c) when return_state | torch nn.RNN/LSTM/GRU names: weight_ih_l0 (G*H, F), weight_hh_l0 (G*H, H), bias_ih_l0, bias_hh_l0 (torch gate order: lstm i,f,g,o; gru r,z,n); gru_reset_before: weight_ih, weight_hh (r,z,n) and one bias |
| `flip` | axis | |
| `logical` | fn (or/and) over two boolean tensors (masks merged by Add & co) | |
| `reduce_bool` | fn (any/all), axes (from the batch on), keepdims: a boolean reduction (Masking's mask: any over the features) | |
| `masking` | mask_value: Keras Masking's output, steps whose features all equal mask_value set to 0 | |
| `masked_mean` | axis, keepdim. Inputs: x and a boolean mask over x's leading axes: mean over `axis` of the unmasked entries (Keras GlobalAveragePooling1D with a mask) | |
| `attention` | num_heads, key_dim, value_dim, q/k/v in features, out_features (output shape), bias, scale, causal, fast (Keras' fused dot_product_attention path: masked logits set to -0.7 * float32 max; else the einsum path: masked logits -1e9 and probabilities zeroed). Inputs: query, value, key, then optional boolean masks named in attrs["masks"] (query/value/key/attention) | query.weight (H*dk, Fq), key.weight (H*dk, Fk), value.weight (H*dv, Fv), output.weight (Fo, H*dv), biases |
| `variable` | (no inputs) a trainable array a traced custom layer owns and reads in call(), in its own shape (keras_impl/read/trace.py) | weight |
| `constant` | (no inputs) a concrete array computed while tracing a custom layer (ops.arange(maxlen)); integer arrays stay integers | const |
| `take` | rows of input 0 (a table) picked by the integer ids of input 1 (ops.take(table, ids, axis=0)) | |
| `embedding` (torch) | num_embeddings, embedding_dim, padding_idx? (torch gives that row no gradient) | weight (V, D) |
| `math` | fn: sqrt, rsqrt, exp, log, erf, negative, abs, reciprocal, logical_not, sin, cos (elementwise) | |
| `compare` | fn: equal, not_equal, less, less_equal, greater, greater_equal; optional scalar const (the right operand) | |
| `where` | x, y: scalar or None (None: the next input); inputs: condition, then the tensor operands | |
| `reduce_sum` | axes, keepdim | |
| `zeros_like` | zeros of input 0's shape and dtype (keras.ops.zeros_like) | |
| `roll` | shifts, dims: torch.roll on the tensor as it is (keras.ops.roll) | |
| `extract_patches` | size, stride, dilation (2-d), pads (F.pad order): an (N, C, H, W) image's windows as (N, H', W', kh*kw*C), each window's pixels in (row, column, channel) order (keras.ops.image.extract_patches) | |
| `dot_product_attention` | scale, causal, extras (the names of the further inputs: "bias", "mask"); inputs q, k, v (B, T, heads, head_dim), then those: keras.ops.dot_product_attention, masked logits replaced by -0.7 * float32 max | |
| `fft2` | part ("real" / "imag"): that part of the 2-d FFT over the last two axes of input 0 + i * input 1 | |
| `matmul` | torch.matmul of two inputs (numpy broadcasting, batch first); the Keras writer takes two tensors of equal rank (>= 3) | |
| `scaled_dot_product_attention` | scale (None: 1/sqrt(head_dim)), causal, mask (None/"bool"/"add"); inputs q, k, v (N, heads, T, head_dim), then the mask; a row with nothing kept gives 0 (torch's safe softmax) | |
| `cast` | dtype: a numpy dtype name, or "float" (the model's float dtype, whatever it is at run time: Keras casts read this way) | |
| `broadcast_to` | shape (numpy broadcasting, new axes on the left); a None size is the batch at run time, read from the node's last input (a model input) | |
| `tile` | repeats (np.tile, padded to the rank); None = the batch at run time, as broadcast_to | |
| `einsum` | equation (numpy subscripts) over the inputs | |
| `einsum_dense` | equation, kernel_shape, bias_shape: einsum(equation, x, weight) + bias (Keras EinsumDense) | weight (Keras' kernel shape), bias? |
| `masked_fill` | value, threshold: input 0 where the mask (input 1, broadcast) is True (or > threshold), else value | |
| `merge_time` / `split_time` | (split_time: steps) (N, T, ...) <-> (N*T, ...) around a TimeDistributed layer | |

Nodes from a traced custom layer carry source["scope"] and source["local"]
(graph.meta["scopes"]): the writer makes the layer an nn.Module class
(shared/graph/scopes.py).

Any node may carry attrs["shares"] = the name of an earlier node: a second
call of a shared layer, which reuses that node's weights (and has none itself).

New ops are fine: add a row here, a reader converter that emits them and a
writer emitter for them (see keras_impl/convert and torch_impl/emit).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "TensorSpec",
    "Node",
    "Graph",
    "channels_first_perm",
    "invert_perm",
    "identifier",
    "apply_transform",
    "invert_transform",
]


@dataclass
class TensorSpec:
    """One edge. shape: neutral layout, None for unknown (batch) sizes."""

    name: str
    shape: tuple
    dtype: str = "float32"
    keras_perm: tuple | None = None
    internal: bool = False

    @property
    def layout(self) -> str:
        """A short description for reports: "channels_first" or "as_is"."""
        return "as_is" if self.keras_perm is None else "channels_first"


@dataclass
class Node:
    name: str
    op: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)  # name -> np.ndarray, torch layout
    source: dict = field(default_factory=dict)

    def __str__(self) -> str:
        attrs = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        ws = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.weights.items())
        return f"{', '.join(self.outputs)} = {self.op}({', '.join(self.inputs)}; {attrs})" + (f" [{ws}]" if ws else "")


@dataclass
class Graph:
    """A model as data.

    Args:
        name: the model's name.
        inputs, outputs: tensor names, in the model's order.
        tensors: name -> TensorSpec for every edge.
        nodes: in topological order.
        meta: free-form facts (source framework, loss, optimizer, ...).
        weight_sources: state_dict key -> {"variable": source variable path,
            "transform": [steps] (see apply_transform), "source_shape": shape}.
    """

    name: str
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)
    nodes: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    weight_sources: dict = field(default_factory=dict)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def producer(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def mask_value(self, tensor: str):
        """The value a padding mask of `tensor` leaves out, or None: a `not_equal`
        node reading it directly (Keras' Embedding(mask_zero=True) masks the ids
        equal to 0 through ops.NotEqual, keras_impl/read/sequence.py)."""
        for n in self.nodes:
            if n.op == "not_equal" and n.inputs[:1] == [tensor]:
                return n.attrs["const"]
        return None

    def weight_key(self, node: Node, wname: str) -> str:
        """The state_dict key of `node`'s weight `wname`: `node_name.weight_name`,
        or the module path inside traced custom layers (`block_1.att.weight`,
        shared/graph/scopes.py)."""
        from shared.graph.scopes import weight_key

        return weight_key(self, node, wname)

    def weight_owners(self) -> dict:
        """weight_key inverted: {state key: (node name, weight name)}."""
        return {self.weight_key(n, w): (n.name, w) for n in self.nodes for w in n.weights}

    def state_dict(self) -> dict:
        """Every weight under its key (weight_key: the torch writer's keys)."""
        return {self.weight_key(n, k): v for n in self.nodes for k, v in n.weights.items()}

    def mirrored_tensors(self) -> list:
        """Tensors that mirror a source layer output (for per-node checks)."""
        return [t for t in self.tensors.values() if not t.internal]

    def __str__(self) -> str:
        lines = [f"graph {self.name}({', '.join(self.inputs)}) -> {', '.join(self.outputs)}"]
        lines += [f"  {n}" for n in self.nodes]
        return "\n".join(lines)

    def to_json(self) -> str:
        """Structure without weight values (weights: shapes and dtypes only)."""
        d = {
            "name": self.name,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "tensors": {k: asdict(v) for k, v in self.tensors.items()},
            "nodes": [
                {**asdict(n), "weights": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in n.weights.items()}}
                for n in self.nodes
            ],
            "meta": self.meta,
            "weight_sources": self.weight_sources,
        }
        return json.dumps(d, indent=1, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def channels_first_perm(rank: int) -> tuple:
    """(0, r-1, 1, ..., r-2): channels-last array -> channels-first array."""
    return (0, rank - 1, *range(1, rank - 1))


def invert_perm(perm) -> tuple:
    return tuple(int(i) for i in np.argsort(perm))


_NOT_IDENT = re.compile(r"\W")


def identifier(name: str, taken: set | None = None) -> str:
    """A Python identifier from a layer name ("block1/conv-1" -> "block1_conv_1"),
    unique within `taken` (which it updates)."""
    s = _NOT_IDENT.sub("_", name)
    if not s or s[0].isdigit():
        s = "l_" + s
    if s in {"self", "input", "return", "lambda", "class", "def", "import", "from", "pass", "x", "F", "nn", "torch"}:
        s = s + "_"
    if taken is not None:
        base, i = s, 1
        while s in taken:
            i += 1
            s = f"{base}_{i}"
        taken.add(s)
    return s


# Weight transforms: a list of copy-only steps, each ("transpose", perm),
# ("reshape", shape), ("blocks", (axis, *order)) (split `axis` into
# len(order) equal blocks and put block order[i] i-th: GRU gates z,r,h -> r,z,n
# is ("blocks", (0, 1, 0, 2))) or ("select", (axis, index)) (one slice of a
# variable: GRU's bias row 0 -> bias_ih). The inverse needs the source shape
# (kept in weight_sources) to undo reshapes, and, for "select", the variable's
# current value to put the slice back into.


def _blocks(a: np.ndarray, axis: int, order) -> np.ndarray:
    parts = np.split(a, len(order), axis=axis)
    return np.concatenate([parts[i] for i in order], axis=axis)


def apply_transform(a: np.ndarray, steps) -> np.ndarray:
    for kind, arg in steps:
        if kind == "transpose":
            a = np.transpose(a, arg)
        elif kind == "reshape":
            a = np.reshape(a, arg)
        elif kind == "blocks":
            a = _blocks(a, arg[0], arg[1:])
        elif kind == "select":
            a = np.take(a, arg[1], axis=arg[0])
        else:
            raise ValueError(f"unknown weight transform step {kind!r}")
    return np.require(a, requirements="C")  # contiguous; a 0-d weight stays 0-d (np.ascontiguousarray makes it (1,))


def _shape_after(shape: tuple, kind: str, arg) -> tuple:
    if kind == "transpose":
        return tuple(shape[i] for i in arg)
    if kind == "reshape":
        return tuple(arg)
    if kind == "select":
        return tuple(s for i, s in enumerate(shape) if i != arg[0])
    return tuple(shape)


def invert_transform(a: np.ndarray, steps, source_shape, current=None) -> np.ndarray:
    """Undo `apply_transform(x, steps)` for an x of `source_shape`. A
    "select" step puts `a` back into (a copy of) `current`, the variable's
    value now (the other slices are someone else's)."""
    shapes = [tuple(source_shape)]
    for kind, arg in steps:  # shapes before each step
        shapes.append(_shape_after(shapes[-1], kind, arg))
    for (kind, arg), before in zip(reversed(steps), reversed(shapes[:-1])):
        if kind == "transpose":
            a = np.transpose(a, invert_perm(arg))
        elif kind == "reshape":
            a = np.reshape(a, before)
        elif kind == "blocks":
            a = _blocks(a, arg[0], invert_perm(arg[1:]))
        else:  # select: only as the first step, on the variable itself
            full = np.array(current, dtype=a.dtype, copy=True)
            index = [slice(None)] * full.ndim
            index[arg[0]] = arg[1]
            full[tuple(index)] = a
            a = full
    return np.require(a, requirements="C")  # contiguous; a 0-d weight stays 0-d (np.ascontiguousarray makes it (1,))
