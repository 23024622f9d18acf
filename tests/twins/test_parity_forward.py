"""Forward parity in inference mode: one side built with its own initialiser
(BatchNorm made non-trivial), ported in memory to the other, then logits,
probabilities, per-sample and mean losses, predictions and every layer's output
compared with shared.verdict.tolerances.FORWARD on a batch of 16.

The largest difference per (dtype, check) is printed at the end of the module.
"""

import torch  # noqa: I001  (torch before TensorFlow/Keras, as Keras' own tests do)

import keras
import numpy as np
import pytest

from helpers import DTYPES, max_record, random_inputs, random_targets, randomise_bn
from keras_impl import losses as klosses
from keras_impl import models as kmodels
from keras_impl import weights as kweights
from shared.verdict.checks import compare_arrays, format_check
from shared.data.config import layer_names
from shared.graph.layout import keras_activation_as_torch, nhwc_to_nchw
from shared.data.registry import PAIRS
from shared.verdict.tolerances import FORWARD
from torch_impl import losses as tlosses
from torch_impl import models as tmodels
from torch_impl import weights as tweights

DIRECTIONS = ("keras->torch", "torch->keras")
CASES = [
    pytest.param(p, dt, d, id=f"{p.name}-{dt}-{d}") for p in PAIRS for dt in DTYPES for d in DIRECTIONS
]
BATCH = 16

# (dtype, check) -> largest max |diff| over every pair and direction.
LARGEST = {}
# (dtype, check) -> largest max |diff| / allowed: how much of the tolerance was used.
USED = {}


class _Report:
    """A late-registered pytest plugin: prints LARGEST in the terminal summary."""

    def pytest_terminal_summary(self, terminalreporter):
        if not LARGEST:
            return
        terminalreporter.section("forward parity: largest keras-vs-torch differences")
        terminalreporter.write_line(f"inference mode, batch {BATCH}, over every pair and both port directions")
        for (dtype, name), value in sorted(LARGEST.items()):
            terminalreporter.write_line(
                f"  {dtype:8} {name:18} max |diff| {value:<9.3g} = {USED[(dtype, name)]:.2g} x its tolerance"
            )


@pytest.fixture(scope="module", autouse=True)
def report_largest(request):
    """Registers _Report once, so the numbers appear at the end of the run."""
    manager = request.config.pluginmanager
    if not manager.has_plugin("forward-parity-report"):
        manager.register(_Report(), "forward-parity-report")
    yield


_RUNS = {}


def run_case(pair, dtype, direction):
    """Both models' outputs for one case (computed once, shared by the tests)."""
    key = (pair.name, dtype, direction)
    if key in _RUNS:
        return _RUNS[key]
    config = pair.config(dtype)
    x = random_inputs(config, BATCH, seed=10)  # (16, F) or (16, H, W, C)
    y = random_targets(config, BATCH, seed=11)  # (16,) int64 or (16, C)
    x_t = nhwc_to_nchw(x)  # (16, C, H, W) for images

    k = kmodels.build_model(config, seed=0)
    t = tmodels.build_model(config, seed=0)
    if direction == "keras->torch":
        kweights.from_portable(k, config, randomise_bn(kweights.to_portable(k, config), config))
        before = tmodels.forward(t, x_t)
        tweights.from_portable(t, config, kweights.to_portable(k, config))
    else:
        tweights.from_portable(t, config, randomise_bn(tweights.to_portable(t, config), config))
        before = kmodels.forward(k, x)
        kweights.from_portable(k, config, tweights.to_portable(t, config))

    k_logits = kmodels.forward(k, x, training=False)
    t_logits = tmodels.forward(t, x_t, training=False)
    k_logits_tensor = keras.ops.convert_to_tensor(k_logits)
    t_logits_tensor = torch.from_numpy(t_logits)
    t_y = torch.from_numpy(y)
    run = dict(
        config=config,
        before=before,
        logits=(k_logits, t_logits),
        probabilities=(
            keras.ops.convert_to_numpy(klosses.probabilities(config.task, k_logits_tensor)),
            tlosses.probabilities(config.task, t_logits_tensor).numpy(),
        ),
        per_sample_loss=(
            keras.ops.convert_to_numpy(klosses.per_sample_loss(config.task, k_logits_tensor, y)),
            tlosses.per_sample_loss(config.task, t_logits_tensor, t_y).numpy(),
        ),
        mean_loss=(
            keras.ops.convert_to_numpy(klosses.mean_loss(config.task, k_logits_tensor, y)),
            tlosses.mean_loss(config.task, t_logits_tensor, t_y).numpy(),
        ),
        layers=(kmodels.layer_outputs(k, x, training=False), tmodels.layer_outputs(t, x_t, training=False)),
    )
    _RUNS[key] = run
    return run


def check(name, a, b, config, tag=None):
    """compare_arrays with FORWARD[dtype]; records the largest difference; asserts."""
    c = compare_arrays(name, a, b, FORWARD[config.dtype], task=config.task, model=config.model, dtype=config.dtype)
    tag = tag or name
    max_record(LARGEST, (config.dtype, tag), c.max_abs_diff)
    max_record(USED, (config.dtype, tag), c.max_abs_diff / c.tolerance)
    assert c.passed, format_check(c)
    return c


@pytest.mark.parametrize("pair, dtype, direction", CASES)
def test_logits(pair, dtype, direction):
    run = run_case(pair, dtype, direction)
    config = run["config"]
    k_logits, t_logits = run["logits"]
    assert k_logits.shape == t_logits.shape == (BATCH, config.num_outputs)
    assert k_logits.dtype == t_logits.dtype == np.dtype(dtype)
    # Before the port the destination (its own init) disagreed: the match is the port's doing.
    source = k_logits if direction == "keras->torch" else t_logits
    assert np.max(np.abs(run["before"] - source)) > 1e3 * FORWARD[dtype].allowed(np.max(np.abs(source)))
    check("logits", k_logits, t_logits, config)


@pytest.mark.parametrize("pair, dtype, direction", CASES)
def test_probabilities(pair, dtype, direction):
    run = run_case(pair, dtype, direction)
    k_p, t_p = run["probabilities"]
    assert k_p.dtype == t_p.dtype == np.dtype(dtype)
    if run["config"].task == "multiclass":
        np.testing.assert_allclose(k_p.sum(-1), 1.0, rtol=0, atol=FORWARD[dtype].rel * 4)
    check("probabilities", k_p, t_p, run["config"])


@pytest.mark.parametrize("pair, dtype, direction", CASES)
def test_losses(pair, dtype, direction):
    run = run_case(pair, dtype, direction)
    config = run["config"]
    k_l, t_l = run["per_sample_loss"]
    assert k_l.shape == t_l.shape == (BATCH,)
    assert k_l.dtype == t_l.dtype == np.dtype(dtype)  # a float32 Keras loss on float64 would be a trap
    check("per-sample loss", k_l, t_l, config)
    k_m, t_m = run["mean_loss"]
    assert k_m.shape == t_m.shape == ()
    assert k_m.dtype == t_m.dtype == np.dtype(dtype)
    check("mean loss", k_m, t_m, config)
    # The mean loss is the mean of the per-sample losses on each side.
    np.testing.assert_allclose(k_m, k_l.mean(), rtol=4 * FORWARD[dtype].rel)
    np.testing.assert_allclose(t_m, t_l.mean(), rtol=4 * FORWARD[dtype].rel)


@pytest.mark.parametrize("pair, dtype, direction", CASES)
def test_predictions(pair, dtype, direction):
    run = run_case(pair, dtype, direction)
    config = run["config"]
    k_p, t_p = run["probabilities"]
    if config.task == "multiclass":
        k_pred, t_pred = k_p.argmax(-1), t_p.argmax(-1)  # (16,)
        assert len(set(t_pred.tolist())) > 1  # not a degenerate all-one-class batch
        flips = int(np.sum(k_pred != t_pred))
    elif config.task in ("multilabel", "binary"):
        k_pred, t_pred = k_p >= 0.5, t_p >= 0.5  # (16, C)
        flips = int(np.sum(k_pred != t_pred))
    else:  # regression: the values themselves
        check("predictions", k_p, t_p, config)
        flips = 0
    max_record(LARGEST, (dtype, "prediction flips"), flips)
    USED[(dtype, "prediction flips")] = 0.0
    assert flips == 0, f"{flips} of {k_p.size} predictions differ"


@pytest.mark.parametrize("pair, dtype, direction", CASES)
def test_layer_outputs(pair, dtype, direction):
    run = run_case(pair, dtype, direction)
    config = run["config"]
    k_out, t_out = run["layers"]
    assert list(k_out) == list(t_out) == layer_names(config)
    for name in layer_names(config):
        a = keras_activation_as_torch(name, k_out[name], config)
        assert a.shape == t_out[name].shape, name
        check(f"layer {name}", a, t_out[name], config, tag="per-layer (max)")
