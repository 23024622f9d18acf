"""Each pattern of shared/verdict/diagnose.py on synthetic arrays, and its absence on rounding noise."""

from __future__ import annotations

import numpy as np
import pytest

from shared.verdict.diagnose import diagnose

RNG = np.random.default_rng(0)


def _bn_stats(steps, momentum_keras=0.99, torch_momentum=0.01, unbiased=False, n=64):
    start = np.ones(8)
    a, b = start.copy(), start.copy()
    for _ in range(steps):
        v = RNG.uniform(0.5, 2.0, 8)
        a = momentum_keras * a + (1 - momentum_keras) * v
        vb = v * n / (n - 1) if unbiased else v
        b = (1 - torch_momentum) * b + torch_momentum * vb
    return start, a, b


@pytest.mark.parametrize("steps", [1, 30])
def test_unbiased_running_variance(steps):
    start, a, b = _bn_stats(steps, unbiased=True, n=64)
    hint = diagnose("bn2.running_var", a, b, count=64, start=start, steps=steps)
    assert hint and "n/(n-1) = 1.01587" in hint and "unbiased" in hint


@pytest.mark.parametrize("steps", [1, 5])
def test_keras_momentum_passed_to_torch(steps):
    start, a, b = _bn_stats(steps, torch_momentum=0.99)
    hint = diagnose("bn1.running_mean", a, b, start=start, steps=steps)
    assert hint and "momentum = 1 - 0.99" in hint


def test_one_pixel_shift():
    a = RNG.normal(size=(2, 4, 8, 8))
    b = np.zeros_like(a)
    b[:, :, 1:, 1:] = a[:, :, :-1, :-1]
    hint = diagnose("conv2", a, b)
    assert hint and "shifted by" in hint and "same" in hint


def test_kernel_flipped_and_transposed():
    k = RNG.normal(size=(8, 3, 3, 3))
    assert "flipped" in diagnose("conv1.weight", k, k[..., ::-1, ::-1])
    assert "H and W swapped" in diagnose("conv1.weight", k, np.swapaxes(k, 2, 3))


def test_flatten_order():
    h, w, c = 2, 3, 4
    a = RNG.normal(size=(5, h * w * c))
    perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
    b = a[:, np.argsort(perm)]
    hint = diagnose("fc1.weight", a, b, flatten_hwc=(h, w, c))
    assert hint and "(H,W,C)" in hint and "exactly" in hint


def test_batchnorm_epsilon_ratio():
    x = RNG.normal(size=(16, 4, 5, 5)) * np.array([0.1, 0.5, 1.0, 2.0]).reshape(1, 4, 1, 1)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    beta = 0.3
    a = (x - mean) / np.sqrt(var + 1e-3) + beta
    b = (x - mean) / np.sqrt(var + 1e-5) + beta
    hint = diagnose("bn1", a, b, layer="bn1")
    assert hint and "epsilon" in hint


def test_bce_on_clipped_probabilities():
    a = np.array([0.1, 16.118095650958319, 2.0])
    b = np.array([0.1, 35.0, 2.0])
    hint = diagnose("per-sample loss", a, b)
    assert hint and "keras's loss is capped" in hint


def test_labels_off_by_one():
    y = np.array([0, 3, 2, 9])
    assert "+1" in diagnose("labels", y, y + 1)


def test_rgb_bgr():
    x = RNG.uniform(size=(2, 3, 4, 4))
    assert "RGB vs BGR" in diagnose("inputs", x, x[:, ::-1])


def test_different_resize():
    base = np.linspace(0, 1, 64).reshape(1, 1, 8, 8).repeat(3, axis=1)
    smooth = base + 0.01 * np.sin(np.arange(64)).reshape(1, 1, 8, 8)
    assert "resize" in diagnose("inputs", base, smooth)


def test_constant_factor_and_sign():
    a = RNG.normal(size=10)
    assert "constant factor 10" in diagnose("mean loss", a, 10 * a)
    assert "opposite signs" in diagnose("grad head.bias", a, -a)


@pytest.mark.parametrize("name, shape", [("conv2", (2, 4, 8, 8)), ("bn1", (2, 4, 8, 8)), ("fc1.weight", (5, 24)),
                                         ("bn2.running_var", (8,)), ("per-sample loss", (10,)), ("inputs", (2, 3, 4, 4))])
def test_rounding_noise_matches_no_pattern(name, shape):
    """A false hint is a false alarm too: float32 noise names no trap."""
    a = RNG.normal(size=shape) + 2
    b = a * (1 + 1e-7 * RNG.normal(size=shape))
    assert diagnose(name, a, b, count=64, start=np.ones(shape), flatten_hwc=(2, 3, 4), layer=name) is None


def test_unbiased_running_variance_without_the_count():
    start, a, b = _bn_stats(5, unbiased=True, n=256)
    hint = diagnose("bn2.running_var", a, b, start=start, steps=5)
    assert hint and "n = 256" in hint


def test_first_differing_conv_or_dense_layer_names_its_candidates():
    a = RNG.normal(size=(2, 4, 8, 8))
    assert "\"same\"" in diagnose("conv2", a, a + 0.1, layer="conv2", first_layer=True)
    assert "(H,W,C)" in diagnose("fc1", a[:, :, 0, 0], a[:, :, 0, 0] + 0.1, layer="fc1", first_layer=True)
