"""How a Keras model's inputs (and its output structure) enter the neutral graph.

- layout: images and conv signals channels first, a ConvLSTM's frames time
  first then channels (N, T, C, *spatial), the rest as Keras has them;
- dtype: as declared, except float inputs that only an Embedding reads
  (keras.io's `Input((maxlen,))` of token ids): integer ids, noted in
  graph.meta["integer_inputs"];
- the probe length of unknown sizes (keras_impl/read/probe.py), in graph.meta;
- the keys of a dict of inputs / outputs (graph.meta["input_keys"],
  ["output_keys"]): --data may name arrays by them, model.py returns a dict.
"""

from __future__ import annotations

import keras
from keras import tree

from keras_impl.read.conv_lstm import time_channels_first_perm
from keras_impl.read.probe import probe_steps
from shared.core.errors import UsageError
from shared.graph.ir import Graph, TensorSpec, channels_first_perm

__all__ = ["input_layout", "input_spec", "probe_length", "structure_keys"]

# Layers whose input is an image / a signal, so the model input they read is
# made channels first (rank-3 inputs become N,C,L only for these).
_CONV_LIKE = ("Conv", "Pool", "ZeroPadding", "Cropping", "UpSampling", "SeparableConv", "DepthwiseConv")


def input_layout(model, tensor) -> str:
    """"cf" for image/conv inputs (rank 4-5, or rank 3 read by a conv-like layer),
    "tcf" for frames a ConvLSTM reads ((N, T, C, *spatial)), else "as_is"."""
    rank = len(tensor.shape)
    hist = tensor._keras_history
    consumers = [n.operation for n in hist.operation._outbound_nodes] if hist.operation is not None else []
    if consumers and all(type(c).__name__ == "TimeDistributed" for c in consumers):
        return "as_is"  # (N, T, ...) frames: the time axis stays where it is
    if consumers and all(type(c).__name__.startswith("ConvLSTM") for c in consumers):
        return "tcf"
    if rank >= 4:
        return "cf"
    if rank == 3:
        hist = tensor._keras_history
        consumers = [n.operation for n in hist.operation._outbound_nodes] if hist.operation is not None else []
        if any(any(k in type(c).__name__ for k in _CONV_LIKE) for c in consumers):
            return "cf"
    return "as_is"


def input_spec(graph: Graph, model, name: str, t) -> TensorSpec:
    """The graph tensor of model input `t` (its layout and dtype, above)."""
    layout = input_layout(model, t)
    perm = {"cf": channels_first_perm(len(t.shape)), "tcf": time_channels_first_perm(len(t.shape))}.get(layout)
    shape = tuple(t.shape) if perm is None else tuple(t.shape[i] for i in perm)
    return TensorSpec(name, shape, _input_dtype(graph, name, t), perm)


def probe_length(graph: Graph, model, fn) -> int | None:
    """The length unknown input sizes are checked (and custom layers traced)
    at, recorded in graph.meta["probe_steps"]; where no length fits, the
    reason waits in graph.meta["probe_error"] (random inputs are refused with
    it, --data still works)."""
    try:
        steps = probe_steps(model, fn)
    except UsageError as e:
        steps, graph.meta["probe_error"] = None, str(e)
    if steps is not None:
        graph.meta["probe_steps"] = steps
    return steps


def _input_dtype(graph: Graph, name: str, t) -> str:
    """The input's dtype; a float input read only by Embedding layers (keras.io's
    `Input((maxlen,))` of token ids) is integer ids: Embedding.call casts it to
    int32 (keras/src/layers/core/embedding.py), so the port takes int64 ids, as
    torch's F.embedding wants (graph.meta["integer_inputs"] says so in the report)."""
    dtype = keras.backend.standardize_dtype(t.dtype)
    op = t._keras_history.operation
    consumers = [n.operation for n in op._outbound_nodes] if op is not None else []
    if dtype.startswith(("float", "bfloat")) and consumers and all(type(c).__name__ == "Embedding" for c in consumers):
        graph.meta.setdefault("integer_inputs", {})[name] = {"declared": dtype, "read_by": sorted({c.name for c in consumers})}
        return "int64"
    return dtype


def structure_keys(graph: Graph, fn) -> None:
    """The keys of a model's dict of inputs (graph.meta["input_keys"]: input
    name -> key, where they differ; --data may use either) and of its dict of
    outputs (graph.meta["output_keys"], in graph.outputs order: model.py
    returns a dict as Keras does). Flat order = keras.tree's: keys sorted."""
    ins, outs = getattr(fn, "_inputs_struct", None), getattr(fn, "_outputs_struct", None)
    if isinstance(ins, dict) and len(tree.flatten(ins)) == len(ins) == len(graph.inputs):
        graph.meta["input_keys"] = {n: str(k) for n, k in zip(graph.inputs, sorted(ins)) if str(k) != n}
    if isinstance(outs, dict) and len(tree.flatten(outs)) == len(outs) == len(graph.outputs):
        graph.meta["output_keys"] = [str(k) for k in sorted(outs)]
