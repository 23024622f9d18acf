"""PyTorch side of `compare.py verify`: the helpers of torch_impl.side.TorchSide's
verify methods (the user's hand-written module, traced).

Twin of keras_impl/verify/__init__.py. `TorchSide.trace` (torch_impl/side.py) runs one forward pass in eval
mode with forward hooks on every module and a TorchFunctionMode that sees
every torch function call, and returns the modules that own parameters in the
order they first ran, with their traced input/output shapes (TorchRecord of
shared/flows/verify.py). The function mode (torch_impl/verify/trace.py) records what hooks cannot see:

- the chain of reshapes/permutes that made a Linear's input out of a feature
  map (`x.view(x.size(0), -1)`, `torch.flatten(x, 1)`, `nn.Flatten`,
  `x.permute(0, 2, 3, 1).reshape(...)`, ...). The chain is replayed on an
  index tensor of the feature map's shape, which gives the exact column order
  the Linear reads (shared/flows/verify.py turns it into the weight permutation);
- dropout called with training=True while the model is in eval mode (the
  classic `F.dropout(x, 0.5)`, whose `training` defaults to True);
- the padded length of every `pack_padded_sequence`: an RNN on a
  PackedSequence (a masked Keras model's port) is recorded with, and
  compared through, its output padded back to that length
  (torch_impl/verify/packed.py).

For the training checks the same mode turns every dropout function into the
identity (nn.Dropout and F.dropout alike), as Keras' Dropout layers get
rate 0 on the other side.

Losses and optimizers follow the Keras compile config (keras_impl/verify/__init__.py
`loss_spec` / `optimizer_spec`): the Keras loss formulas and reductions, and
torch_impl/train.py's AdamKeras / SGDKeras (Keras' epsilon placement,
decoupled weight decay, and Keras' update of an Embedding's sparse gradient:
the training copy's lookups make one, KerasEmbeddingGrads).
"""

from __future__ import annotations

import torch
from torch import nn

from shared.data.config import TrainConfig
from shared.core.spec import build_from_spec
from shared.flows.verify import TorchRecord
from torch_impl import train
from torch_impl.verify.attention import FUSED, absorbed as _absorbed, attention_parts as _attention_parts, fused_parts
from torch_impl.verify.loss import KERAS_EPSILON, torch_loss  # noqa: F401  (re-exported)
from torch_impl.verify.params import tied_params

__all__ = ["load_model", "torch_loss", "make_optimizer", "KERAS_EPSILON"]

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
        return "params"  # uses its own parameters directly (shared/flows/verify_idioms.py)
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
    (a tied parameter under its first owner only: torch_impl/verify/params.py)."""
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


def make_optimizer(model: nn.Module, spec: dict) -> torch.optim.Optimizer:
    """The torch optimizer with Keras' semantics for a Keras optimizer spec
    (keras_impl/verify/__init__.py optimizer_spec): torch_impl/train.py's factory, the
    one the default run and `port` use (SGDKeras, or AdamKeras for Adam and AdamW)."""
    return train.make_optimizer(model, TrainConfig(
        "sgd" if spec["class"] == "SGD" else "adam", spec["learning_rate"], momentum=spec["momentum"],
        beta_1=spec["beta_1"], beta_2=spec["beta_2"], epsilon=spec["epsilon"], weight_decay=spec["weight_decay"]))
