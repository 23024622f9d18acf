"""PyTorch side of `compare.py verify`: the user's hand-written module, traced.

Twin of keras_impl/verify.py. `TorchSide.trace` runs one forward pass in eval
mode with forward hooks on every module and a TorchFunctionMode that sees
every torch function call, and returns the modules that own parameters in the
order they first ran, with their traced input/output shapes (TorchRecord of
shared/verify.py). The function mode (torch_impl/verify_trace.py) records what hooks cannot see:

- the chain of reshapes/permutes that made a Linear's input out of a feature
  map (`x.view(x.size(0), -1)`, `torch.flatten(x, 1)`, `nn.Flatten`,
  `x.permute(0, 2, 3, 1).reshape(...)`, ...). The chain is replayed on an
  index tensor of the feature map's shape, which gives the exact column order
  the Linear reads (shared/verify.py turns it into the weight permutation);
- dropout called with training=True while the model is in eval mode (the
  classic `F.dropout(x, 0.5)`, whose `training` defaults to True);
- the padded length of every `pack_padded_sequence`: an RNN on a
  PackedSequence (a masked Keras model's port) is recorded with, and
  compared through, its output padded back to that length
  (torch_impl/packed.py).

For the training checks the same mode turns every dropout function into the
identity (nn.Dropout and F.dropout alike), as Keras' Dropout layers get
rate 0 on the other side.

Losses and optimizers follow the Keras compile config (keras_impl/verify.py
`loss_spec` / `optimizer_spec`): the Keras loss formulas and reductions, and
torch_impl/train.py's AdamKeras / SGDKeras (Keras' epsilon placement,
decoupled weight decay, and Keras' update of an Embedding's sparse gradient:
the training copy's lookups make one, KerasEmbeddingGrads).
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from shared.errors import UsageError
from shared.spec import build_from_spec
from shared.verify import TorchRecord
from torch_impl.packed import first_output, is_packed, padded, shape_of
from torch_impl.train import SLICE_SENSITIVE, AdamKeras, KerasEmbeddingGrads, SGDKeras
from torch_impl.verify_attention import FUSED, absorbed as _absorbed, attention_parts as _attention_parts, call_hook, fused_parts
from torch_impl.verify_io import Binding
from torch_impl.verify_loss import KERAS_EPSILON, torch_loss, total_loss  # noqa: F401  (re-exported)
from torch_impl.verify_params import tied_params, unused_paths
from torch_impl.verify_trace import Mode as _Mode, describe as _describe, flatten_chain as _flatten_chain

__all__ = ["TorchSide", "load_model", "torch_loss", "make_optimizer", "KERAS_EPSILON"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
def load_model(spec: str) -> nn.Module:
    """`path/file.py:NAME` or `package.module:NAME`; NAME an nn.Module class with a
    no-argument constructor, or a function returning a module."""
    return build_from_spec(spec, nn.Module, "a torch.nn.Module")


_RNN_KINDS = {nn.LSTM: "rnn_lstm", nn.GRU: "rnn_gru", nn.RNN: "rnn_simple"}
# A module owning exactly these (3 * hidden rows each; `bias` optional) is a
# GRU cell with the reset gate before the recurrent matmul (Keras'
# reset_after=False), e.g. model.py's KerasGRUResetBefore from `compare.py port`.
_RESET_BEFORE_PARAMS = ({"weight_ih", "weight_hh"}, {"weight_ih", "weight_hh", "bias"})


def _rnn(m: nn.Module) -> bool:
    """torch's fused recurrent modules and their subclasses (model.py's KerasLSTM, ...)."""
    return isinstance(m, tuple(_RNN_KINDS))


def _reset_before(m: nn.Module) -> bool:
    params = dict(m.named_parameters(recurse=False))
    if set(params) not in _RESET_BEFORE_PARAMS or params["weight_ih"].dim() != 2:
        return False
    rows = params["weight_ih"].shape[0]
    return rows % 3 == 0 and params["weight_hh"].shape == (rows, rows // 3) and \
        ("bias" not in params or tuple(params["bias"].shape) == (rows,))


def _hf_conv1d(m: nn.Module) -> bool:
    """Hugging Face's `Conv1D` (transformers/pytorch_utils.py, GPT-2's c_attn / c_fc / c_proj):
    a Linear whose weight is stored (in, out) and applied as x @ W + b."""
    w = getattr(m, "weight", None)
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and isinstance(w, nn.Parameter) and w.dim() == 2 \
        and w.shape[1] == m.nf


def _kind(m: nn.Module) -> str:
    if isinstance(m, nn.Linear) or _hf_conv1d(m):
        return "linear"
    if _rnn(m):
        return next(kind for cls, kind in _RNN_KINDS.items() if isinstance(m, cls))
    if _reset_before(m):
        return "rnn_gru_reset_before"
    if isinstance(m, nn.Embedding):
        return "embedding"
    if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
        d = len(m.kernel_size)
        return f"{'depthwise' if m.groups > 1 and m.groups == m.in_channels else 'conv'}{d}d"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "batch_norm"
    if isinstance(m, nn.LayerNorm):
        return "layer_norm"
    if any(True for _ in m.parameters(recurse=False)):
        return "params"  # uses its own parameters directly (shared/verify_idioms.py)
    return f"other ({type(m).__name__})"


def _attrs(m: nn.Module) -> dict:
    a = {}
    for key in ("stride", "dilation", "groups", "eps", "momentum", "batch_first", "num_layers", "bidirectional",
                "num_heads", "embed_dim"):
        if hasattr(m, key):
            v = getattr(m, key)
            a[key] = list(v) if isinstance(v, tuple) else v
    if isinstance(m, nn.modules.conv._ConvNd):
        a["padding"] = m.padding if isinstance(m.padding, str) else list(m.padding)
        a["padding_mode"] = m.padding_mode
    if _rnn(m) and getattr(m, "bias_hh_l0", None) is not None:
        a["bias_hh_trainable"] = bool(m.bias_hh_l0.requires_grad)
    return a


def _own_tensors(m: nn.Module) -> dict:
    t = {n: p for n, p in m.named_parameters(recurse=False)}
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
        t.update(running_mean=m.running_mean, running_var=m.running_var)
    return t


_RNN_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _parts(path: str, m: nn.Module) -> list:
    """The records a module owning parameters stands for, in the order it computes them:
    [(record path, {Keras-side name: (owner module, tensor name, rows or None)})].

    One record per module, except where one torch module does the work of
    several Keras layers: an nn.LSTM/GRU/RNN with num_layers > 1 or
    bidirectional=True is one record per layer and direction, in torch's
    order (`lstm[l0]`, `lstm[l0_reverse]`, `lstm[l1]`, ...; Keras'
    Bidirectional reads as its forward then its backward layer, a stack of
    RNN layers as num_layers), each under the single-layer names
    (`weight_ih_l0`, ...) of the neutral graph; an nn.MultiheadAttention is
    Keras' four projections (_attention_parts), a fused qkv nn.Linear three."""
    if isinstance(m, nn.MultiheadAttention):
        return _attention_parts(path, m)
    if (isinstance(m, nn.Linear) or _hf_conv1d(m)) and getattr(m, FUSED, False):
        return fused_parts(path, m)
    if _rnn(m) and (m.num_layers > 1 or m.bidirectional):
        out = []
        for layer in range(m.num_layers):
            for sfx in ("", "_reverse") if m.bidirectional else ("",):
                names = {f"{w}_l0": (m, f"{w}_l{layer}{sfx}", None) for w in _RNN_WEIGHTS
                         if getattr(m, f"{w}_l{layer}{sfx}", None) is not None}
                out.append((f"{path}[l{layer}{sfx}]", names))
        return out
    if _hf_conv1d(m):  # weight (in, out): seen as the (out, in) of nn.Linear
        return [(path, {n: (m, n, None, n == "weight") for n in _own_tensors(m)})]
    return [(path, {n: (m, n, None) for n in _own_tensors(m)})]


def _views(model: nn.Module) -> dict:
    """{record path: {name: (owner, tensor name, rows)}} for every module owning parameters
    (a tied parameter under its first owner only: torch_impl/verify_params.py)."""
    skip, tied = _absorbed(model), tied_params(model)
    out = {}
    for path, m in model.named_modules():
        if _own_tensors(m) and path not in skip:
            for rp, names in _parts(path, m):
                names = {n: v for n, v in names.items() if (path, n) not in tied}
                if names:
                    out[rp] = names
    return out


def _tensor(view) -> torch.Tensor:
    owner, name, rows = view[:3]
    t = getattr(owner, name)
    t = t.T if view[3:] == (True,) else t  # HF Conv1D: a transposed view, written through in place
    return t if rows is None else t[rows[0]:rows[1]]


def _tensor_owner_attr(view):
    return getattr(view[0], view[1])


def _grad(view):
    owner, name, rows = view[:3]
    g = getattr(owner, name).grad
    g = g.T if g is not None and view[3:] == (True,) else g
    return None if g is None else (g if rows is None else g[rows[0]:rows[1]])


def _split_record(rec: TorchRecord, m: nn.Module) -> list:
    """rec as the records of _parts: a split module's parts share its attributes and
    call count; only the last one's output is the module's (whole_output). The
    parts of an nn.MultiheadAttention are linear projections."""
    parts = _parts(rec.path, m)
    if len(parts) == 1 and not isinstance(m, nn.MultiheadAttention):
        return [rec]
    kind = "linear" if isinstance(m, nn.MultiheadAttention) else rec.kind
    out = []
    for i, (rp, names) in enumerate(parts):
        shapes = {n: tuple(_tensor(v).shape) for n, v in names.items()}
        out.append(TorchRecord(rp, rec.cls, kind, shapes, dict(rec.attrs), rec.in_shape, rec.out_shape,
                               calls=rec.calls, module=rec.path,
                               whole_output=i == len(parts) - 1 and not getattr(m, FUSED, False)))
    return out


class TorchSide:
    """The user's torch module behind numpy (inputs channels first).

    Args:
        module: the user's module (never modified except by set_weights and
            the FUSED marker on a fused qkv Linear; training runs on a copy).
        dtype: "float32" or "float64" (the module is converted to it).
    """

    name = "torch"

    def __init__(self, module: nn.Module, dtype: str = "float32"):
        self.module = module.to(DTYPES[dtype])
        self.dtype = dtype
        self.dropout_calls: list = []
        self.tied: list = []  # notes: parameters owned twice (torch_impl/verify_params.py)
        self.unused: dict = {}  # {module path: note}: parameters that never reach the compared outputs
        self.ops_after: dict = {}  # from trace: module path ("" = the input) -> functional calls after it
        self.binding = Binding(module, ["x"], ["output"])

    def bind(self, input_names: list, output_names: list) -> "TorchSide":
        """Call the module with the Keras model's inputs by name; pick its outputs (torch_impl/verify_io.py)."""
        self.binding = Binding(self.module, input_names, output_names)
        return self

    def _clone(self, dtype: str) -> "TorchSide":
        side = TorchSide(copy.deepcopy(self.module), dtype)
        side.binding = self.binding
        return side

    def with_dtype(self, dtype: str) -> "TorchSide":
        return self if dtype == self.dtype else self._clone(dtype)

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

    def weights(self) -> dict:
        """{record path: {name: array}} (split modules by part, see _parts)."""
        return {rp: {n: _tensor(v).detach().cpu().numpy().copy() for n, v in names.items()}
                for rp, names in _views(self.module).items()}

    def set_weights(self, tensors: dict) -> None:
        views = _views(self.module)
        with torch.no_grad():
            for path, ws in tensors.items():
                own = views[path]
                for name, a in ws.items():
                    if name in own:
                        t = _tensor(own[name])
                        t.copy_(torch.as_tensor(np.asarray(a)).to(t.dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
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
        the padded steps (torch_impl/packed.py); h_n is already each row's last
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
                self.forward(x)
        finally:
            for h in handles:
                h.remove()
        return out

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, spec: dict, mask=None) -> tuple:
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
        side = self._clone(self.dtype)
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
        return losses, side.weights()

    def stock_training(self, batches: list, loss: dict, optimizer: dict):
        """`train` with torch's dense Embedding gradients where Keras' sparse
        update differs from it (Adam/AdamW, an Embedding lookup repeating an id
        in some batch); None elsewhere (identical updates)."""
        if optimizer["class"].lower() not in SLICE_SENSITIVE:
            return None
        mode = KerasEmbeddingGrads()
        with mode:
            for x, *_ in batches:
                self.forward(x)
        return self.train(batches, loss, optimizer, keras_slices=False) if mode.repeated else None


def make_optimizer(model: nn.Module, spec: dict) -> torch.optim.Optimizer:
    """The torch optimizer with Keras' semantics for a Keras optimizer spec."""
    lr, wd = spec["learning_rate"], spec["weight_decay"]
    if spec["class"] == "SGD":
        return SGDKeras(model.parameters(), lr=lr, momentum=spec["momentum"], decoupled_weight_decay=wd)
    return AdamKeras(model.parameters(), lr=lr, betas=(spec["beta_1"], spec["beta_2"]),
                     keras_epsilon=spec["epsilon"], weight_decay=wd)
