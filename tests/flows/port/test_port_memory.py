"""Issue 18's memory mechanisms of the reverse port: the in-place SGD step
(keras_impl/port.py sgd_momentum_update, bit for bit keras.optimizers.SGD)
and the refusal of an ONNX export whose estimated need outgrows the budget
(shared/core/memory.py export_memory_refusal)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.core.memory import ONNX_EXPORT_BUDGET_MIB, TF2ONNX_BYTES_PER_PARAMETER, export_memory_refusal

VGG11_BN_PARAMETERS = 132_868_840  # torchvision's vgg11_bn (10 classes: fewer; the order of magnitude matters)


def test_onnx_export_refused_for_vgg_sized_models_only():
    why = export_memory_refusal("tf2onnx", VGG11_BN_PARAMETERS, TF2ONNX_BYTES_PER_PARAMETER)
    assert why is not None and "tf2onnx needs about 13.5 GiB for 132.9M parameters" in why
    assert "the export budget (8.0 GiB" in why
    assert export_memory_refusal("tf2onnx", 11_689_512, TF2ONNX_BYTES_PER_PARAMETER) is None  # resnet18
    # the budget is the estimated need's limit, inclusive
    at_budget = int(ONNX_EXPORT_BUDGET_MIB * 1024 * 1024 / TF2ONNX_BYTES_PER_PARAMETER)
    assert export_memory_refusal("tf2onnx", at_budget, TF2ONNX_BYTES_PER_PARAMETER) is None
    # less memory available than the budget: that is the limit named
    why = export_memory_refusal("tf2onnx", 11_689_512, TF2ONNX_BYTES_PER_PARAMETER, available=1000.0)
    assert why is not None and "MemAvailable (1.0 GiB" in why


def _tiny_model(keras, dtype):
    keras.utils.set_random_seed(0)
    i = keras.Input((5, 5, 3))
    x = keras.layers.Conv2D(4, 3, dtype=dtype)(i)
    x = keras.layers.BatchNormalization(dtype=dtype)(x)
    x = keras.layers.Flatten(dtype=dtype)(x)
    return keras.Model(i, keras.layers.Dense(3, dtype=dtype)(x))


@pytest.mark.parametrize("slice_elements", [None, 7])
def test_in_place_sgd_matches_keras_sgd_bitwise_float64(monkeypatch, slice_elements):
    """3 steps in float64, lr 0.01, momentum 0.9 (the port's): every weight
    bit for bit keras.optimizers.SGD's, whole variables and 7-element slices."""
    import keras
    import tensorflow as tf

    from keras_impl import port
    from keras_impl.train import _constant

    if slice_elements is not None:
        monkeypatch.setattr(port, "SGD_SLICE_ELEMENTS", slice_elements)
    rng = np.random.default_rng(0)
    x, y = tf.constant(rng.normal(size=(4, 5, 5, 3))), tf.constant(rng.normal(size=(4, 3)))
    ref, mine = _tiny_model(keras, "float64"), _tiny_model(keras, "float64")
    mine.set_weights(ref.get_weights())
    opt = keras.optimizers.SGD(learning_rate=_constant(0.01), momentum=np.float64(0.9))
    lr, mom = 0.01, 0.9
    velocities = [np.zeros(tuple(v.shape), np.float64) for v in mine.trainable_variables]
    for _ in range(3):
        for model in (ref, mine):
            with tf.GradientTape() as tape:
                value = tf.reduce_mean((model(x, training=True) - y) ** 2)
            grads = tape.gradient(value, model.trainable_variables)
            if model is ref:
                opt.apply_gradients(zip(grads, model.trainable_variables))
            else:
                for v, m, g in zip(model.trainable_variables, velocities, grads):
                    port.sgd_momentum_update(v, m, g, lr, mom)
    for a, b in zip(ref.weights, mine.weights):
        assert np.asarray(a).dtype == np.float64
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(a, b) for a, b in zip(ref.get_weights(), _tiny_model(keras, "float64").get_weights()))


class _Net:
    """A torchvision-like module (a features block, a flatten, a head)."""

    @staticmethod
    def make():
        import torch

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
                self.fc = torch.nn.Linear(144, 2)

            def forward(self, x):
                return self.fc(torch.flatten(self.features(x), 1))

        torch.manual_seed(0)
        return Net().eval()


def test_forgotten_cast_copy_is_collected():
    """TorchSide.forget drops a copy's cached capture and the copy is collected. (On
    VGG11-BN the float64 copy stayed resident without it: 1 GB, the stage
    log of BENCHMARKS.md; this small module is collected either way.)"""
    import gc
    import weakref

    from shared.flows import port_check as pc
    from torch_impl.side import TorchSide

    side = TorchSide.read(_Net.make(), (3, 8, 8))
    xs = [x.astype("float64") for x in pc.random_inputs(side.graph, 2, 0)]
    kept = []
    for forget in (False, True):
        copy = side.with_dtype("float64")
        copy.values(xs)
        alive = weakref.ref(copy.module)
        if forget:
            copy.forget()
        del copy
        gc.collect()
        kept.append(alive() is not None)
    assert kept[1] is False  # forgotten: collected (this small module is collected either way)
