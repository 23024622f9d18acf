"""Which Python variable holds each tensor in the generated forward, and when
it is freed; and reading every tensor back from one forward pass.

A forward that keeps every layer's output in its own local variable holds all
activations until it returns: each new tensor is fresh memory (on CPU, pages
the kernel must zero on first touch), where a hand-written model reuses the
memory of tensors already dead. Measured at 224x224, 1 thread (BENCHMARKS.md,
"Generated model.py against torchvision"): MobileNetV2 ran at 0.55-0.61 of
torchvision's speed, and 0.9-1.0 once dead tensors were freed. So the
generated forward is written as a person writes one:

- a tensor read once, by the very next statement, is `x` (`x =
  self.conv1_bn(x)`), as in torchvision's `x = self.relu(x)`;
- any other tensor keeps its own name (branches, residuals, outputs) and is
  deleted (`del name`) after the statement that reads it last.

The per-node check still needs every tensor, so `capture_forward` reads each
statement's outputs as it completes (a line trace on forward's frame only).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from shared.graph import Graph

__all__ = ["CHAIN", "Statement", "forward_plan", "capture_forward"]

CHAIN = "x"  # the chained tensor's variable; shared.graph.identifier never gives a tensor this name


@dataclass
class Statement:
    """One line of forward: `targets = <node's expression>` or, with node None, `del frees`."""

    node: object
    targets: list = field(default_factory=list)
    frees: list = field(default_factory=list)


def _consumers(graph: Graph) -> dict:
    """Tensor -> indices of the nodes reading it (once per node)."""
    readers = {}
    for i, node in enumerate(graph.nodes):
        for t in dict.fromkeys(node.inputs):
            readers.setdefault(t, []).append(i)
    return readers


def chained(graph: Graph) -> set:
    """Tensors read by the next node only (not an input or output of the model)."""
    readers = _consumers(graph)
    kept = set(graph.inputs) | set(graph.outputs)
    return {node.outputs[0] for i, node in enumerate(graph.nodes)
            if len(node.outputs) == 1 and node.outputs[0] not in kept and readers.get(node.outputs[0]) == [i + 1]}


def forward_plan(graph: Graph, names: dict) -> tuple:
    """(statements in forward's order, tensor -> variable name).

    names: tensor -> its own identifier (torch_impl.write.variable_names)."""
    chain = chained(graph)
    var = {t: CHAIN if t in chain else v for t, v in names.items()}
    last = {t: idx[-1] for t, idx in _consumers(graph).items()}
    kept = set(graph.inputs) | set(graph.outputs) | chain
    dies = {}
    for t, i in last.items():
        if t not in kept and t in var:
            dies.setdefault(i, []).append(var[t])
    statements = []
    for i, node in enumerate(graph.nodes):
        statements.append(Statement(node, [var[o] for o in node.outputs]))
        if dies.get(i):
            statements.append(Statement(None, frees=dies[i]))
    return statements, var


def capture_forward(module, graph: Graph, names: dict, args: list, first: int) -> tuple:
    """(output of module(*args), {tensor name: value} of every statement).

    first: the line of forward's first statement, counted from `def forward`
    (torch_impl.write writes one line per Statement from there). Lines run top
    to bottom once each: a line's targets are read as the next line starts or
    forward returns."""
    statements, _ = forward_plan(graph, names)
    code = type(module).forward.__code__
    base = code.co_firstlineno + first
    assigned = {base + k: [(v, t) for v, t in zip(s.targets, s.node.outputs)]
                for k, s in enumerate(statements) if s.node is not None}
    values = {t: a for t, a in zip(graph.inputs, args)}
    previous = [None]

    def read(frame):
        local = frame.f_locals
        for v, t in assigned.get(previous[0], ()):
            if v in local:
                values[t] = local[v]

    def on_line(frame, event, arg):
        if event in ("line", "return"):
            read(frame)
            previous[0] = frame.f_lineno
        return on_line

    def on_call(frame, event, arg):
        return on_line if frame.f_code is code else None

    old = sys.gettrace()
    sys.settrace(on_call)
    try:
        out = module(*args)
    finally:
        sys.settrace(old)
    return out, values
