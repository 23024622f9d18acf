"""PyTorch model -> ONNX file: the TorchScript exporter, the dynamo one as fallback.

Mirrors keras_impl/export.py: same functions, same checks, same file contract
(one input "input" with a symbolic batch dimension "batch", one output
"logits"), written atomically.

What this relies on (torch 2.13, onnxscript 0.7.2, read in the installed source):
  - `torch.onnx.export` (torch/onnx/__init__.py) defaults to `dynamo=True`
    since torch 2.9: the torch.export-based exporter, which needs onnxscript
    and takes `dynamic_shapes`. `dynamo=False` is the TorchScript exporter
    (torch/onnx/_internal/torchscript_exporter/utils.py `export`), deprecated
    (a DeprecationWarning on every call, silenced here), which takes
    `dynamic_axes` and opsets 7 to 20.
  - Measured on the four built-in models (2 shared cores, warm process):
    TorchScript 0.01-0.2 s per export, every model at the pinned opset 17;
    dynamo 1.0-8 s per export (the first call in a process also pays
    onnxscript's import, up to 18 s under load), and the CNNs come out at
    opset 18: dynamo has no implementation below 18 and the down-conversion
    to 17 fails ("No Adapter To Version $17 for Pad"), so it keeps 18. Both
    succeed on all four, and onnxruntime runs both within 6e-8 of torch.
    Hence EXPORTERS: TorchScript first (20-100x faster, honours the opset),
    dynamo when it fails (it is the exporter torch maintains).
    `export_with_info` says which one ran; the harness' report carries it
    (artifacts.onnx and each ONNX check's detail "exporters").
  - `training=TrainingMode.EVAL` and `do_constant_folding=True` are the
    TorchScript exporter's defaults; we also call `model.eval()` (restored
    afterwards) so that BatchNorm2dKeras takes the stock inference path, which
    the exporter folds into the Conv weights. Conv2dSame's F.pad has constant
    pads (computed from the config's input size), exported as a Pad node.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import onnx
import torch

from shared.data.config import ModelConfig
from shared.onnx.onnx_export import (
    ONNX_OPSET,
    ExportError,
    OutputPathError,
    UnsupportedOpsetError,
    atomic_export,
    check_output_path,
    validate_opset,
)

__all__ = ["export_onnx", "export_with_info", "EXPORTERS", "INPUT_NAME", "OUTPUT_NAME", "example_input",
           "no_mha_fastpath", "exportable"]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# The exporters in the order tried: default first, the other on its failure
# (timings and opsets in the module docstring).
EXPORTERS = ("torchscript", "dynamo")


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


@contextlib.contextmanager
def no_mha_fastpath():
    """Export with nn.MultiheadAttention's (and nn.TransformerEncoderLayer's)
    inference fast path off, restored afterwards.

    In eval mode under torch.no_grad, MultiheadAttention.forward (torch 2.13,
    torch/nn/modules/activation.py) calls `torch._native_multi_head_attention`,
    which the TorchScript exporter cannot convert ("Exporting the operator
    'aten::_native_multi_head_attention' to ONNX opset version 17 is not
    supported": torchvision's ViT). With `torch.backends.mha.set_fastpath_enabled(False)`
    both modules take their composite path (linear, scaled_dot_product_attention),
    the same function, which exports.
    """
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def _erfc(g, x):
    """aten::erfc for the TorchScript exporter: ONNX has Erf but no Erfc, so
    1 - Erf(x), the constant in x's dtype. The writer emits erfc for Keras'
    exact GELU as TensorFlow computes it (torch_impl/write/helpers.py
    keras_gelu; keras.io's ConvMixer); |1 - erf(x) - erfc(x)| stays below
    float32's epsilon, and 0.5 * x * erfc(-x / sqrt 2) multiplies the small
    values by x."""
    dtype = torch.float64 if x.type().scalarType() == "Double" else torch.float32
    return g.op("Sub", g.op("Constant", value_t=torch.tensor(1.0, dtype=dtype)), g.op("Erf", x))


@contextlib.contextmanager
def exportable(opset: int):
    """no_mha_fastpath, and aten::erfc exported as 1 - Erf (_erfc), for one export."""
    torch.onnx.register_custom_op_symbolic("aten::erfc", _erfc, opset)
    try:
        with no_mha_fastpath():
            yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::erfc", opset)


def _run_exporter(model: torch.nn.Module, example: torch.Tensor, tmp: str, opset: int, exporter: str) -> None:
    if exporter == "torchscript":
        kw = dict(dynamo=False, dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    elif exporter == "dynamo":
        # external_data=False: one self-contained file (atomic_export moves only that one)
        kw = dict(dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False, report=False,
                  external_data=False)
    else:
        raise ValueError(f"exporter must be one of {EXPORTERS}. Received: exporter={exporter!r}")
    with torch.no_grad(), exportable(opset):
        torch.onnx.export(model, (example,), tmp, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], **kw)


def export_onnx(model: torch.nn.Module, config: ModelConfig, path, opset: int = ONNX_OPSET,
                exporter: str = EXPORTERS[0], example: torch.Tensor | None = None, model_name: str | None = None) -> Path:
    """Export `model` (eval mode, NCHW input for images) to an ONNX file.

    Args:
        model: the torch model built from `config`; its train/eval mode is
            restored afterwards.
        config: its ModelConfig (example input shape and dtype), or any object
            with `model`, `task` (for messages) when `example` is given.
        path: destination .onnx file; missing parent folders are created, an
            existing file is replaced only once the new one is complete.
        opset: ONNX opset, within shared.onnx.onnx_export.SUPPORTED_OPSETS.
        exporter: "torchscript" or "dynamo" (EXPORTERS).
        example: an example input (batch >= 2); default example_input(config).
        model_name: the name messages give the model (default "<config.model>_<config.task>",
            the built-in model's name; a port passes the user's model's name).

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
    name = model_name or f"{config.model}_{config.task}"
    example = example_input(config) if example is None else example

    def write(tmp: str) -> None:
        was_training = model.training
        try:
            _run_exporter(model.eval(), example, tmp, opset, exporter)
        finally:
            model.train(was_training)
        dims = onnx.load(tmp, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            raise ExportError(f"torch ONNX export of {name} has a fixed batch dimension; expected a symbolic one")

    return atomic_export(path, write, framework="torch", model_name=name, loggers=("torch.onnx", "onnxscript"))


def export_with_info(model: torch.nn.Module, config: ModelConfig, path, opset: int = ONNX_OPSET,
                     example: torch.Tensor | None = None) -> tuple:
    """export_onnx with each of EXPORTERS in turn until one succeeds.

    Returns:
        (path, {"exporter": the one that wrote the file, "seconds": its time,
        "fallback_from": {exporter: first line of its error}} (empty when the
        default worked)).

    Raises:
        ExportError: every exporter failed (the default's error, the others'
        in its message).
    """
    failed = {}
    for exporter in EXPORTERS:
        t0 = time.perf_counter()
        try:
            out = export_onnx(model, config, path, opset, exporter=exporter, example=example)
        except (UnsupportedOpsetError, OutputPathError):
            raise
        except ExportError as exc:
            failed[exporter] = str(exc)
            continue
        return out, {"exporter": exporter, "seconds": time.perf_counter() - t0, "fallback_from": failed}
    raise ExportError("; ".join(f"{k}: {v}" for k, v in failed.items()), path=Path(path))
