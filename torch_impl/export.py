"""PyTorch model -> ONNX file (the TorchScript exporter). Never imports TensorFlow or Keras.

Mirrors keras_impl/export.py: same function, same checks, same file contract
(one input "input" with a symbolic batch dimension "batch", one output
"logits"), written atomically.

What this relies on (torch 2.13, read in the installed source):
  - `torch.onnx.export` (torch/onnx/__init__.py) defaults to `dynamo=True`
    since torch 2.9: the torch.export-based exporter, which imports
    onnxscript (not installed here: it fails within milliseconds with
    "No module named 'onnxscript'", so its speed could not be measured in this
    environment; where installed it runs torch.export, the onnxscript
    translation and its optimiser, a heavier path than tracing). The
    TorchScript export measured 0.01-0.3 s per model here (tests/test_onnx.py
    prints it). We pin `dynamo=False`, the TorchScript exporter
    (torch/onnx/_internal/torchscript_exporter/utils.py `export`), which
    takes `dynamic_axes` and opsets `_constants.ONNX_MIN_OPSET` (7) to
    `ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET` (20). It warns (DeprecationWarning)
    on every call; we silence that.
  - `training=TrainingMode.EVAL` and `do_constant_folding=True` are its
    defaults; we also call `model.eval()` (restored afterwards) so that
    BatchNorm2dKeras takes the stock inference path, which the exporter folds
    into the Conv weights. Conv2dSame's F.pad has constant pads (computed from
    the config's input size), exported as a Pad node.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from shared.config import ModelConfig
from shared.onnx_check import (
    ONNX_OPSET,
    ExportError,
    atomic_export,
    check_output_path,
    validate_opset,
)

__all__ = ["export_onnx", "INPUT_NAME", "OUTPUT_NAME", "example_input"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def example_input(config: ModelConfig, batch: int = 2) -> torch.Tensor:
    """Zeros of the model's input shape: (B, features) or NCHW (B, C, H, W).

    Batch 2 rather than 1 so that nothing in the trace can mistake the batch
    dimension for a broadcastable constant; `dynamic_axes` makes it symbolic.
    """
    if config.model == "cnn":
        h, w, c = config.input_shape
        shape = (batch, c, h, w)
    else:
        shape = (batch, *config.input_shape)
    return torch.zeros(shape, dtype=_DTYPES[config.dtype])


def export_onnx(model: torch.nn.Module, config: ModelConfig, path, opset: int = ONNX_OPSET) -> Path:
    """Export `model` (eval mode, NCHW input for images) to an ONNX file.

    Args:
        model: the torch model built from `config`; its train/eval mode is
            restored afterwards.
        config: its ModelConfig (example input shape and dtype).
        path: destination .onnx file; missing parent folders are created, an
            existing file is replaced only once the new one is complete.
        opset: ONNX opset, within shared.onnx_check.SUPPORTED_OPSETS.

    Returns:
        The destination path.

    Raises:
        UnsupportedOpsetError: opset outside the supported range (nothing written).
        OutputPathError: the destination's parent is not a writable folder.
        ExportError: the exporter failed ("torch ONNX export failed for <model>: ...");
            no partial file is left behind.
    """
    opset = validate_opset(opset)
    path = check_output_path(path)
    name = f"{config.model}_{config.task}"
    example = example_input(config)

    def write(tmp: str) -> None:
        was_training = model.training
        try:
            with torch.no_grad():
                torch.onnx.export(
                    model.eval(),
                    (example,),
                    tmp,
                    dynamo=False,  # TorchScript exporter: see the module docstring
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                )
        finally:
            model.train(was_training)
        dims = onnx.load(tmp, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            raise ExportError(f"torch ONNX export of {name} has a fixed batch dimension; expected a symbolic one")

    return atomic_export(path, write, framework="torch", model_name=name, loggers=("torch.onnx",))
