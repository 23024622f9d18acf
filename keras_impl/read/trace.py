"""Custom Keras layers without a converter, traced into their inner layers and keras.ops.

A `keras.layers.Layer` subclass that the converter registry lacks is read by
running its `call()` on symbolic inputs (`keras.Input`), the way a functional
model is built: every Keras layer and keras.ops function it calls on a
KerasTensor records a `Node` (keras/src/ops/operation.py `Operation.__call__`
-> `symbolic_call`, keras/src/ops/node.py), so the call becomes a small graph
of ordinary nodes that keras_impl/read/__init__.py walks like a nested model, under the
custom layer's name. Three things a functional trace does not record are made
nodes here:

- a variable the layer owns and reads in call() (`ops.matmul(x, self.w)`):
  Keras stores the variable itself in the node's arguments; it becomes a
  `TracedVariable` node, a trainable parameter of the port;
- a layer called on a concrete tensor (keras.io's TokenAndPositionEmbedding:
  `self.pos_emb(ops.arange(maxlen))` runs eagerly, which would fold the
  position table into a constant): during the trace such calls get their
  concrete tensors as `TracedConstant` nodes and record a node themselves;
- other concrete tensors stay call arguments (converters read them as constants).

- a variable a keras.ops function reads with no symbolic tensor beside it
  (`ops.convert_to_tensor(self.table)`: keras-hub's PositionEmbedding;
  `ops.tile(self.class_token, (batch, 1, 1))`: ViTPatchingAndEmbedding): Keras
  would run it eagerly and fold the variable into a constant; during the
  trace a variable counts as symbolic, so the op records a node and the
  variable becomes a `TracedVariable` as above.

Unknown sizes other than the batch (a sequence of any length) are traced at
the length the port checks them on (keras_impl/read/probe.py; UNKNOWN_SEQUENCE_STEPS
unless a layer needs more): keras-hub's
PositionEmbedding slices its table with `ops.shape(x)[1]`, which a symbolic
None cannot do. The written model.py then takes that length.

The batch size is traced as TRACE_BATCH, a size no other axis has, so that a
layer using it as a value (`ops.broadcast_to(t, ops.shape(x))`,
`ops.tile(token, (ops.shape(x)[0], 1, 1))`: keras-hub's PositionEmbedding and
ViTPatchingAndEmbedding) traces; the converters read TRACE_BATCH in a size
argument as "the batch size at run time" (`x.shape[0]` in model.py), and the
walker reads it back as an unknown batch (None) in every traced shape. The
per-node values (keras_impl/read/__init__.py graph_values) trace at the real batch.

A call that cannot run on symbolic tensors (a tf.* function, Python `if` on a
tensor value) stops the trace: `UntraceableLayerError` (exit 2) names the
layer, its class, the line that stopped it and the way out (a converter).

A call that draws random numbers at inference (keras.io's VAE `Sampling`:
`z_mean + exp(0.5 * z_log_var) * keras.random.normal(...)`) is refused the
same way, naming the keras.random function: its output is random in Keras
itself (a new draw per call, from a seed state no torch generator shares), so
no port of it can be proved equal, and folding one draw into a constant would
port a different model. Layers that draw only in training (Dropout,
StochasticDepth's `if training:`) trace at training=False and pass. The way
out: port the model up to the layer's inputs (the VAE's z_mean and z_log_var)
and draw outside, or a converter that makes the layer deterministic.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import traceback

import keras
import numpy as np
import tensorflow as tf
from keras import tree
from keras.src.ops.node import Node
from keras.src.ops.operation import Operation
from keras.src.ops.symbolic_arguments import SymbolicArguments
from keras.src.utils.naming import to_snake_case

from keras_impl.read.registry import UnsupportedLayerError
from shared.flows.port_check import UNKNOWN_SEQUENCE_STEPS

__all__ = ["TracedFunction", "TracedVariable", "TracedConstant", "UntraceableLayerError", "trace_call", "local_name",
           "TRACE_BATCH", "traced_shape"]

# The batch size a custom layer's call() is traced at (read_graph): a prime
# far above any axis of the models the port checks, so a size argument equal
# to it can only have come from ops.shape(x)[0]. Only shapes are computed at
# it (Keras' compute_output_spec runs the ops in a scratch FuncGraph), never
# arrays, so its size costs nothing.
TRACE_BATCH = 9973

_KERAS_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (keras,))


class UntraceableLayerError(UnsupportedLayerError):
    """A custom layer whose call() cannot run on symbolic tensors."""


class RandomDrawError(Exception):
    """A keras.random function called while tracing (see the module docstring).
    Keras re-raises an error from a nested layer's call() as a new exception of
    the same class with its own message, so the draw is also kept in _DRAWS."""


_DRAWS = []  # (keras.random function, the layer whose call() drew, "file:line in fn: code") of the trace


def _drawing_call():
    """(layer, where) of the innermost Layer.call on the stack outside Keras and TF."""
    for frame in inspect.stack(context=1)[2:]:
        owner = frame.frame.f_locals.get("self")
        if frame.function == "call" and isinstance(owner, keras.layers.Layer) \
                and not frame.filename.startswith(_KERAS_DIRS):
            code = (frame.code_context or [""])[0].strip()
            return owner, f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.function}: {code}"
    return None, "?"


@contextlib.contextmanager
def _no_random_draws():
    """While tracing, every keras.random function of the TF backend (each
    draws its seed through draw_seed: keras/src/backend/tensorflow/random.py)
    raises RandomDrawError, the function, layer and line kept in _DRAWS."""
    from keras.src.backend.tensorflow import random as tf_random

    original = tf_random.draw_seed

    def draw_seed(seed):
        callers = [f.name for f in traceback.extract_stack() if f.filename.endswith(os.path.join("random", "random.py"))]
        function = f"keras.random.{callers[-1] if callers else 'draw_seed'}"
        layer, where = _drawing_call()
        _DRAWS.append((function, layer, where))
        raise RandomDrawError(function)

    tf_random.draw_seed = draw_seed
    _DRAWS.clear()
    try:
        yield
    finally:
        tf_random.draw_seed = original


class TracedVariable(Operation):
    """Reads one Keras variable: the node a layer's own weight becomes."""

    def __init__(self, variable):
        super().__init__(name=variable.name)
        self.variable = variable

    def call(self):
        return self.variable.value

    def compute_output_spec(self):
        return keras.KerasTensor(tuple(self.variable.shape), dtype=self.variable.dtype)


class TracedConstant(Operation):
    """A concrete array computed during the trace (ops.arange(maxlen)) fed to a layer."""

    def __init__(self, value):
        super().__init__(name="constant")
        self.value = np.asarray(keras.ops.convert_to_numpy(value))

    def call(self):
        return keras.ops.convert_to_tensor(self.value)

    def compute_output_spec(self):
        return keras.KerasTensor(self.value.shape, dtype=keras.backend.standardize_dtype(self.value.dtype))


class _TracedNode:
    """A keras Node with its variables replaced by TracedVariable outputs."""

    def __init__(self, node, arguments, input_tensors):
        self.operation = node.operation
        self.arguments = arguments
        self.input_tensors = input_tensors
        self.outputs = node.outputs
        self.is_input = False


class TracedFunction:
    """One traced call of a custom layer: inputs (keras.Input tensors, in the
    order of the call's input tensors), outputs, nodes in topological order."""

    def __init__(self, layer, inputs, outputs, nodes, input_names=None):
        self.layer = layer
        self.name = layer.name
        self.inputs = inputs
        self.outputs = outputs
        self.nodes = nodes
        self.input_names = input_names or [f"x{i}" for i in range(len(inputs))]  # call()'s parameter names


def traced_shape(shape) -> tuple:
    """A traced tensor's shape with TRACE_BATCH read back as the unknown batch
    (None), and so are its multiples: the batch merged with another axis
    (keras.io Swin's window_partition: (B * windows, w, w, C)), or moved
    (its attention's (3, B * windows, heads, N, d))."""
    return tuple(None if s is not None and s >= TRACE_BATCH and s % TRACE_BATCH == 0 else s for s in shape)


def _is_concrete(x) -> bool:
    return not isinstance(x, (keras.KerasTensor, keras.Variable)) and keras.ops.is_tensor(x)


@contextlib.contextmanager
def _layers_record_nodes():
    """While tracing, a Layer called on concrete tensors only (no KerasTensor)
    records a node, its concrete inputs as TracedConstant nodes, instead of
    running eagerly (its weights would be folded into a constant)."""
    original = Operation.__call__

    def call(self, *args, **kwargs):
        flat = tree.flatten((args, kwargs))
        # executing eagerly: at the trace's own level, not inside the TF graph in
        # which Keras infers a nested layer's output spec (compute_output_spec)
        if tf.executing_eagerly() and isinstance(self, keras.layers.Layer) and not any(isinstance(a, keras.KerasTensor) for a in flat) \
                and any(_is_concrete(a) for a in flat):
            as_node = lambda a: TracedConstant(a).symbolic_call() if _is_concrete(a) else a  # noqa: E731
            args, kwargs = tree.map_structure(as_node, args), tree.map_structure(as_node, kwargs)
            outputs = self.symbolic_call(*args, **kwargs)
            # Layer.__call__ records a layer's node itself, for symbolic
            # arguments only (keras/src/layers/layer.py, step 8): record it here.
            Node(operation=self, call_args=args, call_kwargs=kwargs, outputs=outputs)
            return outputs
        try:
            return original(self, *args, **kwargs)
        except TypeError as e:
            if not (tf.executing_eagerly() and isinstance(self, keras.layers.Layer) and "compute_output_spec()" in str(e)):
                raise
        # A layer whose own compute_output_spec lacks the call's keywords
        # (keras-hub's CachedMultiHeadAttention gets `cache=None`, MultiHeadAttention's
        # compute_output_spec takes none): Keras' default, which runs call() on
        # placeholders (keras/src/layers/layer.py Layer.compute_output_spec).
        self.compute_output_spec = functools.partial(keras.layers.Layer.compute_output_spec, self)
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.compute_output_spec

    Operation.__call__ = call
    try:
        yield
    finally:
        Operation.__call__ = original


# The modules whose keras.ops functions decide "symbolic or eager" with their
# own binding of any_symbolic_tensors (keras/src/backend/common/keras_tensor.py).
_SYMBOLIC_CHECKS = ("keras.src.ops.operation", "keras.src.ops.core", "keras.src.ops.numpy", "keras.src.ops.nn",
                    "keras.src.ops.math", "keras.src.ops.linalg", "keras.src.ops.image", "keras.src.activations.activations")


@contextlib.contextmanager
def _variables_symbolic():
    """While tracing, a keras.Variable counts as a symbolic tensor for the
    keras.ops functions called at the trace's level: `ops.convert_to_tensor(self.table)`,
    `ops.cast(self.table, dtype)` (keras-hub's PositionEmbedding),
    `ops.tile(self.class_token, (batch, 1, 1))` (ViTPatchingAndEmbedding) record a
    node reading the variable (a TracedVariable, trainable) instead of running
    eagerly and folding it into a constant."""
    import importlib

    from keras.src.backend.common import keras_tensor

    original = keras_tensor.any_symbolic_tensors

    def any_symbolic_tensors(args=None, kwargs=None):
        if original(args, kwargs):
            return True
        return tf.executing_eagerly() and any(isinstance(a, keras.Variable) for a in tree.flatten((args, kwargs)))

    from keras.src.ops.core import ConvertToTensor

    spec = ConvertToTensor.compute_output_spec

    def convert_spec(self, x):  # it reads x.sparse / x.ragged, which a Variable lacks
        if isinstance(x, keras.Variable):
            return keras.KerasTensor(tuple(x.shape), dtype=self.dtype or x.dtype)
        return spec(self, x)

    modules = [importlib.import_module(m) for m in _SYMBOLIC_CHECKS]
    for m in modules:
        m.any_symbolic_tensors = any_symbolic_tensors
    ConvertToTensor.compute_output_spec = convert_spec
    try:
        yield
    finally:
        for m in modules:
            m.any_symbolic_tensors = original
        ConvertToTensor.compute_output_spec = spec


def _stopped_at(error: BaseException, layer) -> str:
    """'file:line in fn: code' of the innermost frame outside Keras and TF (the user's call)."""
    frames = traceback.extract_tb(error.__traceback__)
    here = os.path.abspath(__file__)
    user = [f for f in frames if not f.filename.startswith(_KERAS_DIRS) and "/tensorflow/" not in f.filename
            and os.path.abspath(f.filename) != here]
    if not user:
        return f"{type(layer).__name__}.call"
    try:  # the layer's own source file first (a frame of optree or a helper library is no answer)
        own = os.path.abspath(inspect.getsourcefile(type(layer)))
        user = [f for f in user if os.path.abspath(f.filename) == own] or user
    except TypeError:
        pass
    f = user[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def _untraceable(layer, error: BaseException) -> UntraceableLayerError:
    if isinstance(error, RandomDrawError) and _DRAWS:
        function, drawer, where = _DRAWS[-1]
        drawer = drawer or layer
        inside = "" if drawer is layer else f" (inside layer {layer.name!r} of class {type(layer).__name__})"
        return UntraceableLayerError(
            f"layer {drawer.name!r} of class {type(drawer).__name__}{inside} draws random numbers at inference: "
            f"{function} at {where}. Its output is random in Keras itself, so no port can be proved equal to "
            f"it; port the model up to the layer's inputs and draw outside it, or register a converter that "
            f"makes it deterministic with @keras_converter({type(drawer).__name__!r}) (README, 'Your own layers')")
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return UntraceableLayerError(
        f"layer {layer.name!r} of class {type(layer).__name__} has no converter and its call() cannot be traced "
        f"on symbolic tensors: stopped at {_stopped_at(error, layer)} ({type(error).__name__}: {first[:200]}). "
        f"A tf.* function or Python control flow on a tensor value cannot be traced; register a converter "
        f"with @keras_converter({type(layer).__name__!r}) (README, 'Your own layers')"
    )


def trace_call(layer, node, variable_ops: dict, batch: int | None = None, steps: int | None = None) -> tuple:
    """Trace one call (a functional-graph `node`) of `layer`: (TracedFunction,
    the call's KerasTensors that its `inputs` stand for, in the same order).

    Args:
        variable_ops: id(keras variable) -> its TracedVariable, shared by every
            trace of one walk (a layer called twice reads the same parameter).
        batch: the batch size to trace at: the real one when the trace is
            run eagerly (graph_values), else TRACE_BATCH.
        steps: the length unknown sizes are traced at (keras_impl/read/probe.py's
            probe length), default UNKNOWN_SEQUENCE_STEPS.
    """
    batch = TRACE_BATCH if batch is None else int(batch)
    steps = UNKNOWN_SEQUENCE_STEPS if steps is None else int(steps)
    inputs = {}

    def as_input(t):
        if not isinstance(t, keras.KerasTensor):
            return t
        if id(t) not in inputs:
            shape = (batch if t.shape[0] is None else t.shape[0],) + tuple(steps if s is None else s for s in t.shape[1:])
            inputs[id(t)] = (t, keras.Input(batch_shape=shape, dtype=t.dtype, sparse=t.sparse))
        return inputs[id(t)][1]

    args = tree.map_structure(as_input, node.arguments.args)
    kwargs = tree.map_structure(as_input, node.arguments.kwargs)
    if getattr(layer, "_call_has_training_arg", False):
        kwargs["training"] = False
    try:
        with _layers_record_nodes(), _variables_symbolic(), _no_random_draws():
            outputs = layer.call(*args, **kwargs)
    except Exception as e:  # noqa: BLE001  (any failure on symbolic tensors stops the trace)
        raise _untraceable(layer, e) from None
    flat = tree.flatten(outputs)
    if len(flat) != len(node.outputs) or not all(isinstance(t, keras.KerasTensor) for t in flat):
        raise UnsupportedLayerError(
            f"layer {layer.name!r} of class {type(layer).__name__}: traced call() returned {len(flat)} value(s) "
            f"({', '.join(type(t).__name__ for t in flat)}), Keras recorded {len(node.outputs)} tensor output(s)")
    sym_inputs = [pair[1] for pair in inputs.values()]
    nodes = _collect(flat, {id(t) for t in sym_inputs}, variable_ops)
    param = _parameter_names(layer, node)
    names = [param.get(id(pair[0]), "x") for pair in inputs.values()]
    return TracedFunction(layer, sym_inputs, flat, nodes, names), [pair[0] for pair in inputs.values()]


def _parameter_names(layer, node) -> dict:
    """id(KerasTensor) -> the name of the call() parameter that received it
    (`inputs`; `mask_1` for the second tensor of a `mask` list), for model.py."""
    try:
        bound = inspect.signature(layer.call).bind(*node.arguments.args, **node.arguments.kwargs).arguments
    except (TypeError, ValueError):
        return {}
    out = {}
    for pname, value in bound.items():
        flat = [t for t in tree.flatten(value) if isinstance(t, keras.KerasTensor)]
        for j, t in enumerate(flat):
            out.setdefault(id(t), pname if len(flat) == 1 else f"{pname}_{j}")
    return out


def _collect(outputs, stop: set, variable_ops: dict) -> list:
    """The nodes between the traced inputs and `outputs`, topologically sorted
    (depth-first post-order), variables in arguments made TracedVariable nodes."""
    order, seen = [], set()

    def visit(t):
        if id(t) in stop or not hasattr(t, "_keras_history"):
            return
        op, index, _ = t._keras_history
        if op is None:
            return
        node = op._inbound_nodes[index]
        if id(node) in seen:
            return
        seen.add(id(node))
        for a in node.arguments.keras_tensors:
            visit(a)
        order.append(_with_variables(node, variable_ops, order))

    for t in outputs:
        visit(t)
    return [n for n in order if not (n.operation is not None and isinstance(n.operation, keras.layers.InputLayer))]


def _with_variables(node, variable_ops: dict, order: list):
    flat = tree.flatten((node.arguments.args, node.arguments.kwargs))
    if not any(isinstance(a, keras.Variable) for a in flat):
        return _TracedNode(node, node.arguments, list(node.arguments.keras_tensors))

    def read(a):
        if not isinstance(a, keras.Variable):
            return a
        op = variable_ops.get(id(a))
        if op is None:
            op = variable_ops[id(a)] = TracedVariable(a)
        out = op.symbolic_call()
        order.append(_TracedNode(op._inbound_nodes[-1], SymbolicArguments(), []))
        return out

    args = tree.map_structure(read, node.arguments.args)
    kwargs = tree.map_structure(read, node.arguments.kwargs)
    arguments = SymbolicArguments(*args, **kwargs)
    return _TracedNode(node, arguments, list(arguments.keras_tensors))


def local_name(op, parent) -> str:
    """The name of `op` inside a traced layer `parent`: the attribute that
    holds it (`self.att` -> "att"), else its own name with Keras' uid suffix
    dropped ("dense_12" -> "dense"), so that a cast copy of the model (new
    uids) names its tensors alike."""
    if isinstance(op, TracedVariable):
        # an add_weight without a name is numbered per process ("variable_3"):
        # the float64 copy's must get the same name
        name = op.variable.name
        return "variable" if re.fullmatch(r"variable(_\d+)?", name) else name
    for k, v in vars(parent).items():
        if v is op and not k.startswith("_"):
            return k
    for k, v in vars(parent).items():
        if v is op:
            return k.lstrip("_")
    snake = to_snake_case(type(op).__name__)
    return snake if re.fullmatch(re.escape(snake) + r"(_\d+)?", op.name) else op.name
