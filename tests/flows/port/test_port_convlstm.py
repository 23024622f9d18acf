"""ConvLSTM1D / ConvLSTM2D in `compare.py port` (issue 20): torch has no
convolutional LSTM, so model.py gets a KerasConvLSTM cell module
(torch_impl/write/conv_lstm.py); float64 forward, gradients and training
within 1e-12 relative of Keras, the flags Keras has (strides, TF "same" pads
that are asymmetric, dilation, return_sequences, return_state, go_backwards,
other activations), and the refusals by name."""

from __future__ import annotations

import numpy as np
import pytest

from tests.port_helpers import F64_REL, port_ok, randomise  # noqa: I001  (torch before TensorFlow)

import keras  # noqa: E402
from keras import layers as L  # noqa: E402

import compare  # noqa: E402
from keras_impl.read.registry import UnsupportedLayerError  # noqa: E402
from keras_impl.read import read_graph  # noqa: E402
from shared.verdict.checks import format_check  # noqa: E402
from shared.data.config import TrainConfig  # noqa: E402


def _prove(model, batch=2, random_weights=True):
    """Every check (forward per node, loss, gradients, 3 SGD steps; float32 and
    float64) passes; returns (result, worst float64 relative difference per kind)."""
    model = randomise(model, 5) if random_weights else model
    res = compare.port_checks(model, batch=batch, train_config=TrainConfig("sgd", 0.05, momentum=0.9, steps=3))
    bad = [c for c in res.checks if not c.passed and not c.info]
    assert not bad, "\n".join(format_check(c) for c in bad[:6]) + "\n" + res.source
    worst = {}
    for kind in ("node ", "output ", "grad ", "trained ", "training loss"):
        rows = [c for c in res.checks if c.check.startswith(kind) and c.dtype == "float64"]
        assert rows, kind
        worst[kind.strip()] = max(c.max_rel_diff for c in rows)
    return res, worst


def test_conv_lstm_2d_with_strides_same_pads_states_and_go_backwards():
    keras.utils.set_random_seed(2)
    x = keras.Input((4, 7, 6, 2), name="frames")
    # stride 2 on 7x6 with a 3x2 kernel: TF "same" pads (1, 1) and (0, 0); the recurrent
    # conv on the 4x3 state with a 3x2 kernel pads (1, 1) and (0, 1): asymmetric
    y = L.ConvLSTM2D(3, (3, 2), strides=2, padding="same", return_sequences=True, name="cl1")(x)
    y, h, c = L.ConvLSTM2D(4, 3, padding="same", return_state=True, go_backwards=True, name="cl2")(y)
    z = L.Concatenate(name="cat")([L.Flatten(name="f")(y), L.Flatten(name="fc")(c)])
    model = keras.Model(x, L.Dense(2, name="head")(z))
    res, worst = _prove(model)
    assert max(worst.values()) <= F64_REL, worst
    src = res.source
    assert "class KerasConvLSTM(nn.Module):" in src
    assert ("self.cl1 = KerasConvLSTM(2, 3, kernel_size=(3, 2), stride=(2, 2), padding=(1, 0), "
            "recurrent_pad=(0, 1, 1, 1), return_sequences=True)") in src
    assert "return_state=True, go_backwards=True)" in src
    assert "x = self.cl1(frames)  # (N, 4, 3, 4, 3)\n        cl2, cl2_1, cl2_2 = self.cl2(x)" in src
    # frames enter time first, then channels: (N, T, C, H, W)
    assert res.graph.tensors["frames"].shape == (None, 4, 2, 7, 6)
    assert res.graph.tensors["cl1"].shape == (None, 4, 3, 4, 3)
    # weights: Keras kernel (kh, kw, C, 4F) -> (4F, C, kh, kw), gate blocks i, f, c, o kept in order
    sd = res.module.state_dict()
    k = keras.ops.convert_to_numpy(model.get_layer("cl1").cell.kernel)
    assert np.array_equal(sd["cl1.weight_ih"].numpy(), np.transpose(k, (3, 2, 0, 1)).astype(np.float32))


def test_conv_lstm_1d_dilation_and_other_activations():
    keras.utils.set_random_seed(3)
    x = keras.Input((3, 9, 2), name="series")
    y = L.ConvLSTM1D(3, 3, dilation_rate=2, activation="relu", recurrent_activation="hard_sigmoid",
                     return_sequences=True, name="cl")(x)
    res, worst = _prove(keras.Model(x, L.GlobalAveragePooling2D(name="gap")(y)))
    assert max(worst.values()) <= F64_REL, worst
    assert "activation=F.relu, recurrent_activation=lambda x: F.relu6(x + 3.0) / 6.0)" in res.source


@pytest.mark.slow
def test_conv_lstm_next_frame_model_of_unknown_length():
    """keras.io's next-frame prediction (Input((None, 64, 64, 1)), shrunk): frames of any number."""
    keras.utils.set_random_seed(4)
    x = keras.Input((None, 8, 8, 1), name="frames")
    y = L.ConvLSTM2D(4, 5, padding="same", return_sequences=True, activation="relu", name="cl1")(x)
    y = L.BatchNormalization(name="bn")(y)
    y = L.ConvLSTM2D(4, 3, padding="same", return_sequences=True, activation="relu", name="cl2")(y)
    y = L.Conv3D(1, 3, padding="same", activation="sigmoid", name="out")(y)
    # Keras' own initialisers: N(0, 0.5) weights make a relu recurrence over 16 steps blow up
    # (5e3 after 16 steps), chaotic in float32 on both sides
    res, worst = _prove(keras.Model(x, y), batch=1, random_weights=False)
    assert max(worst.values()) <= F64_REL, worst
    assert res.graph.meta["assumed_steps"] == {"frames": 16}
    import torch

    with torch.no_grad():  # any number of steps; Conv3D's output leaves channels first
        assert tuple(res.module(torch.randn(1, 5, 1, 8, 8)).shape) == (1, 1, 5, 8, 8)


def test_conv_lstm_3d_with_an_even_kernel():
    """An even kernel under "same": TF pads (0, 1) on every axis of both convolutions."""
    keras.utils.set_random_seed(5)
    x = keras.Input((2, 4, 5, 3, 1), name="volumes")
    y = L.ConvLSTM3D(2, 2, padding="same", name="cl")(x)
    res = port_ok(randomise(keras.Model(x, L.Dense(2, name="head")(L.Flatten(name="f")(y))), 6))
    assert "pad=(0, 1, 0, 1, 0, 1), recurrent_pad=(0, 1, 0, 1, 0, 1))" in res.source
    assert max(c.max_rel_diff for c in res.checks if c.dtype == "float64" and c.check.startswith(("node", "grad"))) <= F64_REL


def test_conv_lstm_refusals_name_the_layer():
    x = keras.Input((3, 2, 6, 6), name="frames")
    m = keras.Model(x, L.ConvLSTM2D(2, 3, data_format="channels_first", name="cf_cell")(x))
    with pytest.raises(UnsupportedLayerError, match=r"'cf_cell' of class ConvLSTM2D: data_format='channels_first'"):
        read_graph(m)
