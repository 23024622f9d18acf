"""Capture a PyTorch module as an fx graph the readers walk (torch_impl/read/__init__.py).

Two ways, one result (a `Captured`: an fx.GraphModule over the user's own
submodules and parameters, its input and output names):

- `torch.fx.symbolic_trace` (`how="fx"`), where it works: one positional input
  and Python that does not branch on tensors' values or shapes. Its graph keeps
  every submodule call as a `call_module` node (the generated model_keras.py
  reads like the module).
- `torch.export.export(strict=False)` (`how="export"`) everywhere else: shape
  control flow (`if x.shape[1] > 4:`), keyword and integer inputs,
  transformers' ModelOutput. Its ATen graph is rebuilt as an fx graph in which
  every call of a module the readers know (a class registered with
  `@torch_reader("Conv2d")`: Conv, Linear, norms, Embedding, activations...)
  is again one `call_module` node, found from each ATen node's
  `meta["nn_module_stack"]`; the rest stays ATen operations (`aten.add`,
  `aten.scaled_dot_product_attention`: torch_impl/read/aten.py), so a module
  the readers do not know is read through what it computes. Parameters,
  buffers and lifted constants become `get_attr` nodes of the user's own
  tensors (gradients reach the module's parameters). The batch axis is
  exported dynamic (torch.export.Dim.AUTO), so one capture runs any batch.

The rebuilt graph is checked against the module on the example inputs: the
same outputs, bit for bit, or a UsageError.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.fx as fx

from shared.core import user_code
from shared.core.errors import UsageError
from shared.core.inputs import InputSpec, as_specs

__all__ = ["Captured", "capture", "forget", "example_inputs", "flat_outputs", "EXAMPLE_BATCH"]

EXAMPLE_BATCH = 2  # the example input's batch: dimension 0 of every tensor (not 1: export would specialise it)
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # module -> {(specs, how): Captured}
_WRAP = "m"  # the user's module inside the export wrapper: parameter paths start with "m."


@dataclass
class Captured:
    gm: fx.GraphModule
    inputs: list  # placeholder names, in call order
    outputs: list  # names of the outputs (ModelOutput keys, "output", "output_1"...)
    how: str  # "fx" or "export"


def example_inputs(specs, batch: int, dtype=torch.float32, seed: int = 0) -> list:
    """Seeded example tensors: N(0, 1) floats in the module's dtype, integers in [0, high)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in as_specs(specs):
        shape = (batch, *s.shape)
        if s.is_int:
            out.append(torch.randint(0, s.high or 2, shape, generator=g).to(getattr(torch, s.dtype)))
        else:
            out.append(torch.randn(shape, generator=g, dtype=dtype if s.dtype == "float32" else getattr(torch, s.dtype)))
    return out


def flat_outputs(out, prefix: str = "output") -> list:
    """[(name, tensor)] of a forward's result: a tensor, tuples/lists (name_i),
    dicts and transformers' ModelOutput (their keys); other values (a cache) dropped."""
    if isinstance(out, torch.Tensor):
        return [(prefix, out)]
    if isinstance(out, dict) or (hasattr(out, "keys") and hasattr(out, "__getitem__")):
        items = [(k, out[k]) for k in out.keys()]
        return [p for k, v in items for p in flat_outputs(v, k if prefix == "output" else f"{prefix}_{k}")]
    if isinstance(out, (list, tuple)):
        return [p for i, v in enumerate(out) for p in flat_outputs(v, prefix if i == 0 else f"{prefix}_{i}")]
    return []


class _Call(torch.nn.Module):
    """forward(*inputs) -> the module's tensor outputs as a flat tuple (keyword inputs by name)."""

    def __init__(self, module, names):
        super().__init__()
        setattr(self, _WRAP, module)
        self.names, self.out_names = names, []

    def forward(self, *xs):
        m = getattr(self, _WRAP)
        out = m(*xs) if self.names is None else m(**dict(zip(self.names, xs)))
        flat = flat_outputs(out)
        self.out_names = [n for n, _ in flat]
        return tuple(t for _, t in flat)


def capture(module, specs, how: str = "auto") -> Captured:
    """The module's Captured graph (cached per module and input specs)."""
    specs = as_specs(specs)
    cache = _CACHE.setdefault(module, {})
    key = (specs, how)
    if key not in cache:
        cache[key] = _capture(module, specs, how)
    return cache[key]


def forget(module) -> None:
    """Drop the module's cached captures. The cache's values hold the module's
    submodules (the GraphModule shares them), so a WeakKeyDictionary entry
    never dies by itself: a float64 copy of a cast (the port's checks) stayed
    alive with every parameter, 1 GB for VGG11-BN (issue 18)."""
    _CACHE.pop(module, None)


def _capture(module, specs, how) -> Captured:
    if how in ("auto", "fx") and len(specs) == 1 and specs[0].name is None:
        try:
            cap = _fx(module)
            if how == "fx" or len(cap.inputs) == 1:  # optional arguments (timm's attn_mask=None): torch.export
                return cap
        except UsageError:
            if how == "fx":
                raise
    return _export(module, specs)


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with every module that has a reader kept whole (timm's BatchNormAct2d)."""

    def is_leaf_module(self, m, qualname) -> bool:
        from torch_impl.read.capture_build import known_module_classes

        return super().is_leaf_module(m, qualname) or type(m).__name__ in known_module_classes()


def _fx(module) -> Captured:
    tracer = _Tracer()
    tracer.record_stack_traces = True
    # Traced in eval mode, as torch.export's capture: fx bakes `self.training` into the
    # graph, and the training check captures its module after module.train(); traced
    # then, timm's DropPath (Swin) and GhostNet's F.dropout(training=self.training) were
    # live in torch's training steps only (losses 2e-2 apart, differing run to run).
    # Leaf modules (BatchNorm) still read their own mode when the graph runs.
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        g = tracer.trace(module)
    except Exception as e:  # data-dependent control flow and friends
        if user_code.is_out_of_memory(e):
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"torch.fx cannot trace {type(module).__name__}: {first}") from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    gm = fx.GraphModule(tracer.root, g, type(module).__name__)
    ins = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    return Captured(gm, ins, ["output"], "fx")


def _export(module, specs) -> Captured:
    from torch.export import Dim

    names = None if specs[0].name is None else [s.name for s in specs]
    modes = {m: m.training for m in module.modules()}  # captured in eval mode; the caller's modes come back
    wrapper = _Call(module, names).eval()
    dtype = next((p.dtype for p in module.parameters()), torch.float32)
    xs = example_inputs(specs, EXAMPLE_BATCH, dtype)
    try:
        ep = torch.export.export(wrapper, tuple(xs), dynamic_shapes=(tuple({0: Dim.AUTO} for _ in xs),), strict=False)
        from torch_impl.read.capture_build import rebuild

        gm = rebuild(ep, wrapper, names or _positional_names(module, len(xs)), type(module).__name__)
        _check_same(gm, wrapper, xs, type(module).__name__)  # an eager call: it also names the outputs
        out_names = list(wrapper.out_names)
    except UsageError:
        raise
    except Exception as e:
        if user_code.is_out_of_memory(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fault = user_code.user_fault(e)  # the line of the user's forward that stopped the capture
        where = f" (at {fault.file}:{fault.line} in {fault.function})" if fault else ""
        raise UsageError(f"torch.export cannot capture {type(module).__name__}{where}: {type(e).__name__}: {first}") from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    ins = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    return Captured(gm, ins, out_names, "export")


def _positional_names(module, n: int) -> list:
    """The names of forward's first n parameters (`x`, `pixel_values`)."""
    import inspect

    params = [p.name for p in inspect.signature(module.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (params + [f"input_{i}" for i in range(n)])[:n] if len(params) >= n else [f"input_{i}" for i in range(n)]


def _check_same(gm, wrapper, xs, name) -> None:
    """The rebuilt graph computes exactly what the module computes (or a UsageError)."""
    with torch.no_grad():
        want, got = wrapper(*xs), gm(*xs)
    got = got if isinstance(got, (list, tuple)) else (got,)
    for i, (a, b) in enumerate(zip(want, got)):
        if a.shape != b.shape or not torch.equal(a, b):
            raise UsageError(f"{name}: the graph rebuilt from torch.export differs from the module on output {i} "
                             f"(max |diff| {float((a.double() - b.double()).abs().max()) if a.shape == b.shape else 'shape'})")
