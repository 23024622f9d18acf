"""Layout conversions between Keras (channels-last) and PyTorch (channels-first), in numpy.

Kept in one place so that the weight port, the harness and the ONNX checks use
the same, exact (copy-only) transforms.
"""

from __future__ import annotations

import numpy as np

from shared.data.config import ModelConfig

__all__ = [
    "nhwc_to_nchw",
    "nchw_to_nhwc",
    "dense_kernel_to_weight",
    "dense_weight_to_kernel",
    "conv_kernel_to_weight",
    "conv_weight_to_kernel",
    "flatten_dense_kernel_to_weight",
    "flatten_dense_weight_to_kernel",
    "keras_activation_as_torch",
]


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    """(N,H,W,C) -> (N,C,H,W); other ranks pass through."""
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))) if x.ndim == 4 else x


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    """(N,C,H,W) -> (N,H,W,C); other ranks pass through."""
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))) if x.ndim == 4 else x


def dense_kernel_to_weight(k: np.ndarray) -> np.ndarray:
    """Keras Dense kernel (in, out) -> torch Linear weight (out, in): y = xK = xW^T."""
    return np.ascontiguousarray(k.T)


def dense_weight_to_kernel(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.T)


def conv_kernel_to_weight(k: np.ndarray) -> np.ndarray:
    """Keras Conv2D kernel HWIO -> torch Conv2d weight OIHW."""
    return np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1)))


def conv_weight_to_kernel(w: np.ndarray) -> np.ndarray:
    """torch OIHW -> Keras HWIO."""
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def flatten_dense_kernel_to_weight(k: np.ndarray, hwc: tuple) -> np.ndarray:
    """Kernel of a Dense that follows Flatten -> torch weight for a NCHW Flatten.

    Keras flattens (H, W, C); torch flattens (C, H, W). Row r of the Keras
    kernel reads element (h, w, c); the torch column for that element sits at
    c*H*W + h*W + w. Forgetting this costs fc1 2.54 (TRAPS.md, "Flatten -> Dense").
    """
    h, w, c = hwc
    units = k.shape[1]
    return np.ascontiguousarray(k.reshape(h, w, c, units).transpose(3, 2, 0, 1).reshape(units, c * h * w))


def flatten_dense_weight_to_kernel(wt: np.ndarray, hwc: tuple) -> np.ndarray:
    """Inverse of flatten_dense_kernel_to_weight."""
    h, w, c = hwc
    units = wt.shape[0]
    return np.ascontiguousarray(wt.reshape(units, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, units))


def keras_activation_as_torch(name: str, a: np.ndarray, config: ModelConfig) -> np.ndarray:
    """A Keras layer output rearranged to how the torch twin lays it out.

    4-D activations go NHWC -> NCHW; the Flatten output is re-ordered from
    (H,W,C) to (C,H,W). Everything else is already the same.
    """
    if a.ndim == 4:
        return nhwc_to_nchw(a)
    if name == "flatten" and config.model == "cnn":
        h, w, c = config.flatten_hwc
        return np.ascontiguousarray(a.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(a), -1))
    return a
