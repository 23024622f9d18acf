"""Sequences: Embedding, the padding mask, SimpleRNN / LSTM / GRU,
Bidirectional, and mask-aware pooling.

Masks are plain tensors here. Keras 3 builds `mask_zero`'s mask as an
`ops.NotEqual(ids, 0)` node of the functional graph and hands it to every
layer whose `call` takes `mask=` as a keyword argument (Layer.__call__,
keras/src/layers/layer.py, "Populate mask argument(s)"); the reader sees it as
one more input of that call. So the mask becomes a `not_equal` node and a
boolean tensor, and each mask-consuming node takes it as an extra input.
(keras_impl/read/__init__.py refuses a call whose mask no emitted node reads, so a
mask never vanishes silently.)

RNN semantics, from keras/src/backend/tensorflow/rnn.py (`rnn`, the masked
while loop): at a masked step the new state and the new output are replaced
by the previous ones (`tf.where(mask_t, new, previous)`; the output before
step 0 is zeros; `zero_output_for_mask` is False for LSTM/GRU/SimpleRNN);
`go_backwards` reverses the inputs and the mask and returns the outputs in
that reversed order. Bidirectional (keras/src/layers/rnn/bidirectional.py)
runs a forward copy and a `go_backwards=True` copy with the same mask, flips
the backward sequence back when `return_sequences`, then merges.

Weights go to torch's fused-module names and gate orders (PORTING_TRAPS.md,
LSTM / GRU rows): LSTM gates i,f,c,o are torch's i,f,g,o (transpose only);
GRU z,r,h become torch's r,z,n ("blocks" step); GRU `reset_after=True` has a
(2, 3H) bias: row 0 -> bias_ih, row 1 -> bias_hh. LSTM and SimpleRNN have one
bias; torch's second bias is held at zero and frozen (a trainable copy would
take the same gradient and move the effective bias twice as fast).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_impl.read.registry import keras_converter, unsupported
from keras_impl.read.core import activation_attrs
from shared.graph.ir import TensorSpec

__all__ = ["kwarg_input", "add_output", "emit_rnn"]

_GRU_ORDER = (1, 0, 2)  # Keras z,r,h -> torch r,z,n


def kwarg_input(call, key: str):
    """The graph tensor passed as keyword `key` (a mask), or None.

    A mask Keras does not record in the functional node (MultiHeadAttention
    reads its inputs' masks itself; Layer.__call__ fills `query_mask` & co.
    only when it runs) is the one keras_impl/masks.py says the call receives
    at run time (`call.masks`); it is converted on demand when the read graph
    lacks it.
    """
    target = call.kwargs.get(key)
    if target is None and call.masks:
        target = call.masks.get(key)
        if isinstance(target, keras.KerasTensor) and id(target) in (call.names or {}):
            return call.names[id(target)]
        if isinstance(target, keras.KerasTensor):
            if call.pull is None:
                raise unsupported(call.layer, f"the {key} its input carries (not a tensor of the read graph)")
            return call.pull(target)
    if target is None or not isinstance(target, keras.KerasTensor):
        return None
    flat = [t for t in keras.tree.flatten((call.args, call.kwargs)) if isinstance(t, keras.KerasTensor)]
    for t, name in zip(flat, call.inputs):
        if t is target:
            return name
    raise unsupported(call.layer, f"the tensor passed as {key}= (not found among the call's inputs)")


def add_output(ctx, node, name: str, keras_shape, *, dtype=None, internal=False) -> None:
    """A further output of `node` (states of an RNN), Keras' layout."""
    ctx.graph.tensors[name] = TensorSpec(name, tuple(keras_shape), dtype or ctx.dtype, None, internal)
    node.outputs.append(name)


def _record_high(ctx, ids: str, layer) -> None:
    if ids in ctx.graph.inputs:  # random test inputs: ids in [0, input_dim) of every table they feed
        highs = ctx.graph.meta.setdefault("input_high", {})
        highs[ids] = min(highs.get(ids, int(layer.input_dim)), int(layer.input_dim))


@keras_converter("Embedding")
def embedding(ctx, layer, call):
    # mask_zero needs no branch here: Keras builds the mask as an
    # ops.NotEqual node, converted on its own (`not_equal` below)
    if getattr(layer, "quantization_mode", None):
        raise unsupported(layer, f"quantization_mode {layer.quantization_mode!r}")
    if getattr(layer, "lora_enabled", False):
        raise unsupported(layer, "LoRA")
    ids = ctx.tensor(call.inputs[0], "as_is")
    if not ctx.graph.tensors[ids].dtype.startswith(("int", "uint")):  # Embedding.call: ops.cast(inputs, "int32")
        _record_high(ctx, ids, layer)  # a float input read by other layers too: random whole numbers below input_dim
        ctx.emit("cast", [ids], f"{call.outputs[0]}_ids", layout="as_is", attrs={"dtype": "int32"}, internal=True,
                 keras_shape=ctx.keras_shape(ids), node_name=ctx.node_name(f"{call.node_name}_ids"))
        ids = f"{call.outputs[0]}_ids"
        ctx.graph.tensors[ids].dtype = "int32"
    _record_high(ctx, ids, layer)
    attrs = {"num_embeddings": int(layer.input_dim), "embedding_dim": int(layer.output_dim)}
    ctx.emit("embedding", [ids], call.outputs[0], layout="as_is", attrs=attrs,
             weights={"weight": (layer.embeddings, [])})


@keras_converter("ops.NotEqual")
def not_equal(ctx, layer, call):
    args = list(call.args)
    if len(args) != 2 or isinstance(args[1], keras.KerasTensor) or np.ndim(args[1]) != 0:
        raise unsupported(layer, "not_equal other than against a scalar")
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("not_equal", [x], call.outputs[0], layout="as_is", attrs={"const": float(args[1])})
    ctx.graph.tensors[call.outputs[0]].dtype = "bool"


# The cells' activations torch's fused kernels compute (nn.RNN: tanh or relu;
# nn.LSTM / nn.GRU: tanh and sigmoid, torch/nn/modules/rnn.py); any other
# element-wise Keras activation runs in the written-out cell step.
_FUSED_ACTIVATIONS = {"activation": ("tanh", "relu"), "recurrent_activation": ("sigmoid",)}


def _cell_activations(ctx, layer, cell, kind: str, x: str) -> dict:
    """{"activation": attrs, "recurrent_activation": attrs} of the cell's
    activations that torch's fused module cannot compute (empty when it can):
    neutral `activation` attrs (keras_impl/read/core.py), identity for linear."""
    out = {}
    for key in ("activation",) if kind == "simple" else ("activation", "recurrent_activation"):
        fn = getattr(cell, key)
        name = getattr(fn, "__name__", str(fn))
        fused = _FUSED_ACTIVATIONS[key] if kind == "simple" or key == "recurrent_activation" else ("tanh",)
        if name in fused:
            continue
        attrs = activation_attrs(ctx, layer, fn, x) or {"fn": "identity"}
        if "axis" in attrs:
            raise unsupported(layer, f"{key} {name!r} (an activation over an axis inside a recurrent cell)")
        out[key] = attrs
    return out


def _rnn_kind(layer) -> str:
    name = type(layer).__name__
    if name == "LSTM":
        return "lstm"
    if name == "GRU":
        return "gru" if layer.cell.reset_after else "gru_reset_before"
    if name == "SimpleRNN":
        return "simple"
    raise unsupported(layer, "a recurrent layer other than SimpleRNN, LSTM and GRU")


def _rnn_weights(layer, kind: str, hidden: int) -> dict:
    cell = layer.cell
    t = [("transpose", (1, 0))]
    reorder = [("blocks", (0, *_GRU_ORDER))] if kind.startswith("gru") else []
    if kind == "gru_reset_before":
        w = {"weight_ih": (cell.kernel, t + reorder), "weight_hh": (cell.recurrent_kernel, t + reorder)}
        if cell.use_bias:
            w["bias"] = (cell.bias, reorder)
        return w
    w = {"weight_ih_l0": (cell.kernel, t + reorder), "weight_hh_l0": (cell.recurrent_kernel, t + reorder)}
    if cell.use_bias:
        if kind == "gru":
            w["bias_ih_l0"] = (cell.bias, [("select", (0, 0))] + reorder)
            w["bias_hh_l0"] = (cell.bias, [("select", (0, 1))] + reorder)
        else:  # one Keras bias: torch's recurrent bias stays zero (frozen in model.py)
            w["bias_ih_l0"] = (cell.bias, [])
            w["bias_hh_l0"] = np.zeros(int(cell.bias.shape[0]))
    return w


def initial_states(call) -> list:
    """Graph tensors passed as `initial_state` (keyword, or RNN.call's second
    positional argument): [h] or [h, c], Keras' order."""
    target = call.kwargs.get("initial_state", call.args[1] if len(call.args) > 1 else None)
    if target is None:
        return []
    wanted = [t for t in keras.tree.flatten(target) if isinstance(t, keras.KerasTensor)]
    if len(wanted) != len(keras.tree.flatten(target)):
        raise unsupported(call.layer, "an initial_state that is not made of graph tensors")
    flat = [t for t in keras.tree.flatten((call.args, call.kwargs)) if isinstance(t, keras.KerasTensor)]
    names = {id(t): name for t, name in zip(flat, call.inputs)}
    return [ctx_name for t in wanted if (ctx_name := names.get(id(t))) is not None]


def emit_rnn(ctx, layer, x: str, mask, outputs: list, keras_shapes: list, *, node_name=None, internal=False, states=()):
    """One `rnn` node for a SimpleRNN/LSTM/GRU layer: outputs[0] the output,
    outputs[1:] its states when return_state. Inputs: x, the mask when
    attrs["masked"], then the initial states (attrs["initial_states"] of them)."""
    kind = _rnn_kind(layer)
    cell = layer.cell
    custom = _cell_activations(ctx, layer, cell, kind, x)
    if getattr(layer, "stateful", False):
        raise unsupported(layer, "stateful=True")
    hidden = int(cell.units)
    attrs = {
        "kind": kind, "input_size": int(cell.kernel.shape[0]), "hidden_size": hidden, "bias": bool(cell.use_bias),
        "return_sequences": bool(layer.return_sequences), "return_state": bool(layer.return_state),
        "go_backwards": bool(layer.go_backwards), "masked": mask is not None,
        # Bidirectional forces it to return_sequences: masked steps output zeros
        "zero_output_for_mask": bool(getattr(layer, "zero_output_for_mask", False)) and mask is not None,
        "initial_states": len(states),
    }
    if kind == "simple" and "activation" not in custom:
        attrs["nonlinearity"] = cell.activation.__name__
    attrs.update(custom)  # activations the fused torch kernel cannot compute: the cell runs step by step
    inputs = [x] + ([mask] if mask is not None else []) + [ctx.tensor(t, "as_is") for t in states]
    node = ctx.emit("rnn", inputs, outputs[0], layout="as_is", attrs=attrs, weights=_rnn_weights(layer, kind, hidden),
                    keras_shape=keras_shapes[0], node_name=node_name, internal=internal)
    for name, shape in zip(outputs[1:], keras_shapes[1:]):
        add_output(ctx, node, name, shape)  # states are always the layer's own outputs
    return node


@keras_converter("SimpleRNN", "LSTM", "GRU")
def recurrent(ctx, layer, call):
    states = initial_states(call)
    if len(states) not in (0, 2 if _rnn_kind(layer) == "lstm" else 1):
        raise unsupported(layer, f"an initial_state of {len(states)} tensors")
    x = ctx.tensor(call.inputs[0], "as_is")
    emit_rnn(ctx, layer, x, kwarg_input(call, "mask"), list(call.outputs), list(call.out_shapes), states=states)


_MERGE = {"concat": "concat", "sum": "add", "mul": "mul", "ave": "mean"}


@keras_converter("Bidirectional")
def bidirectional(ctx, layer, call):
    if kwarg_input(call, "initial_state") is not None or len(call.args) > 1:
        raise unsupported(layer, "an initial_state argument")
    if call.shares:
        raise unsupported(layer, "a second call of the same Bidirectional layer")
    fwd, bwd = layer.forward_layer, layer.backward_layer
    if not bwd.go_backwards or fwd.go_backwards:
        raise unsupported(layer, "a forward layer with go_backwards=True")
    x = ctx.tensor(call.inputs[0], "as_is")
    mask = kwarg_input(call, "mask")
    n_states = {"lstm": 2}.get(_rnn_kind(fwd), 1) if layer.return_state else 0
    n_out = 1 if layer.merge_mode else 2
    state_names = list(call.outputs[n_out:])
    state_shapes = list(call.out_shapes[n_out:])
    seq = bool(layer.return_sequences)
    half = tuple(call.out_shapes[0][:-1]) + (int(fwd.cell.units),)
    base = call.node_name
    if n_out == 2:  # merge_mode=None: the two halves are the layer's outputs
        names = {"forward": call.outputs[0], "backward": ctx.fresh_tensor(f"{call.outputs[1]}_reversed") if seq else call.outputs[1]}
    else:
        names = {d: ctx.fresh_tensor(f"{call.outputs[0]}_{d}") for d in ("forward", "backward")}
    halves = []
    for direction, sub, states, shapes in (("forward", fwd, state_names[:n_states], state_shapes[:n_states]),
                                           ("backward", bwd, state_names[n_states:], state_shapes[n_states:])):
        out = names[direction]
        emit_rnn(ctx, sub, x, mask, [out] + states, [half] + shapes, node_name=ctx.node_name(f"{base}_{direction}"),
                 internal=out not in call.outputs)
        if direction == "backward" and seq:  # back to forward time order (Bidirectional.call: ops.flip)
            flipped = call.outputs[1] if n_out == 2 else ctx.fresh_tensor(f"{call.outputs[0]}_backward_flipped")
            ctx.emit("flip", [out], flipped, layout="as_is", attrs={"axis": 1}, keras_shape=half,
                     internal=n_out == 1, node_name=ctx.node_name(f"{base}_flip"))
            out = flipped
        halves.append(out)
    if n_out == 1:
        op = _MERGE[layer.merge_mode]
        attrs = {"axis": len(half) - 1} if op == "concat" else {}
        ctx.emit(op, halves, call.outputs[0], layout="as_is", attrs=attrs, keras_shape=call.out_shapes[0])


@keras_converter("GlobalAveragePooling1D")
def global_avg_pool_1d(ctx, layer, call):
    mask = kwarg_input(call, "mask")
    if mask is None:
        from keras_impl.read.pooling import _global

        return _global(ctx, layer, call, "global_avg_pool")
    if layer.data_format != "channels_last":
        raise unsupported(layer, "data_format='channels_first' with a mask")
    # GlobalAveragePooling1D.call: where(mask, x, 0) summed over steps / count of unmasked steps
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("masked_mean", [x, mask], call.outputs[0], layout="as_is", attrs={"axis": 1, "keepdim": bool(layer.keepdims)})


@keras_converter("ops.LogicalOr", "ops.LogicalAnd")
def logical(ctx, layer, call):
    # masks merged by Add & co (keras/src/layers/merging/base_merge.py, compute_mask: OR)
    if len(call.inputs) != 2:
        raise unsupported(layer, "a logical op of a tensor and a constant")
    fn = "or" if type(layer).__name__ == "LogicalOr" else "and"
    a, b = (ctx.tensor(t, "as_is") for t in call.inputs)
    ctx.emit("logical", [a, b], call.outputs[0], layout="as_is", attrs={"fn": fn})
    ctx.graph.tensors[call.outputs[0]].dtype = "bool"


@keras_converter("ops.Any", "ops.All")
def reduce_mask(ctx, layer, call):
    """ops.any / ops.all of a boolean tensor over Keras axes (Masking's mask:
    any(x != mask_value, axis=-1), keras/src/layers/core/masking.py compute_mask)."""
    if len(call.inputs) != 1 or layer.axis is None:
        raise unsupported(layer, "a reduction over every axis")
    x = ctx.tensor(call.inputs[0], "as_is")
    rank = ctx.rank(x)
    axes = sorted(a % rank for a in layer.axis)
    if 0 in axes:
        raise unsupported(layer, "a reduction over the batch axis")
    fn = "any" if type(layer).__name__ == "Any" else "all"
    ctx.emit("reduce_bool", [x], call.outputs[0], layout="as_is",
             attrs={"fn": fn, "axes": axes, "keepdims": bool(layer.keepdims)})
    ctx.graph.tensors[call.outputs[0]].dtype = "bool"


@keras_converter("Masking")
def masking(ctx, layer, call):
    """Masking (keras/src/layers/core/masking.py call): steps whose features all
    equal mask_value become zeros, where(any(x != mask_value, -1), x, 0); the
    mask itself is the ops.NotEqual / ops.Any nodes Keras builds for the layers
    after it (converted above)."""
    x = ctx.tensor(call.inputs[0], "as_is")
    ctx.emit("masking", [x], call.outputs[0], layout="as_is", attrs={"mask_value": float(layer.mask_value)})
