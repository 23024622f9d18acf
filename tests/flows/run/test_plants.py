"""Every planted porting bug of the catalog (shared/data/faults.py) is caught (the
run fails) and located (a failing row names the layer, tensor, optimizer,
loss or data stage), on tiny data through the engine; the same data with no
bug planted passes (no false alarm)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow (as Keras' own tests do)

import compare
from shared.data.config import ModelConfig
from shared.flows.engine import Options, PairData, check_pair
from shared.data.faults import FAULTS, parse_plant

pytestmark = pytest.mark.usefixtures("ktp_dirs")

TASK = {"labels-off-by-one": "multiclass", "bce-probabilities": "binary", "dense-transpose": "multiclass",
        "adam-epsilon": "multiclass", "sgd-momentum-form": "multiclass", "coupled-weight-decay": "multiclass"}


def _case(task: str, model: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 32
    if model == "cnn":
        config = ModelConfig("cnn", task, (8, 8, 3), 3 if task != "binary" else 1, conv_channels=(4, 8), dense_units=8)
        x = rng.uniform(size=(n, 3, 8, 8)).astype(np.float32)
    else:
        config = ModelConfig("mlp", task, (6,), 3 if task != "binary" else 1, hidden=(8, 6))
        x = rng.normal(size=(n, 6)).astype(np.float32)
    if task == "multiclass":
        y = rng.integers(0, 3, n).astype(np.int64)
    elif task == "regression":
        y = rng.normal(size=(n, 3)).astype(np.float32)
    else:
        y = (rng.uniform(size=(n, config.num_outputs)) > 0.5).astype(np.float32)
    data = PairData(task, x[:24], y[:24], x[24:], y[24:], [f"item{i}" for i in range(8)],
                    [f"c{i}" for i in range(config.num_outputs)])
    return config, data


def _run(config, data, fault=None, optimizers=("sgd",)):
    spec, _ = parse_plant(fault)
    opts = Options(steps=4, optimizers=optimizers, batch_size=8, onnx=False, fault=fault,
                   train_overrides=dict(spec.train) if spec is not None else {})
    a, b = compare.backends(config, 0, fault)
    return check_pair(a, b, data, opts, name="tiny", model=config.model, batchnorm=config.model == "cnn").checks


# One of each kind in the default run; the rest are slow (each ~5-20 s on 2 cores).
FAST = {"bn-unbiased-var", "adam-epsilon", "bce-probabilities", "rgb-bgr"}


@pytest.mark.parametrize("task, model", [("regression", "cnn"), ("multiclass", "mlp"),
                                         pytest.param("binary", "mlp", marks=pytest.mark.slow),
                                         pytest.param("multilabel", "cnn", marks=pytest.mark.slow)])
def test_tiny_data_without_a_bug_passes(task, model):
    checks = _run(*_case(task, model), optimizers=("sgd", "adam"))
    bad = [f"{c.dtype} {c.check}: {c.where}" for c in checks if not c.passed and not c.info]
    assert not bad, bad


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in FAULTS])
def test_each_planted_bug_is_caught_and_located(name):
    fault = FAULTS[name]
    task = TASK.get(name, "regression")
    model = "cnn" if "cnn" in fault.models and (task == "regression" or "mlp" not in fault.models) else "mlp"
    if fault.tasks and task not in fault.tasks:
        task = fault.tasks[0]
    config, data = _case(task, model)
    checks = _run(config, data, name, fault.optimizers or ("sgd",))
    failing = [c for c in checks if not c.passed and not c.info]
    assert failing, f"{name} not caught"
    located = [c for c in failing if re.search(fault.where, f"{c.dtype} {c.check} {c.where}")]
    assert located, (name, [f"{c.dtype} {c.check} {c.where}" for c in failing])
