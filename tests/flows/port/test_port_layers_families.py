"""The layers beyond the core set, each in a tiny model, ported and proven
(every node in float32 and float64, float64 within 1e-12 relative, gradients):
Conv1D, Conv1D/2D/3DTranspose (TF output sizes), UpSampling 1-3D (nearest,
bilinear), LayerNormalization over any axes, GroupNormalization, Embedding
(helper seq's converter, masks included),
and the custom layers of keras.applications (LayerScale, CustomScaleLayer,
StochasticDepth)."""

from port_helpers import keras, ops_of, port_ok, randomise  # noqa: I001

import numpy as np
import pytest
from keras.src.applications.convnext import LayerScale, StochasticDepth
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

L = keras.layers

CASES = {
    "conv1d_same_s2": (lambda x: L.Conv1D(4, 3, strides=2, padding="same")(x), (9, 3)),
    "conv1d_causal_dilated": (lambda x: L.Conv1D(4, 3, padding="causal", dilation_rate=2)(x), (9, 3)),
    "conv2d_transpose_same_s2": (lambda x: L.Conv2DTranspose(4, 3, strides=2, padding="same")(x), (5, 5, 3)),
    "conv2d_transpose_same_k2_s1": (lambda x: L.Conv2DTranspose(4, 2, padding="same")(x), (5, 5, 3)),  # crop after
    "conv2d_transpose_same_k4_s2": (lambda x: L.Conv2DTranspose(4, 4, strides=2, padding="same")(x), (5, 4, 3)),
    "conv2d_transpose_valid_s3_k2": (lambda x: L.Conv2DTranspose(4, 2, strides=3)(x), (4, 4, 3)),
    "conv2d_transpose_output_padding": (lambda x: L.Conv2DTranspose(4, 3, strides=2, output_padding=1)(x), (4, 4, 3)),
    "conv1d_transpose": (lambda x: L.Conv1DTranspose(4, 3, strides=2, padding="same", activation="relu")(x), (6, 3)),
    "conv3d_transpose": (lambda x: L.Conv3DTranspose(2, 3, strides=2, padding="same")(x), (3, 3, 3, 2)),
    "upsampling2d_nearest": (lambda x: L.UpSampling2D((2, 3))(x), (3, 4, 2)),
    "upsampling2d_bilinear": (lambda x: L.UpSampling2D(2, interpolation="bilinear")(x), (3, 4, 2)),
    "upsampling1d": (lambda x: L.Conv1D(2, 1)(L.UpSampling1D(3)(x)), (4, 2)),
    "upsampling3d": (lambda x: L.UpSampling3D(2)(x), (2, 3, 2, 2)),
    "layernorm_axis1_sequence": (lambda x: L.LayerNormalization(axis=1, epsilon=1e-5)(x), (5, 4)),
    "layernorm_axes_hw_image": (lambda x: L.LayerNormalization(axis=[1, 2])(L.Conv2D(3, 1)(x)), (4, 5, 2)),
    "layernorm_center_only": (lambda x: L.LayerNormalization(scale=False)(x), (6,)),
    "groupnorm_image": (lambda x: L.GroupNormalization(groups=2, epsilon=1e-4)(L.Conv2D(4, 1)(x)), (4, 4, 3)),
    "groupnorm_sequence": (lambda x: L.GroupNormalization(groups=3)(x), (5, 6)),
    "groupnorm_no_affine": (lambda x: L.GroupNormalization(groups=1, center=False, scale=False)(x), (4, 4, 2)),
    "layer_scale_channels_last": (lambda x: LayerScale(0.5, 4)(L.Dense(4)(L.Conv2D(4, 1)(x))), (4, 4, 3)),
    "layer_scale_on_conv": (lambda x: LayerScale(0.5, 4)(L.Conv2D(4, 1)(x)), (4, 4, 3)),
    "custom_scale_layer": (lambda x: CustomScaleLayer(0.17)([x, L.Conv2D(3, 1)(x)]), (4, 4, 3)),
    "stochastic_depth": (lambda x: StochasticDepth(0.3)(L.Conv2D(3, 1)(x)), (4, 4, 3)),
    "batchnorm_center_only": (lambda x: L.BatchNormalization(scale=False)(L.Conv2D(3, 1)(x)), (4, 4, 3)),
    "batchnorm_scale_only": (lambda x: L.BatchNormalization(center=False)(L.Conv2D(3, 1)(x)), (4, 4, 3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_family_ported(name):
    build, shape = CASES[name]
    x = keras.Input(shape)
    model = randomise(keras.Model(x, build(x)), seed=5)
    r = port_ok(model)
    out = r.graph.outputs[0]
    assert r.graph.tensors[out].shape[1:] == tuple(model.output.shape[1:]) or r.graph.tensors[out].keras_perm


def test_conv_transpose_crop_is_in_the_source():
    """k=2, s=1, "same": TF keeps cells [0, O) of the full output, torch's
    output_padding cannot drop the last one: model.py slices it."""
    x = keras.Input((5, 5, 3))
    r = port_ok(randomise(keras.Model(x, L.Conv2DTranspose(4, 2, padding="same")(x))))
    assert "nn.ConvTranspose2d(" in r.source and "[:, :, :-1, :-1]" in r.source


def test_embedding_draws_ids_inside_the_table():
    x = keras.Input((5,), dtype="int32")
    h = L.Embedding(7, 4)(x)
    model = randomise(keras.Model(x, L.Dense(2)(L.GlobalAveragePooling1D()(h))), seed=6)
    r = port_ok(model)
    assert r.graph.meta["input_high"] == {r.graph.inputs[0]: 7}
    assert "embedding" in ops_of(r) and "nn.Embedding(7, 4)" in r.source


def test_upsampling_bicubic_is_refused():
    """TF's bicubic kernel (a = -0.5) is not torch's (a = -0.75)."""
    from keras_impl.read.registry import UnsupportedLayerError
    from keras_impl.read import read_graph

    x = keras.Input((4, 4, 2))
    with pytest.raises(UnsupportedLayerError, match="bicubic"):
        read_graph(keras.Model(x, L.UpSampling2D(2, interpolation="bicubic")(x)))


def test_layernorm_axes_weight_broadcasts_in_neutral_layout():
    """LayerNormalization(axis=[1, 2]) on an NHWC map: gamma (H, W) becomes
    (1, H, W) against NCHW."""
    x = keras.Input((4, 5, 2))
    r = port_ok(randomise(keras.Model(x, L.LayerNormalization(axis=[1, 2])(x)), seed=7))
    node = next(n for n in r.graph.nodes if n.op == "layer_norm_axes")
    assert node.weights["weight"].shape == (1, 4, 5) and node.attrs["axes"] == [2, 3]
    assert np.isfinite(node.weights["weight"]).all()


def test_float32_drift_passes_only_within_each_sides_own_float32_error():
    """Deep nets: a float32 node row past FORWARD is rounding when each side's
    float32 result lies that far from its own float64 one (shared/verdict/policy.py);
    a gap 10x that, with both sides close to float64, stays a failure."""
    from shared.verdict import policy as verdict

    k64 = t64 = np.array([1.0])
    k32 = k64 + 3e-6  # Keras' own float32 error: 3e-6
    ok = verdict.judge("node a", "forward", "float32", k32, k32 + 4e-6, ref=(k64, t64))  # torch's own: 7e-6
    assert ok.status == "pass" and "derived" in ok.tolerance_from
    bad = verdict.judge("node b", "forward", "float32", k32, k64 - 4e-5, ref=(k64, t64 - 4e-5 + 1e-7))
    assert bad.status == "fail"  # both sides within 3e-6 of their float64: 4.3e-5 apart is not rounding
