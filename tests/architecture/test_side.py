"""One Side per framework (shared/flows/side.py, issue 19): keras_impl/side.py and
torch_impl/side.py mirror each other (same `__all__`, the Side methods defined
in both, every other public method declared here with its role), both satisfy
the runtime-checkable Protocol in every form the flows build, and a tiny port
agrees through it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from shared.flows.side import Side, one_batch

ROOT = Path(__file__).resolve().parents[2]
SIDE_METHODS = ("forward", "values", "loss_and_grads", "train_steps", "with_dtype", "copy", "get_weights",
                "set_weights", "export_onnx", "onnx_input", "onnx_input_names", "onnx_output")
# Public methods only one framework's side has, and why (the two play different roles).
KERAS_ONLY = {
    # the Keras model is the reference: it states the task (its compile config)
    "infer_loss": "port's loss", "train_config": "port's optimizer", "loss_spec": "verify's loss",
    "optimizer_spec": "verify's optimizer",
    # verify lists the Keras layers from the graph (the torch twin is `trace`)
    "for_verify": "verify's reading", "records": "verify's records", "describe": "verify's layer notes",
    "layer_order": "verify's layer order", "input_spec": "verify's data", "input_specs": "verify's data",
    "input_names": "verify's inputs", "output_names": "verify's outputs", "input_shape": "verify's data",
    "output_shape": "verify's targets", "mask_value": "verify's padding", "output_mask": "verify's masked loss",
    "dropout_layers": "verify's dropout note", "exact_float64": "verify's TF-constant note",
    # the reverse port writes the Keras model's files
    "save": "model.keras", "load_in_fresh_process": "plain-Keras reload check",
}
TORCH_ONLY = {
    "read": "reverse port: the user's module read into the graph (twin of for_verify/from_graph)",
    "trace": "verify: records by tracing a hand-written module (twin of records)",
    "bind": "verify: the module called with the Keras input names",
    "set_record_weights": "verify: the Keras weights copied into the port",
    "perturbed": "reverse port: the reference's own conditioning run",
    "stock_training": "port: dense Embedding gradients, torch only", "record_stock_training": "verify: the same",
    "state_dict": "port: weights.safetensors",
}


def _module(path: str):
    return ast.parse((ROOT / path).read_text())


def _all(path: str) -> list:
    for node in _module(path).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [e.value for e in node.value.elts]
    raise AssertionError(f"{path} has no __all__")


def _methods(path: str, cls: str) -> set:
    """Public methods and properties defined in the class body itself."""
    node = next(n for n in _module(path).body if isinstance(n, ast.ClassDef) and n.name == cls)
    return {f.name for f in node.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")}


def test_both_sides_export_the_same_names():
    """The same public names once the framework prefix is taken off (both classes
    live in one process, so unlike Keras 3's backends they cannot share a name)."""
    keras_names, torch_names = _all("keras_impl/side.py"), _all("torch_impl/side.py")
    assert "KerasSide" in keras_names and "TorchSide" in torch_names
    assert [n.replace("Keras", "") for n in keras_names] == [n.replace("Torch", "") for n in torch_names]


def test_side_files_define_the_same_methods():
    k, t = _methods("keras_impl/side.py", "KerasSide"), _methods("torch_impl/side.py", "TorchSide")
    assert set(SIDE_METHODS) <= k and set(SIDE_METHODS) <= t  # each defines every Side method itself
    protocol = {n for n in _methods("shared/flows/side.py", "Side")} - {"graph"}
    assert protocol == set(SIDE_METHODS)  # the list above is the Protocol's
    assert k - t - {"graph", "dtype"} == set(KERAS_ONLY), k - t
    assert t - k == set(TORCH_ONLY), t - k


@pytest.fixture(scope="module")
def tiny():
    """A Keras Dense -> ReLU -> Dense model (3 -> 4 -> 2, 26 parameters), seeded."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h))
    assert model.count_params() == 26
    return model


def test_every_form_of_both_sides_is_a_side(tiny):
    import torch

    from keras_impl.side import KerasSide
    from torch_impl.side import TorchSide

    ks = KerasSide(tiny)
    ts = TorchSide.from_graph(ks.graph)
    read = TorchSide.read(ts.module, (3,))
    built = KerasSide.from_graph(read.graph, dtype="float64")
    sides = [ks, ts, read, built, KerasSide.for_verify(tiny), TorchSide(torch.nn.Linear(3, 2))]
    assert all(isinstance(s, Side) for s in sides)
    assert [s.name for s in sides] == ["keras", "torch", "torch", "keras", "keras", "torch"]
    assert [s.dtype for s in sides] == ["float32", "float32", "float32", "float64", "float32", "float32"]
    assert not isinstance(object(), Side)


def _engine_sides():
    """The default run's sides of the built-in binary MLP (5 -> 1): Keras, torch, torch fed through a data
    fault, and an ONNX file's runner (never run here)."""
    from keras_impl import backend as kb
    from shared.data.config import ModelConfig
    from shared.data.faults import FAULTS, DataFaultBackend
    from shared.onnx.onnx_backend import OnnxBackend
    from torch_impl import backend as tb

    cfg = ModelConfig("mlp", "binary", (5,), 1)
    k, t = kb.from_config(cfg, seed=0), tb.from_config(cfg)
    t.set_weights(k.get_weights())
    return k, t, DataFaultBackend(t, FAULTS["rgb-bgr"], 1.0), OnnxBackend("m.onnx", name="onnx(torch)",
                                                                          task="binary", dtype="float32")


def test_every_side_of_the_default_run_is_a_side():
    """The engine's sides (compare.py with no subcommand) are the same Side: one protocol."""
    import torch  # noqa: F401  torch before TensorFlow

    from shared.flows.backend import Backend

    sides = _engine_sides()
    assert all(isinstance(s, Side) for s in sides) and Backend is Side
    assert [s.name for s in sides] == ["keras", "torch", "torch", "onnx(torch)"]
    assert [s.graph for s in sides] == [None] * 4 and [s.can_train for s in sides] == [True, True, True, False]
    k, t = sides[0], sides[1]
    x = np.random.default_rng(0).random((3, 5), dtype=np.float32)
    (lk,), (lt,) = k.forward([x]), t.forward([x])
    assert lk.shape == (3, 1) and float(np.max(np.abs(lk - lt))) < 1e-5  # same weights, float32
    assert list(k.values([x])) == list(t.values([x]))  # layer names both twins share
    assert set(k.copy().get_weights()) == set(t.get_weights())  # portable names
    assert k.onnx_input_names() == t.onnx_input_names() == ["input"]  # the exporters' standardized name


def test_what_a_default_run_side_cannot_do_says_why():
    import torch  # noqa: F401  torch before TensorFlow

    from shared.data.config import ModelConfig, TrainConfig

    k, t, _, onnx = _engine_sides()
    x, y = np.zeros((2, 5), "float32"), np.zeros((2, 1), "float32")
    for side in (k, t):
        with pytest.raises(NotImplementedError, match="one input, not 2"):
            side.forward([x, x])
        with pytest.raises(NotImplementedError, match="task's loss"):
            side.loss_and_grads([x], y, {"kind": "mse", "from_logits": False})
        with pytest.raises(NotImplementedError, match="training mode"):
            side.train_steps([([x], y)], None, TrainConfig(), training=False)
        with pytest.raises(NotImplementedError, match="not a given config"):
            side.export_onnx(Path("unused.onnx"), config=ModelConfig("mlp", "binary", (5,), 1))
    with pytest.raises(NotImplementedError, match="forward-only"):
        onnx.values([x])


def test_a_tiny_port_agrees_through_the_side_interface(tiny):
    """float64: every node, the loss and every gradient within 1e-12; training a
    copy leaves the side's own weights as they were."""
    from shared.flows import port_check as pc
    from shared.data.config import TrainConfig
    from keras_impl.side import KerasSide
    from torch_impl.side import TorchSide

    k = KerasSide(tiny).with_dtype("float64")
    t = TorchSide.from_graph(k.graph, dtype="float64")
    assert k.with_dtype("float64") is k and t.with_dtype("float64") is t
    xs = [x.astype("float64") for x in pc.random_inputs(k.graph, 4, 0)]
    a, b = k.values(xs), t.values(xs)
    shared_names = set(a) & set(b)
    assert len(shared_names) >= 3  # input, hidden, head at least
    assert max(float(np.max(np.abs(a[n] - b[n]))) for n in shared_names) < 1e-12
    assert float(np.max(np.abs(k.forward(xs)[0] - t.forward(xs)[0]))) < 1e-12
    loss = {"kind": "mse", "from_logits": False}
    y = np.random.default_rng(1).standard_normal((4, 2))
    (kl, kg), (tl, tg) = k.loss_and_grads(xs, y, loss), t.loss_and_grads(xs, y, loss)
    assert abs(kl - tl) < 1e-12 and set(kg) == set(tg) and len(kg) == 4
    assert max(float(np.max(np.abs(kg[n] - tg[n]))) for n in kg) < 1e-12
    before = t.get_weights()
    cfg = TrainConfig("sgd", 0.1, momentum=0.9, steps=3)
    (kls, kw), (tls, tw) = [s.copy().train_steps([(xs, y)] * 3, loss, cfg) for s in (k, t)]
    assert len(kls) == 3 and max(abs(p - q) for p, q in zip(kls, tls)) < 1e-12
    assert max(float(np.max(np.abs(kw[n] - tw[n]))) for n in kw) < 1e-12
    assert max(float(np.max(np.abs(tw[n] - before[n]))) for n in kw) > 1e-3  # the copies did train
    assert all(np.array_equal(before[n], v) for n, v in t.get_weights().items())  # the side did not


def test_what_a_side_cannot_do_says_why(tiny):
    from shared.data.config import TrainConfig
    from torch_impl.side import TorchSide
    from keras_impl.side import KerasSide

    t = TorchSide.from_graph(KerasSide(tiny).graph)
    xs, y = [np.zeros((2, 3), "float32")], np.zeros((2, 2))
    with pytest.raises(NotImplementedError, match="inference mode"):
        t.train_steps([(xs, y)], {"kind": "mse", "from_logits": False}, TrainConfig(), training=True)
    with pytest.raises(NotImplementedError, match="one batch repeated"):
        one_batch([(xs, y), ([np.ones((2, 3))], y)])
    assert one_batch([(xs, y)] * 3) == (xs, y)


# What the default run calls on its sides beyond the Protocol, each a row of shared/flows/side.py's table.
ENGINE_OPTIONAL = {"loss_outputs", "onnx_side"}
ENGINE_FILES = ("shared/flows/engine.py", "shared/flows/engine_train.py", "shared/flows/engine_outputs.py",
                "shared/verdict/conditioning.py")
ENGINE_SIDE_NAMES = {"a", "b", "a64", "b64", "side", "twin", "twin64", "trainee", "o", "r", "ta", "tb", "back"}


def test_the_engine_calls_only_side_methods():
    """Every method the default run calls on a side (its variables for sides, `refs[i]`) is a Side method
    or one of the optional engine rows the side.py table documents."""
    called = set()
    for path in ENGINE_FILES:
        for n in ast.walk(_module(path)):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
                v = n.func.value
                if (isinstance(v, ast.Name) and v.id in ENGINE_SIDE_NAMES) or (
                        isinstance(v, ast.Subscript) and getattr(v.value, "id", None) == "refs"):
                    called.add(n.func.attr)
    assert called - set(SIDE_METHODS) == ENGINE_OPTIONAL, called
    assert len(called & set(SIDE_METHODS)) >= 8  # forward, values, loss_and_grads, train_steps, copy, ...
    table = (ROOT / "shared/flows/side.py").read_text()
    assert all(f"| {m}(" in table for m in ENGINE_OPTIONAL)
