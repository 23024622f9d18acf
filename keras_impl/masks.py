"""Which Keras mask each tensor carries when the model runs, for the reader.

Keras passes masks as an attribute of the tensors (`_keras_mask`), set by each
layer's `__call__` (`compute_mask` of the layer, keras/src/layers/layer.py
`_set_mask_metadata`) and read by the next layer's `__call__`. The attributes
left on a built model's KerasTensors are not what ran: MultiHeadAttention
deletes its inputs' masks when it reads them (`set_keras_mask(query, None)`,
keras/src/layers/attention/multi_head_attention.py), so a second consumer of
the same tensor, run later, sees no mask. `RuntimeMasks` replays that flow in
the walk order of keras_impl/read/__init__.py (the order Functional.call runs nodes),
calling each layer's own `compute_mask` on symbolic tensors; the masks it
builds are new keras.ops nodes, converted on demand (graph.py `_pull`).
"""

from __future__ import annotations

import keras
from keras import tree

__all__ = ["RuntimeMasks"]


def _is_kt(x) -> bool:
    return isinstance(x, keras.KerasTensor)


def _attention_args(call) -> tuple:
    args = list(call.args) + [None] * 3
    query = args[0] if args[0] is not None else call.kwargs.get("query")
    value = args[1] if args[1] is not None else call.kwargs.get("value")
    key = args[2] if args[2] is not None else call.kwargs.get("key")
    return query, value, key


class RuntimeMasks:
    def __init__(self):
        self.masks = {}  # id(KerasTensor) -> mask KerasTensor (None: no mask)

    def of(self, t):
        return self.masks.get(id(t)) if _is_kt(t) else None

    def before(self, call) -> dict:
        """The masks Layer.__call__ fills in for this call: {argument: mask KerasTensor}."""
        layer = call.layer
        if not isinstance(layer, keras.layers.Layer):
            return {}
        if type(layer).__name__ == "MultiHeadAttention":
            query, value, key = _attention_args(call)
            out = {"query_mask": self.of(query), "value_mask": self.of(value)}
            if key is not None:
                out["key_mask"] = self.of(key)
            return out
        if layer._call_has_mask_arg and call.args:
            return {"mask": tree.map_structure(self.of, call.args[0])}
        return {}

    def after(self, call, node, masks: dict) -> None:
        """Record the masks of the call's outputs, as Keras sets them."""
        layer, outs = call.layer, list(node.outputs)
        for t in outs:
            self.masks[id(t)] = None
        if not isinstance(layer, keras.layers.Layer) or not call.args:
            return
        if type(layer).__name__ == "MultiHeadAttention":
            for t in _attention_args(call):
                if _is_kt(t):
                    self.masks[id(t)] = None  # deleted for later consumers
            self.masks[id(outs[0])] = masks.get("query_mask")
            return
        if not layer.supports_masking:
            return
        first = call.args[0]
        previous = call.kwargs.get("mask") if call.kwargs.get("mask") is not None else tree.map_structure(self.of, first)
        if all(m is None for m in tree.flatten(previous)) and type(layer).__name__ != "Embedding":
            new = None
        else:
            new = layer.compute_mask(first, previous)
        flat = tree.flatten(new) if new is not None else []
        if len(outs) == 1 and new is not None and not _is_kt(new):
            flat = [new[0] if isinstance(new, (list, tuple)) else new]
        for t, m in zip(outs, flat):
            self.masks[id(t)] = m if _is_kt(m) else None
