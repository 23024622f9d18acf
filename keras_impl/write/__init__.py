"""Framework-free Graph (shared/graph/ir.py) -> readable Keras source and model.

The twin of torch_impl/write/__init__.py (neutral -> PyTorch). `write_source(graph)`
writes a standalone model_keras.py: imports keras only, a `build_model()`
returning a functional keras.Model of built-in layers and keras.ops (so
`keras.models.load_model` needs no custom objects), one statement per neutral
node, top to bottom, each with its Keras (channels-last) shape as a comment,
layers named after the graph's nodes (the torch module paths, dots as
underscores). `build_model(graph)` builds the model BY EXECUTING that source
and sets the graph's weights.

Layouts: the graph is channels first; the writer decides per tensor how Keras
holds it (`TensorSpec.keras_perm`, written back into the graph): images
channels last, everything else as in torch. An op states the layout it needs
(`Writer.arg(tensor, "cf" | "as_is" | None)`): a Permute layer is inserted
where they differ, e.g. before a Flatten that must keep torch's (C, H, W)
order for the Dense after it. A `permute` node costs nothing: it changes how
the result is described, not the array Keras holds.

Weights: each op records, per neutral weight, the Keras variable and the
copy-only transform from Keras' array to the neutral one (OIHW <- HWIO,
Linear's transpose, ...) in `graph.weight_sources` (shared/graph/ir.py), so
keras_impl/port.py's get/set weights and gradients work on the result.
"""

from __future__ import annotations

import re
import sys
import types

import keras
import numpy as np

from shared.core.errors import UsageError
from shared.graph.ir import Graph, channels_first_perm, identifier, invert_perm, invert_transform
from shared.graph.registries import Registry

__all__ = ["write_source", "build_model", "graph_values", "keras_writer", "WRITERS", "Writer"]

WRITERS = Registry("@keras_writer")
# Automatic names of the keras.ops operations the writers use (snake_case of the class).
_OPS_AUTO_NAMES = {"add", "subtract", "multiply", "divide", "mean", "max", "maximum", "minimum", "pad", "get_item",
                   "ones_like", "concatenate", "gelu", "log_softmax", "power", "true_divide", "erf", "where", "equal",
                   "not_equal", "cast", "matmul", "stop_gradient", "expand_dims", "logical_and", "logical_or", "softmax",
                   "swapaxes", "sum", "sqrt", "rsqrt", "exp", "negative", "greater", "less", "greater_equal",
                   "less_equal", "tril", "ones", "logical_not", "abs", "log", "reciprocal", "relu6", "reshape"}
_RESERVED = {"keras", "layers", "ops", "build_model", "model", "batch_ones", "np", "gelu", "adaptive_average_pooling_2d",
             "scaled_dot_product_attention"}


def keras_writer(*ops: str, replace: bool = False):
    """Register `fn(w, node)` writing the Keras code of these neutral ops.

    A key registered twice is an error unless replace=True (shared/graph/registries.py).
    """
    return WRITERS.register(*ops, replace=replace)


def _norm(perm, rank):
    return tuple(range(rank)) if perm is None else tuple(perm)


def _clean(perm, rank):
    perm = _norm(perm, rank)
    return None if perm == tuple(range(rank)) else perm


def fmt_shape(shape) -> str:
    return "(" + ", ".join("N" if i == 0 and s is None else ("?" if s is None else str(int(s))) for i, s in enumerate(shape)) + ")"


class Writer:
    """Source lines of build_model(), the layout of every tensor and the weight plan."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.lines: list = []
        self.var: dict = {}  # tensor -> Python variable holding Keras' array
        self.perm: dict = {}  # tensor -> keras_perm (None: Keras holds the neutral array)
        self.plan: list = []  # (weight key, layer name, attribute, steps keras->neutral)
        self._vars = set(_RESERVED)
        self._layers: set = set()
        self._converted: dict = {}
        self.node = None
        self.uses_batch_ones = False
        self.helpers: list = []  # helper functions model_keras.py defines (write_ops.HELPERS keys)

    # --- names and layouts ---
    def layer_name(self, base: str) -> str:
        """A unique layer name; names keras.ops nodes may take automatically
        ("add", "add_1", "mean", ...) get a "_torch" suffix, since a model's
        operation names must be unique."""
        if re.sub(r"_\d+$", "", base) in _OPS_AUTO_NAMES:
            base = f"{base}_torch"
        return identifier(base, self._layers)

    def rank(self, tensor) -> int:
        return len(self.graph.tensors[tensor].shape)

    def keras_shape(self, tensor, perm="held") -> tuple:
        shape = self.graph.tensors[tensor].shape
        perm = self.perm.get(tensor) if perm == "held" else perm
        return tuple(shape) if perm is None else tuple(shape[i] for i in invert_perm(perm))

    def want(self, tensor, layout):
        r = self.rank(tensor)
        if layout is None:
            return self.perm.get(tensor)
        if layout == "cf":
            return channels_first_perm(r) if r >= 3 else None
        if layout == "as_is":
            return None
        return _clean(layout, r)

    def keras_axis(self, tensor, axis: int) -> int:
        return _norm(self.perm.get(tensor), self.rank(tensor))[axis % self.rank(tensor)]

    def arg(self, tensor: str, layout=None) -> str:
        """The variable holding `tensor` in `layout`; a Permute layer when it is held otherwise."""
        have, want = self.perm.get(tensor), self.want(tensor, layout)
        if _clean(have, self.rank(tensor)) == _clean(want, self.rank(tensor)):
            return self.var[tensor]
        key = (tensor, want)
        if key not in self._converted:
            r = self.rank(tensor)
            h, inv_w = _norm(have, r), invert_perm(_norm(want, r))
            dims = tuple(h[inv_w[j]] for j in range(1, r))
            what = "channels_last" if want == channels_first_perm(r) else "channels_first" if want is None else "permuted"
            name = self.layer_name(f"{tensor}_{what}")
            var = identifier(name, self._vars)
            self.lines.append(f"    {var} = layers.Permute({dims}, name={name!r})({self.var[tensor]})  "
                              f"# {fmt_shape(self.keras_shape(tensor, want))}")
            self._converted[key] = var
        return self._converted[key]

    def arg_flat(self, tensor: str) -> str:
        """`tensor` with torch's element order (for Flatten / Reshape): no Permute
        when the held perm only moves axes of size 1, e.g. (N, 1, 1, C)."""
        perm, shape = self.perm.get(tensor), self.graph.tensors[tensor].shape
        big = [p for i, p in enumerate(_norm(perm, self.rank(tensor))) if i == 0 or shape[i] != 1]
        return self.var[tensor] if big == sorted(big) else self.arg(tensor, "as_is")

    # --- emitting ---
    def out(self, expr: str, perm=None, tensor: str | None = None, comment: str = "") -> str:
        """`var = expr` for the node's output, held by Keras with `perm`."""
        tensor = tensor or self.node.outputs[0]
        perm = self.want(tensor, perm) if isinstance(perm, str) else perm
        self.perm[tensor] = _clean(perm, self.rank(tensor))
        var = identifier(tensor, self._vars)
        self.var[tensor] = var
        note = f"  {comment}" if comment else ""
        self.lines.append(f"    {var} = {expr}  # {fmt_shape(self.keras_shape(tensor))}{note}")
        return var

    def alias(self, src_var: str, perm, tensor: str | None = None) -> None:
        """The output IS an existing Keras array, described with another perm (permute, identity)."""
        tensor = tensor or self.node.outputs[0]
        self.perm[tensor] = _clean(perm, self.rank(tensor))
        self.var[tensor] = src_var

    def weight(self, wname: str, layer: str, attr: str, steps=()) -> None:
        self.plan.append((f"{self.node.name}.{wname}", layer, attr, [list(s) for s in steps]))

    def batch_ones(self) -> str:
        """A (N, 1) tensor of ones: what a `parameter` node's Dense reads."""
        if not self.uses_batch_ones:
            x = self.graph.inputs[0]
            idx = ", ".join([":"] + [":1"] * (self.rank(x) - 1))
            ones = f"ops.ones_like({self.var[x]}[{idx}])"
            if self.graph.tensors[x].dtype not in ("float32", "float64"):  # integer ids: float ones for the Dense
                ones = f"ops.cast({ones}, keras.config.floatx())"
            self.lines.append(f"    batch_ones = layers.Reshape((1,), name='batch_ones')({ones})  # (N, 1)")
            self._layers.add("batch_ones")
            self.uses_batch_ones = True
        return "batch_ones"

    def one_row(self) -> str:
        """A (1, 1) tensor of ones, from batch_ones: what broadcasts over any batch (a folded one too)."""
        if "one_row" not in self._layers:
            self.lines.append(f"    one_row = ops.max({self.batch_ones()}, axis=0, keepdims=True)  # (1, 1)")
            self._layers.add("one_row")
            self._vars.add("one_row")
        return "one_row"

    def unsupported(self, what: str) -> UsageError:
        n = self.node
        where = n.source.get("where") or n.source.get("layer") or n.name
        return UsageError(f"node {n.name!r} (op {n.op}, from {n.source.get('class', '?')} at {where}): {what} has no Keras form in the port")


_HEADER = '''"""{name}: Keras port of the PyTorch model {name!r}.

Generated by keras-torch-parity (`compare.py port`). Standalone: needs keras
only (built-in layers and keras.ops, no custom objects). Inputs and outputs
are in Keras' layout:
{layouts}
Load the saved model with:
    model = keras.models.load_model("model.keras")
"""

import keras
from keras import layers, ops

'''


def _input_perm(graph: Graph, name: str):
    rank = len(graph.tensors[name].shape)
    return channels_first_perm(rank) if rank >= 4 or (rank == 3 and _conv_consumer(graph, name)) else None


def _conv_consumer(graph, name) -> bool:
    return any(name in n.inputs and n.op in ("conv", "max_pool", "avg_pool", "batch_norm") for n in graph.nodes)


def _writer_pass(graph: Graph) -> Writer:
    from keras_impl.write import math_ops as write_math_ops, ops as write_ops, tensor_ops as write_tensor_ops  # noqa: F401  (register writers)

    w = Writer(graph)
    for name in graph.inputs:
        spec = graph.tensors[name]
        w.perm[name] = _input_perm(graph, name)
        var = identifier(name, w._vars)
        w.var[name] = var
        w._layers.add(name)
        shape = tuple(int(s) for s in w.keras_shape(name)[1:])
        dtype = "" if spec.dtype in ("float32", "float64") else f", dtype={spec.dtype!r}"
        w.lines.append(f"    {var} = keras.Input(shape={shape}, name={name!r}{dtype})  # {fmt_shape(w.keras_shape(name))}")
    for node in graph.nodes:
        w.node = node
        if node.op not in WRITERS:
            raise w.unsupported(f"op {node.op!r} (register a writer with @keras_writer({node.op!r}) in keras_impl/write/ops.py)")
        WRITERS[node.op](w, node)
    w.node = None
    for name, spec in graph.tensors.items():
        if name in w.perm:
            spec.keras_perm = w.perm[name]
    return w


def write_source(graph: Graph) -> tuple:
    """(model_keras.py text, plan) for `graph`; sets each tensor's keras_perm in the graph.

    plan: {"weights": [(weight key, layer name, attribute, steps keras->neutral)],
    "vars": {tensor: variable name in build_model}}."""
    w = _writer_pass(graph)
    outs = [w.arg(o, None) for o in graph.outputs]
    ins = [w.var[i] for i in graph.inputs]
    layouts = []
    for kind, names in (("input", graph.inputs), ("output", graph.outputs)):
        for n in names:
            how = "channels last (PyTorch has channels first)" if w.perm.get(n) else "as in PyTorch"
            layouts.append(f"    {kind} {n}: {fmt_shape(w.keras_shape(n))}, {how}")
    from keras_impl.write.ops import HELPERS

    lines = [_HEADER.format(name=graph.name, layouts="\n".join(layouts) + "\n")]
    lines += [HELPERS[h].strip() + "\n\n" for h in w.helpers]
    lines.append("def build_model():")
    lines += w.lines
    one = lambda xs: xs[0] if len(xs) == 1 else "[" + ", ".join(xs) + "]"  # noqa: E731
    lines.append(f"    return keras.Model({one(ins)}, {one(outs)}, name={identifier(graph.name)!r})")
    return "\n".join(lines) + "\n", {"weights": w.plan, "vars": dict(w.var)}


def _exec_build(source: str, dtype: str) -> tuple:
    """(model, locals of build_model) from executing the source under floatx=dtype."""
    mod = types.ModuleType("ported_keras_model")
    exec(compile(source, "<model_keras.py>", "exec"), mod.__dict__)
    code = mod.build_model.__code__
    captured = {}

    def profiler(frame, event, arg):
        if event == "return" and frame.f_code is code:
            captured.update(frame.f_locals)

    # Layers take the global dtype policy (cached once read), inputs take floatx: set both.
    old_floatx, old_policy, old = keras.config.floatx(), keras.config.dtype_policy(), sys.getprofile()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    sys.setprofile(profiler)
    try:
        model = mod.build_model()
    finally:
        sys.setprofile(old)
        keras.config.set_floatx(old_floatx)
        keras.config.set_dtype_policy(old_policy)
    return model, captured


def build_model(graph: Graph, source: str | None = None, plan=None, dtype: str = "float32") -> tuple:
    """(Keras model with the graph's weights, source, plan); records graph.weight_sources."""
    if source is None:
        source, plan = write_source(graph)
    model, local = _exec_build(source, dtype)
    weights = graph.state_dict()
    position = {id(v): i for i, v in enumerate(model.weights)}
    sources = {}
    for key, layer, attr, steps in plan["weights"]:
        var = model.get_layer(layer)
        for part in attr.split("."):  # "query_dense.kernel" inside a MultiHeadAttention
            var = getattr(var, part)
        steps_t = [(k, tuple(a)) for k, a in steps]
        value = invert_transform(np.asarray(weights[key]), steps_t, tuple(var.shape))
        var.assign(value.astype(keras.backend.standardize_dtype(var.dtype)))
        sources[key] = {"variable": var.path, "index": position[id(var)], "transform": steps, "source_shape": list(var.shape)}
    graph.weight_sources = sources
    model._ktp_locals = local  # the symbolic tensors by variable name, for graph_values
    model._ktp_vars = plan["vars"]
    return model, source, plan


def graph_values(model, graph: Graph, inputs) -> dict:
    """Every mirrored tensor of one inference pass (a model from build_model),
    neutral layout, by graph name."""
    local, var_of = model._ktp_locals, model._ktp_vars
    names = [t for t, spec in graph.tensors.items() if not spec.internal and t not in graph.inputs and var_of.get(t) in local]
    probe = keras.Model(model.inputs, [local[var_of[t]] for t in names])
    xs = [np.transpose(x, invert_perm(graph.tensors[n].keras_perm)) if graph.tensors[n].keras_perm else x
          for n, x in zip(graph.inputs, inputs)]
    outs = probe(xs, training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    values = {n: np.asarray(x) for n, x in zip(graph.inputs, inputs)}
    for t, y in zip(names, outs):
        a = keras.ops.convert_to_numpy(y)
        perm = graph.tensors[t].keras_perm
        values[t] = a if perm is None else np.ascontiguousarray(np.transpose(a, perm))
    return values
