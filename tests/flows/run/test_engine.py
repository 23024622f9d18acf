"""The engine knows nothing of TensorFlow or torch: it checks two numpy backends.

Two tiny numpy MLPs (dense1 -> relu1 -> head, regression, mean squared error)
implement the default run's shared.flows.side.Side by hand. A faithful pair passes every check;
a pair whose second side has a planted bug (a leaky ReLU where a ReLU belongs)
fails, and the engine names relu1 as the first layer that differs.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.flows.side import Side, engine_batches, single, task_loss
from shared.data.dataset import array_fingerprint
from shared.flows.engine import Options, PairData, check_pair, relu_layers, relu_straddles
from shared.core.training import TrainResult

ROOT = Path(__file__).resolve().parents[3]


class NumpyMLP:
    """x (B, 5) -> dense1 (8) -> relu1 -> head (2); SGD with Keras' momentum form."""

    can_train = True
    task = "regression"

    def __init__(self, weights: dict, name: str, dtype: str = "float32", leak: float = 0.0):
        self.name, self.dtype, self.leak = name, dtype, leak
        self.w = {k: np.array(v, dtype=dtype) for k, v in weights.items()}

    def _layers(self, x):
        x = np.asarray(x, dtype=self.dtype)
        h = x @ self.w["dense1.weight"].T + self.w["dense1.bias"]
        r = np.where(h > 0, h, self.leak * h).astype(self.dtype)
        return {"dense1": h, "relu1": r, "head": r @ self.w["head.weight"].T + self.w["head.bias"]}

    graph = None  # values are keyed by layer names

    def forward(self, xs, training=False):
        return [self._layers(single(xs))["head"]]

    def values(self, xs, training=False):
        return self._layers(single(xs))

    def loss_outputs(self, logits, y, naive=False):
        per = ((np.asarray(logits) - y) ** 2).mean(axis=-1)
        return {"probabilities": np.asarray(logits), "per-sample loss": per, "mean loss": np.asarray(per.mean())}

    def loss_and_grads(self, xs, y, loss=None, training=True):
        task_loss(self, loss)
        x = np.asarray(single(xs), dtype=self.dtype)
        out = self._layers(x)
        d_head = 2.0 * (out["head"] - y) / out["head"].size
        d_r = d_head @ self.w["head.weight"]
        d_h = d_r * np.where(out["dense1"] > 0, 1.0, self.leak)
        grads = {"dense1.weight": d_h.T @ x, "dense1.bias": d_h.sum(0),
                 "head.weight": d_head.T @ out["relu1"], "head.bias": d_head.sum(0)}
        loss = float(((out["head"] - y) ** 2).mean())
        return loss, {k: v.astype(self.dtype) for k, v in grads.items()}

    def train_steps(self, batches, loss=None, optimizer=None, training=True, on_step=None):
        velocity = {k: np.zeros_like(v) for k, v in self.w.items()}
        losses, fingerprints = [], []
        for i, (x, y) in enumerate(engine_batches(batches, training)):
            x, y = np.asarray(x, dtype=self.dtype), np.asarray(y, dtype=self.dtype)
            fingerprints.append(array_fingerprint(x, y))
            value, grads = self.loss_and_grads([x], y)
            for k in self.w:
                velocity[k] = optimizer.momentum * velocity[k] - optimizer.learning_rate * grads[k]
                self.w[k] = (self.w[k] + velocity[k]).astype(self.dtype)
            losses.append(value)
            if on_step:
                on_step(i, value)
        return TrainResult(np.asarray(losses), fingerprints)

    def get_weights(self):
        return {k: v.copy() for k, v in self.w.items()}

    def set_weights(self, tensors):
        self.w = {k: np.array(tensors[k], dtype=self.dtype) for k in self.w}

    def with_dtype(self, dtype):
        return NumpyMLP(self.w, self.name, dtype, self.leak)

    def copy(self):
        return NumpyMLP(self.w, self.name, self.dtype, self.leak)

    def export_onnx(self, path, opset=None, config=None, info=None):
        raise NotImplementedError

    def onnx_input(self, x, name=None):
        raise NotImplementedError

    def onnx_input_names(self):
        raise NotImplementedError

    def onnx_output(self, y, name=None):
        raise NotImplementedError

    def onnx_side(self, path):
        raise NotImplementedError


def _pair(leak: float):
    rng = np.random.default_rng(0)
    w = {"dense1.weight": rng.normal(0, 0.5, (8, 5)), "dense1.bias": rng.normal(0, 0.1, 8),
         "head.weight": rng.normal(0, 0.5, (2, 8)), "head.bias": np.zeros(2)}
    a = NumpyMLP(w, "numpy-a")
    b_weights = {k: np.zeros_like(v) for k, v in w.items()}  # the engine ports a's weights to b
    return a, NumpyMLP(b_weights, "numpy-b", leak=leak)


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 5)).astype(np.float32)
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5], axis=1).astype(np.float32)
    return PairData("regression", x[:64], y[:64], x[64:], y[64:])


OPTS = Options(steps=5, optimizers=("sgd",), onnx=False)


def test_numpy_backends_are_sides():
    a, b = _pair(0.0)
    assert isinstance(a, Side) and isinstance(b, Side)


def test_engine_passes_a_faithful_pair_of_numpy_backends():
    a, b = _pair(0.0)
    res = check_pair(a, b, _data(), OPTS, name="numpy/mlp", model="mlp")
    names = [c.check for c in res.checks]
    for must in ("weights numpy-a->numpy-b->numpy-a", "logits", "per-sample loss", "metrics",
                 "gradients (batch 0)", "batch fingerprints (sgd)", "training loss curve (sgd)", "trained weights (sgd)"):
        assert must in names, must
    assert {c.dtype for c in res.checks} == {"float32", "float64"}
    bad = [c for c in res.checks if not c.passed]
    assert not bad, bad
    # Same arithmetic on both sides: every difference is exactly zero.
    assert max(c.max_abs_diff for c in res.checks if not c.info) == 0.0
    assert set(res.curves["numpy/mlp sgd"]) == {"numpy-a", "numpy-b"}


def test_engine_finds_the_planted_bug_and_names_the_layer():
    a, b = _pair(0.01)  # b's relu1 leaks 1% of negative inputs
    res = check_pair(a, b, _data(), OPTS, name="numpy/mlp", model="mlp")
    logits = next(c for c in res.checks if c.check == "logits" and c.dtype == "float32")
    assert not logits.passed and logits.max_abs_diff > 100 * logits.tolerance
    first = [c for c in res.checks if c.check == "first differing layer"]  # float32, and the float64 repeat
    assert [c.dtype for c in first] == ["float32", "float64"] and all(c.where.split()[0] == "relu1" for c in first), first
    assert first[0].a == "numpy-a" and first[0].b == "numpy-b" and first[0].max_abs_diff > first[0].tolerance
    grads = next(c for c in res.checks if c.check.startswith("gradients"))
    assert not grads.passed


def test_relus_are_found_by_what_they_compute():
    a, b = _pair(0.01)
    b.set_weights(a.get_weights())
    x = _data().x_valid
    assert relu_layers(a.values([x])) == [("dense1", "relu1")]
    assert relu_layers(b.values([x])) == []  # a leaky ReLU is not max(0, x)
    # An input nudged across 0 on one side only is a straddle of a's ReLU.
    c = a.copy()
    h = a.values([x])["dense1"]
    i, j = np.unravel_index(np.argmin(np.abs(h)), h.shape)
    w = c.get_weights()
    w["dense1.bias"][j] -= 2 * h[i, j]  # flips the sign of that input (and its column's neighbours' values)
    c.set_weights(w)
    st = relu_straddles(a, c, x)
    assert list(st) == ["relu1"] and st["relu1"][0] >= 1


def test_the_engine_imports_no_framework():
    code = ("import sys, shared.flows.engine, shared.flows.engine_train, shared.flows.side, shared.onnx.onnx_backend; "
            "bad = [m for m in ('torch', 'tensorflow', 'keras', 'tf2onnx') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("bad", ["values", "train_steps"])
def test_forward_only_backends_refuse_the_rest(tmp_path, bad):
    from shared.onnx.onnx_backend import OnnxBackend

    o = OnnxBackend(tmp_path / "m.onnx", name="onnx(x)", task="regression", dtype="float32")
    assert o.can_train is False
    with pytest.raises(NotImplementedError, match="forward-only"):
        getattr(o, bad)([np.zeros((1, 5))]) if bad == "values" else o.train_steps([], None, None)


def test_training_that_diverges_in_both_frameworks_alike_is_not_a_parity_failure():
    from shared.flows.engine_train import _diverged_rows
    from shared.verdict.policy import diverged_together as _diverged_together
    from shared.verdict.judge import Judge

    la = [1.0, 10.0, float("inf"), float("nan")]
    assert _diverged_together(la, [1.0, 10.0, float("inf"), float("nan")]) == 2
    assert _diverged_together(la, [1.0, 10.0, 100.0, float("nan")]) is None  # one side first: a real difference
    assert _diverged_together([1.0, 2.0], [1.0, 2.0]) is None
    rows = _diverged_rows("sgd", 2, la, [1.0, 10.0, float("inf"), float("nan")], None, Judge(),
                          {"a_name": "keras", "b_name": "torch"}, {"task": "regression", "model": "mlp", "dtype": "float32"})
    assert rows[0].passed and "both diverged at step 3" in rows[0].where and not rows[0].info
    assert rows[1].info and rows[1].passed and "not compared" in rows[1].where
