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
statement's outputs as it completes (a line trace on the forward frames of
the model and of its traced layers' classes only),
copying a tensor that the next statement changes in place.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch

from torch_impl.write.core import INPLACE_FNS

__all__ = ["CHAIN", "Statement", "forward_plan", "capture_forward"]

CHAIN = "x"  # the chained tensor's variable; shared.graph.ir.identifier never gives a tensor this name
# A class's forward may have a tensor named x (its call() parameter): its chain is then `h`.
CHAIN_NAMES = (CHAIN, "h", "y")
# Activations written in place (torch_impl/write/core.py, _INPLACE) after ops whose
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


def _consumers(steps: list) -> dict:
    """Tensor -> indices of the steps reading it (once per step)."""
    readers = {}
    for i, step in enumerate(steps):
        for t in dict.fromkeys(step.inputs):
            readers.setdefault(t, []).append(i)
    return readers


def chained(steps: list, kept: set) -> set:
    """Outputs read by the next step only (not in `kept`: the forward's parameters and returns)."""
    readers = _consumers(steps)
    return {step.outputs[0] for i, step in enumerate(steps)
            if len(step.outputs) == 1 and step.outputs[0] not in kept and readers.get(step.outputs[0]) == [i + 1]}


def forward_plan(steps: list, names: dict, kept: set) -> tuple:
    """(statements in forward's order, tensor -> variable name) for one forward.

    steps: graph nodes, or anything with .inputs, .outputs, .op, .attrs (a call
    of a traced layer's module: op "call"); names: tensor -> its own identifier
    in that forward; kept: its parameters and returned tensors (never chained
    or deleted). The chained tensors' variable is the first of CHAIN_NAMES no
    tensor of the forward is named (none free: no chain)."""
    free = next((c for c in CHAIN_NAMES if c not in set(names.values())), None)
    chain = chained(steps, kept) if free else set()
    var = {t: free if t in chain else v for t, v in names.items()}
    last = {t: idx[-1] for t, idx in _consumers(steps).items()}
    dies = {}
    for t, i in last.items():
        if t not in kept and t not in chain and t in var:
            dies.setdefault(i, []).append(var[t])
    statements = []
    for i, step in enumerate(steps):
        inplace = (step.op == "activation" and step.attrs.get("fn") in INPLACE_FNS and i > 0 and step.inputs[0] in chain
                   and steps[i - 1].op in INPLACE_AFTER)
        statements.append(Statement(step, [var[o] for o in step.outputs], inplace=inplace))
        if dies.get(i):
            statements.append(Statement(None, frees=dies[i]))
    return statements, var


def capture_forward(module, args: list, inputs: list, frames: dict) -> tuple:
    """(output of module(*args), {tensor name: value} of every statement).

    frames: module path ("" the model) -> one (first, reads, aliases) per call
    of that module's forward, in call order: first, the line of the forward's
    first body line counted from `def forward`; reads[k] = [(variable, tensor,
    copy)] that body line k assigns (copy: the next statement overwrites it in
    place, so a copy is kept); aliases = [(tensor, tensor it equals)] for lines
    written as a comment (an identity). Lines run top to bottom once each: a
    line's targets are read as the next line of that frame starts or the
    forward returns."""
    mods = [(p, m) for p, m in module.named_modules() if p in frames]
    paths = {id(m): p for p, m in mods}  # the model and its traced layers' modules
    codes = {type(m).forward.__code__ for _, m in mods}
    values, aliases, seen = dict(zip(inputs, args)), [], {}

    def reader(assigned: dict):
        previous = [None]

        def on_line(frame, event, arg):
            if event in ("line", "return"):
                local = frame.f_locals
                for v, t, copy in assigned.get(previous[0], ()):
                    value = local.get(v)
                    if isinstance(value, torch.Tensor):
                        values[t] = value.clone() if copy else value
                previous[0] = frame.f_lineno
            return on_line

        return on_line

    def on_call(frame, event, arg):
        if frame.f_code not in codes:
            return None
        path = paths.get(id(frame.f_locals.get("self")))
        k = seen[path] = seen.get(path, -1) + 1
        if path is None or k >= len(frames[path]):
            return None
        first, reads, alias = frames[path][k]
        aliases.extend(alias)
        base = frame.f_code.co_firstlineno + first
        return reader({base + j: r for j, r in reads.items()})

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
