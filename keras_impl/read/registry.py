"""Keras layer -> neutral graph nodes: the converter registry.

One small function per Keras class (onnx2torch / nobuco style), registered by
a decorator keyed by the class name, grouped by family in this package's
modules (core.py, conv.py, pooling.py, merge.py, ...). The registry is the one
place that says what the port supports.

    from keras_impl.read.registry import keras_converter

    @keras_converter("MyScale")            # a custom layer's class name
    def my_scale(ctx, layer, call):
        x = ctx.tensor(call.inputs[0])     # its graph tensor, layout unchanged
        ctx.emit("mul", [x], call.outputs[0], attrs={"const": float(layer.factor)})

Keras layers are keyed by `type(layer).__name__`; keras.ops operations that
appear as graph nodes (`x + 3.0` builds an `ops.numpy.Add`) are keyed
"ops.<ClassName>" ("ops.Add", "ops.Multiply"), since layer and op class names
collide (`layers.Add` vs `ops.numpy.Add`). A converter registered for an
existing key replaces it (users can override a built-in).

A converter receives:
- `ctx` (`Context`): the graph under construction and the layout helpers
  (`tensor`, `perm_of`, `axis`, `emit`, `const_to_neutral`);
- `layer`: the Keras layer or operation;
- `call` (`Call`): one call of it: `inputs` (graph tensor names, in call
  order), `outputs` (the graph names its outputs must get), `args`/`kwargs`
  (the raw call arguments, KerasTensors included), `in_shapes`/`out_shapes`
  (Keras' own shapes).

Adding a layer kind: (1) if no neutral op expresses it, a row in
shared/graph/ir.py's table and an emitter in torch_impl/emit (`@torch_emitter`);
(2) a converter here, in its family's module (imported by keras_impl/read/__init__.py);
(3) a case in tests/flows/port/test_port_layers.py's CASES (float64 within 1e-12).
Layers of the same kind share one converter through several class names.

It emits neutral nodes (shared/graph/ir.py's op vocabulary) with `ctx.emit`,
deciding the layout of each output: `layout="cf"` (channels first) or "as_is"
(exactly Keras' array), or "same" (the layout of the first input). Weights are
passed as (keras variable, transform steps) so the graph records how to map
them both ways. A layer the registry lacks raises `UnsupportedLayerError`
(exit 2) naming the layer, its class and what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.core.errors import UsageError
from shared.graph.ir import Graph, Node, TensorSpec, apply_transform, channels_first_perm, identifier, invert_perm
from shared.graph.registries import Registry

__all__ = ["keras_converter", "converter_for", "CONVERTERS", "Call", "Context", "UnsupportedLayerError", "same_pads"]

CONVERTERS = Registry("@keras_converter")


class UnsupportedLayerError(UsageError):
    """A Keras layer (or option of one) the port cannot convert."""


def keras_converter(*class_names: str, replace: bool = False):
    """Register `fn(ctx, layer, call)` for these Keras class names.

    A key registered twice is an error unless replace=True (shared/graph/registries.py).
    """
    return CONVERTERS.register(*class_names, replace=replace)


def registry_key(operation) -> str:
    import keras  # local: this package must import without building anything

    name = type(operation).__name__
    return name if isinstance(operation, keras.layers.Layer) else f"ops.{name}"


def converter_for(operation):
    key = registry_key(operation)
    if key not in CONVERTERS:
        raise UnsupportedLayerError(
            f"layer {operation.name!r} of class {key} is not supported by the port: no converter registered for "
            f"{key!r} (register one with @keras_converter({key!r}), see keras_impl/read/__init__.py)"
        )
    return CONVERTERS[key]


def unsupported(layer, what: str):
    return UnsupportedLayerError(f"layer {layer.name!r} of class {type(layer).__name__}: {what} is not supported by the port")


@dataclass
class Call:
    layer: object
    inputs: list
    outputs: list
    args: tuple
    kwargs: dict
    in_shapes: list
    out_shapes: list
    node_name: str = ""  # identifier for the main node of this call
    shares: str | None = None  # node name of an earlier call of the same layer
    names: dict | None = None  # id(KerasTensor) -> graph name, for tensors reached by attribute (masks)
    pull: object = None  # pull(KerasTensor) -> graph name, converting a node the functional graph left out
    masks: dict | None = None  # masks Keras hands this call at run time (keras_impl/masks.py), by argument
    base: str = ""  # inside a traced custom layer: the scoped name ("block/att") its node is named after
    scope: tuple = ()  # ids of the traced layer calls around it, outermost first (graph.meta["scopes"])


def same_pads(size, kernel, stride, dilation=1) -> tuple:
    """TF "same" padding (before, after) for one spatial axis.

    out = ceil(in / s); total = max((out - 1) * s + (k - 1) * d + 1 - in, 0);
    before = total // 2, the odd extra goes after (PORTING_TRAPS.md).
    """
    eff = (kernel - 1) * dilation + 1
    if size is None:
        if stride != 1:
            raise UsageError("TF 'same' padding with stride > 1 needs a fixed input size")
        total = eff - 1
    else:
        out = -(-size // stride)
        total = max((out - 1) * stride + eff - size, 0)
    return (total // 2, total - total // 2)


@dataclass
class Context:
    """The graph under construction, handed to every converter.

    Args:
        graph: nodes and tensors so far (in topological order).
        dtype: the model's float dtype (constants are made in it).
        current: the call being converted (its names, shapes and layer).
        variable_index: id(keras variable) -> position in model.weights.
    """

    graph: Graph
    dtype: str = "float32"
    current: Call | None = None
    variable_index: dict = field(default_factory=dict)
    _taken: set = field(default_factory=set)  # node names handed out
    _emitted: set = field(default_factory=set)  # node names used by emitted nodes
    _converted: dict = field(default_factory=dict)  # (tensor, perm) -> tensor in that layout

    # --- layouts ---
    def perm_of(self, tensor: str):
        return self.graph.tensors[tensor].keras_perm

    def rank(self, tensor: str) -> int:
        return len(self.graph.tensors[tensor].shape)

    def keras_shape(self, tensor: str) -> tuple:
        spec = self.graph.tensors[tensor]
        if spec.keras_perm is None:
            return tuple(spec.shape)
        inv = invert_perm(spec.keras_perm)
        return tuple(spec.shape[i] for i in inv)

    def _want_perm(self, tensor: str, layout):
        if layout in (None, "same"):
            return self.perm_of(tensor)
        if layout == "as_is":
            return None
        if layout == "cf":
            r = self.rank(tensor)
            return channels_first_perm(r) if r >= 3 else None
        return tuple(layout)

    def tensor(self, tensor: str, layout=None) -> str:
        """The graph tensor `tensor` in `layout` ("cf", "as_is", a keras_perm,
        or None = as it is); adds a permute node when the layout differs."""
        want = self._want_perm(tensor, layout)
        have = self.perm_of(tensor)
        if _norm(want, self.rank(tensor)) == _norm(have, self.rank(tensor)):
            return tensor
        key = (tensor, want)
        if key not in self._converted:
            r = self.rank(tensor)
            # neutral_now[i] = keras[have[i]]; want neutral_new[j] = keras[want[j]]
            have_n, want_n = _norm(have, r), _norm(want, r)
            dims = tuple(have_n.index(k) for k in want_n)
            suffix = "channels_first" if want is not None else "channels_last"
            name = self.fresh_tensor(f"{tensor}_{suffix}")
            self.emit("permute", [tensor], name, layout=want, attrs={"dims": dims},
                      keras_shape=self.keras_shape(tensor), internal=True,
                      node_name=self.node_name(name), source=self.graph.producer(tensor).source if self.graph.producer(tensor) else {})
            self._converted[key] = name
        return self._converted[key]

    def axis(self, tensor: str, keras_axis: int) -> int:
        """A Keras axis of `tensor` as the neutral axis number."""
        r = self.rank(tensor)
        a = keras_axis % r
        return _norm(self.perm_of(tensor), r).index(a)

    def const_to_neutral(self, value, like: str) -> np.ndarray:
        """A constant broadcast against Keras' array of `like`, in `like`'s neutral layout."""
        a = np.asarray(value, dtype=self.dtype)
        r = self.rank(like)
        if a.ndim == 0:
            return a
        a = a.reshape((1,) * (r - a.ndim) + a.shape)
        perm = self.perm_of(like)
        return np.ascontiguousarray(a if perm is None else np.transpose(a, perm))

    # --- names ---
    def fresh_tensor(self, base: str) -> str:
        name, i = base, 1
        while name in self.graph.tensors:
            i += 1
            name = f"{base}_{i}"
        return name

    def node_name(self, base: str) -> str:
        return identifier(base, self._taken)

    # --- emitting ---
    def emit(self, op: str, inputs: list, output: str, *, layout="same", attrs=None, weights=None,
             keras_shape=None, internal=False, node_name=None, source=None, call: Call | None = None) -> Node:
        """Add a node producing the graph tensor `output`.

        Args:
            layout: the output's layout: "cf", "as_is", "same" (first input's) or a keras_perm.
            weights: name -> np.ndarray (already neutral), or (keras variable, steps).
            keras_shape: Keras' shape of the output; defaults to the call's
                first output shape (the first input's when there is no call).
        """
        call = call or self.current
        if keras_shape is None:
            keras_shape = call.out_shapes[0] if call is not None else self.keras_shape(inputs[0])
        keras_shape = tuple(keras_shape)
        if layout == "same":
            perm = self.perm_of(inputs[0]) if inputs else None
            perm = perm if perm is not None and len(perm) == len(keras_shape) else None
        elif layout == "cf":
            perm = channels_first_perm(len(keras_shape)) if len(keras_shape) >= 3 else None
        elif layout == "as_is":
            perm = None
        else:
            perm = tuple(layout) if layout is not None else None
        shape = keras_shape if perm is None else tuple(keras_shape[i] for i in perm)
        self.graph.tensors[output] = TensorSpec(output, tuple(shape), self.dtype, perm, internal)
        if node_name is None:
            if call is not None and call.node_name not in self._emitted:
                node_name = call.node_name  # the layer's main node: its own name
            else:
                node_name = self.node_name(f"{call.node_name}_{op}" if call is not None else output)
        self._emitted.add(node_name)
        name = node_name
        if call is not None and call.shares and weights:
            attrs = {**(attrs or {}), "shares": call.shares}  # a second call of a layer reuses its module
            weights = None
        source = dict(source or (self.source_of(call) if call is not None else {}))
        source.pop("scope", None)  # a permute takes its producer's source, but sits where it is emitted
        if call is not None and call.scope:
            source["scope"] = list(call.scope)
        node = Node(name, op, list(inputs), [output], dict(attrs or {}), {}, source)
        for wname, w in (weights or {}).items():
            node.weights[wname] = self._weight(node, wname, w)
        self.graph.nodes.append(node)
        return node

    def _weight(self, node: Node, wname: str, w) -> np.ndarray:
        if isinstance(w, tuple):
            var, steps = w
            value = np.asarray(var.numpy() if hasattr(var, "numpy") else var)
            self.graph.weight_sources[f"{node.name}.{wname}"] = {
                "variable": getattr(var, "path", str(getattr(var, "name", wname))),
                "index": self.variable_index.get(id(var)),  # position in model.weights (paths change in clones)
                "transform": [[k, list(a)] for k, a in steps],
                "source_shape": list(value.shape),
            }
            return apply_transform(value, steps)
        return np.require(np.asarray(w), requirements="C")  # a 0-d array stays 0-d

    @staticmethod
    def source_of(call: Call) -> dict:
        return {"framework": "keras", "layer": call.layer.name, "class": type(call.layer).__name__}


def _norm(perm, rank: int) -> tuple:
    return tuple(range(rank)) if perm is None else tuple(perm)
