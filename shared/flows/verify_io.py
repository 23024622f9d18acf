"""`compare.py verify` with several inputs and outputs: names and rows.

A model with one input takes an array; with several, a dict {Keras input
name: array} (neutral layout), in the order of the Keras graph's inputs
(keras.tree's flat order: a dict's keys sorted). The torch port is called
with keyword arguments named after its forward's parameters: the Keras
name where forward has it, else its known alias (keras-hub's names for
transformers' ones, below). Outputs: one array, or a list in the Keras
graph's output order; a torch output that is a dict (transformers'
ModelOutput) is read by name (alias), a tuple by position.
"""

from __future__ import annotations

import numpy as np

from shared.core.errors import UsageError

__all__ = ["neutral_inputs", "INPUT_ALIASES", "OUTPUT_ALIASES", "nrows", "take", "flat", "torch_arguments", "is_padding_mask",
           "right_padded_mask", "as_named_inputs"]

# keras-hub's backbone input names -> transformers' forward arguments
# (keras_hub/src/models/bert/bert_backbone.py: token_ids, segment_ids,
# padding_mask; vit_backbone.py: images; transformers BertModel.forward:
# input_ids, token_type_ids, attention_mask; ViTModel.forward: pixel_values).
INPUT_ALIASES = {"token_ids": ("input_ids",), "padding_mask": ("attention_mask",),
                 "segment_ids": ("token_type_ids",), "images": ("pixel_values",)}
# keras-hub's output names -> transformers' ModelOutput fields
# (BertBackbone: sequence_output, pooled_output; BaseModelOutputWithPooling:
# last_hidden_state, pooler_output).
OUTPUT_ALIASES = {"sequence_output": ("last_hidden_state",), "pooled_output": ("pooler_output",)}


def nrows(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def take(x, rows):
    """x[rows] for an array, or for every array of a dict of inputs."""
    return {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]


def flat(out) -> np.ndarray:
    """One output, or several (a list) as one float64 vector: for checks on the whole output."""
    parts = out if isinstance(out, list) else [out]
    return np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts])


def torch_arguments(keras_names: list, params: list) -> dict:
    """{Keras input name: torch forward argument}: the same name, else an alias.

    Raises:
        UsageError naming a Keras input that forward takes under no known name.
    """
    out = {}
    for name in keras_names:
        hit = next((a for a in (name, *INPUT_ALIASES.get(name, ())) if a in params), None)
        if hit is None:
            back = [k for k, v in INPUT_ALIASES.items() if name in v and k in params]
            hit = back[0] if back else None
        if hit is None:
            raise UsageError(f"Keras input {name!r} has no argument of the torch forward{tuple(params)} to go to "
                             f"(known aliases: {INPUT_ALIASES.get(name, ())}); name the argument {name!r}")
        out[name] = hit
    return out


def as_named_inputs(inputs, keras_names: list):
    """The user's inputs for a model with several: a dict (Keras names or their
    torch aliases) or a list in the Keras graph's input order -> {Keras name: array}."""
    if isinstance(inputs, dict):
        out = {}
        for name in keras_names:
            key = next((a for a in (name, *INPUT_ALIASES.get(name, ())) if a in inputs), None)
            if key is None:
                raise UsageError(f"inputs have no array for the Keras input {name!r} (given: {sorted(inputs)})")
            out[name] = np.asarray(inputs[key])
        return out
    if isinstance(inputs, (list, tuple)) and len(inputs) == len(keras_names):
        return {n: np.asarray(a) for n, a in zip(keras_names, inputs)}
    raise UsageError(f"the Keras model takes {len(keras_names)} inputs {keras_names}: give a dict of them, or a list "
                     "in that order")


def is_padding_mask(name: str, dtype: str, high) -> bool:
    """An integer 0/1 input named as a mask (keras-hub's padding_mask, transformers' attention_mask)."""
    return "mask" in name and ("int" in dtype or dtype == "bool") and (high in (None, 2))


def right_padded_mask(rng, batch: int, steps: int) -> np.ndarray:
    """Seeded 0/1 padding masks as a real batch has them: ones then zeros,
    each row at least one step long (a row of nothing but padding leaves an
    attention row with nothing to attend to, which Keras' masked softmax
    makes 0 and torch's uniform), the first row full."""
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0] = steps
    return (np.arange(steps)[None, :] < lengths[:, None]).astype(np.int64)


def neutral_inputs(inputs, graph, keras_shape: tuple):
    """The user's inputs in Keras' layout (one array, a list, or a dict by Keras
    input names or torch aliases) -> the graph's neutral layout, floats as float64:
    one array, or {input name: array} for a dict or a model with several inputs.
    keras_shape: the first Keras input's shape without the batch (checked)."""
    def neutral(name: str, a) -> np.ndarray:
        a = np.asarray(a)
        a = a if a.dtype.kind in "iub" else a.astype(np.float64)
        perm = graph.tensors[name].keras_perm
        return a if perm is None else np.ascontiguousarray(np.transpose(a, perm))

    names = list(graph.inputs)
    if isinstance(inputs, dict) or len(names) > 1:
        return {n: neutral(n, a) for n, a in as_named_inputs(inputs, names).items()}
    x = np.asarray(inputs)
    if x.shape[1:] != tuple(keras_shape):
        raise UsageError(f"inputs have shape {x.shape[1:]} per sample, the Keras model takes {tuple(keras_shape)} (Keras' layout)")
    return neutral(names[0], x)
