"""PyTorch module -> framework-free Graph (shared/graph/ir.py), and the per-node values.

The reverse of keras_impl/read/__init__.py: `read_graph(module, input_shape)` traces
the module with torch.fx (symbolic_trace, stack traces recorded), runs the
traced graph once on an example input to learn every node's concrete value
(shapes, and the integers of `x.size()` arithmetic such as ShuffleNet's
channel shuffle), and hands each node to its registered reader
(torch_impl/read/ops.py): `call_module` nodes by module class
(`nn.Conv2d`), `call_function` / `call_method` nodes by the function's name
(`add`, `flatten`, `view`), `get_attr` parameters (ViT's class token,
ConvNeXt's layer scale) folded into the op that uses them.

Nodes whose value is not a tensor (sizes, `//`, `torch._assert`) produce no
neutral node: their concrete values are read where a reader needs them, and
dimension 0 is the batch everywhere. Tensor names are the fx node names
(`layer1_0_conv1`, `add_3`): the module path with dots as underscores, so
the Keras layers the writer names after them read like the torch source.

`graph_values(module, graph, inputs)` runs the traced module (fx Interpreter)
and returns every mirrored tensor by its graph name (the twin of
keras_impl.write.graph_values). `params_by_key(graph)` maps each graph weight
key to the torch parameter it came from (a name, or [name, start, stop] for a
row slice such as a part of MultiheadAttention's in_proj_weight).

An fx node the registry lacks raises UnsupportedOpError (exit 2) naming the
op and the line of the user's source it came from.
"""

from __future__ import annotations

import re
from contextlib import nullcontext

import numpy as np
import torch
import torch.fx as fx

from shared.core import user_code
from shared.core.errors import UsageError
from shared.graph.ir import Graph, Node, TensorSpec
from shared.core.inputs import DEFAULT_INT_HIGH, InputSpec, as_specs
from shared.graph.registries import Registry
from torch_impl.read import derived as read_derived
from torch_impl.read.capture import EXAMPLE_BATCH, capture, example_inputs

__all__ = ["read_graph", "graph_values", "trace", "UnsupportedOpError", "torch_reader", "READERS", "params_by_key", "record_nodes"]

READERS = Registry("@torch_reader")


class UnsupportedOpError(UsageError):
    """A torch op (module class, function or method) the port cannot read."""


def torch_reader(*keys: str, replace: bool = False):
    """Register `fn(ctx, node)` for module class names, function or method names.

    A key registered twice is an error unless replace=True (shared/graph/registries.py).
    """
    return READERS.register(*keys, replace=replace)


def op_key(node: fx.Node, modules: dict) -> str:
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op == "call_method":
        return f"method.{node.target}"
    if isinstance(node.target, torch._ops.OpOverload):  # torch.export's ATen ops: "aten.add"
        return f"aten.{node.target._opname}"
    return f"function.{getattr(node.target, '__name__', str(node.target))}"


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def source_line(node: fx.Node) -> str:
    """"file.py:LINE in fn: code" of the innermost user frame that made `node`."""
    frames = _FRAME.findall(node.stack_trace or "")
    for path, line, fn, code in reversed(frames):
        if "/torch/" not in path:
            return f"{path}:{line} in {fn}: {code.strip()}"
    if frames:
        path, line, fn, code = frames[-1]
        return f"{path}:{line} in {fn}: {code.strip()}"
    return "(no source line recorded)"


def trace(module) -> fx.GraphModule:
    """symbolic_trace with stack traces; a failure is a UsageError naming why."""
    return capture(module, (InputSpec(None, ()),), "fx").gm


def captured(module, graph: Graph):
    """The capture `graph` was read from, for this module (a cast copy is captured anew)."""
    specs = tuple(InputSpec(d["name"], tuple(d["shape"]), d["dtype"], d.get("high")) for d in graph.meta["input_specs"])
    return capture(module, specs, graph.meta.get("capture", "auto"))


def _run(gm: fx.GraphModule, xs) -> dict:
    """fx node -> concrete value of one forward pass (no grad)."""
    return record_nodes(gm, xs)


def record_nodes(gm: fx.GraphModule, xs, *, copies: bool = True, grad: bool = False) -> dict:
    """The per-node recorder of a captured module (torch.fx Interpreter): fx node ->
    value of one forward pass.

    copies: keep a copy of each tensor (in-place ops later in the graph,
    ReLU(inplace=True) after `out += identity`, change it); grad: run with
    autograd (the reverse port's loss and gradients read the values) instead
    of under no_grad."""
    values = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            v = super().run_node(n)
            values[n] = v.clone() if copies and isinstance(v, torch.Tensor) else v
            return v

    with nullcontext() if grad else torch.no_grad():
        Recorder(gm).run(*(xs if isinstance(xs, (list, tuple)) else [xs]))
    return values


class ReadContext:
    """What a reader sees: the fx node's arguments, their values and the graph."""

    def __init__(self, gm: fx.GraphModule, graph: Graph, values: dict):
        self.gm, self.graph, self.values = gm, graph, values
        self.modules = dict(gm.named_modules())
        self.tensor_of: dict = {}  # fx node -> graph tensor name
        self.tuples: dict = {}  # fx node of a tuple value -> its tensors' names
        self.moved: dict = {}  # fx node of a permute that moves the batch axis -> (input, axis now first, rest of the perm)
        self.param_nodes: dict = {}  # get_attr target -> graph tensor of its `parameter` node
        self.derived: set = set()  # fx nodes picked from a parameter by constant indices (torch_impl/read/derived.py)
        self.static: set = set()  # fx nodes computed from constants and sizes only (folded, read from the example run)
        self.batchy: set = set()  # static nodes whose value depends on the batch size
        self.trainable = {k for k, p in gm.named_parameters() if p.requires_grad}
        self.node = None
        self._taken: set = set()

    # --- reading arguments ---
    def arg(self, i: int, name: str | None = None, default=None):
        n = self.node
        if name is not None and name in n.kwargs:
            return n.kwargs[name]
        return n.args[i] if i < len(n.args) else default

    def value(self, a):
        """The concrete value of an argument (fx node or literal)."""
        if isinstance(a, fx.Node):
            return self.values[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(v) for v in a)
        if isinstance(a, slice):  # x[:, :H, :W] with sizes from the graph (Swin's crop after padding)
            return slice(self.value(a.start), self.value(a.stop), self.value(a.step))
        return a

    def tensor(self, a) -> str:
        """The graph tensor of an fx argument (a get_attr parameter becomes a `parameter` node)."""
        if isinstance(a, fx.Node) and a in self.tensor_of:
            return self.tensor_of[a]
        if isinstance(a, fx.Node) and a in self.derived:
            return read_derived.emit_gathered(self, a)
        if isinstance(a, fx.Node) and (a.op == "get_attr" or a in self.static) and isinstance(self.values.get(a), torch.Tensor):
            return self.parameter(a)
        if isinstance(a, fx.Node) and a in self.moved:
            raise self.unsupported(f"{a.name} moves the batch axis: the port reads such a permute only when the "
                                   "moved-first axis is then taken apart (unbind(0), x[i])")
        raise self.unsupported(f"argument {a!r} is not a tensor the port has read")

    def operand(self, a) -> str:
        """ctx.tensor(a) for an operand of an elementwise node: a parameter or
        constant of lower rank than the result (EdgeNeXt's `self.gamma * x`, gamma
        (C,) on (N, H, W, C)) becomes a `parameter` node of the result's rank
        (leading 1s, numpy's broadcasting), so both operands have one rank."""
        out = self.values.get(self.node)
        if isinstance(a, fx.Node) and a in self.derived and isinstance(out, torch.Tensor):
            return read_derived.emit_gathered(self, a, rank=out.dim() if 0 < self.values[a].dim() < out.dim() else None)
        if (isinstance(a, fx.Node) and a not in self.tensor_of and (a.op == "get_attr" or a in self.static)
                and isinstance(self.values.get(a), torch.Tensor) and isinstance(out, torch.Tensor)
                and 0 < self.values[a].dim() < out.dim()):
            return self.parameter(a, rank=out.dim())
        return self.tensor(a)

    def value_list(self, a) -> list:
        """The fx nodes of a list argument (aten.cat's tensors)."""
        return list(a)

    def is_tensor(self, a) -> bool:
        return isinstance(a, fx.Node) and (a in self.tensor_of or a in self.derived or ((a.op == "get_attr" or a in self.static)
                                                                   and isinstance(self.values.get(a), torch.Tensor)))

    def shape(self, a) -> tuple:
        return tuple(self.graph.tensors[self.tensor(a)].shape) if not isinstance(a, fx.Node) or a in self.tensor_of else tuple(self.values[a].shape)

    def out_shape(self) -> tuple:
        v = self.values[self.node]
        return (None, *v.shape[1:])

    def module(self):
        return self.modules[self.node.target]

    def rank(self, a) -> int:
        return len(self.shape(a))

    def dim(self, d: int, a=None) -> int:
        r = self.rank(a if a is not None else self.node.args[0])
        return int(d) % r

    # --- emitting ---
    def emit(self, op: str, inputs: list, *, attrs=None, weights=None, params=None, shape=None, out=None, internal=False):
        """Add a neutral node; returns its output tensor name (default: the fx node's name)."""
        n = self.node
        out = out or n.name
        name = self._node_name(out)
        spec_shape = tuple(shape) if shape is not None else self.out_shape()
        dtype = str(self.values[n].dtype).replace("torch.", "") if isinstance(self.values.get(n), torch.Tensor) else "float32"
        self.graph.tensors[out] = TensorSpec(out, spec_shape, dtype, None, internal)
        source = {"framework": "torch", "layer": n.target if n.op == "call_module" else n.name,
                  "class": op_key(n, self.modules), "where": source_line(n)}
        if params:
            source["params"] = params
        node = Node(name, op, list(inputs), [out], dict(attrs or {}), {}, source)
        for k, v in (weights or {}).items():
            node.weights[k] = np.ascontiguousarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
        self.graph.nodes.append(node)
        if out == n.name:
            self.tensor_of[n] = out
        return out

    def alias(self, a) -> None:
        """The fx node's value IS its argument's tensor (contiguous, eval-mode dropout...)."""
        if isinstance(a, fx.Node) and a in self.moved:  # .contiguous() of a batch-moving permute
            self.moved[self.node] = self.moved[a]
            return
        self.tensor_of[self.node] = self.tensor(a)

    def is_parameter(self, a) -> bool:
        return isinstance(a, fx.Node) and a.op == "get_attr" and a.target in self.trainable

    def parameter_view(self, a: fx.Node) -> str:
        """The node's value, a view of parameter `a` (ConvNeXt's gamma.reshape(1, -1, 1, 1)),
        as a `parameter` node of that shape over `a`'s weight."""
        shape = tuple(self.values[self.node].shape)
        full = shape if len(shape) and shape[0] == 1 else (1, *shape)
        out = self.emit("parameter", [self.graph.inputs[0]], attrs={"shape": list(full), "trainable": True},
                        weights={"weight": self.values[a]}, params={"weight": a.target}, shape=(None, *full[1:]), internal=True)
        return out

    def parameter(self, a: fx.Node, rank: int | None = None) -> str:
        """A get_attr tensor as a `parameter` node broadcast over the batch:
        trainable for the module's parameters, a constant for buffers and
        values folded from constants (BERT's position ids, a causal mask)."""
        key = (a.target if a.op == "get_attr" else a.name) + (f"@{rank}" if rank else "")
        if key in self.param_nodes:
            return self.param_nodes[key]
        value = self.values[a]
        if a in self.batchy:  # sized by the batch: a constant when every row is the same (a mask expanded over it)
            if value.dim() == 0 or any(not torch.equal(value[i], value[0]) for i in range(1, value.shape[0])):
                raise self.unsupported(f"{a.name} is computed from the batch size (torch.arange(batch)...); "
                                       "the port reads constants that broadcast over the batch")
            value = value[:1]
        shape = tuple(value.shape)
        rank = rank or max(len(shape), 1) + (0 if len(shape) and shape[0] == 1 else 1)
        full = (1,) * (rank - len(shape)) + shape
        trainable = a.op == "get_attr" and a.target in self.trainable
        saved, self.node = self.node, a
        out = self.emit("parameter", [self.graph.inputs[0]], attrs={"shape": list(full), "trainable": trainable},
                        weights={"weight": value}, params={"weight": a.target} if trainable else None,
                        shape=(None, *full[1:]), internal=True)
        self.node = saved
        self.param_nodes[key] = out
        return out

    def module_params(self, prefix: str, names) -> dict:
        """{weight name: torch parameter/buffer path} for a module's state."""
        return {k: f"{prefix}.{k}" for k in names}

    def _node_name(self, base: str) -> str:
        from shared.graph.ir import identifier

        return identifier(base, self._taken)

    def unsupported(self, what: str) -> UnsupportedOpError:
        n = self.node
        return UnsupportedOpError(f"{op_key(n, self.modules)} (fx node {n.name!r}) at {source_line(n)}: {what}")


def _is_static(v) -> bool:
    """Values that make no neutral node: sizes, ints, bools, None, tuples of those."""
    if isinstance(v, (int, float, bool, torch.Size, type(None), str, torch.device, torch.dtype)):  # x.device (EdgeNeXt)
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_static(a) for a in v)
    return False


def _input_dtype(spec: InputSpec, module_dtype) -> str:
    return str(module_dtype).replace("torch.", "") if spec.dtype == "float32" else spec.dtype


def _mark_static(ctx, n) -> bool:
    """True when `n` makes no neutral node: a parameter (read where it is used),
    a size, or a value computed from constants and sizes only (folded, its value
    read from the example run; `ctx.batchy` when it depends on the batch size)."""
    if n.op == "get_attr":
        if n.target not in ctx.trainable:
            ctx.static.add(n)
        return True
    if read_derived.starts_chain(ctx, n) or read_derived.continues_chain(ctx, n):
        ctx.derived.add(n)  # read where it is used, as one take_parameter node
        return True
    ins = n.all_input_nodes
    folded = n.op in ("call_function", "call_method") and all(a in ctx.static for a in ins)
    if not (folded or _is_static(ctx.values[n])):
        return False
    ctx.static.add(n)
    if any(a in ctx.batchy for a in ins) or _is_batch_size(ctx, n):
        ctx.batchy.add(n)
    return True


def _is_batch_size(ctx, n) -> bool:
    """Is `n` the batch size: aten.sym_size(x, 0), fx's x.size(0), or item 0 of
    x.shape / x.size() (`B, N, C = x.shape`) of a tensor the graph computes?"""
    if getattr(n.target, "_opname", "") == "sym_size":
        return n.args[1] == 0
    if n.op == "call_method" and n.target == "size":
        return len(n.args) > 1 and n.args[1] == 0
    if n.op == "call_function" and getattr(n.target, "__name__", "") == "getitem" and n.args[1] == 0:
        src = n.args[0]
        return (isinstance(src, fx.Node) and isinstance(ctx.values.get(src), torch.Size) and src not in ctx.batchy
                and all(a not in ctx.static for a in src.all_input_nodes))
    return False


def _outputs(ctx, n) -> list:
    outs = n.args[0] if isinstance(n.args[0], (list, tuple)) else [n.args[0]]
    return [ctx.tensor(o) for o in outs if o is not None]


def read_graph(module, input_shape, *, name: str | None = None) -> Graph:
    """Read an nn.Module (eval mode) into a neutral Graph; input_shape: (C, H, W)
    without the batch, or InputSpecs of named inputs (shared/core/inputs.py)."""
    from torch_impl.read import aten as read_aten, aten_layout as read_aten_layout, norms as read_norms, ops as read_ops, tensor_ops as read_tensor_ops  # noqa: F401  (register readers)

    module.eval()
    specs = as_specs(input_shape)
    try:
        return _read(module, specs, capture(module, specs), name)
    except UnsupportedOpError as fx_error:
        if capture(module, specs).how != "fx":
            raise
        try:  # torch.fx traced it but a reader refused a node: read torch.export's ATen graph instead
            return _read(module, specs, capture(module, specs, "export"), name)
        except UsageError:
            raise fx_error from None  # the fx node names the user's own call (function.cumsum)


def _read(module, specs, cap, name) -> Graph:
    dtype = next((p.dtype for p in module.parameters()), torch.float32)
    xs = example_inputs(specs, EXAMPLE_BATCH, dtype)
    try:
        values = _run(cap.gm, xs)
    except Exception as e:
        if user_code.is_out_of_memory(e) or user_code.user_fault(e) is not None:  # compare.py names the user's line
            raise
        raise UsageError(f"{type(module).__name__} does not run on inputs {', '.join(f'(N, {s.shape})' for s in specs)}: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    meta = {"source": "torch", "torch_version": torch.__version__, "capture": cap.how,
            "input_specs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "high": s.high} for s in specs]}
    graph = Graph(name=name or type(module).__name__, meta=meta)
    ctx = ReadContext(cap.gm, graph, values)
    places = iter(specs)
    for n in cap.gm.graph.nodes:
        ctx.node = n
        if n.op == "placeholder":
            spec = next(places)
            graph.tensors[n.name] = TensorSpec(n.name, (None, *spec.shape), _input_dtype(spec, dtype))
            graph.inputs.append(n.name)
            ctx.tensor_of[n] = n.name
        elif n.op == "output":
            graph.outputs = _outputs(ctx, n)
        elif _mark_static(ctx, n):
            continue
        else:
            key = op_key(n, ctx.modules)
            if key not in READERS:
                raise ctx.unsupported("not supported by the port (register a reader with "
                                      f"@torch_reader({key!r}), see torch_impl/read/ops.py)")
            READERS[key](ctx, n)
            if n not in ctx.tensor_of and n not in ctx.tuples and n not in ctx.moved and isinstance(values[n], torch.Tensor):
                raise ctx.unsupported("its reader produced no tensor")
    graph.meta["output_names"] = list(cap.outputs) if len(cap.outputs) == len(graph.outputs) else None
    graph.meta["input_high"] = _int_highs(graph, specs)
    return graph


def _int_highs(graph: Graph, specs) -> dict:
    """Integer inputs' random upper bound: the spec's, else the Embedding it feeds, else DEFAULT_INT_HIGH."""
    out = {}
    for name, spec in zip(graph.inputs, specs):
        if not spec.is_int:
            continue
        emb = next((n for n in graph.nodes if n.op == "embedding" and n.inputs[0] == name), None)
        out[name] = spec.high or (int(emb.attrs["num_embeddings"]) if emb else DEFAULT_INT_HIGH)
    return out


def params_by_key(graph: Graph) -> dict:
    """Graph weight key (`node.weight`) -> torch parameter path (or [path, start, stop])."""
    return {f"{n.name}.{k}": p for n in graph.nodes for k, p in n.source.get("params", {}).items()}


def graph_values(module, graph: Graph, inputs) -> dict:
    """Every tensor of one forward pass of `module` (numpy, by graph name)."""
    gm = captured(module, graph).gm
    xs = [torch.as_tensor(np.ascontiguousarray(x)) for x in inputs]
    values = _run(gm, xs)
    by_name = {n.name: v for n, v in values.items()}
    out = {name: np.asarray(x) for name, x in zip(graph.inputs, inputs)}
    batch = len(inputs[0])
    for name, spec in graph.tensors.items():
        v = by_name.get(name)
        if isinstance(v, torch.Tensor) and name not in out:
            v = v.detach().numpy()
            # computed from constants only (BERT's position embeddings): one row, which the graph broadcasts over the batch
            out[name] = np.broadcast_to(v, (batch, *v.shape[1:])).copy() if v.ndim and v.shape[0] == 1 != batch else v
    return out
