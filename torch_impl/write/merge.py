"""Elementwise and merge ops: add, sub, mul, div, maximum, minimum, pow (n-ary
or with a constant), mean, concat."""

from __future__ import annotations

from torch_impl.write.registry import Emitted, fmt, torch_emitter

__all__ = []

_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}
_FN = {"maximum": "torch.maximum", "minimum": "torch.minimum"}


@torch_emitter(*_INFIX, *_FN)
def binary(node, args, module, graph=None):
    args = list(args)
    helpers = ()
    module_ctor = None
    if "const" in node.weights:
        module_ctor = f"Constant({fmt(tuple(node.weights['const'].shape))})"
        const, helpers = f"{module}()", ("Constant",)
    elif "const" in node.attrs:
        const = fmt(node.attrs["const"])
    else:
        const = None
    if const is not None:
        args = args + [const] if node.attrs.get("const_side", "right") == "right" else [const] + args
    if node.op in _INFIX:
        expr = f" {_INFIX[node.op]} ".join(args)
    else:
        expr = args[0]
        for a in args[1:]:
            a = a if a.startswith(("self.", "torch")) or a.isidentifier() else f"torch.tensor({a}, dtype={args[0]}.dtype)"
            expr = f"{_FN[node.op]}({expr}, {a})"
    return Emitted(module_ctor, expr, helpers)


@torch_emitter("mean")
def mean(node, args, module, graph=None):
    return Emitted(None, f"({' + '.join(args)}) / {len(args)}")


@torch_emitter("concat")
def concat(node, args, module, graph=None):
    return Emitted(None, f"torch.cat([{', '.join(args)}], dim={node.attrs['axis']})")
