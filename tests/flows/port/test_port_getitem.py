"""`compare.py port` on Keras tensor indexing (`ops.GetItem`): `x[:, 0]` (a
Transformer's first token), `x[:, -1]` (an RNN's last step), `x[..., 1:3]`
and strided slices, on sequences and on a channels-last conv feature map
(the neutral graph holds it channels first: the index must follow Keras'
axes). Refusals name the layer and the index."""

from __future__ import annotations

import numpy as np
import pytest

import torch  # noqa: F401  torch before TensorFlow

import compare
from keras_impl.read.registry import UnsupportedLayerError


def _model():
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    img = keras.Input((6, 6, 3), name="img")
    f = L.Conv2D(4, 3, padding="same", name="conv")(img)
    corner = f[:, 1:5:2, ..., 1:3]                        # (N, 2, 6, 2): rows 1 and 3, channels 1..2
    seq = L.Reshape((12, 2), name="to_seq")(corner)
    seq = L.Dense(5, name="proj")(seq)
    first, last = seq[:, 0], seq[:, -1]                   # (N, 5) each
    out = L.Dense(2, name="head")(L.Concatenate(name="cat")([first, last, seq[:, 2:7:3, 4]]))
    return keras.Model(img, out), [np.random.default_rng(0).standard_normal((3, 3, 6, 6)).astype("float32")]


def test_indexing_ports_and_follows_keras_axes():
    model, data = _model()
    res = compare.port_checks(model, data)
    failed = [f"{c.check} [{c.dtype}] {c.max_abs_diff:.3g}" for c in res.checks if not c.passed]
    assert not failed, failed
    f64 = [c for c in res.checks if c.dtype == "float64"]
    assert max(c.max_rel_diff for c in f64) <= 1e-12
    assert "[:, 0]" in res.source and "[:, -1]" in res.source and "[:, 1:5:2, :, 1:3]" in res.source


@pytest.mark.parametrize("index,why", [(lambda t: t[:, ::-1], "negative step"), (lambda t: t[0], "batch axis"),
                                       (lambda t: t[:, None], "only ints, slices")])
def test_unsupported_indexing_is_refused_by_name(index, why):
    import keras

    x_in = keras.Input((4, 3))
    model = keras.Model(x_in, keras.layers.Dense(2)(index(x_in)))
    with pytest.raises(UnsupportedLayerError, match=why):
        compare.keras_to_torch(model)
