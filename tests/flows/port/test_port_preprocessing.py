"""`compare.py port` of Keras' preprocessing layers (keras_impl/read/preprocessing.py):
Resizing / CenterCrop / RandomCrop as TF computes them (float64 within 1e-12),
augmentation layers as inference identities, string and lookup layers refused
with the reason."""

from __future__ import annotations

import torch  # noqa: F401  (torch before TensorFlow)

import keras
import numpy as np
import pytest
from keras import layers as L

import compare
from keras_impl.read.registry import UnsupportedLayerError
from keras_impl.read.preprocessing import AUGMENTATIONS
from tests.flows.port.test_port_layers import _assert_ported, _model

CASES = [
    ("resize_bilinear_down", lambda x: L.Resizing(4, 5)(x), (9, 7, 3)),
    ("resize_bilinear_up", lambda x: L.Resizing(13, 17)(x), (9, 7, 3)),
    ("resize_bilinear_crop_aspect", lambda x: L.Resizing(5, 3, crop_to_aspect_ratio=True)(x), (9, 8, 3)),
    ("resize_bilinear_pad_aspect", lambda x: L.Resizing(6, 6, pad_to_aspect_ratio=True, fill_value=0.5)(x), (9, 5, 3)),
    ("resize_nearest_down", lambda x: L.Resizing(4, 5, interpolation="nearest")(x), (9, 7, 3)),
    ("resize_nearest_up_antialias", lambda x: L.Resizing(13, 11, interpolation="nearest", antialias=True)(x), (9, 7, 3)),
    # no parameter before a bilinear resize: TF's ResizeBilinearGrad sums in float32 in its own order, so a
    # float64 gradient through it is ~1e-8 off torch's (see keras_impl/read/preprocessing.py)
    ("resize_then_conv", lambda x: L.Conv2D(2, 1)(L.Resizing(6, 6)(x)), (9, 9, 3)),
    ("center_crop", lambda x: L.CenterCrop(4, 3)(x), (9, 8, 3)),
    # CenterCrop's resize path returns TF's float32 in a float64 model; the next layer casts it back
    ("center_crop_resizes", lambda x: L.Rescaling(0.5)(L.CenterCrop(10, 6)(x)), (7, 8, 3)),
    ("random_crop_same_size", lambda x: L.RandomCrop(6, 6)(x), (6, 6, 3)),
    ("augmentations", lambda x: L.RandomZoom(0.2)(L.RandomRotation(0.1)(L.RandomFlip()(L.RandomContrast(0.2)(x)))), (6, 6, 3)),
    ("augmentations_2", lambda x: L.RandomTranslation(0.1, 0.1)(L.RandomBrightness(0.2)(x)), (6, 6, 3)),
]


@pytest.mark.parametrize("name,build,shape", CASES, ids=[c[0] for c in CASES])
def test_preprocessing_ported(name, build, shape):
    res = _assert_ported(_model(build, shape))
    f64 = [c for c in res.checks if c.dtype == "float64" and c.check.startswith("output")]
    assert f64 and max(c.max_abs_diff for c in f64) == 0.0 or "conv" in name  # TF's own float32 arithmetic, repeated
    if name.startswith("augmentations"):
        assert res.source.count("the identity at inference") >= 2
    if name.startswith("resize"):
        assert "resize_bilinear(" in res.source or "resize_nearest(" in res.source


def _image(seed=0, shape=(2, 9, 7, 3)):
    return np.random.default_rng(seed).normal(size=shape)


def test_torch_interpolate_measured_against_tf():
    """Why model.py writes the resize out: F.interpolate(align_corners=False)
    is float32-rounding away from TF's ResizeBilinear, nearest-exact is equal."""
    import tensorflow as tf
    import torch.nn.functional as F

    from torch_impl.write.helpers import HELPERS

    ns = {"torch": torch}
    exec(HELPERS["resize_bilinear"] + HELPERS["resize_nearest"], ns)
    x = _image().astype("float32")
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    for size in ((4, 5), (13, 17)):
        tf_bi = tf.image.resize(x, size, method="bilinear").numpy().transpose(0, 3, 1, 2)
        torch_bi = F.interpolate(t, size=size, mode="bilinear", align_corners=False).numpy()
        assert 1e-8 < np.abs(tf_bi - torch_bi).max() < 5e-6
        assert np.abs(tf_bi - ns["resize_bilinear"](t, size).numpy()).max() == 0.0
        tf_nn = tf.image.resize(x, size, method="nearest").numpy().transpose(0, 3, 1, 2)
        assert np.abs(tf_nn - F.interpolate(t, size=size, mode="nearest-exact").numpy()).max() == 0.0
        assert np.abs(tf_nn - ns["resize_nearest"](t, size).numpy()).max() == 0.0


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_augmentation_is_identity_at_inference(name):
    """The claim behind the identity converters: each class, called with
    training=False, returns its input unchanged."""
    args = {"RandomRotation": (0.2,), "RandomZoom": (0.2,), "RandomTranslation": (0.2, 0.2), "RandomContrast": (0.3,),
            "RandomBrightness": (0.3,), "RandomHue": (0.3, (0, 1)), "RandomSaturation": (0.3,),
            "RandomSharpness": (0.3,), "RandomShear": (0.3,), "RandomPosterization": ((0, 255),),
            "RandomColorDegeneration": (0.3,)}.get(name, ())
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(getattr(L, name)(*args)(x, training=False))
    assert y.shape == x.shape and np.array_equal(y, x)


REFUSED = [
    ("bicubic", lambda x: L.Resizing(4, 4, interpolation="bicubic")(x), "a=-0.5"),
    ("area", lambda x: L.Resizing(4, 4, interpolation="area")(x), "ResizeArea"),
    ("lanczos3", lambda x: L.Resizing(4, 4, interpolation="lanczos3")(x), "Lanczos"),
    ("antialias", lambda x: L.Resizing(4, 4, antialias=True)(x), "ScaleAndTranslate"),
    ("random_crop_smaller", lambda x: L.RandomCrop(4, 4)(x), "returns its 8x8 input unchanged"),
]


@pytest.mark.parametrize("name,build,why", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_reason(name, build, why):
    with pytest.raises(UnsupportedLayerError, match=why):
        compare.port_checks(_model(build, (8, 8, 3)))


def _lookup_models():
    s = keras.Input((1,), dtype="string", name="s")
    yield "StringLookup", keras.Model(s, L.Dense(2)(L.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")(s)))
    t = keras.Input((1,), dtype="string", name="t")
    tv = L.TextVectorization(max_tokens=10, output_sequence_length=4, vocabulary=["a", "b"])
    yield "TextVectorization", keras.Model(t, L.Embedding(10, 3)(tv(t)))
    h = keras.Input((1,), dtype="string", name="h")
    yield "Hashing", keras.Model(h, L.Embedding(8, 3)(L.Hashing(8)(h)))
    i = keras.Input((1,), dtype="int64", name="i")
    yield "IntegerLookup", keras.Model(i, L.Embedding(8, 3)(L.IntegerLookup(vocabulary=[3, 5, 7])(i)))


@pytest.mark.parametrize("cls,model", list(_lookup_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_lookup_layers_refused_with_advice(cls, model):
    with pytest.raises(UnsupportedLayerError, match=f"class {cls}.*port the model after the"):
        compare.port_checks(model)
