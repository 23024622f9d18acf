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
  deleted (`del name`) after the statement that reads it last;
- an activation of a chained tensor that a convolution, BatchNorm, Dense or
  arithmetic node has just made runs in place (`F.relu(x, inplace=True)`, as
  torchvision writes `nn.ReLU(inplace=True)`): no new tensor, and those
  nodes' gradients never read their own output.

The per-node check still needs every tensor, so `capture_forward` reads each
statement's outputs as it completes (a line trace on forward's frame only),
copying a tensor that the next statement changes in place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from shared.graph import Graph
from torch_impl.emit.core import INPLACE_FNS

__all__ = ["CHAIN", "Statement", "forward_plan", "capture_forward"]

CHAIN = "x"  # the chained tensor's variable; shared.graph.identifier never gives a tensor this name
# Activations written in place (torch_impl/emit/core.py, _INPLACE) after ops whose
# output is a new tensor, not a view, that their backward does not read (conv,
# BatchNorm and Linear keep their input; add/sub/mul nothing or their inputs).
INPLACE_AFTER = frozenset({"conv", "batch_norm", "linear", "add", "sub", "mul"})


@dataclass
class Statement:
    """One line of forward: `targets = <node's expression>` or, with node None, `del frees`."""

    node: object
    targets: list = field(default_factory=list)
    frees: list = field(default_factory=list)
    inplace: bool = False  # the node's activation overwrites its chained input


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
        inplace = (node.op == "activation" and node.attrs.get("fn") in INPLACE_FNS and i > 0 and node.inputs[0] in chain
                   and graph.nodes[i - 1].op in INPLACE_AFTER)
        statements.append(Statement(node, [var[o] for o in node.outputs], inplace=inplace))
        if dies.get(i):
            statements.append(Statement(None, frees=dies[i]))
    return statements, var


def capture_forward(module, args: list, inputs: list, reads: dict, aliases: list, first: int) -> tuple:
    """(output of module(*args), {tensor name: value} of every statement).

    reads: body line -> [(variable, tensor, copy)] it assigns; copy: a later
    statement overwrites that tensor in place, so a copy is kept; aliases: [(tensor, tensor it equals)] for lines written as a
    comment (an identity); first: the line of forward's first body line,
    counted from `def forward`. Lines run top to bottom once each: a line's
    targets are read as the next line starts or forward returns."""
    code = type(module).forward.__code__
    base = code.co_firstlineno + first
    assigned = {base + k: r for k, r in reads.items()}
    values = dict(zip(inputs, args))
    previous = [None]

    def on_line(frame, event, arg):
        if event in ("line", "return"):
            local = frame.f_locals
            for v, t, copy in assigned.get(previous[0], ()):
                if v in local:
                    values[t] = local[v].clone() if copy else local[v]
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
    for t, src in aliases:
        if src in values:
            values[t] = values[src]
    return out, values
