"""Preprocessing layers: Resizing, CenterCrop, RandomCrop, the augmentation
layers (identity at inference), and the lookup layers the port refuses.

Read from keras/src/layers/preprocessing (Keras 3.15) and
keras/src/backend/tensorflow/image.py (`resize`, which calls
tf.image.resize; TF2's resize uses half-pixel centres). Rescaling and
Normalization live in core.py. Measured against TF 2.21 on CPU
(tests/flows/port/test_port_preprocessing.py):

- "nearest": torch's F.interpolate(mode="nearest-exact") picks the same
  pixels (0 difference); model.py writes the rule out (`resize_nearest`) so
  float64 input cannot round the scale differently.
- "bilinear", antialias=False: TF computes in float32 even for float64 input
  (ResizeBilinear's output is float32; Keras casts back).
  F.interpolate(align_corners=False) is 2e-7..1e-6 off; model.py's
  `resize_bilinear` repeats TF's float32 arithmetic: 0 difference.
- gradients through "bilinear": TF's ResizeBilinearGrad also sums in float32,
  in its own order, so a float64 gradient of a parameter before the resize is
  float32-rounded on both sides and ~1e-8 apart (measured 9.5e-9 on a Conv2D
  kernel); the forward pass and parameters after the resize are exact.
- CenterCrop's resize path (smart_resize) returns TF's float32 result without
  casting back, even in a float64 model; the next layer casts it back (the
  port returns the model's dtype).
- antialias=True (TF's ScaleAndTranslate, triangle / keys-cubic kernels):
  F.interpolate(antialias=True) is 1e-7..2.6e-6 off in float32, so a float64
  model cannot be matched within 1e-12: refused with those numbers.
- "bicubic": TF's Keys kernel has a = -0.5, torch's a = -0.75: 0.26 off.
  "area": TF's ResizeArea is not torch's area mode for non-integer ratios (1.4
  off). "lanczos3/5": no torch counterpart. All refused, with the reason.
"""

from __future__ import annotations

import numpy as np

from keras_impl.read.registry import keras_converter, unsupported

__all__ = ["AUGMENTATIONS", "STRING_LAYERS"]

# Resizing interpolations the port reproduces exactly (see the docstring).
_EXACT = ("nearest", "bilinear")

# Why the others are refused (measured max abs difference vs tf.image.resize, float32).
_REFUSED = {
    "bicubic": "TF's bicubic is Keys' kernel with a=-0.5 and torch's F.interpolate(mode='bicubic') has a=-0.75 "
               "(measured 0.26 apart on unit-normal images)",
    "area": "TF's ResizeArea differs from torch's mode='area' (adaptive average pooling) for non-integer ratios "
            "(measured 1.4 apart)",
    "lanczos3": "torch has no Lanczos resize",
    "lanczos5": "torch has no Lanczos resize",
}
_ANTIALIAS = ("antialias=True: TF resizes with ScaleAndTranslate, which torch's F.interpolate(antialias=True) "
              "matches only to float32 rounding (measured 1e-7..2.6e-6), not within the float64 1e-12 the port proves")

# Image augmentation layers whose transform_images returns the images
# unchanged when training=False (each class's transform_images in
# keras/src/layers/preprocessing/image_preprocessing/*.py; checked by calling
# every one with training=False in tests/flows/port/test_port_preprocessing.py). The port
# is an inference model: these become identities, with a comment in model.py.
AUGMENTATIONS = (
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness",
    "RandomHue", "RandomSaturation", "RandomSharpness", "RandomShear", "RandomPosterization", "RandomGaussianBlur",
    "RandomColorDegeneration", "RandomErasing", "RandomInvert", "RandomGrayscale", "RandomPerspective",
    "RandomElasticTransform", "RandomColorJitter", "Solarization", "Equalization", "CutMix", "MixUp", "RandAugment",
    "AugMix",
)

# Layers that read strings: torch has no string tensors.
STRING_LAYERS = ("StringLookup", "TextVectorization")


@keras_converter(*AUGMENTATIONS)
def augmentation(ctx, layer, call):
    ctx.emit("identity", [call.inputs[0]], call.outputs[0],
             attrs={"note": f"{type(layer).__name__}: random augmentation, the identity at inference"})


def _hw(layer, shape) -> tuple:
    """(height, width) of a Keras image shape, channels last only."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise unsupported(layer, "data_format='channels_first'")
    if len(shape) != 4:
        raise unsupported(layer, f"a rank-{len(shape)} input (a batch of images is rank 4)")
    h, w = shape[1], shape[2]
    if h is None or w is None:
        raise unsupported(layer, "an image of unknown height or width")
    return int(h), int(w)


def aspect_crop(h, w, th, tw, real=float) -> tuple:
    """((top, bottom), (left, right)) crops of the largest centred window with
    the target aspect ratio, at least 1 pixel, truncated to int:
    image_utils.smart_resize's static branch (real=float) or
    backend/tensorflow/image.py resize(crop_to_aspect_ratio=True) (real=np.float32)."""
    ch = max(min(h, int(real(w * th) / real(tw))), 1)
    cw = max(min(w, int(real(h * tw) / real(th))), 1)
    top, left = int(real(h - ch) / real(2)), int(real(w - cw) / real(2))
    return (top, h - ch - top), (left, w - cw - left)


def aspect_pad(h, w, th, tw) -> tuple:
    """(pad rows, pad columns) added on both sides by backend/tensorflow/image.py's
    resize(pad_to_aspect_ratio=True): float32 arithmetic truncated to int32."""
    ph = max(h, int(np.float32(w * th) / np.float32(tw)))
    pw = max(w, int(np.float32(h * tw) / np.float32(th)))
    return int(np.float32(ph - h) / np.float32(2)), int(np.float32(pw - w) / np.float32(2))


def _emit_resize(ctx, call, x, hw, size, mode, *, crops=None, pad=None, fill=0.0):
    """x (channels first) -> optional crop or pad -> resize to `size`."""
    out = call.outputs[0]
    h, w = hw
    if crops is not None and any(a or b for a, b in crops):
        mid = ctx.fresh_tensor(f"{out}_cropped")
        h, w = h - sum(crops[0]), w - sum(crops[1])
        ctx.emit("crop", [x], mid, layout="cf", internal=True, attrs={"crops": [list(c) for c in crops]},
                 keras_shape=(call.in_shapes[0][0], h, w, call.in_shapes[0][3]))
        x = mid
    if pad is not None and any(pad):
        mid = ctx.fresh_tensor(f"{out}_padded")
        h, w = h + 2 * pad[0], w + 2 * pad[1]
        ctx.emit("pad", [x], mid, layout="cf", internal=True, attrs={"pads": [pad[1], pad[1], pad[0], pad[0]], "value": float(fill)},
                 keras_shape=(call.in_shapes[0][0], h, w, call.in_shapes[0][3]))
        x = mid
    ctx.emit("resize", [x], out, layout="cf", attrs={"size": [int(s) for s in size], "mode": mode})


@keras_converter("Resizing")
def resizing(ctx, layer, call):
    hw = _hw(layer, call.in_shapes[0])
    mode = layer.interpolation
    if mode in _REFUSED:
        raise unsupported(layer, f"interpolation={mode!r} ({_REFUSED[mode]})")
    if mode not in _EXACT:
        raise unsupported(layer, f"interpolation={mode!r}")
    if layer.antialias and mode != "nearest":  # tf.image.resize ignores antialias for nearest
        raise unsupported(layer, _ANTIALIAS)
    size = (int(layer.height), int(layer.width))
    x = ctx.tensor(call.inputs[0], "cf")
    crops = aspect_crop(*hw, *size, real=np.float32) if layer.crop_to_aspect_ratio else None
    pad = aspect_pad(*hw, *size) if layer.pad_to_aspect_ratio else None
    _emit_resize(ctx, call, x, hw, size, mode, crops=crops, pad=pad, fill=layer.fill_value)


@keras_converter("CenterCrop")
def center_crop(ctx, layer, call):
    """center_crop.py transform_images: a centred crop when the image is at
    least the target size on both axes (h_start = diff // 2); otherwise
    image_utils.smart_resize (crop to the target aspect ratio, then a bilinear
    resize)."""
    h, w = _hw(layer, call.in_shapes[0])
    th, tw = int(layer.height), int(layer.width)
    x = ctx.tensor(call.inputs[0], "cf")
    if h >= th and w >= tw:
        crops = [[(h - th) // 2, h - th - (h - th) // 2], [(w - tw) // 2, w - tw - (w - tw) // 2]]
        ctx.emit("crop", [x], call.outputs[0], layout="cf", attrs={"crops": crops})
        return
    _emit_resize(ctx, call, x, (h, w), (th, tw), "bilinear", crops=aspect_crop(h, w, th, tw))


@keras_converter("RandomCrop")
def random_crop(ctx, layer, call):
    """random_crop.py: with training=False, transform_images returns the
    images unchanged (the crop and the resize to (height, width) happen only
    under training), although the layer declares (height, width) as its
    output shape. An image already of that size: the identity; otherwise
    Keras' own inference output does not have the shape the model declares,
    and the port refuses rather than guess."""
    h, w = _hw(layer, call.in_shapes[0])
    if (h, w) != (int(layer.height), int(layer.width)):
        raise unsupported(layer, (
            f"an input of {h}x{w} (Keras 3.15's RandomCrop returns its {h}x{w} input unchanged at inference, "
            f"random_crop.py transform_images, while declaring {layer.height}x{layer.width}: the Keras model's "
            "inference output has not the declared shape); use CenterCrop or Resizing for inference"))
    ctx.emit("identity", [call.inputs[0]], call.outputs[0],
             attrs={"note": "RandomCrop: the identity at inference (the input already has the crop size)"})


_STRINGS = ("a layer on strings (torch has no string tensors); port the model after the lookup: build a "
            "keras.Model from the lookup's output (integer ids) to the model's output and port that")
_HASHING = ("Hashing (TF's SipHash/FarmHash fingerprints, and on strings: torch has no string tensors); "
            "port the model after the hashing: a keras.Model from its output (integer ids) to the model's output")
_INT_LOOKUP = ("IntegerLookup (a hash table lookup with OOV and mask tokens, not yet written as torch code); port the "
               "model after the lookup: a keras.Model from its output (integer ids) to the model's output")


def _refuses(reason: str):
    """A converter that always refuses with `reason` (scripts/coverage.py lists it as refused)."""
    def convert(ctx, layer, call):
        raise unsupported(layer, reason)

    convert.refusal = reason
    return convert


string_layer = keras_converter(*STRING_LAYERS)(_refuses(_STRINGS))
hashing = keras_converter("Hashing")(_refuses(_HASHING))
integer_lookup = keras_converter("IntegerLookup")(_refuses(_INT_LOOKUP))

