"""A PyTorch module behind shared.flows.side.Side. Never imports TensorFlow or Keras.

Twin of keras_impl/side.py (same `__all__`, same Side methods). One class for
both port directions:

- `TorchSide.from_graph(graph, source, dtype)`: the module `compare.py port`
  (K->T) writes and builds by executing model.py (torch_impl/write/__init__.py); its
  state_dict keys are the graph's state keys, per-node values are model.py's
  local variables (torch_impl/write/__init__.py graph_values).
- `TorchSide.read(module, input_shape)`: the user's module the reverse port
  (T->K) reads into the graph (torch.fx / torch.export, torch_impl/read/__init__.py);
  per-node values by the captured graph, parameters matched to state keys by
  torch_impl.read.params_by_key.

- `TorchSide(module)`: the user's hand-written port as `compare.py verify`
  drives it: no graph; one traced forward pass (`trace`: forward hooks and a
  TorchFunctionMode, torch_impl/verify/__init__.py and verify_trace.py) lists the
  modules owning parameters as records (shared/flows/verify.py TorchRecord), and
  their weights, outputs, gradients and a training run are keyed by record
  (`record_weights`, `set_record_weights`, `pair_outputs`,
  `record_loss_and_grads`, `train`), with the Keras compile config's loss and
  optimizer (torch_impl/verify/loss.py, AdamKeras / SGDKeras).

The computations are torch_impl/port.py's (the Keras loss in torch,
gradients, training steps) and torch_impl/read/__init__.py / write.py's (values).
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.core.errors import UsageError
from shared.flows.side import one_batch
from shared.flows.verify import TorchRecord
from torch_impl import port as _port
from torch_impl.verify.packed import first_output, is_packed, padded, shape_of
from torch_impl.train import SLICE_SENSITIVE, KerasEmbeddingGrads
from torch_impl.verify import (_attrs, _grad, _hf_conv1d, _kind, _own_tensors, _parts, _rnn, _split_record, _tensor,
                               _tensor_owner_attr, _views, make_optimizer)
from torch_impl.verify.attention import FUSED, absorbed as _absorbed, call_hook
from torch_impl.verify.inputs import Binding
from torch_impl.verify.loss import total_loss
from torch_impl.verify.params import tied_params, unused_paths
from torch_impl.verify.trace import Mode as _Mode, describe as _describe, flatten_chain as _flatten_chain

__all__ = ["TorchSide"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TorchSide:
    """The torch module, numpy in and out, the graph's neutral layout.

    Args:
        module: the module (converted to `dtype`). verify's (no graph) is
            never modified except by set_record_weights and the FUSED marker
            on a fused qkv Linear; training runs on a copy.
        graph: the graph it was built from (port) or read into (reverse
            port); None for verify's hand-written module.
        source: model.py when built from the graph (with_dtype builds again
            from it); None for a module read into the graph.
        dtype: the dtype the module computes in.
    """

    name = "torch"
    can_train = True

    def __init__(self, module, graph=None, *, source: str | None = None, dtype: str = "float32"):
        self.module = module.to(DTYPES[dtype])
        self.graph, self.source, self.dtype = graph, source, dtype
        self.written = source is not None  # model.py: state_dict keys are the graph's
        # verify (trace): what the traced pass found
        self.dropout_calls: list = []
        self.tied: list = []  # notes: parameters owned twice (torch_impl/verify/params.py)
        self.unused: dict = {}  # {module path: note}: parameters that never reach the compared outputs
        self.ops_after: dict = {}  # from trace: module path ("" = the input) -> functional calls after it
        self.binding = Binding(module, ["x"], ["output"])

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
        module = copy.deepcopy(self.module).to(DTYPES[dtype])
        side = TorchSide(module.eval() if self.graph is not None else module, self.graph, dtype=dtype)
        side.binding = self.binding
        return side

    def perturbed(self, dtype: str, rel: float, seed: int = 0) -> "TorchSide":
        """A `dtype` copy whose parameters are each multiplied by 1 + rel or
        1 - rel (a seeded random sign per element): for measuring how far the
        training check's own rounding can carry (shared/flows/port_reverse.py, sensitivity)."""
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
        from torch_impl.read.capture import forget as drop

        drop(self.module)

    # ---- numbers
    def forward(self, xs: list) -> list:
        with torch.no_grad():
            out = self.module(*[torch.as_tensor(np.ascontiguousarray(x)) for x in xs])
        out = tuple(out.values()) if isinstance(out, dict) else out  # a dict: Keras' keys, in graph.outputs order
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
        """See shared.flows.side.Side: model.py trains in inference mode with the
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
        from shared.onnx.onnx_check import ONNX_OPSET

        return _port.export_onnx(self.module, self.graph, path, opset or ONNX_OPSET)

    def onnx_input(self, x, name: str | None = None):
        return x

    def onnx_input_names(self) -> list:
        from torch_impl.write import variable_names

        return [variable_names(self.graph)[n] for n in self.graph.inputs]  # export_onnx's input_names

    def onnx_output(self, y, name: str | None = None):
        return y

    # ---- verify: the modules owning parameters as records (shared/flows/verify.py)
    def bind(self, input_names: list, output_names: list) -> "TorchSide":
        """Call the module with the Keras model's inputs by name; pick its outputs (torch_impl/verify/inputs.py)."""
        self.binding = Binding(self.module, input_names, output_names)
        return self

    def _run(self, model, x):
        """model's output(s) for x: one tensor, or a list for a Keras model with several outputs."""
        return self.binding.call(model, x, self._x)

    def _x(self, x) -> torch.Tensor:
        x = np.asarray(x)
        return torch.as_tensor(np.ascontiguousarray(x, dtype=np.int64 if x.dtype.kind in "iu" else self.dtype))

    def _param_modules(self) -> dict:
        skip = _absorbed(self.module)
        for p, m in self.module.named_modules():
            if isinstance(m, nn.MultiheadAttention) and (m.bias_k is not None or m.add_zero_attn):
                raise UsageError(f"torch module '{p}' (MultiheadAttention) has add_bias_kv / add_zero_attn, which Keras' "
                                 "MultiHeadAttention does not have")
        tied = tied_params(self.module)
        self.tied = [f"torch '{p}.{n}' is '{owner}' (tied): one weight, matched and set through '{owner.rsplit('.', 1)[0]}'"
                     for (p, n), owner in tied.items()]
        return {p: m for p, m in self.module.named_modules() if _own_tensors(m) and p not in skip
                and any((p, n) not in tied for n in _own_tensors(m))}

    def trace(self, x: np.ndarray) -> list:
        """TorchRecords of the modules owning parameters, in first-call order (eval mode)."""
        mods = self._param_modules()
        seen, inputs, handles = {}, {}, []
        mode = _Mode(record=True)
        mode.eval_mode = True

        def pre(path):
            def hook(m, args):
                mode.inside += path in mods
                if path in mods and path not in seen and args and isinstance(args[0], torch.Tensor):
                    inputs[path] = args[0]
            return hook

        def post(path):
            def hook(m, args, out):
                mode.last_module = path
                if path in mods:
                    mode.inside -= 1
                    mode.last_param_module = path
                    rec = seen.get(path)
                    width = m.out_features if isinstance(m, nn.Linear) else m.nf if _hf_conv1d(m) else 1
                    if width % 3 == 0 and isinstance(out, torch.Tensor):  # fused qkv (nn.Linear, HF Conv1D)
                        mode.linear_out[id(out)] = path
                        mode.keep.append(out)
                    if rec is None:
                        seen[path] = TorchRecord(path, type(m).__name__, _kind(m),
                                                 {n: tuple(_tensor(v).shape) for n, v in _parts(path, m)[0][1].items()}
                                                 if _hf_conv1d(m) else
                                                 {n: tuple(t.shape) for n, t in _own_tensors(m).items()}, _attrs(m),
                                                 shape_of(args[0], mode.pack_steps) if args else (),
                                                 shape_of(first_output(out), mode.pack_steps))
                        if _rnn(m) and args:  # the padded steps skipped (packed) or run through
                            seen[path].attrs["packed_input"] = is_packed(args[0])
                    else:
                        rec.calls += 1
            return hook

        for path, m in self.module.named_modules():
            if isinstance(m, nn.MultiheadAttention):  # before pre(): it runs while the caller's ops are shown
                handles.append(m.register_forward_pre_hook(call_hook(mode, _describe), with_kwargs=True))
            if path:
                handles += [m.register_forward_pre_hook(pre(path)), m.register_forward_hook(post(path))]
        was = self.module.training
        self.module.eval()
        try:
            with torch.no_grad(), mode:
                self._run(self.module, x)
        finally:
            for h in handles:
                h.remove()
            self.module.train(was)
        for p in mods:  # a module whose parameters its parent uses directly never runs itself
            if p not in seen and _kind(mods[p]) == "params":
                seen[p] = TorchRecord(p, type(mods[p]).__name__, "params", {n: tuple(t.shape) for n, t in _own_tensors(mods[p]).items()})
        self.unused = unused_paths(self._run, self.module, x, {p: mods[p] for p in seen})
        seen = {p: r for p, r in seen.items() if p not in self.unused}
        never = [p for p in mods if p not in seen and p not in self.unused]
        if never:
            raise UsageError(f"torch module '{never[0]}' ({type(mods[never[0]]).__name__}) owns parameters but never ran "
                             "in forward(); remove it or map the model by hand (--mapping)")
        for path in mode.fused:  # a fused qkv projection: three records (_parts)
            setattr(mods[path], FUSED, True)
        for path, rec in seen.items():
            if rec.kind == "linear" and path in inputs:
                rec.flatten = _flatten_chain(mode.prov, inputs[path])
        self.dropout_calls = list(dict.fromkeys(mode.dropouts))
        self.ops_after = mode.ops
        return [part for path, rec in seen.items() for part in _split_record(rec, mods[path])]

    def record_weights(self) -> dict:
        """{record path: {name: array}} (split modules by part, see _parts)."""
        return {rp: {n: _tensor(v).detach().cpu().numpy().copy() for n, v in names.items()}
                for rp, names in _views(self.module).items()}

    def set_record_weights(self, tensors: dict) -> None:
        views = _views(self.module)
        with torch.no_grad():
            for path, ws in tensors.items():
                own = views[path]
                for name, a in ws.items():
                    if name in own:
                        t = _tensor(own[name])
                        t.copy_(torch.as_tensor(np.asarray(a)).to(t.dtype))

    def outputs(self, x: np.ndarray) -> np.ndarray:
        was = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                out = self._run(self.module, x)
                return [o.detach().cpu().numpy() for o in out] if isinstance(out, list) else out.detach().cpu().numpy()
        finally:
            self.module.train(was)

    def pair_outputs(self, x: np.ndarray, paths: list) -> dict:
        """{path: output of its first call} in eval mode; for recurrent modules also
        {path@h_n: final hidden states (layers*directions, batch, hidden)}. A
        PackedSequence output is padded back to (batch, steps, features), zeros at
        the padded steps (torch_impl/verify/packed.py); h_n is already each row's last
        valid step there."""
        mods = dict(self.module.named_modules())
        out, handles = {}, []
        mode = _Mode()

        def keep(path, rows=None):
            def hook(m, args, y):
                if path in out:
                    return
                if rows is not None:  # one projection of a fused qkv Linear
                    out[path] = y[..., rows[0]:rows[1]].detach().cpu().numpy().copy()
                    return
                if _rnn(m) and isinstance(y, tuple) and len(y) == 2:  # (output, h_n) / (output, (h_n, c_n))
                    h = y[1][0] if isinstance(y[1], tuple) else y[1]
                    out[f"{path}@h_n"] = h.detach().cpu().numpy().copy()
                out[path] = padded(first_output(y), mode.pack_steps).detach().cpu().numpy().copy()
            return hook  # returns None: the output is left as it is

        for p in paths:
            if p in mods:
                handles.append(mods[p].register_forward_hook(keep(p)))
                continue
            module = p.rsplit("[", 1)[0]  # a part of a split module: its last part carries the module's output
            if module in mods and getattr(mods[module], FUSED, False):
                rows = dict(_parts(module, mods[module]))[p]["weight"][2]
                handles.append(mods[module].register_forward_hook(keep(p, rows)))
            elif module in mods and _parts(module, mods[module])[-1][0] == p:
                handles.append(mods[module].register_forward_hook(keep(p)))
        try:
            with mode:
                self.outputs(x)
        finally:
            for h in handles:
                h.remove()
        return out

    def record_loss_and_grads(self, x: np.ndarray, y: np.ndarray, spec: dict, mask=None) -> tuple:
        """(mean loss, {path: {name: gradient}}) in eval mode, model unchanged."""
        model = copy.deepcopy(self.module).eval()
        loss = total_loss(spec, self._run(model, x), y, self.dtype, mask)
        loss.backward()
        grads = {}
        for rp, names in _views(model).items():
            for n, v in names.items():
                if isinstance(_tensor_owner_attr(v), nn.Parameter):
                    g = _grad(v)
                    grads.setdefault(rp, {})[n] = (g.detach().numpy().copy() if g is not None
                                                   else np.zeros(tuple(_tensor(v).shape)))
        return float(loss.detach()), grads

    def train(self, batches: list, loss: dict, optimizer: dict, keras_slices: bool = True) -> tuple:
        """One step per (x, y) or (x, y, output mask) batch on a copy, training
        mode, every dropout off (the mask: see torch_loss).

        keras_slices: Embedding lookups (nn.Embedding, F.embedding) make sparse
        gradients, applied as Keras applies TF's IndexedSlices
        (torch_impl/train.py KerasEmbeddingGrads; TRAPS.md, "Keras' Adam on an
        Embedding"); False: torch's dense gradients, a stock training loop.

        Returns:
            (pre-update losses, {path: {name: array}} after the last step).
        """
        side = self.copy()
        model = side.module.train()
        opt = make_optimizer(model, optimizer)
        losses = []
        for x, y, *mask in batches:  # (x, y) or (x, y, the Keras output's mask)
            opt.zero_grad(set_to_none=True)
            with _Mode(no_dropout=True), KerasEmbeddingGrads() if keras_slices else nullcontext():
                value = total_loss(loss, self._run(model, x), y, self.dtype, *mask[:1])
            value.backward()
            opt.step()
            losses.append(float(value.detach()))
        return losses, side.record_weights()

    def record_stock_training(self, batches: list, loss: dict, optimizer: dict):
        """`train` with torch's dense Embedding gradients where Keras' sparse
        update differs from it (Adam/AdamW, an Embedding lookup repeating an id
        in some batch); None elsewhere (identical updates)."""
        if optimizer["class"].lower() not in SLICE_SENSITIVE:
            return None
        mode = KerasEmbeddingGrads()
        with mode:
            for x, *_ in batches:
                self.outputs(x)
        return self.train(batches, loss, optimizer, keras_slices=False) if mode.repeated else None
