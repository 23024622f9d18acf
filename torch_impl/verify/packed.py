"""Packed sequences as `compare.py verify` meets them in a user's torch port.

A port of a Keras model with `Embedding(mask_zero=True)` skips the padded
steps the torch way: `pack_padded_sequence(x, lengths, batch_first=True,
enforce_sorted=False)`, the RNN on the PackedSequence, `pad_packed_sequence`
after it. So an RNN module's input and output are PackedSequences there, and
a PackedSequence (torch/nn/utils/rnn.py) is a namedtuple (data, batch_sizes,
sorted_indices, unsorted_indices): code that unwraps an RNN's `(output,
h_n)` by "is it a tuple" would take the sequence itself apart. These helpers
see it first.

The padded form is batch first whatever the module's batch_first (Keras'
sequences are (batch, time, features)), in the caller's batch order
(pad_packed_sequence undoes enforce_sorted=False's sort), zeros at the
padded steps, and as long as the padded input that was packed (`steps`, the
time length of the last `_pack_padded_sequence` call, which torch_impl/verify/__init__.py's
function mode records), so that it lines up with the Keras tensor step by step.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

__all__ = ["is_packed", "first_output", "shape_of", "padded", "pack_steps"]


def is_packed(v) -> bool:
    return isinstance(v, PackedSequence)


def first_output(out):
    """A module's output tensor (or PackedSequence): an RNN's `output` of (output, h_n)."""
    return out[0] if isinstance(out, tuple) and not is_packed(out) else out


def shape_of(v, steps: int | None = None) -> tuple:
    """A tensor's shape; a PackedSequence's padded (batch, steps, features) one."""
    if is_packed(v):
        return (int(v.batch_sizes[0]), max(steps or 0, len(v.batch_sizes)), *v.data.shape[1:])
    return tuple(v.shape) if isinstance(v, torch.Tensor) else ()


def padded(v, steps: int | None = None) -> torch.Tensor:
    """A PackedSequence as (batch, steps, features) with zeros at the padded steps; a tensor as it is."""
    if not is_packed(v):
        return v
    return pad_packed_sequence(v, batch_first=True, total_length=max(steps or 0, len(v.batch_sizes)))[0]


def pack_steps(args: tuple) -> int | None:
    """The padded time length of a `_pack_padded_sequence(input, lengths, batch_first)` call."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        return None
    batch_first = bool(args[2]) if len(args) > 2 else False
    return int(x.shape[1] if batch_first else x.shape[0])
