"""Neutral graph nodes -> PyTorch source: the emitter registry.

The twin of keras_impl/convert: there one function per Keras class reads a
layer into neutral nodes; here one function per neutral op (shared/graph/ir.py's
vocabulary) writes the PyTorch code for a node, grouped by family in this
package's modules. A new op needs a row in shared/graph/ir.py, a converter that
emits it and an emitter here:

    from torch_impl.write.registry import Emitted, torch_emitter

    @torch_emitter("my_op")
    def my_op(node, args, module, graph=None):
        # args: the Python names of the node's inputs; module: "self.<name>";
        # graph: the whole Graph (shapes of the inputs: graph.tensors[node.inputs[0]].shape)
        return Emitted(f"nn.Identity()", f"{module}({args[0]})")

`Emitted.module` is the constructor expression of the node's submodule (None
when the node needs none); its state_dict keys must be exactly the node's
weight names (`weight`, `bias`, ...). `Emitted.expr` computes the node's
output. `Emitted.helpers` names small helper classes/functions (helpers.py)
that the generated model.py must define; `Emitted.setup` holds further
__init__ lines (freezing a parameter, say).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.core.errors import UsageError
from shared.graph.registries import Registry

__all__ = ["torch_emitter", "emitter_for", "EMITTERS", "Emitted", "fmt"]

EMITTERS = Registry("@torch_emitter")


@dataclass
class Emitted:
    module: str | None
    expr: str
    helpers: tuple = ()
    setup: tuple = ()  # further __init__ statements, "{module}" standing for self.<name>


def torch_emitter(*ops: str, replace: bool = False):
    """A key registered twice is an error unless replace=True (shared/graph/registries.py)."""
    return EMITTERS.register(*ops, replace=replace)


def emitter_for(node):
    if node.op not in EMITTERS:
        raise UsageError(
            f"node {node.name!r} (op {node.op!r}, from {node.source.get('class', '?')} {node.source.get('layer', '')!r}) "
            f"has no PyTorch emitter (register one with @torch_emitter({node.op!r}), see torch_impl/write/__init__.py)"
        )
    return EMITTERS[node.op]


def fmt(v) -> str:
    """A Python literal for a number or a tuple/list of numbers (ints stay ints)."""
    if isinstance(v, (list, tuple)):
        inner = ", ".join(fmt(a) for a in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, float):
        if v == float("inf"):
            return 'float("inf")'
        if v == float("-inf"):
            return 'float("-inf")'
        return repr(v)
    return repr(int(v)) if hasattr(v, "__int__") and not isinstance(v, str) else repr(v)

