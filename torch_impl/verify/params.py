"""`compare.py verify`, torch side: parameters that are not one module's own
plain weights (shared/flows/verify_idioms.py has the matching).

- Tied parameters: one nn.Parameter owned by two modules (GPT-2's
  lm_head.weight is transformer.wte.weight, transformers' tie_weights). It
  counts once, under the module that registers it first; the other owner
  reads it through that one (copying Keras' weight there sets both, its
  gradient is the sum over both uses, as Keras' single variable's is).
- Unused modules: parameters whose values never reach the outputs verify
  compares (BERT's pooler when the Keras model has no pooled output; the
  binding picks last_hidden_state only). Found by autograd: no gradient path
  from the compared outputs; left out of the matching, with a note.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["tied_params", "unused_paths"]


def tied_params(model: nn.Module) -> dict:
    """{(module path, name): "owner.path.name"} for parameters an earlier module already owns."""
    first, out = {}, {}
    for path, m in model.named_modules(remove_duplicate=False):
        for name, p in m.named_parameters(recurse=False):
            key = first.setdefault(id(p), f"{path}.{name}" if path else name)
            if key != (f"{path}.{name}" if path else name):
                out[(path, name)] = key
    return out


def unused_paths(run, model: nn.Module, x, mods: dict) -> dict:
    """{module path: why} for modules owning parameters none of which gets a
    gradient from the compared outputs (run(model, x): one tensor or a list)."""
    params = [(path, p) for path, m in mods.items() for _, p in m.named_parameters(recurse=False) if p.requires_grad]
    if not params:
        return {}
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = run(model, x)
            outs = out if isinstance(out, list) else [out]
            total = sum(o.sum() for o in outs if o.is_floating_point())
            if not isinstance(total, torch.Tensor) or not total.requires_grad:
                return {}
            grads = torch.autograd.grad(total, [p for _, p in params], allow_unused=True)
    finally:
        model.train(was)
    reached = {path for (path, _), g in zip(params, grads) if g is not None}
    return {path: f"torch {type(m).__name__} '{path}' ran, but none of its parameters reaches the compared outputs "
                  "(no gradient path): not matched, its weights left as they are"
            for path, m in mods.items() if path not in reached and any(p.requires_grad for p in m.parameters(recurse=False))}
