"""How `compare.py verify` calls the user's torch module: its inputs by name,
its outputs picked to match the Keras model's (shared/flows/verify_io.py has the
names and aliases).

A module whose Keras model has one input is called with one positional
tensor, as before; with several, with keyword arguments named as its forward
names them (keras-hub's token_ids / padding_mask / segment_ids reach
transformers' input_ids / attention_mask / token_type_ids). Its output may be
a tensor, a tuple, or a dict such as transformers' ModelOutput
(last_hidden_state, pooler_output, and non-tensors like a KV cache, skipped).
"""

from __future__ import annotations

import inspect

import torch

from shared.core.errors import UsageError
from shared.flows.verify_io import OUTPUT_ALIASES, torch_arguments

__all__ = ["Binding", "tensors_of"]


def tensors_of(y) -> list:
    """[(name, tensor)] of a module's output, in its order (non-tensors skipped)."""
    if isinstance(y, torch.Tensor):
        return [("output", y)]
    if isinstance(y, dict):
        return [(k, v) for k, v in y.items() if isinstance(v, torch.Tensor)]
    if isinstance(y, (tuple, list)):
        return [(str(i), v) for i, v in enumerate(y) if isinstance(v, torch.Tensor)]
    raise UsageError(f"the torch model returned a {type(y).__name__}; verify reads a tensor, a tuple or a dict of them")


class Binding:
    """The Keras model's input and output names, bound to a torch module's forward."""

    def __init__(self, module, input_names: list, output_names: list):
        params = list(inspect.signature(module.forward).parameters)
        self.args = None if len(input_names) == 1 else torch_arguments(input_names, params)
        self.output_names = list(output_names)

    def call(self, module, x, to_tensor):
        """module's outputs for x (an array or {Keras input name: array}), one tensor or a list."""
        if isinstance(x, dict):
            y = module(**{self.args[k]: to_tensor(v) for k, v in x.items()})
        else:
            y = module(to_tensor(x))
        return self.select(y)

    def select(self, y):
        items = tensors_of(y)
        if not items:
            raise UsageError("the torch model returned no tensor")
        if len(self.output_names) == 1:
            return items[0][1]
        by_name = dict(items)
        out = []
        for i, name in enumerate(self.output_names):
            key = next((a for a in (name, *OUTPUT_ALIASES.get(name, ())) if a in by_name), None)
            if key is None and i >= len(items):
                raise UsageError(f"the Keras model has {len(self.output_names)} outputs {self.output_names}, the torch "
                                 f"model returns {len(items)} tensors {[k for k, _ in items]}")
            out.append(by_name[key] if key is not None else items[i][1])
        return out
