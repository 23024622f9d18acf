"""The walk behind keras_impl/read/__init__.py: a Keras functional graph's calls in
topological order, nested models and traced custom layers descended into.

Nested Functional / Sequential models are recursed into (their inner tensors
join the outer graph); a layer with no converter is traced
(keras_impl/read/trace.py) and its call() recursed into the same way, each traced
call recorded as a scope (graph.meta["scopes"], shared/graph/scopes.py) so
that model.py can write it as a class of its own.
"""

from __future__ import annotations

import keras

from keras_impl.read.registry import Call
from keras_impl.read.trace import TracedFunction, local_name, trace_call, traced_shape
from shared.core.errors import UsageError

__all__ = []


def _functional_of(op):
    """The Functional behind a nested model, or None for a plain layer."""
    if isinstance(op, keras.Sequential):
        if op._functional is None:
            raise UsageError(f"nested Sequential {op.name!r} is not built with an Input; cannot read its graph")
        return op._functional
    if isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth"):
        return op
    return None


def _ordered_nodes(fn):
    if isinstance(fn, TracedFunction):
        yield from fn.nodes
        return
    for depth in sorted(fn._nodes_by_depth, reverse=True):
        for node in fn._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def _traceable(op) -> bool:
    """A Keras layer (not a functional model) with no registered converter:
    its call() is traced (keras_impl/read/trace.py). Registered converters keep priority."""
    from keras_impl.read.registry import CONVERTERS, registry_key

    return isinstance(op, keras.layers.Layer) and registry_key(op) not in CONVERTERS and _functional_of(op) is None


class _Walker:
    """Yields (Call, node) in topological order over nested models and traced
    custom layers, naming tensors."""

    def __init__(self, ids: dict | None = None, steps: int | None = None):
        self.ids = ids  # id(KerasTensor) -> value, when running eagerly
        self.steps = steps  # the length unknown sizes are traced at (keras_impl/read/probe.py)
        self.used = set()
        self.calls = {}
        self.first_call = {}  # id(layer) -> node name of its first call
        self.variable_ops = {}  # id(keras variable) -> TracedVariable (keras_impl/read/trace.py)
        self.scopes = []  # one dict per traced layer call: graph.meta["scopes"] (shared/graph/scopes.py)
        self.first_scope = {}  # id(layer) -> scope id of its first traced call
        self.bases = {}  # a traced layer's scoped name -> the layer (kept alive, as in self.calls)

    def _own_base(self, base: str, op) -> str:
        """`base`, or `base_2`, ... when another traced layer has it: each custom
        layer inside another gets a prefix of its own (its class in model.py)."""
        name, i = base, 1
        while self.bases.setdefault(name, op) is not op:
            i += 1
            name = f"{base}_{i}"
        return name

    def _frame(self, inner, op, index: int, base: str, frames: tuple, sub: dict) -> int:
        """Record one traced call of `op` (a custom layer); its scope id."""
        sid = len(self.scopes)
        first = self.first_scope.setdefault(id(op), sid)
        self.scopes.append({
            "id": sid, "parent": frames[-1] if frames else None, "layer": op.name, "class": type(op).__name__,
            "call": index, "first": first, "base": base,
            "inputs": {sub[id(t)]: p for t, p in zip(inner.inputs, inner.input_names)}, "outputs": [],
            "sizes": _sizes(op),
        })
        return sid

    def name_for(self, base: str, prefix: str) -> str:
        name = base if base not in self.used else f"{prefix}/{base}"
        i = 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def unique(self, base: str) -> str:
        """`base`, or `base_2`, `base_3`... (names inside a traced layer: its scope is their prefix)."""
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def _descend(self, fn, node, names, in_names, prefix, scope):
        """The (functional or traced) graph behind `node`, with its inputs named, or None."""
        op = node.operation
        inner = _functional_of(op)
        outer_inputs = node.input_tensors
        if inner is None and _traceable(op):
            batch = None  # read_graph: TRACE_BATCH; graph_values: the real batch of the values
            if self.ids is not None and node.input_tensors:
                batch = keras.ops.shape(self.ids[id(node.input_tensors[0])])[0]
            inner, outer_inputs = trace_call(op, node, self.variable_ops, batch, self.steps)
            in_names = [names[id(t)] for t in outer_inputs]
        if inner is None:
            return None
        sub = {id(t): n for t, n in zip(inner.inputs, in_names)}
        if self.ids is not None:
            for it, t in zip(inner.inputs, outer_inputs):
                self.ids[id(it)] = self.ids[id(t)]
        return inner, sub

    def walk(self, fn, names: dict, prefix: str = "", scope: str = "", parent=None, frames: tuple = ()):
        """names: id(KerasTensor) -> graph name, prefilled for fn.inputs.
        scope: inside a traced custom layer, the prefix of every name ("block/att").
        frames: ids of the traced layer calls (graph.meta["scopes"]) enclosing
        fn, outermost first (shared/graph/scopes.py)."""
        for node in _ordered_nodes(fn):
            op = node.operation
            in_names = [names[id(t)] for t in node.input_tensors]
            if all(id(t) in names for t in node.outputs):
                continue  # already converted: a mask pulled in by an earlier layer (_pull)
            index = self.calls.get(id(op), (0, op))[0]  # calls of this op in this walk (a shared layer's 2nd call: @1)
            # the op is kept alive with its count: the operations a trace makes are
            # new objects each time, and a freed one's id could come back for another
            self.calls[id(op)] = (index + 1, op)
            local = (local_name(op, parent) if scope else op.name) + (f"@{index}" if index else "")
            base = f"{scope}/{local}" if scope else local
            if scope and _traceable(op):  # two layers of one list (`self.blocks`) get one local name
                base = self._own_base(base, op)
            inner = self._descend(fn, node, names, in_names, prefix, scope)
            if inner is not None:
                inner, sub = inner
                traced = isinstance(inner, TracedFunction)
                # a Lambda is a function, not a class of the user's: its nodes stay in the enclosing forward
                classed = traced and not isinstance(op, keras.layers.Lambda)
                inner_frames = frames + (self._frame(inner, op, index, base, frames, sub),) if classed else frames
                yield from self.walk(inner, sub, prefix=op.name,
                                     scope=base if (traced or scope) else "", parent=op, frames=inner_frames)
                for t, it in zip(node.outputs, inner.outputs):
                    names[id(t)] = sub[id(it)]
                    if self.ids is not None:
                        self.ids[id(t)] = self.ids[id(it)]
                if classed:
                    self.scopes[inner_frames[-1]]["outputs"] = [sub[id(it)] for it in inner.outputs]
                continue
            outs = []
            for i, t in enumerate(node.outputs):
                name = base + (f":{i}" if i else "")
                names[id(t)] = self.unique(name) if scope else self.name_for(name, prefix or fn.name)
                outs.append(names[id(t)])
            call = Call(op, in_names, outs, node.arguments.args, node.arguments.kwargs,
                        [traced_shape(t.shape) for t in node.input_tensors], [traced_shape(t.shape) for t in node.outputs])
            call.base = base if scope else ""
            call.scope = frames
            call.shares = self.first_call.get(id(op))
            call.names = names
            yield call, node


def _sizes(layer) -> dict:
    """The number arguments of a custom layer's config (Keras records its
    constructor's arguments: keras/src/ops/operation.py `_auto_config`), by
    name: model.py passes the ones its instances differ in to their class."""
    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001  (a get_config that fails only costs the names)
        return {}
    return {k: v for k, v in config.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and isinstance(k, str) and k.isidentifier()}
