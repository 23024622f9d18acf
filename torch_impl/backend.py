"""A PyTorch model as the default run's shared.flows.side.Side. Never imports TensorFlow or Keras.

Twin of keras_impl/backend.py. `TorchBackend` wraps any `nn.Module` whose
output is the logits; the common layout is torch's own, so inputs,
activations and weights pass through unchanged. What is model-specific comes
in as arguments: the task (which loss), the portable weight names, the names
of the layers to report, and an optional `after_load` hook (a planted fault,
re-applied whenever weights are set). `from_config` builds the built-in
ModelConfig twin.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.data.config import ModelConfig, TrainConfig, parameter_spec
from shared.onnx.onnx_backend import OnnxBackend
from shared.data.portable import check_tensors
from shared.flows.side import engine_batches, no_config, single, task_loss
from shared.core.training import TrainResult
from torch_impl import export, losses, models, train

__all__ = ["TorchBackend", "from_config", "FRAMEWORK_VERSION"]

FRAMEWORK_VERSION = torch.__version__


class TorchBackend:
    """A torch module, numpy in and out, in torch layout (the common one).

    Args:
        model: the module; `model(x)` returns the logits.
        task: one of shared.data.config.TASKS (torch_impl.losses).
        name: how the report names this side.
        weight_names: the portable tensors, state_dict names; default every
            state_dict entry but BatchNorm's num_batches_tracked.
        check_weights: called with (tensors, dtype) before they are loaded
            (raise to refuse them); default none.
        layers: names of the children whose outputs `values` reports,
            in forward order; default every direct child (a Sequential).
        example: an example input (batch >= 2, torch layout) for the ONNX export.
        after_load: called with the module after every set_weights (and once
            now): e.g. a planted fault that must survive re-loading.
    """

    can_train = True

    def __init__(self, model: nn.Module, *, task: str, name: str = "torch", weight_names=None,
                 check_weights=None, layers=None, example: torch.Tensor | None = None, after_load=None,
                 fault=None, fault_size: float = 1.0):
        self.model, self.task, self.name = model, task, name
        # An optimizer or loss fault (shared/data/faults.py), planted by torch_impl/faults.py.
        self.fault, self.fault_size = fault, fault_size
        self.dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        state = model.state_dict()
        self.weight_names = list(weight_names) if weight_names is not None else [
            n for n in state if not n.endswith("num_batches_tracked")]
        self.check_weights = check_weights
        self.layers = list(layers) if layers is not None else [n for n, _ in model.named_children()]
        self.example = example
        self.after_load = after_load
        self.onnx_info: dict = {}
        if after_load is not None:
            after_load(model)

    def _like(self, model: nn.Module) -> "TorchBackend":
        twin = copy.copy(self)
        twin.model = model
        twin.dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        twin.onnx_info = {}
        return twin

    def _x(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x)).to(models.TORCH_DTYPES[self.dtype])

    def _keeping_state(self, fn, training: bool):
        """fn() with the module in `training` mode; buffers and mode restored after."""
        was = self.model.training
        saved = {n: b.detach().clone() for n, b in self.model.named_buffers()} if training else None
        try:
            self.model.train(training)
            with torch.no_grad():
                return fn()
        finally:
            if saved is not None:
                with torch.no_grad():
                    for n, b in self.model.named_buffers():
                        b.copy_(saved[n])
            self.model.train(was)

    @property
    def graph(self):
        """None: the built-in twins have no graph; `values` is keyed by layer names both twins share."""
        return None

    def forward(self, xs: list, training: bool = False) -> list:
        x = single(xs)
        if not training:
            return [models.forward(self.model, self._x(x))]
        return [self._keeping_state(lambda: self.model(self._x(x)).numpy(), True)]

    def values(self, xs: list, training: bool = False) -> dict:
        x = single(xs)
        children = dict(self.model.named_children())

        def walk():
            out, h = {}, self._x(x)
            for name in self.layers:
                h = children[name](h)
                out[name] = h.numpy().copy()
            return out

        return self._keeping_state(walk, training)

    def _loss_fn(self):
        if self.fault is None or self.fault.kind != "loss":
            return None
        from torch_impl import faults

        return lambda task, logits, y: faults.mean_loss(task, logits, y, self.fault, self.fault_size)

    def loss_outputs(self, logits, y, naive: bool = False) -> dict:
        out = losses.loss_outputs(self.task, logits, y, naive=naive)
        if self._loss_fn() is not None:
            from torch_impl import faults

            lg, yy = torch.as_tensor(np.asarray(logits)), torch.as_tensor(np.asarray(y))
            with torch.no_grad():
                per = faults.per_sample_loss(self.task, lg, yy, self.fault, self.fault_size)
            out["per-sample loss"], out["mean loss"] = per.numpy(), per.mean().numpy()
        return out

    def loss_and_grads(self, xs: list, y, loss=None, training: bool = True) -> tuple:
        task = task_loss(self, loss)
        yt = torch.as_tensor(np.asarray(y))
        if task != "multiclass":
            yt = yt.to(models.TORCH_DTYPES[self.dtype])
        value, grads = train.loss_and_raw_grads(self.model, task, self._x(single(xs)), yt, training, self._loss_fn())
        return value, {n: grads[n] for n in self.weight_names if n in grads}

    def train_steps(self, batches: list, loss=None, optimizer: TrainConfig | None = None, training: bool = True,
                    on_step=None) -> TrainResult:
        task_loss(self, loss)
        batches = engine_batches(batches, training)
        factory = None
        if self.fault is not None and self.fault.kind == "optimizer":
            from torch_impl import faults

            def factory(model, tc):
                return faults.make_optimizer(model, tc, self.fault, self.fault_size)
        return train.train(self.model, self, optimizer, batches, on_step=on_step, channels_first=True,
                           optimizer_factory=factory, loss_fn=self._loss_fn())

    def get_weights(self) -> dict:
        state = self.model.state_dict()
        return {n: state[n].detach().cpu().numpy().copy() for n in self.weight_names}

    def set_weights(self, tensors: dict) -> None:
        if self.check_weights is not None:
            self.check_weights(tensors, self.dtype)
        state = self.model.state_dict()
        missing = [n for n in self.weight_names if n not in tensors]
        if missing:
            raise KeyError(f"{self.name}: missing portable tensor(s) {missing}")
        with torch.no_grad():
            for n in self.weight_names:
                state[n].copy_(torch.from_numpy(np.ascontiguousarray(tensors[n])))
        if self.after_load is not None:
            self.after_load(self.model)

    def with_dtype(self, dtype: str) -> "TorchBackend":
        """A deep copy converted to `dtype` (float32 -> float64 widens exactly)."""
        return self._like(copy.deepcopy(self.model).to(models.TORCH_DTYPES[dtype]))

    def copy(self) -> "TorchBackend":
        return self._like(copy.deepcopy(self.model))

    def export_onnx(self, path, opset: int | None = None, config=None, info: dict | None = None) -> Path:
        no_config(self, config)
        example = self.example.to(models.TORCH_DTYPES[self.dtype]) if self.example is not None else None
        desc = _Desc(self)
        out, how = export.export_with_info(self.model, desc, path, opset if opset is not None else export.ONNX_OPSET,
                                           example=example)
        if info is not None:
            info.update(how)
        return Path(out)

    def onnx_input(self, x, name: str | None = None) -> np.ndarray:
        return np.asarray(x)  # torch's layout is the common one

    def onnx_input_names(self) -> list:
        return [export.INPUT_NAME]  # export_onnx standardizes its one input's name

    def onnx_output(self, y, name: str | None = None) -> np.ndarray:
        return np.asarray(y)

    def onnx_side(self, path) -> OnnxBackend:
        return OnnxBackend(path, name=f"onnx({self.name})", task=self.task, dtype=self.dtype)


class _Desc:
    """What torch_impl.export reads from a config, for a backend's module."""

    def __init__(self, b: TorchBackend):
        self.model, self.task = b.name, b.task


# ---- the built-in ModelConfig twins -----------------------------------------------
def from_config(config: ModelConfig, fault=None, name: str = "torch", size: float = 1.0) -> TorchBackend:
    """The built-in torch twin of `config` as a backend (torch's own initial weights).

    Args:
        fault: a shared.data.faults.Fault (or its "NAME[=SIZE]" spec) to plant with `size` (model faults are
            re-planted on every set_weights; optimizer and loss faults act in
            training and in the loss code; data faults are the caller's:
            shared.data.faults.DataFaultBackend).
    """
    from shared.data.faults import parse_plant
    from torch_impl import faults

    if isinstance(fault, str):
        fault, size = parse_plant(fault, config.model, config.task)
    model = models.build_model(config)
    hook = None
    if fault is not None and fault.kind == "model":
        def hook(m):
            faults.plant_model(m, config, fault, size)
    return TorchBackend(model, task=config.task, name=name, weight_names=list(parameter_spec(config)),
                        check_weights=lambda t, dtype: check_tensors(config.replace(dtype=dtype), t),
                        example=export.example_input(config), after_load=hook,
                        fault=fault if fault is not None and fault.kind in ("optimizer", "loss") else None,
                        fault_size=size)
