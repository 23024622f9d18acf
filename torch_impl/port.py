"""PyTorch side of `compare.py port`: the ported module's loss and gradients.

The twin of keras_impl/port.py. Losses mirror Keras' TF backend formulas
(keras/src/backend/tensorflow/nn.py): on probabilities they clip to
[epsilon, 1 - epsilon] with epsilon = 1e-7 (keras.backend.epsilon()); when
Keras found the logits behind a softmax/sigmoid head (`_keras_logits`, its
`_get_logits`), the loss here is taken from the same pre-activation tensor.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shared.graph.ir import Graph
from torch_impl.write import forward_tensors, variable_names

__all__ = ["loss_and_grads", "torch_loss", "KERAS_EPSILON", "load_module", "module_loss_and_grads", "module_sgd_steps"]

KERAS_EPSILON = 1e-7  # keras.backend.epsilon() (keras/src/backend/config.py)


def torch_loss(spec: dict, out: torch.Tensor, y: torch.Tensor, logits: bool, mask=None) -> torch.Tensor:
    """Mean loss, as Keras' loss with reduction "sum_over_batch_size" computes it.

    mask: the Keras mask the output carries (a sequence output of a masked
    model), boolean over out.shape[:-1]; Keras then weights the items by it
    (keras/src/losses/loss.py, apply_mask): sum(loss * mask) / sum(mask).
    """
    items = _item_losses(spec, out, y, logits)
    if mask is None:
        return items.mean()
    m = mask.to(items.dtype)
    return (items * m).sum() / m.sum()


def _item_losses(spec: dict, out: torch.Tensor, y: torch.Tensor, logits: bool) -> torch.Tensor:
    """Per-item losses over out.shape[:-1] (the last axis is reduced, as Keras' losses do)."""
    kind = spec["kind"]
    if kind in ("sparse_ce", "ce"):
        if not logits:
            p = out / out.sum(dim=-1, keepdim=True)  # Keras renormalises probabilities
            out = torch.log(torch.clamp(p, KERAS_EPSILON, 1 - KERAS_EPSILON))
        if kind == "sparse_ce":
            flat = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.long().reshape(-1), reduction="none")
            return flat.reshape(out.shape[:-1])
        return -(y * torch.log_softmax(out, dim=-1)).sum(-1)
    if kind == "bce":
        if logits:
            return F.binary_cross_entropy_with_logits(out, y, reduction="none").mean(-1)
        p = torch.clamp(out, KERAS_EPSILON, 1 - KERAS_EPSILON)
        return (-(y * torch.log(p) + (1 - y) * torch.log(1 - p))).mean(-1)
    if kind == "mse":
        return ((out - y) ** 2).mean(-1)
    if kind == "mae":
        return (out - y).abs().mean(-1)
    raise ValueError(f"unknown loss kind {kind!r}")


def _output_mask(graph: Graph, local: dict):
    """The Keras mask of the model's first output, when it carries one (read_graph records it)."""
    mask = graph.meta.get("output_masks", {}).get(graph.outputs[0])
    return None if mask is None else local[mask]


def loss_and_grads(module, graph: Graph, inputs: list, y: np.ndarray, spec: dict) -> tuple:
    """(mean loss, {state key: gradient}) in eval mode; module unchanged."""
    xs = [torch.as_tensor(np.ascontiguousarray(x)) for x in inputs]  # already in the module's dtype
    module.zero_grad(set_to_none=True)
    local = forward_tensors(module, graph, xs)
    out_name = graph.outputs[0]
    out = local[out_name]
    logits = bool(spec["from_logits"])
    if spec.get("keras_uses_logits") and spec["kind"] in ("sparse_ce", "ce", "bce"):
        head = graph.producer(out_name)
        out, logits = local[head.inputs[0]], True
    target = torch.as_tensor(np.asarray(y))
    target = target if spec["kind"] == "sparse_ce" else target.to(out.dtype)
    loss = torch_loss(spec, out, target, logits, _output_mask(graph, local))
    if loss.requires_grad:
        loss.backward()
    trainable = {k: p for k, p in module.named_parameters() if p.requires_grad}
    grads = {k: p.grad.detach().numpy().copy() for k, p in trainable.items() if p.grad is not None}
    missing = {k: np.zeros(tuple(p.shape)) for k, p in trainable.items() if p.grad is None}
    module.zero_grad(set_to_none=True)
    return float(loss.detach()), {**grads, **missing}


# --------------------------------------------------------------------------
# The reverse port (PyTorch -> Keras): the user's own module is the reference.
# --------------------------------------------------------------------------
def load_module(spec: str, weights: str | None = None):
    """An nn.Module (eval mode) from `path/file.py:NAME` or `package.module:NAME`.

    NAME is an nn.Module class with a no-argument constructor or a function
    returning a module; `weights`: a state_dict saved with torch.save
    (.pt/.pth, loaded with weights_only=True) or a .safetensors file."""
    from shared.core.spec import build_from_spec
    from torch_impl.weights import load_state_file

    model = build_from_spec(spec, torch.nn.Module, "a torch.nn.Module")
    if weights is not None:
        load_state_file(model, weights)
    return model.eval()


def _captured_run(module, graph: Graph, inputs: list, dtype) -> dict:
    """{fx node name: value} of one forward pass (with gradients) of the graph
    the module was read from (torch.fx or torch.export, torch_impl/read/capture.py)."""
    from torch_impl.read import captured, record_nodes

    xs = [torch.as_tensor(np.ascontiguousarray(x)) for x in inputs]
    values = record_nodes(captured(module, graph).gm, [x.to(dtype) if x.is_floating_point() else x for x in xs],
                          copies=False, grad=True)
    return {n.name: v for n, v in values.items()}


def module_loss_and_grads(module, graph: Graph, inputs: list, y: np.ndarray, spec: dict) -> tuple:
    """(mean loss, {graph weight key: gradient}) of the user's module in eval mode.

    The twin of keras_impl.port.loss_and_grads for the reverse port: the traced
    module runs with gradients, parameters are matched to graph keys through
    torch_impl.read.params_by_key (slices of a parameter, e.g. a part of
    in_proj_weight, keep their rows)."""
    from torch_impl.read import params_by_key

    dtype = next(module.parameters()).dtype
    module.zero_grad(set_to_none=True)
    values = _captured_run(module, graph, inputs, dtype)
    out_name = graph.outputs[0]
    out, logits = values[out_name], bool(spec["from_logits"])
    if spec.get("keras_uses_logits"):
        out, logits = values[graph.producer(out_name).inputs[0]], True
    target = torch.as_tensor(np.asarray(y))
    target = target if spec["kind"] == "sparse_ce" else target.to(dtype)
    loss = torch_loss(spec, out, target, logits)
    loss.backward()
    params = dict(module.named_parameters())
    grads = {}
    for key, src in params_by_key(graph).items():
        name, rows = (src, None) if isinstance(src, str) else (src[0], src[1:])
        if name not in params:
            continue  # a buffer (running statistics): no gradient
        g = params[name].grad
        g = torch.zeros_like(params[name]) if g is None else g
        # whole gradients are handed over, not copied (the .grad tensors are dropped just below)
        grads[key] = g.detach().numpy() if rows is None else g[rows[0]:rows[1]].detach().numpy().copy()
    module.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def module_sgd_steps(module, graph: Graph, batches: list, spec: dict, lr: float, momentum: float) -> tuple:
    """Train the user's module (a copy is the caller's business) in training
    mode with torch.optim.SGD, dropout and stochastic depth off (eval) so the
    two sides stay deterministic; (losses, weights by graph key)."""
    from torch_impl.read import params_by_key

    module.train()
    for m in module.modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) or type(m).__name__ == "StochasticDepth":
            m.eval()
    dtype = next(module.parameters()).dtype
    opt = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum)
    losses = []
    for inputs, y in batches:
        opt.zero_grad(set_to_none=True)
        out = _captured_run(module, graph, inputs, dtype)[graph.outputs[0]]
        target = torch.as_tensor(np.asarray(y))
        loss = torch_loss(spec, out, target if spec["kind"] == "sparse_ce" else target.to(dtype), bool(spec["from_logits"]))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    opt.zero_grad(set_to_none=True)  # gradients and momentum go before the weights are copied out
    del opt
    module.eval()
    state = module.state_dict()
    weights = {}
    for key, src in params_by_key(graph).items():
        name, rows = (src, None) if isinstance(src, str) else (src[0], src[1:])
        t = state[name] if rows is None else state[name][rows[0]:rows[1]]
        weights[key] = t.detach().numpy().copy()
    return losses, weights


def train_steps(module, graph: Graph, inputs: list, y: np.ndarray, spec: dict, train_config,
                keras_slices: bool = True) -> tuple:
    """Twin of keras_impl.port.train_steps: the Keras-equivalent optimizer
    (torch_impl.train.make_optimizer), eval-mode layers, one batch repeated.
    keras_slices: Embedding lookups make sparse gradients, which the optimizer
    applies as Keras applies TF's IndexedSlices (torch_impl/train.py
    `KerasEmbeddingGrads`; TRAPS.md, "Keras' Adam on an Embedding"); False:
    stock dense gradients, what a torch user's loop does.
    Returns (pre-update losses, final state_dict as numpy)."""
    from contextlib import nullcontext

    from torch_impl.train import KerasEmbeddingGrads, make_optimizer

    opt = make_optimizer(module, train_config)
    xs = [torch.as_tensor(np.ascontiguousarray(x)) for x in inputs]
    losses = []
    for _ in range(train_config.steps):
        opt.zero_grad(set_to_none=True)
        with KerasEmbeddingGrads() if keras_slices else nullcontext():
            local = forward_tensors(module, graph, xs)
        out, logits = local[graph.outputs[0]], bool(spec["from_logits"])
        if spec.get("keras_uses_logits") and spec["kind"] in ("sparse_ce", "ce", "bce"):
            out, logits = local[graph.producer(graph.outputs[0]).inputs[0]], True
        target = torch.as_tensor(np.asarray(y))
        target = target if spec["kind"] == "sparse_ce" else target.to(out.dtype)
        loss = torch_loss(spec, out, target, logits, _output_mask(graph, local))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses, {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def export_onnx(module, graph: Graph, path, opset: int):
    """The module (eval mode) to ONNX with the TorchScript exporter, dynamic batch."""
    from shared.onnx.onnx_export import atomic_export, check_output_path, validate_opset

    opset = validate_opset(opset)
    path = check_output_path(path)
    dtype = next(iter(module.state_dict().values())).dtype if module.state_dict() else torch.float32
    examples, dynamic = [], {}
    steps = graph.meta.get("assumed_steps", {})  # unknown sequence lengths (shared/flows/port_check.py)
    for name in graph.inputs:
        spec = graph.tensors[name]
        length = steps.get(name, graph.meta.get("probe_steps", 1))  # a length every layer fits (keras_impl/read/probe.py)
        lengths = iter(length if isinstance(length, list) else [length] * len(spec.shape))
        shape = (2, *(int(s) if s is not None else int(next(lengths)) for s in spec.shape[1:]))
        examples.append(torch.zeros(shape, dtype=torch.int64 if "int" in spec.dtype else dtype))
        dynamic[variable_names(graph)[name]] = {0: "batch", **{i: f"{name}_dim{i}" for i, s in enumerate(spec.shape)
                                                               if i and s is None}}
    names = list(variable_names(graph)[n] for n in graph.inputs)
    # outputs named as Keras names them: a dict's keys, else the output layers' names
    outs = graph.meta.get("output_keys") or [variable_names(graph)[o] for o in graph.outputs]
    outs = outs if len(set(outs) | set(names)) == len(outs) + len(names) else [f"output_{i}" for i in range(len(outs))]
    for o, name in zip(graph.outputs, outs):  # unknown output sizes (a sequence of any length) stay free too
        dynamic[name] = {0: "batch", **{i: f"{name}_dim{i}" for i, s in enumerate(graph.tensors[o].shape) if i and s is None}}

    def write(tmp: str) -> None:
        from torch_impl.export import exportable

        with torch.no_grad(), exportable(opset):
            torch.onnx.export(module.eval(), tuple(examples), tmp, dynamo=False, opset_version=opset,
                              input_names=names, output_names=outs,
                              dynamic_axes=dynamic)

    return atomic_export(path, write, framework="torch", model_name=graph.name, loggers=("torch.onnx",))

