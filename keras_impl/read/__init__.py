"""Keras model -> framework-free Graph (shared/graph/ir.py), and the per-node values.

`read_graph(model)` walks the functional graph's nodes (`model._nodes_by_depth`,
keras.src.ops.node.Node), not `model.layers`: keras.ops operations such as
`x + 3.0` are nodes there (PORTING_TRAPS.md, "keras.ops nodes"). Nested
Functional / Sequential models are recursed into (their inner tensors join the
outer graph; the nested model's output is its last inner layer's tensor). Each
call is handed to its registered converter (keras_impl/convert).

`graph_values(model, graph, inputs)` runs the same walk eagerly in inference
mode and returns every mirrored tensor's value under its graph name, in the
graph's neutral layout (keras_perm applied), for the per-node check.

Tensor names: a layer's output keeps the layer's name; a second output gets
`name:1`, a later call of a shared layer `name@1`; clashes with an outer
model's names get the nested model's name as prefix (`inner/dense`).
"""

from __future__ import annotations

import re

import keras
import numpy as np
from keras import tree

from keras_impl.read.registry import Call, Context, converter_for
from keras_impl.read import core as _core  # noqa: F401  (registers converters)
from keras_impl.read import applications as _applications  # noqa: F401
from keras_impl.read import conv as _conv  # noqa: F401
from keras_impl.read import conv_lstm as _conv_lstm  # noqa: F401
from keras_impl.read import merge as _merge  # noqa: F401
from keras_impl.read import normalization as _normalization  # noqa: F401
from keras_impl.read import ops as _ops  # noqa: F401
from keras_impl.read import pooling as _pooling  # noqa: F401
from keras_impl.read import preprocessing as _preprocessing  # noqa: F401
from keras_impl.read import reshape as _reshape  # noqa: F401
from keras_impl.read import sequence as _sequence  # noqa: F401
from keras_impl.read import attention as _attention  # noqa: F401
from keras_impl.read import traced as _traced  # noqa: F401
from keras_impl.read import ops_tensor as _ops_tensor  # noqa: F401
from keras_impl.read import ops_shape as _ops_shape  # noqa: F401
from keras_impl.read import einsum as _einsum  # noqa: F401
from keras_impl.read import ops_nn as _ops_nn  # noqa: F401
from keras_impl.read.conv_lstm import time_channels_first_perm
from keras_impl.read.clone import lenient_from_config, model_config
from keras_impl.masks import RuntimeMasks
from keras_impl.read.inputs import input_layout, input_spec, probe_length, structure_keys  # noqa: F401  (input_layout re-exported)
from keras_impl.read.walk import _functional_of, _Walker  # noqa: F401  (tests import them from here)
from shared.core.errors import UsageError
from shared.graph.ir import Graph, TensorSpec
from shared.graph.scopes import settle_scopes

__all__ = ["read_graph", "graph_values", "input_layout", "cast_model", "forward", "model_float_dtype", "call_model"]

def _pull(ctx, walker, user, kt) -> str:
    """Convert the node computing `kt`, a tensor the functional graph does
    not list as any node's input (the mask MultiHeadAttention reads from its
    query's `_keras_mask`), and its missing inputs; its tensors are internal
    (Keras' graph walk never computes them)."""
    names = user.names
    if id(kt) in names:
        return names[id(kt)]
    hist = kt._keras_history
    op = hist.operation
    node = op._inbound_nodes[hist.node_index]
    in_names = [_pull(ctx, walker, user, t) for t in node.input_tensors]
    outs = []
    for i, t in enumerate(node.outputs):
        names[id(t)] = walker.name_for(op.name + (f":{i}" if i else ""), user.layer.name)
        outs.append(names[id(t)])
    call = Call(op, in_names, outs, node.arguments.args, node.arguments.kwargs,
                [tuple(t.shape) for t in node.input_tensors], [tuple(t.shape) for t in node.outputs],
                node_name=ctx.node_name(op.name), names=names, scope=getattr(user, "scope", ()))
    call.pull = user.pull
    outer, ctx.current = ctx.current, call
    try:
        converter_for(op)(ctx, op, call)
    finally:
        ctx.current = outer
    for name in outs:
        ctx.graph.tensors[name].internal = True
    return names[id(kt)]


def _defer(call, node, deferred: dict) -> bool:
    """Skip a keras.ops node computing a boolean mask that nothing may read
    (Keras builds a mask for every masked layer output, e.g. Concatenate's);
    a later node that does read it raises the original error."""
    from keras_impl.read.registry import CONVERTERS, registry_key

    key = registry_key(call.layer)
    is_mask_op = key.startswith("ops.") and all(keras.backend.standardize_dtype(t.dtype) == "bool" for t in node.outputs)
    used = [t for t in call.inputs if t in deferred]
    if not is_mask_op:
        if used:
            raise deferred[used[0]]
        return False
    if not used and key in CONVERTERS:
        return False
    if used:
        err = deferred[used[0]]
    else:
        try:
            converter_for(call.layer)
        except Exception as e:  # noqa: BLE001  (raised later if the mask is read)
            err = e
    for out in call.outputs:
        deferred[out] = err
    return True


_MASK_KWARGS = ("mask", "query_mask", "value_mask", "key_mask", "attention_mask")


def _check_masks_read(call, new_nodes) -> None:
    """A mask Keras hands to a layer must reach one of the nodes emitted for
    it: a converter that ignores it would port a model that silently uses the
    padded positions (the issue with converters: "masks vanish")."""
    from keras_impl.read.registry import unsupported
    from keras_impl.read.sequence import kwarg_input

    read = {t for n in new_nodes for t in n.inputs}
    for key in _MASK_KWARGS:
        if key in getattr(call, "mask_unused", ()):
            continue  # the converter says why Keras does not use it either
        name = kwarg_input(call, key)
        if name is not None and name not in read:
            raise unsupported(call.layer, f"the {key}= it receives (its converter does not use masks)")


def model_float_dtype(model) -> str:
    """The float dtype a model computes in: its first float input's, else
    (integer and boolean inputs only: token ids, padding masks) its first float
    weight's, else float32."""
    fn = _functional_of(model) or model
    for dtypes in ([t.dtype for t in fn.inputs], [v.dtype for v in model.weights]):
        for d in dtypes:
            d = keras.backend.standardize_dtype(d)
            if d.startswith(("float", "bfloat")):
                return d
    return "float32"


def read_graph(model) -> Graph:
    """Read a Keras model (Functional or Sequential, built) into a neutral Graph."""
    fn = _functional_of(model)
    if fn is None:
        raise UsageError(f"model {model.name!r} ({type(model).__name__}) is a subclassed model: the port needs a functional graph")
    dtype = model_float_dtype(model)
    graph = Graph(name=model.name, meta={"source": "keras", "keras_version": keras.__version__})
    steps = probe_length(graph, model, fn)  # unknown input sizes: checked (and custom layers traced) at this length
    ctx = Context(graph, dtype=dtype, variable_index={id(v): i for i, v in enumerate(model.weights)})
    walker = _Walker(steps=steps)
    names = {}
    for t in fn.inputs:
        name = walker.name_for(t._keras_history.operation.name if t._keras_history.operation else t.name, model.name)
        names[id(t)] = name
        graph.tensors[name] = input_spec(graph, model, name, t)
        graph.inputs.append(name)
    deferred = {}  # boolean (mask) tensor -> why its keras.ops node has no converter
    runtime = RuntimeMasks()
    for call, node in walker.walk(fn, names):
        call.node_name = ctx.node_name(call.base or call.layer.name)
        if call.shares is None:
            walker.first_call[id(call.layer)] = call.node_name
        call.pull = lambda kt, _call=call: _pull(ctx, walker, _call, kt)
        call.masks = runtime.before(call)
        runtime.after(call, node, call.masks)
        ctx.current = call
        if _defer(call, node, deferred):
            continue
        first_new = len(graph.nodes)
        converter_for(call.layer)(ctx, call.layer, call)
        _check_masks_read(call, graph.nodes[first_new:])
        for out, t in zip(call.outputs, node.outputs):
            if out not in graph.tensors:
                raise UsageError(f"converter for layer {call.layer.name!r} ({type(call.layer).__name__}) did not produce {out!r}")
            _keep_integer_dtype(graph.tensors[out], t)
    ctx.current = None
    for t in fn.outputs:
        out = names[id(t)]
        if out in deferred:
            raise deferred[out]
        mask = runtime.of(t)
        if mask is not None:  # Keras' loss weights the items by it (keras/src/losses/loss.py, apply_mask)
            mask_name = names.get(id(mask)) or _pull(ctx, walker, call, mask)
            if mask_name in deferred:
                raise deferred[mask_name]
            graph.meta.setdefault("output_masks", {})[out] = mask_name
        spec = graph.tensors[out]  # images leave channels first, as they came in (a ConvLSTM's frames: time, then channels)
        if len(spec.shape) >= 4 and spec.keras_perm != time_channels_first_perm(len(spec.shape)):
            out = ctx.tensor(out, "cf")
        graph.outputs.append(out)
    structure_keys(graph, fn)
    settle_scopes(graph, walker.scopes)
    return graph


def _keep_integer_dtype(spec: TensorSpec, t) -> None:
    """An integer or boolean Keras tensor (ids, a padding mask through
    ops.expand_dims) keeps its dtype in the graph; float tensors are the
    model's float dtype (Context.dtype)."""
    dtype = keras.backend.standardize_dtype(t.dtype)
    if not dtype.startswith(("float", "bfloat")):
        spec.dtype = dtype


def graph_values(model, graph: Graph, inputs) -> dict:
    """Every mirrored tensor's value (inference mode), neutral layout, by graph name.

    Args:
        inputs: list of numpy arrays in the graph's (neutral) input layout.
    """
    fn = _functional_of(model)
    values = {}
    ids = {}
    for t, name, x in zip(fn.inputs, graph.inputs, inputs):
        perm = graph.tensors[name].keras_perm
        arr = x if perm is None else np.transpose(x, np.argsort(perm))
        ids[id(t)] = keras.ops.convert_to_tensor(np.ascontiguousarray(arr), dtype=t.dtype)
        values[name] = x
    walker = _Walker(ids, steps=graph.meta.get("probe_steps"))
    walker.used.update(graph.inputs)
    names = {id(t): name for t, name in zip(fn.inputs, graph.inputs)}
    for call, node in walker.walk(fn, names):
        op = call.layer
        args, kwargs = node.arguments.fill_in(ids)
        if isinstance(op, keras.layers.Layer) and op._call_has_training_arg:
            kwargs = {**kwargs, "training": False}
        outs = tree.flatten(op(*args, **kwargs))
        for t, y, name in zip(node.outputs, outs, call.outputs):
            ids[id(t)] = y
            spec = graph.tensors.get(name)
            if spec is not None:
                a = keras.ops.convert_to_numpy(y)
                values[name] = a if spec.keras_perm is None else np.ascontiguousarray(np.transpose(a, spec.keras_perm))
    for node in graph.nodes:  # layout permutes the reader added (a channels-first output, say)
        if node.op == "permute" and node.outputs[0] not in values and node.inputs[0] in values:
            values[node.outputs[0]] = np.ascontiguousarray(np.transpose(values[node.inputs[0]], node.attrs["dims"]))
    return values


def cast_model(model, dtype: str):
    """A copy of `model` computing in `dtype` (layers, nested models and their
    Inputs), with the same weights.

    Keras casts float64 input to float32 unless the layers are float64
    (PORTING_TRAPS.md, "Numerics"), and a nested model casts its inputs to its
    own Input's dtype, so every float "dtype" in the serialised config is
    rewritten (clone_model keeps nested Inputs float32).
    """
    config = model_config(model)
    # Custom classes only: a scope entry named like a built-in would capture
    # other configs of that name (layers.Concatenate would deserialise the
    # keras.ops.concatenate node as a float32 layer).
    builtin = ("keras.src.layers.", "keras.src.ops.", "keras.src.models.")
    custom = {type(layer).__name__: type(layer) for layer in model._flatten_layers(include_self=True, recursive=True)
              if not type(layer).__module__.startswith(builtin)}
    # The layers a custom layer builds in its __init__ are not in the config:
    # they take the global dtype policy (keras/src/dtype_policies), set to
    # `dtype` while the copy is built.
    # A model whose __init__ makes its own Inputs (keras-hub's ViTBackbone:
    # keras.Input(shape=image_shape)) gets floatx for them: set it too.
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy(dtype)
    keras.config.set_floatx(dtype if dtype.startswith("float") else floatx)
    try:
        with keras.saving.custom_object_scope(custom), lenient_from_config(custom.values()):
            # safe_mode off: the model is already loaded in this process (a Lambda
            # came through `--unsafe`); this copies it, it loads nothing new.
            clone = keras.saving.deserialize_keras_object(_retyped(config, dtype), safe_mode=False)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)
    _copy_weights(model, clone)
    _same_names(model, clone)
    return clone


def _copy_weights(model, clone) -> None:
    """model's weights into clone, each into the variable of the same name and
    shape: by position where the two lists agree (the usual case), else the
    next unused variable of that name and shape, so that no two (8,) vectors
    (a bias, BatchNorm's beta) can be swapped silently by a different order."""
    src, dst = model.weights, clone.weights
    # Unnamed add_weight variables are numbered per process ("variable", "variable_1"): compare without the number.
    key = lambda v: (re.sub(r"_\d+$", "", v.name), tuple(v.shape))  # noqa: E731
    if [key(v) for v in src] != [key(v) for v in dst]:
        pools = {}
        for v in src:
            pools.setdefault(key(v), []).append(v)
        src = [pools[key(v)].pop(0) if pools.get(key(v)) else None for v in dst]
        if any(v is None for v in src):
            missing = next(v for v, s in zip(dst, src) if s is None)
            raise UsageError(f"the float64 copy of {model.name!r} has a weight {missing.path!r} {tuple(missing.shape)} "
                             "that the model lacks (a custom layer whose get_config does not rebuild it)")
    for v, w in zip(dst, src):
        v.assign(keras.ops.cast(w.value, v.dtype))


def _same_names(model, clone) -> None:
    """Give the copy's layers the original's names: a custom layer whose
    get_config drops `name` comes back as "block_1", and the graph's tensors
    are named after the layers."""
    ours = list(model._flatten_layers(include_self=False, recursive=True))
    theirs = list(clone._flatten_layers(include_self=False, recursive=True))
    if len(ours) != len(theirs):
        return
    for a, b in zip(ours, theirs):
        if type(a) is type(b) and a.name != b.name:
            b.name = a.name
    for a, b in zip([model, *ours], [clone, *theirs]):  # keras.ops nodes (x[:, 0]: "get_item" comes back "get_item_1")
        ops_a, ops_b = getattr(a, "_operations", None), getattr(b, "_operations", None)
        if ops_a is not None and ops_b is not None and len(ops_a) == len(ops_b):
            for oa, ob in zip(ops_a, ops_b):
                if type(oa) is type(ob) and not isinstance(oa, keras.layers.Layer) and oa.name != ob.name:
                    ob.name = oa.name


def _retyped(obj, dtype: str):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "dtype" and isinstance(v, str) and v.startswith(("float", "bfloat")):
                out[k] = dtype
            elif k == "dtype" and isinstance(v, dict) and v.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                out[k] = {**v, "config": {**v.get("config", {}), "name": dtype}}
            else:
                out[k] = _retyped(v, dtype)
        return out
    if isinstance(obj, list):
        return [_retyped(v, dtype) for v in obj]
    return obj


def forward(model, graph: Graph, inputs) -> list:
    """The model's outputs from one plain call (inference mode), neutral layout."""
    fn = _functional_of(model)
    xs = [keras.ops.convert_to_tensor(np.ascontiguousarray(_from_neutral(graph, n, x)), dtype=t.dtype)
          for n, x, t in zip(graph.inputs, inputs, fn.inputs)]
    outs = tree.flatten(call_model(model, xs, training=False))
    result = []
    for name, y in zip(graph.outputs, outs):
        spec = graph.tensors[name]
        a = keras.ops.convert_to_numpy(y)
        result.append(a if spec.keras_perm is None else np.ascontiguousarray(np.transpose(a, spec.keras_perm)))
    return result


def call_model(model, xs: list, training: bool = False):
    """model(inputs) with the flat list `xs` (graph.inputs order = keras.tree's
    flat order of the model's inputs: a dict's keys sorted) in the model's own
    input structure (keras-hub backbones take a dict of token_ids,
    segment_ids, padding_mask); the outputs as the model returns them."""
    fn = _functional_of(model)
    struct = getattr(fn, "_inputs_struct", None)
    if struct is not None and not isinstance(struct, (list, tuple)) and len(tree.flatten(struct)) == len(xs) > 1:
        inputs = tree.pack_sequence_as(struct, list(xs))
    else:
        inputs = xs if len(xs) > 1 else xs[0]
    return model(inputs, training=training)


def _from_neutral(graph: Graph, name: str, x):
    perm = graph.tensors[name].keras_perm
    return x if perm is None else np.transpose(x, np.argsort(perm))
