"""`compare.py port MODEL --out DIR`: the files it writes, the standalone
model.py, loading (.keras, .h5, module:function), safe_mode, unsupported
layers (exit 2), the custom-layer registry, nested models and shared layers."""

from __future__ import annotations

import torch  # noqa: F401  (torch before TensorFlow)

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

import compare
from shared.verdict.checks import format_check

PYTHON = sys.executable
REPO = Path(compare.__file__).resolve().parent

SMALL_RESNET = textwrap.dedent('''
    import keras
    from keras import layers

    def small_resnet():
        """A ResNet-like functional CNN: stem, a residual block, a strided block, head."""
        keras.utils.set_random_seed(1)
        i = keras.Input((16, 16, 3), name="image")
        x = layers.Rescaling(1 / 255.0)(i)
        x = layers.ZeroPadding2D(((1, 2), (1, 2)))(x)
        x = layers.Conv2D(8, 3, strides=2, use_bias=False, name="stem_conv")(x)
        x = layers.BatchNormalization(epsilon=1.001e-5, name="stem_bn")(x)
        x = layers.Activation("relu", name="stem_relu")(x)
        shortcut = x
        x = layers.Conv2D(8, 3, padding="same", name="b1_conv1")(x)
        x = layers.ReLU(6.0, name="b1_relu")(x)
        x = layers.DepthwiseConv2D(3, padding="same", name="b1_dw")(x)
        x = layers.Add(name="b1_add")([shortcut, x])
        x = layers.MaxPooling2D(3, 2, padding="same", name="b2_pool")(x)
        x = layers.SeparableConv2D(12, 3, padding="same", name="b2_sep")(x)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.2, name="drop")(x)
        return keras.Model(i, layers.Dense(5, activation="softmax", name="predictions")(x), name="small_resnet")
''')


def _run(*args):
    """compare.py port in this process (each subprocess would pay ~10 s of imports)."""
    from helpers import run_cli

    return subprocess.CompletedProcess(args, *run_cli("port", *args))


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "nets.py"
    path.write_text(SMALL_RESNET)
    return path


@pytest.fixture(scope="module")
def ported(resnet_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("port") / "out"
    r = _run(f"{resnet_file}:small_resnet", "--out", out, "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


def test_port_writes_files_and_passing_report(ported):
    out, r = ported
    assert sorted(p.name for p in out.iterdir()) == ["keras.onnx", "model.py", "report.json", "report.md", "torch.onnx",
                                                     "weights.safetensors"]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and "PASSED" in r.stdout
    checks = report["checks"]
    kinds = {c["check"].split(" (")[0] for c in checks}
    assert {"training loss curve", "onnx logits onnx(keras) vs onnx(torch)", "loss"} <= kinds
    assert sum(c["check"].startswith("trained ") for c in checks) >= 2 * 10  # every weight, both dtypes
    assert report["artifacts"]["optimizer"]["optimizer"] == "sgd" and report["artifacts"]["loss"]["kind"] == "sparse_ce"
    f64 = [c for c in checks if c["dtype"] == "float64" and c["check"].startswith("node ")]
    names = {c["check"][5:] for c in f64}
    assert {"stem_conv", "stem_bn", "b1_add", "b2_pool", "b2_sep", "predictions"} <= names
    assert max(c["max_rel_diff"] for c in f64) < 1e-12
    assert any(c["check"].startswith("grad stem_conv.weight") for c in checks)
    layout = report["data"][0]["inputs"]["image"]
    assert layout["layout"] == "channels_first" and layout["shape"] == [None, 3, 16, 16]


def test_model_py_is_standalone_and_reproduces_keras(ported, resnet_file, tmp_path):
    """model.py imported alone (a process without this project on its path)
    with weights.safetensors loaded strictly gives Keras' outputs."""
    out, _ = ported
    source = (out / "model.py").read_text()
    assert "keras" not in source.replace("Keras", "").lower().split('"""', 2)[-1]  # code (past the docstring) never imports keras
    assert "import torch" in source and "class Model(nn.Module)" in source
    assert "self.stem_conv = nn.Conv2d" in source and "# (N, 8, 9, 9)" in source
    x = np.random.default_rng(0).random((3, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f'''
        import sys
        sys.path = [p for p in sys.path if p not in ("", ".", {str(REPO)!r})]
        sys.path.insert(0, {str(out)!r})
        import numpy as np, torch
        from safetensors.torch import load_file
        from model import Model
        m = Model(); m.load_state_dict(load_file({str(out / "weights.safetensors")!r}), strict=True); m.eval()
        assert "compare" not in sys.modules and "shared" not in sys.modules
        with torch.no_grad():
            y = m(torch.from_numpy(np.load({str(tmp_path / "x.npy")!r})))
        np.save({str(tmp_path / "y.npy")!r}, y.numpy())
    ''')
    r = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, str(resnet_file.parent))
    try:
        import nets
    finally:
        sys.path.pop(0)
    keras_y = keras.ops.convert_to_numpy(nets.small_resnet()(np.transpose(x, (0, 2, 3, 1))))
    torch_y = np.load(tmp_path / "y.npy")
    assert np.abs(keras_y - torch_y).max() < 16 * np.finfo(np.float32).eps * max(1, np.abs(keras_y).max())


def test_keras_and_h5_files_and_data_option(tmp_path):
    i = keras.Input((6,), name="features")
    m = keras.Model(i, layers.Dense(1, activation="sigmoid")(layers.Dense(4, activation="relu")(i)))
    m.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(learning_rate=0.01))
    m.save(tmp_path / "m.keras")
    m.save(tmp_path / "m.h5")
    np.save(tmp_path / "x.npy", np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32))
    for name in ("m.keras", "m.h5"):
        out = tmp_path / f"out_{name}"
        r = _run(tmp_path / name, "--out", out, "--data", tmp_path / "x.npy", "--quiet", "--no-onnx", "--steps", "3")
        assert r.returncode == 0, r.stderr
        report = json.loads((out / "report.json").read_text())
        assert report["artifacts"]["optimizer"]["source"] == "compiled Adam"
        assert any(c["check"] == "training loss curve (adam, 3 steps)" and c["dtype"] == "float64" for c in report["checks"])
        assert report["artifacts"]["loss"]["kind"] == "bce" and "compiled" in report["artifacts"]["loss"]["source"]
        assert "--data" in report["data"][0]["input_source"]


def test_bad_data_shape_is_usage_error(tmp_path, resnet_file):
    np.save(tmp_path / "x.npy", np.zeros((2, 16, 16, 3), np.float32))  # channels last: wrong
    r = _run(f"{resnet_file}:small_resnet", "--out", tmp_path / "o", "--data", tmp_path / "x.npy")
    assert r.returncode == 2 and "channels first" in r.stderr and not (tmp_path / "o").exists()


def test_lambda_refused_without_unsafe(tmp_path):
    i = keras.Input((4,))
    m = keras.Model(i, layers.Lambda(lambda t: t * 2.0)(i))
    m.save(tmp_path / "lam.keras")
    r = _run(tmp_path / "lam.keras", "--out", tmp_path / "o")
    assert r.returncode == 2
    assert "Lambda" in r.stderr and "--unsafe" in r.stderr and "Traceback" not in r.stderr
    # with --unsafe it loads, and the Lambda (no converter) is traced: its function is a keras.ops node
    r = _run(tmp_path / "lam.keras", "--out", tmp_path / "o", "--unsafe", "--no-onnx", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\n +lambda_multiply = \w+ \* 2\.0  # \(N, 4\)", (tmp_path / "o" / "model.py").read_text())


def test_unsupported_layer_exit_2_names_layer_class_and_what(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(textwrap.dedent('''
        import keras
        def model():
            i = keras.Input((4, 4, 3))
            return keras.Model(i, keras.layers.Conv2D(2, 3, padding="same", data_format="channels_first", name="cf_conv")(i))
        def model2():
            i = keras.Input((5, 3))
            return keras.Model(i, keras.layers.LSTM(2, activation="softmax", name="my_lstm")(i))
    '''))
    r = _run(f"{path}:model", "--out", tmp_path / "o")
    assert r.returncode == 2 and "'cf_conv'" in r.stderr and "Conv2D" in r.stderr and "channels_first" in r.stderr
    r = _run(f"{path}:model2", "--out", tmp_path / "o")
    assert r.returncode == 2 and "'my_lstm'" in r.stderr and "LSTM" in r.stderr and "activation 'softmax'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_untraceable_custom_layer_exit_2(tmp_path):
    path = tmp_path / "odd.py"
    path.write_text(textwrap.dedent('''
        import keras, tensorflow as tf

        class Cumsum(keras.layers.Layer):
            def call(self, x):
                return tf.math.cumsum(x, axis=-1)

        def model():
            i = keras.Input((4,))
            return keras.Model(i, Cumsum(name="cum")(i))
    '''))
    r = _run(f"{path}:model", "--out", tmp_path / "o")
    assert r.returncode == 2 and "'cum' of class Cumsum" in r.stderr and "odd.py:6" in r.stderr
    assert "@keras_converter('Cumsum')" in r.stderr and "Traceback" not in r.stderr


@keras.saving.register_keras_serializable(package="tests")
class ScaleBy(layers.Layer):
    """A custom layer: multiplies by a trainable per-channel scale."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def test_custom_layer_registry():
    from keras_impl.read.registry import CONVERTERS, UnsupportedLayerError, keras_converter

    i = keras.Input((5, 5, 3))
    m = keras.Model(i, layers.Conv2D(4, 1)(ScaleBy(name="scale_by")(layers.Conv2D(3, 3)(i))))
    m.get_layer("scale_by").scale.assign(np.array([0.5, -2.0, 3.0], np.float32))
    traced = compare.port_checks(m)  # no converter: call() traced, self.scale a trainable `variable` node
    ops = {n.name: n.op for n in traced.graph.nodes}
    assert ops["scale_by_scale"] == "variable" and ops["scale_by_multiply"] == "mul", ops
    assert not [c for c in traced.checks if not c.passed]

    @keras_converter("ScaleBy")
    def scale_by(ctx, layer, call):
        x = call.inputs[0]  # channels first here: the weight goes to the channel axis
        ctx.emit("mul", [x], call.outputs[0], weights={"const": ctx.const_to_neutral(layer.scale.numpy(), x)})

    try:
        res = compare.port_checks(m)
        bad = [c for c in res.checks if not c.passed]
        assert not bad, "\n".join(format_check(c) for c in bad)
        assert "scale_by" in {c.check[5:] for c in res.checks if c.check.startswith("node ")}
    finally:
        CONVERTERS.pop("ScaleBy")


def test_nested_models_and_shared_layer():
    inner = keras.Sequential([keras.Input((6, 6, 4)), layers.Conv2D(4, 3, padding="same", name="inner_conv"),
                              layers.BatchNormalization(name="inner_bn")], name="block")
    i = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 1, name="stem")(i)
    x = inner(x)
    shared = layers.Dense(3, name="shared_dense")
    a, b = shared(layers.GlobalMaxPooling2D()(x)), shared(layers.GlobalAveragePooling2D()(x))
    m = keras.Model(i, layers.Add(name="sum")([a, b]))
    for v in m.weights:
        if "moving" in v.path:
            v.assign(np.random.default_rng(0).uniform(0.5, 1.5, v.shape).astype(np.float32))
    res = compare.port_checks(m)
    bad = [c for c in res.checks if not c.passed]
    assert not bad, "\n".join(format_check(c) for c in bad)
    nodes = {c.check[5:] for c in res.checks if c.check.startswith("node ")}
    assert {"inner_conv", "inner_bn", "shared_dense", "shared_dense@1", "sum"} <= nodes
    assert res.source.count("self.shared_dense = nn.Linear") == 1 and res.source.count("self.shared_dense(") == 2


def test_two_inputs_two_outputs(tmp_path):
    """A table and an image in, two heads out: every node compared, the loss on the first
    output, the image input channels first and the table as is; both ONNX exports take both
    inputs and every output is compared four ways (issue 20)."""
    table, image = keras.Input((5,), name="table"), keras.Input((6, 6, 2), name="image")
    feats = layers.GlobalAveragePooling2D()(layers.Conv2D(3, 3, name="conv")(image))
    joint = layers.Concatenate(name="joint")([layers.Dense(4, name="fc")(table), feats])
    m = keras.Model([table, image], [layers.Dense(3, name="head_a")(joint), layers.Dense(1, name="head_b")(joint)])
    res = compare.port_checks(m, onnx_dir=tmp_path)
    bad = [c for c in res.checks if not c.passed]
    assert not bad, "\n".join(format_check(c) for c in bad)
    assert [c.check for c in res.checks if c.check.startswith("output ")] == ["output head_a", "output head_b"] * 2
    assert res.info["layouts"]["inputs"]["image"]["layout"] == "channels_first"
    assert res.info["layouts"]["inputs"]["table"]["layout"] == "as_keras"
    onnx = [c for c in res.checks if c.check.startswith("onnx ")]
    for out in ("head_a", "head_b"):  # six edges each: keras, torch, onnx(keras), onnx(torch)
        assert len([c for c in onnx if c.check.startswith(f"onnx output {out} ")]) == 6, [c.check for c in onnx]
    assert all(not c.info for c in onnx)
    assert "def forward(self, table, image):" in res.source and "return head_a, head_b" in res.source


PLUGIN = textwrap.dedent('''
    import keras
    from keras_impl.read.registry import keras_converter

    @keras.saving.register_keras_serializable(package="plugin_test")
    class Shift(keras.layers.Layer):
        def __init__(self, by=1.5, **kw):
            super().__init__(**kw)
            self.by = by

        def call(self, x):
            return x + self.by

        def get_config(self):
            return {**super().get_config(), "by": self.by}

    @keras_converter("Shift")
    def shift(ctx, layer, call):
        ctx.emit("add", [call.inputs[0]], call.outputs[0], attrs={"const": float(layer.by), "const_side": "right"})
''')


def test_plugin_option_registers_custom_layer_for_a_saved_model(tmp_path):
    plugin = tmp_path / "my_layers.py"
    plugin.write_text(PLUGIN)
    from keras_impl.port import import_plugin
    from keras_impl.read.registry import CONVERTERS

    module = import_plugin(str(plugin))
    i = keras.Input((4,))
    keras.Model(i, layers.Dense(2)(module.Shift(by=0.25, name="shift")(i))).save(tmp_path / "m.keras")
    try:
        r = _run(tmp_path / "m.keras", "--out", tmp_path / "o", "--plugin", plugin, "--no-onnx", "--quiet")
        assert r.returncode == 0, r.stderr
        assert re.search(r"\n +x = \w+ \+ 0\.25  # shift: \(N, 4\)", (tmp_path / "o" / "model.py").read_text())
    finally:
        CONVERTERS.pop("Shift", None)


def test_graph_weights_round_trip_in_torch_layout():
    """The weight map the engine's KerasBackend takes: portable = the generated module's state_dict."""
    from keras_impl.port import GraphWeights

    i = keras.Input((5, 5, 3))
    m = keras.Model(i, layers.Dense(2)(layers.Flatten()(layers.DepthwiseConv2D(3, depth_multiplier=2)(i))))
    module, _ = compare.keras_to_torch(m)
    from keras_impl.read import read_graph

    gw = GraphWeights(read_graph(m))
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    portable = gw.to_portable(m)
    assert portable.keys() == state.keys() and all(np.array_equal(portable[k], state[k]) for k in state)
    changed = {k: v + 1.0 for k, v in portable.items()}
    gw.from_portable(m, changed)
    assert all(np.array_equal(gw.to_portable(m)[k], changed[k]) for k in changed)
