"""Values gathered from one parameter by constant indices (relative position
bias tables): `table[index.view(-1)].view(N, N, -1).permute(2, 0, 1)` (Swin,
MaxViT, CoAtNet), `attention_biases[:, idxs]` (LeViT, EfficientFormer).

A chain starts at a `getitem` of a parameter (or of such a chain) with a
constant integer tensor in its index; every node computed only from it,
constants and parameters continues the chain (view, permute, unsqueeze,
contiguous...). No neutral node is made for the chain's nodes: where a reader
needs one as a tensor, the whole chain becomes one `take_parameter` node, the
table flattened and picked by a constant integer index J of the value's shape
(`value == table.reshape(-1)[J]`), found by running the chain on
arange(table.numel()) in float64 (exact below 2**53) and checked on a random
table, so any rearrangement along any axes is read and anything else (the
table scaled, two tables mixed) is refused. The Keras writer keeps the table
one trainable weight and picks with ops.take_along_axis, so its gradient is
the scatter-add of torch's index backward.
"""

from __future__ import annotations

import torch
import torch.fx as fx

__all__ = ["starts_chain", "continues_chain", "emit_gathered"]

# The Keras writer holds J in a float kernel: exact for tables below this many entries.
MAX_TABLE_ENTRIES = 2 ** 24


def _is_param(ctx, a) -> bool:
    return isinstance(a, fx.Node) and a.op == "get_attr" and a.target in ctx.trainable


def _index_tensors(idx) -> list:
    idx = idx if isinstance(idx, (tuple, list)) else (idx,)
    return [i for i in idx if isinstance(i, fx.Node)]


def starts_chain(ctx, n) -> bool:
    """`param[..., const_index_tensor, ...]` (or the same of a chain)."""
    if n.op != "call_function" or getattr(n.target, "__name__", "") != "getitem" or len(n.args) != 2:
        return False
    x, idx = n.args
    if not (_is_param(ctx, x) or x in ctx.derived):
        return False
    nodes = _index_tensors(idx)
    return (bool(nodes) and all(i in ctx.static and i not in ctx.batchy for i in nodes)
            and any(isinstance(ctx.values.get(i), torch.Tensor) and not ctx.values[i].is_floating_point() for i in nodes))


def continues_chain(ctx, n) -> bool:
    """Computed from a chain, constants and parameters only."""
    if n.op not in ("call_function", "call_method"):
        return False
    ins = n.all_input_nodes
    return (any(a in ctx.derived for a in ins) and isinstance(ctx.values.get(n), torch.Tensor)
            and all(a in ctx.derived or a in ctx.static or _is_param(ctx, a) for a in ins))


def _sources(ctx, d) -> tuple:
    """(trainable get_attr nodes, chain nodes in graph order) behind chain node d."""
    seen, params, stack = set(), [], [d]
    while stack:
        a = stack.pop()
        if a in seen:
            continue
        seen.add(a)
        if _is_param(ctx, a):
            params.append(a)
        elif a in ctx.derived:
            stack.extend(a.all_input_nodes)
    order = [a for a in ctx.gm.graph.nodes if a in seen and a in ctx.derived]
    return params, order


def _run_chain(ctx, order, param, table):
    """The chain's last value with `param` replaced by `table`, constants from the example run."""
    interp = fx.Interpreter(ctx.gm)
    for a in order:
        for i in a.all_input_nodes:
            if i is param:
                interp.env[i] = table
            elif i not in ctx.derived:
                interp.env[i] = ctx.values[i]
        interp.env[a] = interp.run_node(a)
    return interp.env[order[-1]]


def gather_index(ctx, d):
    """(table parameter node, J) with values[d] == table.reshape(-1)[J]; refuses anything else."""
    params, order = _sources(ctx, d)
    if len(params) != 1:
        raise ctx.unsupported(f"{d.name} mixes {len(params)} parameters (the port reads one parameter picked by constant indices)")
    param = params[0]
    table = ctx.values[param]
    if table.numel() >= MAX_TABLE_ENTRIES:
        raise ctx.unsupported(f"{param.target} has {table.numel()} entries (the port picks from tables below {MAX_TABLE_ENTRIES})")
    with torch.no_grad():
        ids = _run_chain(ctx, order, param, torch.arange(table.numel(), dtype=torch.float64).reshape(table.shape))
        j = ids.to(torch.int64)
        probe = torch.randn(table.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        picked = _run_chain(ctx, order, param, probe)
    if not (torch.equal(j.to(torch.float64), ids) and torch.equal(picked, probe.reshape(-1)[j])
            and torch.equal(ctx.values[d], table.reshape(-1)[j].to(ctx.values[d].dtype))):
        raise ctx.unsupported(f"{d.name} is computed from parameter {param.target} other than by picking entries "
                              "(the port reads a parameter indexed, reshaped or permuted, nothing else)")
    return param, j


def emit_gathered(ctx, d, rank: int | None = None) -> str:
    """Chain node d as a `take_parameter` node broadcast over the batch (leading 1s to `rank`)."""
    key = f"{d.name}@gather{rank or ''}"
    if key in ctx.param_nodes:
        return ctx.param_nodes[key]
    param, j = gather_index(ctx, d)
    shape = tuple(j.shape)
    rank = rank or max(len(shape), 1) + (0 if len(shape) and shape[0] == 1 else 1)
    full = (1,) * (rank - len(shape)) + shape
    saved, ctx.node = ctx.node, d
    name = d.name if d not in ctx.tensor_of else f"{d.name}_rank{rank}"
    out = ctx.emit("take_parameter", [ctx.graph.inputs[0]], attrs={"shape": list(full)}, out=name,
                   weights={"weight": ctx.values[param], "index": j.reshape(full[1:]).numpy()},
                   params={"weight": param.target}, shape=(None, *full[1:]), internal=True)
    ctx.node = saved
    ctx.param_nodes[key] = out
    return out
