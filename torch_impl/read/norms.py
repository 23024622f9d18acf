"""Readers of vector norms and fused multiply-adds (torch.fx and torch.export
nodes alike): `x.norm(p=2, dim, keepdim)` (ConvNeXt-V2's GRN),
`F.normalize(x, p=2, dim, eps)` (EdgeNeXt's cross-covariance attention),
`torch.addcmul(input, t1, t2, value)`, `clamp_min`. Each is written out as
neutral elementwise ops and reductions, exactly as torch defines them
(torch/functional.py norm -> linalg.vector_norm, torch/nn/functional.py
normalize: x / max(||x||, eps))."""

from __future__ import annotations

from torch_impl.read import torch_reader

__all__ = []


def _l2(ctx, x, dims, keep, out=None, internal=False) -> str:
    """sqrt(sum(x * x over dims)): the 2-norm torch computes (linalg_vector_norm, ord=2)."""
    if dims is None:
        raise ctx.unsupported("a norm over every axis, batch included")
    dims = sorted(ctx.dim(d, x) for d in (dims if isinstance(dims, (list, tuple)) else [dims]))
    if 0 in dims:
        raise ctx.unsupported("a norm over the batch axis")
    base = ctx.node.name
    sq = ctx.emit("mul", [ctx.tensor(x), ctx.tensor(x)], out=f"{base}_square", internal=True, shape=(None, *ctx.shape(x)[1:]))
    shape = [s for i, s in enumerate(ctx.shape(x)) if i not in dims] if not keep else [1 if i in dims else s for i, s in enumerate(ctx.shape(x))]
    total = ctx.emit("reduce_sum", [sq], attrs={"axes": dims, "keepdim": keep}, out=f"{base}_sum", internal=True,
                     shape=(None, *shape[1:]))
    return ctx.emit("math", [total], attrs={"fn": "sqrt"}, out=out, internal=internal, shape=(None, *shape[1:]))


def _p(ctx, p):
    p = ctx.value(p)
    if p not in (2, 2.0, "fro", None):
        raise ctx.unsupported(f"a {p}-norm (only the 2-norm)")


@torch_reader("method.norm", "function.norm", "aten.linalg_vector_norm", "aten.norm")
def norm(ctx, n):
    if n.op == "call_function" and getattr(n.target, "_opname", "") == "linalg_vector_norm":
        _p(ctx, ctx.arg(1, "ord", 2))
        if ctx.arg(4, "dtype") is not None:
            raise ctx.unsupported("a norm with a dtype")
    else:
        _p(ctx, ctx.arg(1, "p", 2))
    _l2(ctx, n.args[0], ctx.value(ctx.arg(2, "dim")), bool(ctx.value(ctx.arg(3, "keepdim", False))))


@torch_reader("function.normalize")
def normalize(ctx, n):
    """F.normalize(x, p=2, dim=1, eps=1e-12) = x / max(||x||_2 over dim (kept), eps)."""
    _p(ctx, ctx.arg(1, "p", 2.0))
    x, eps = n.args[0], float(ctx.value(ctx.arg(3, "eps", 1e-12)))
    base = ctx.node.name
    length = _l2(ctx, x, ctx.value(ctx.arg(2, "dim", 1)), True, out=f"{base}_norm", internal=True)
    floor = ctx.emit("maximum", [length], attrs={"const": eps, "const_side": "right"}, out=f"{base}_floor", internal=True,
                     shape=ctx.graph.tensors[length].shape)
    ctx.emit("div", [ctx.tensor(x), floor])


@torch_reader("function.addcmul", "method.addcmul", "aten.addcmul")
def addcmul(ctx, n):
    """input + value * t1 * t2 (torch.addcmul)."""
    x, t1, t2 = n.args[:3]
    value = float(ctx.value(ctx.arg(3, "value", 1)))
    prod = ctx.emit("mul", [ctx.tensor(t1), ctx.tensor(t2)], out=f"{n.name}_product", internal=True,
                    shape=(None, *ctx.values[n].shape[1:]))
    if value != 1:
        prod = ctx.emit("mul", [prod], attrs={"const": value, "const_side": "right"}, out=f"{n.name}_scaled", internal=True,
                        shape=(None, *ctx.values[n].shape[1:]))
    ctx.emit("add", [ctx.tensor(x), prod])


@torch_reader("method.clamp_min", "function.clamp_min", "aten.clamp_min")
def clamp_min(ctx, n):
    c = ctx.value(n.args[1])
    if not isinstance(c, (int, float)):
        raise ctx.unsupported("clamp_min with a tensor bound")
    ctx.emit("maximum", [ctx.tensor(n.args[0])], attrs={"const": float(c), "const_side": "right"})
