"""Writing ONNX files: the opsets both exporters support, the pinned one, the
exporters' errors, destination checks, an atomic write and input/output naming.
Used by keras_impl/export.py and torch_impl/export.py (and the ports) so that
both refuse the same opsets and write files the same way. Framework-free.

What the numbers below rest on (read in the installed sources):
  - tf2onnx 1.17 (the exporter behind `keras.Model.export(format="onnx")` on
    the TensorFlow backend, keras/src/export/onnx.py): its README says "We
    support and test ONNX opset-14 to opset-18"; `Graph.make_model`
    (tf2onnx/graph.py) refuses any opset missing from
    `constants.OPSET_TO_IR_VERSION`, which ends at 18. Default opset 15
    (`constants.PREFERRED_OPSET`).
  - torch 2.13's TorchScript exporter (`torch.onnx.export(..., dynamo=False)`,
    torch/onnx/_internal/torchscript_exporter/utils.py) accepts
    `_constants.ONNX_MIN_OPSET` = 7 to `ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET` = 20.
  - onnxruntime 1.31 runs every opset up to onnx 1.23's (28 for ai.onnx).
So the range both exporters support (and tf2onnx tests) is 14..18.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx

from shared.core.console import native_output_captured
from shared.core.errors import ParityError
from shared.core.user_code import is_out_of_memory

__all__ = ["ONNX_OPSET", "SUPPORTED_OPSETS", "ExportError", "UnsupportedOpsetError", "OutputPathError",
           "validate_opset", "check_output_path", "atomic_export", "quiet_exporter", "standardize_io"]

# Opsets that BOTH exporters support: tf2onnx 1.17 tests 14..18 and refuses
# > 18; torch's TorchScript exporter takes 7..20 (see the module docstring).
SUPPORTED_OPSETS = range(14, 19)

# The pinned opset. 17 lies inside both exporters' ranges with a margin on
# each side (18 is tf2onnx's newest and least exercised; torch goes to 20), it
# has every op these models export to (Conv, MaxPool, Pad with pads as an
# input, MatMul/Gemm, Reshape, Relu), and onnxruntime 1.31 runs it on CPU.
ONNX_OPSET = 17


# ---- errors ------------------------------------------------------------------
class ExportError(ParityError):
    """An ONNX export failed, or could not be written where asked.

    Args:
        message: what went wrong, naming the model or the path.
        path: the destination file, if known.
        log: what the exporter printed or logged before failing, if captured.
    """

    def __init__(self, message: str, *, path=None, log: str = ""):
        self.path = None if path is None else str(path)
        self.log = log
        super().__init__(message)


class UnsupportedOpsetError(ExportError, ValueError):
    """The opset is outside SUPPORTED_OPSETS (nothing is written)."""


class OutputPathError(ExportError):
    """The destination cannot be written: its parent is not a folder, is not
    writable, or the destination itself is a folder."""



# ---- export helpers (used by keras_impl/export.py and torch_impl/export.py) --
def _range_text(r: range = SUPPORTED_OPSETS) -> str:
    return f"{r.start}..{r.stop - 1}"


def validate_opset(opset) -> int:
    """Return `opset` as an int if both exporters support it, else raise
    UnsupportedOpsetError naming it and the supported range."""
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or int(opset) not in SUPPORTED_OPSETS:
        raise UnsupportedOpsetError(
            f"unsupported ONNX opset {opset!r}: supported opsets are {_range_text()} "
            f"(tf2onnx 1.17 supports and tests 14..18, torch's TorchScript exporter 7..20); "
            f"the project pins {ONNX_OPSET}"
        )
    return int(opset)


def check_output_path(path) -> Path:
    """Check up front that `path` can be written as a file; return it as a Path.

    The nearest existing ancestor must be a writable folder (missing folders
    below it are created later by `atomic_export`), and `path` itself must not
    be a folder. Raises OutputPathError naming the offending path.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise OutputPathError(f"cannot write ONNX file {str(path)!r}: not a file name", path=path)
    if path.is_dir():
        raise OutputPathError(f"cannot write ONNX file {str(path)!r}: it is a directory", path=path)
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(
            f"cannot write ONNX file {str(path)!r}: {str(ancestor)!r} is not a directory", path=path
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"cannot write ONNX file {str(path)!r}: directory {str(ancestor)!r} is not writable", path=path
        )
    return path


class _ExporterLog(io.StringIO):
    """What an exporter printed: Python-level text, then what native code wrote to
    file descriptors 1 and 2 so far (`native`, from console.native_output_captured)."""

    def __init__(self, native):
        super().__init__()
        self._native = native

    def getvalue(self) -> str:
        return super().getvalue() + self._native()


@contextlib.contextmanager
def quiet_exporter(loggers=("tf2onnx",)):
    """Silence an exporter: Python-level stdout/stderr, what native code writes
    to file descriptors 1 and 2 (torch's "Torch IR graph at exception" dump goes
    to 1), warnings and the named loggers (set to ERROR). Yields the log of what
    was printed, so a failure can still show it (ExportError.log)."""
    saved = {}
    for name in loggers:
        lg = logging.getLogger(name)
        saved[name] = lg.level
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), native_output_captured((1, 2)) as native:
            warnings.simplefilter("ignore")
            log = _ExporterLog(native)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def atomic_export(path, write, *, framework: str, model_name: str, loggers=()) -> Path:
    """Run `write(tmp_file)` in a temporary folder beside `path`, then move the
    file into place with os.replace (same file system: atomic).

    Nothing is left behind on failure: the temporary folder (and any folder
    created for `path`) is removed, and an existing file at `path` is kept.
    An exception from `write` becomes ExportError("<framework> ONNX export
    failed for <model_name>: <first line of the error>").

    Args:
        path: destination .onnx file.
        write: callable taking the temporary file path (a str) to export to.
        framework: "keras" or "torch", for the message.
        model_name: the model's name, for the message.
        loggers: logger names to silence while `write` runs.
    """
    path = check_output_path(path)
    created = []
    d = path.parent
    while not d.exists():
        created.append(d)
        d = d.parent
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot write ONNX file {str(path)!r}: {e}", path=path) from e
    tmpdir = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    ok = False
    try:
        tmp = os.path.join(tmpdir, path.name)
        with quiet_exporter(loggers) as log:
            try:
                write(tmp)
            except ExportError:
                raise
            except Exception as e:  # noqa: BLE001 - every exporter failure is reported the same way
                if is_out_of_memory(e):  # not the exporter's failure: exit 4 (shared/core/user_code.py)
                    raise
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                first = first.replace(tmp, str(path)).replace(tmpdir, str(path.parent))  # never the temporary name
                raise ExportError(
                    f"{framework} ONNX export failed for {model_name}: {first}",
                    path=path,
                    log=log.getvalue(),
                ) from e
        if not os.path.isfile(tmp):
            raise ExportError(f"{framework} ONNX export failed for {model_name}: the exporter wrote no file", path=path)
        os.replace(tmp, path)
        ok = True
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        if not ok:
            for d in created:  # innermost first; only folders this call made, only if empty
                with contextlib.suppress(OSError):
                    d.rmdir()
    return path


def standardize_io(model: onnx.ModelProto, input_name: str = "input", output_name: str = "logits",
                   batch_dim: str = "batch") -> onnx.ModelProto:
    """Rename the (single) graph input and output and their dim 0 in place.

    tf2onnx names the output after the TensorFlow tensor ("Identity:0") and
    the batch dimension "unk__N"; the torch export says "input"/"logits"/
    "batch". Renaming is metadata only: every node that reads or writes the
    old names is updated, no value changes.
    """
    g = model.graph
    init_names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names]
    renames = {}
    if len(inputs) == 1 and inputs[0].name != input_name:
        renames[inputs[0].name] = input_name
    if len(g.output) == 1 and g.output[0].name != output_name:
        renames[g.output[0].name] = output_name
    existing = {n for node in g.node for n in list(node.input) + list(node.output)} | init_names
    for new in renames.values():
        if new in existing:
            raise ValueError(f"cannot rename to {new!r}: the graph already uses that name")
    for node in g.node:
        for i, n in enumerate(node.input):
            if n in renames:
                node.input[i] = renames[n]
        for i, n in enumerate(node.output):
            if n in renames:
                node.output[i] = renames[n]
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name in renames:
            vi.name = renames[vi.name]
    for vi in inputs[:1] + list(g.output[:1]):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = batch_dim
    return model


