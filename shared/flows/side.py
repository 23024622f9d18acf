"""One model behind one framework, as every flow drives it: the `Side` interface.

`keras_impl/side.py` (`KerasSide`) and `torch_impl/side.py` (`TorchSide`)
implement it, one class per framework, in files of the same name with the
same `__all__` (tests/architecture/test_side.py checks both). Everything crosses as numpy
in the graph's neutral layout (shared/graph/ir.py: PyTorch's, images channels
first), values and weights keyed by the graph's names: tensor names for
per-node values, state keys (`node.weight`) for weights and gradients.

Which flow uses which method (the default run: `compare.py` with no
subcommand, shared/flows/engine.py, on the built-in twins' sides keras_impl/backend.py
`KerasBackend`, torch_impl/backend.py `TorchBackend`, and onnxruntime's
shared/onnx/onnx_backend.py `OnnxBackend`, forward only):

| method | `port` (K->T) | reverse port (T->K) | `verify` | default run |
|---|---|---|---|---|
| name, dtype, can_train | yes | yes | yes | yes (+ `task`) |
| graph | Keras side reads it | torch side reads it | Keras side (records) | None (layer names) |
| forward(xs) | outputs + ONNX reference | ONNX + reload reference | - (record outputs) | logits; `training=` |
| values(xs) | every node, both sides | every node, both sides | - (record outputs) | every layer; `training=` |
| loss_and_grads(xs, y, loss) | yes | yes | - (by record) | loss=None: the task's; `training=True` |
| train_steps(batches, loss, optimizer, training) | inference mode | training mode (SGD) | - (by record) | training mode, any optimizer, `on_step`; a TrainResult |
| with_dtype(dtype), copy() | yes | yes | with_dtype | yes |
| get_weights / set_weights | - | - | - (by record) | portable names (round trip, training) |
| export_onnx(path, opset) | yes | yes (config form) | - | yes (`info=`: the exporter's) |
| onnx_input / onnx_output / onnx_input_names | ONNX checks | ONNX checks | - | layouts; ["input"] |
| loss_outputs(logits, y, naive) (optional) | - | - | - | the framework's loss code |
| onnx_side(path) (optional) | - | - | - | the export run by onnxruntime, as a side |

`verify` compares a *hand-written* torch module, which has no graph: its torch
side (`TorchSide(module)`) is traced into records instead (shared/flows/verify.py),
and verify drives record-keyed methods of the same two classes
(`KerasSide.for_verify(model)`: `records`, `record_weights`, `outputs`,
`pair_outputs`, `record_loss_and_grads`, `train`; `TorchSide`: `trace` and the
same names, `set_record_weights`), whose helpers stay in keras_impl/verify/__init__.py
and torch_impl/verify/__init__.py. The default run's sides take one input
(`xs = [x]`, the helpers below), key `values` by the layer names both
built-in twins share and weights by the portable (torch state_dict) names of
shared/data/portable.py, compute their task's loss (shared.data.config.TASKS) and train
in training mode, their batches ([x], y) and the TrainResult's fingerprints
proving what each step received; shared/flows/backend.py's `Backend` is an alias of
`Side` for one release. A method a side cannot provide raises
NotImplementedError with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Side", "one_batch", "single", "engine_batches", "task_loss", "no_config"]


@runtime_checkable
class Side(Protocol):
    """One model (Keras or torch), numpy in and out, neutral layout, graph names.

    Attributes:
        name: how report rows name this side ("keras", "torch").
        dtype: "float32" or "float64": the dtype the model computes in.
        can_train: False where the side has no gradients (an ONNX file).
        graph: the framework-free graph (shared.graph.ir.Graph) the side was read
            from or built from; its tensor names key `values`, its state keys
            key weights and gradients. None for the default run's sides
            (the module docstring's last column).
    """

    name: str
    dtype: str
    can_train: bool

    @property
    def graph(self):
        ...

    def forward(self, xs: list) -> list:
        """Every output of one plain call in inference mode, graph output order.

        Args:
            xs: one array per graph input, neutral layout, in the side's dtype
                (integer inputs as they are).
        """
        ...

    def values(self, xs: list) -> dict:
        """{graph tensor name: value} of one inference-mode pass: every node's
        output the framework can show, neutral layout (the per-node recorder)."""
        ...

    def loss_and_grads(self, xs: list, y: np.ndarray, loss: dict) -> tuple:
        """(mean loss, {state key: gradient, neutral layout}), inference mode;
        the model is unchanged afterwards.

        Args:
            loss: the loss spec {"kind", "from_logits", ...} (the Keras side's
                infer_loss). The Keras side may set loss["keras_uses_logits"],
                which the torch side then reads: call Keras first.
        """
        ...

    def train_steps(self, batches: list, loss: dict, optimizer, training: bool = False) -> tuple:
        """One optimizer step per (xs, y) batch, in place on this side's model.

        Args:
            optimizer: shared.data.config.TrainConfig (Keras conventions).
            training: False: inference-mode layers, deterministic (port: one
                batch repeated); True: training-mode layers (BatchNorm on batch
                statistics), dropout off (reverse port: SGD with momentum).

        Returns:
            (pre-update losses, {state key: weight after the last step}); the
            default run's sides (training mode, `on_step(step, loss)` after
            each step) return a shared.training.TrainResult instead: the
            losses and the fingerprints of what each step received, the
            weights then read with get_weights.
        """
        ...

    def with_dtype(self, dtype: str) -> "Side":
        """This side in `dtype`: itself when it already computes in it, else a
        copy with the same weights (float32 -> float64 widens exactly)."""
        ...

    def copy(self) -> "Side":
        """A fresh copy (same dtype, same weights) to train without touching this one."""
        ...

    def get_weights(self) -> dict:
        """{state key: weight, neutral layout}, copies."""
        ...

    def set_weights(self, tensors: dict) -> None:
        """Assign weights by state key (neutral layout)."""
        ...

    def export_onnx(self, path: Path, opset: int | None = None, config=None) -> Path:
        """The model (inference mode) as an ONNX file; `config`: a ModelConfig
        for the image-classifier exporters (keras_impl/export.py,
        torch_impl/export.py) instead of the graph's signature. The default
        run's sides take no config and fill an `info=` dict with what the
        exporter reports ("exporter", "seconds", "fallback_from")."""
        ...

    def onnx_input(self, x: np.ndarray, name: str | None = None) -> np.ndarray:
        """A neutral-layout input (`name`, default the first) in the layout the ONNX file takes."""
        ...

    def onnx_input_names(self) -> list:
        """The ONNX file's input names, in the graph's input order."""
        ...

    def onnx_output(self, y: np.ndarray, name: str | None = None) -> np.ndarray:
        """The ONNX file's output `name` (default the first) in the neutral layout."""
        ...


def one_batch(batches: list) -> tuple:
    """The (xs, y) every batch repeats: inference-mode training (the port's
    check) takes one batch, stepped len(batches) times."""
    xs, y = batches[0]
    if any(b is not batches[0] and (b[0] is not xs or b[1] is not y) for b in batches):
        raise NotImplementedError("inference-mode train_steps takes one batch repeated (the port's training check); "
                                  "pass training=True for several batches")
    return xs, y


# ---- the default run's sides (keras_impl/backend.py, torch_impl/backend.py, shared/onnx/onnx_backend.py)
def single(xs: list) -> np.ndarray:
    """The one input of a default-run side's `xs` (the built-in twins take one input)."""
    if len(xs) != 1:
        raise NotImplementedError(f"the default run's models take one input, not {len(xs)}")
    return xs[0]


def engine_batches(batches: list, training: bool) -> list:
    """The default run's ([x], y) batches as the (x, y) its training loops take;
    they train in training mode only (BatchNorm on batch statistics)."""
    if not training:
        raise NotImplementedError("the default run's sides train in training mode (training=True)")
    return [(single(xs), y) for xs, y in batches]


def task_loss(side, loss) -> str:
    """A default-run side computes its task's loss (shared.data.config.TASKS): `loss` must be None."""
    if loss is not None:
        raise NotImplementedError(f"{side.name}: the built-in twins compute their task's loss ({side.task}), "
                                  "not a given loss spec")
    return side.task


def no_config(side, config) -> None:
    """A default-run side exports its own model: a ModelConfig is not taken."""
    if config is not None:
        raise NotImplementedError(f"{side.name}: the built-in twin exports its own model, not a given config")
