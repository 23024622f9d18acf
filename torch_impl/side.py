"""A PyTorch module behind shared.side.Side. Never imports TensorFlow or Keras.

Twin of keras_impl/side.py (same `__all__`, same Side methods). One class for
both port directions:

- `TorchSide.from_graph(graph, source, dtype)`: the module `compare.py port`
  (K->T) writes and builds by executing model.py (torch_impl/write.py); its
  state_dict keys are the graph's state keys, per-node values are model.py's
  local variables (torch_impl/write.py graph_values).
- `TorchSide.read(module, input_shape)`: the user's module the reverse port
  (T->K) reads into the graph (torch.fx / torch.export, torch_impl/read.py);
  per-node values by the captured graph, parameters matched to state keys by
  torch_impl.read.params_by_key.

The computations are torch_impl/port.py's (the Keras loss in torch,
gradients, training steps) and torch_impl/read.py / write.py's (values).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from shared.side import one_batch
from torch_impl import port as _port

__all__ = ["TorchSide"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TorchSide:
    """The torch module, numpy in and out, the graph's neutral layout.

    Args:
        module: the module (eval mode).
        graph: the graph it was built from (port) or read into (reverse port).
        source: model.py when built from the graph (with_dtype builds again
            from it); None for a module read into the graph.
        dtype: the dtype the module computes in.
    """

    name = "torch"
    can_train = True

    def __init__(self, module, graph, *, source: str | None = None, dtype: str = "float32"):
        self.module, self.graph, self.source, self.dtype = module, graph, source, dtype
        self.written = source is not None  # model.py: state_dict keys are the graph's

    @classmethod
    def from_graph(cls, graph, source: str | None = None, dtype: str = "float32") -> "TorchSide":
        """model.py for the graph, executed; the graph's weights loaded strictly."""
        from torch_impl.write import build_module

        module, source = build_module(graph, source, dtype=DTYPES[dtype])
        return cls(module, graph, source=source, dtype=dtype)

    @classmethod
    def read(cls, module, input_shape) -> "TorchSide":
        """The user's module read into the graph (inputs `input_shape` without the batch)."""
        from torch_impl.read import read_graph

        dtype = str(next(module.parameters()).dtype).replace("torch.", "") if any(True for _ in module.parameters()) \
            else "float32"
        return cls(module, read_graph(module, tuple(input_shape)), dtype=dtype)

    # ---- copies
    def with_dtype(self, dtype: str) -> "TorchSide":
        return self if dtype == self.dtype else self._fresh(dtype)

    def copy(self) -> "TorchSide":
        return self._fresh(self.dtype)

    def _fresh(self, dtype: str) -> "TorchSide":
        if self.written:
            return TorchSide.from_graph(self.graph, self.source, dtype)
        return TorchSide(copy.deepcopy(self.module).to(DTYPES[dtype]).eval(), self.graph, dtype=dtype)

    def perturbed(self, dtype: str, rel: float, seed: int = 0) -> "TorchSide":
        """A `dtype` copy whose parameters are each multiplied by 1 + rel or
        1 - rel (a seeded random sign per element): for measuring how far the
        training check's own rounding can carry (shared/port_reverse.py, sensitivity)."""
        side = self._fresh(dtype)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in side.module.parameters():
                if p.is_floating_point():
                    sign = torch.randint(0, 2, p.shape, generator=g).to(p.dtype) * 2 - 1
                    p.mul_(1 + rel * sign)
        return side

    def forget(self) -> None:
        """Let this copy go: drop its cached capture (which holds its parameters)."""
        from torch_impl.capture import forget as drop

        drop(self.module)

    # ---- numbers
    def forward(self, xs: list) -> list:
        with torch.no_grad():
            out = self.module(*[torch.as_tensor(np.ascontiguousarray(x)) for x in xs])
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

    def values(self, xs: list) -> dict:
        if self.written:
            from torch_impl.write import graph_values
        else:
            from torch_impl.read import graph_values
        return graph_values(self.module, self.graph, xs)

    def loss_and_grads(self, xs: list, y, loss: dict) -> tuple:
        fn = _port.loss_and_grads if self.written else _port.module_loss_and_grads
        return fn(self.module, self.graph, xs, y, loss)

    def train_steps(self, batches: list, loss: dict, optimizer, training: bool = False, lazy: bool = False) -> tuple:
        """See shared.side.Side: model.py trains in inference mode with the
        Keras-equivalent optimizer (torch_impl/port.py train_steps); a read
        module in training mode with torch.optim.SGD (module_sgd_steps).
        lazy: accepted for the Keras twin's sake (the weights come as a dict)."""
        if training and not self.written:
            if optimizer.optimizer != "sgd":
                raise NotImplementedError(f"training-mode steps run SGD with momentum, not {optimizer.optimizer}")
            return _port.module_sgd_steps(self.module, self.graph, batches, loss, optimizer.learning_rate,
                                          optimizer.momentum)
        if training or not self.written:
            raise NotImplementedError("model.py trains in inference mode (port), a read module in training mode "
                                      "(reverse port)")
        from dataclasses import replace

        xs, y = one_batch(batches)
        return _port.train_steps(self.module, self.graph, xs, y, loss, replace(optimizer, steps=len(batches)))

    def stock_training(self, batches: list, loss: dict, optimizer):
        """(losses, weights) of the same training with torch's dense Embedding
        gradients, on a fresh copy, where Keras' sparse update differs from it:
        the optimizer is Adam and an Embedding lookup repeats an id (TRAPS.md,
        "Keras' Adam on an Embedding"); None elsewhere (identical updates)."""
        from dataclasses import replace

        from torch_impl.train import SLICE_SENSITIVE, KerasEmbeddingGrads

        if optimizer.optimizer not in SLICE_SENSITIVE:
            return None
        xs, y = one_batch(batches)
        mode = KerasEmbeddingGrads()
        with torch.no_grad(), mode:
            self.forward(xs)
        if not mode.repeated:
            return None
        fresh = self.copy()
        return _port.train_steps(fresh.module, self.graph, xs, y, loss, replace(optimizer, steps=len(batches)),
                                 keras_slices=False)

    def get_weights(self) -> dict:
        """{state key: weight}: model.py's state_dict, or a read module's
        parameters and buffers matched to the graph (params_by_key)."""
        if self.written:
            return self.state_dict()
        from torch_impl.read import params_by_key

        state = self.module.state_dict()
        out = {}
        for key, src in params_by_key(self.graph).items():
            name, rows = (src, None) if isinstance(src, str) else (src[0], src[1:])
            t = state[name] if rows is None else state[name][rows[0]:rows[1]]
            out[key] = t.detach().numpy().copy()
        return out

    def set_weights(self, tensors: dict) -> None:
        if not self.written:
            raise NotImplementedError("a read module's weights are the user's own: the reverse port never sets them")
        with torch.no_grad():
            state = self.module.state_dict()
            for key, a in tensors.items():
                state[key].copy_(torch.as_tensor(np.asarray(a)).to(state[key].dtype))

    def state_dict(self) -> dict:
        """The module's state_dict as numpy (what weights.safetensors holds)."""
        return {k: v.detach().contiguous().numpy() for k, v in self.module.state_dict().items()}

    # ---- files
    def export_onnx(self, path, opset: int | None = None, config=None) -> Path:
        if config is not None:  # the image-classifier exporter (reverse port)
            from torch_impl.export import export_onnx as export

            return export(self.module, config, path, model_name=self.graph.name)
        from shared.onnx_check import ONNX_OPSET

        return _port.export_onnx(self.module, self.graph, path, opset or ONNX_OPSET)

    def onnx_input(self, x):
        return x

    def onnx_output(self, y):
        return y
