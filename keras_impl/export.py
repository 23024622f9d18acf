"""Keras model -> ONNX file (tf2onnx on the TensorFlow backend). Never imports torch.

Mirrors torch_impl/export.py: same function, same checks, same file contract
(one input "input" with a symbolic batch dimension "batch", one output
"logits"), written atomically.

What this relies on (keras 3.15.1, tf2onnx 1.17, read in the installed source):
  - `Model.export(path, format="onnx", opset_version=..., input_signature=...,
    verbose=...)` -> keras/src/export/onnx.py `export_onnx`: on the TensorFlow
    backend it wraps `model.__call__` in a `tf.function` with the input
    signature (export/saved_model_export_archive.py
    `track_and_add_endpoint`) and calls `tf2onnx.convert.from_function(...,
    opset=opset_version, output_path=path)`. `opset_version=None` would
    mean tf2onnx's default, 15 (`tf2onnx.constants.PREFERRED_OPSET`): we
    always pass the pinned one.
  - Without `input_signature` it refuses a model that was never *called*
    ("The model provided has never called."), which is the case for a fresh
    `build_model(config)` Sequential, so we always pass one:
    `keras.InputSpec(shape=(None, *config.input_shape))`, the `None` making
    the ONNX batch dimension symbolic (tf2onnx names it "unk__N"; we rename
    it "batch" and the output "Identity:0" -> "logits",
    shared.onnx.onnx_export.standardize_io).
  - Inference mode: the traced `model.__call__` gets no `training` argument,
    and `Layer.__call__` (keras/src/layers/layer.py, "Infer training value")
    then falls back to False, so BatchNormalization uses its moving
    statistics (and tf2onnx folds them into the Conv weights).
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import onnx

from shared.data.config import ModelConfig
from shared.onnx.onnx_export import (
    ONNX_OPSET,
    ExportError,
    atomic_export,
    check_output_path,
    standardize_io,
    validate_opset,
)

__all__ = ["export_onnx", "export_with_info", "EXPORTERS", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Keras 3 on TensorFlow has one ONNX path (Model.export -> tf2onnx); the tuple
# mirrors torch_impl.export.EXPORTERS.
EXPORTERS = ("tf2onnx",)


def export_onnx(model: keras.Model, config: ModelConfig, path, opset: int = ONNX_OPSET,
                model_name: str | None = None) -> Path:
    """Export `model` (inference mode, NHWC input for images) to an ONNX file.

    Args:
        model: the Keras model built from `config` (never needs to have been called).
        config: its ModelConfig (input shape and dtype of the signature).
        path: destination .onnx file; missing parent folders are created, an
            existing file is replaced only once the new one is complete.
        opset: ONNX opset, within shared.onnx.onnx_export.SUPPORTED_OPSETS.
        model_name: the name messages give the model (default model.name).

    Returns:
        The destination path.

    Raises:
        UnsupportedOpsetError: opset outside the supported range (nothing written).
        OutputPathError: the destination's parent is not a writable folder.
        ExportError: tf2onnx failed ("keras ONNX export failed for <model>: ...");
            no partial file is left behind.
    """
    opset = validate_opset(opset)
    path = check_output_path(path)
    signature = [keras.InputSpec(shape=(None, *config.input_shape), dtype=config.dtype, name=INPUT_NAME)]
    name = model_name or model.name

    def write(tmp: str) -> None:
        model.export(tmp, format="onnx", opset_version=opset, input_signature=signature, verbose=False)
        proto = onnx.load(tmp)
        standardize_io(proto, INPUT_NAME, OUTPUT_NAME)
        _require_dynamic_batch(proto, name)
        onnx.save(proto, tmp)

    return atomic_export(path, write, framework="keras", model_name=name,
                         loggers=("tf2onnx", "tensorflow", "absl"))


def _require_dynamic_batch(proto: onnx.ModelProto, name: str) -> None:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if not dims or dims[0].HasField("dim_value"):
        raise ExportError(f"keras ONNX export of {name} has a fixed batch dimension; expected a symbolic one")


def export_with_info(model: keras.Model, config: ModelConfig, path, opset: int = ONNX_OPSET) -> tuple:
    """export_onnx, timed; twin of torch_impl.export.export_with_info.

    Args:
        config: its ModelConfig, or any object with `input_shape` (Keras
            layout, no batch) and `dtype`.

    Returns:
        (path, {"exporter": "tf2onnx", "seconds": ..., "fallback_from": {}}).
    """
    t0 = time.perf_counter()
    out = export_onnx(model, config, path, opset)
    return out, {"exporter": EXPORTERS[0], "seconds": time.perf_counter() - t0, "fallback_from": {}}
