"""keras.applications architectures at small size, for the port tests and the
port benchmark (scripts/bench_port.py): `python compare.py port
tests/port_apps.py:efficientnetb0 --out DIR` ports one of them.

weights=None, 10 classes, 64x64 input (75x75 for the families whose minimum
is larger: Xception 71, InceptionV3 and InceptionResNetV2 75). BatchNorm
moving statistics are moved away from 0/1 (seeded), so BatchNorm is really
tested; Normalization layers keep their (identity) statistics.
"""

from __future__ import annotations

import keras
import numpy as np

# name -> (keras.applications constructor, input size, extra kwargs)
APPS = {
    "ResNet50": ("ResNet50", 64, {}),
    "ResNet50V2": ("ResNet50V2", 64, {}),
    "ResNet101V2": ("ResNet101V2", 64, {}),
    "VGG16": ("VGG16", 64, {}),
    "MobileNet": ("MobileNet", 64, {}),
    "MobileNetV2": ("MobileNetV2", 64, {}),
    "MobileNetV3Small": ("MobileNetV3Small", 64, {}),
    "MobileNetV3Large": ("MobileNetV3Large", 64, {}),
    "EfficientNetB0": ("EfficientNetB0", 64, {}),
    "EfficientNetV2B0": ("EfficientNetV2B0", 64, {}),
    "DenseNet121": ("DenseNet121", 64, {}),
    "Xception": ("Xception", 75, {}),
    "InceptionV3": ("InceptionV3", 75, {}),
    "InceptionResNetV2": ("InceptionResNetV2", 75, {}),
    "NASNetMobile": ("NASNetMobile", 64, {}),
    "ConvNeXtTiny": ("ConvNeXtTiny", 64, {}),
}


def build(name: str, seed: int = 0):
    """keras.applications `name` at its small size, BatchNorm statistics randomised."""
    ctor, size, kw = APPS[name]
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, ctor)(weights=None, input_shape=(size, size, 3), classes=10, **kw)
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
        elif "moving_mean" in v.path:
            v.assign(rng.normal(0, 0.2, v.shape).astype(v.dtype))
    return model


def input_size(name: str) -> int:
    return APPS[name][1]


def _factory(name):
    def make():
        return build(name)

    make.__name__ = name.lower()
    make.__doc__ = f"keras.applications.{APPS[name][0]} at {APPS[name][1]}x{APPS[name][1]}, 10 classes."
    return make


for _name in APPS:  # resnet50(), efficientnetb0(), ...: `compare.py port tests/port_apps.py:<name>`
    globals()[_name.lower()] = _factory(_name)
