"""Hand-written PyTorch ports of tests/verify_models/keras_masked.py, as real
ports of masked Keras text models are written: lengths from the ids,
pack_padded_sequence(enforce_sorted=False), the RNN on the PackedSequence,
pad_packed_sequence, a masked mean by hand. One correct port per model and
one subclass per planted bug:

- `*NoPacking`: the padded steps run through the RNN (its final state is
  the state after the padding, and a backward direction starts in it);
- `PooledPlainMean`: the mean over every step instead of the masked one;
- `StackedLengthsOffByOne`: lengths one short (the index of the last token
  taken for the count).
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

VOCAB, DIM, HIDDEN, CLASSES = 11, 5, 6, 3


def _one_bias(rnn: nn.Module) -> None:
    """Keras' LSTM has one bias: torch's recurrent one stays zero and frozen."""
    for name, p in rnn.named_parameters():
        if name.startswith("bias_hh"):
            with torch.no_grad():
                p.zero_()
            p.requires_grad_(False)


class _Packed(nn.Module):
    pack = True

    def lengths(self, ids):
        return (ids != 0).sum(1)

    def run(self, rnn, x, ids):
        """rnn on x, packed by the lengths of ids (or on the padded x with pack = False)."""
        if not self.pack:
            return rnn(x)
        return rnn(pack_padded_sequence(x, self.lengths(ids).cpu(), batch_first=True, enforce_sorted=False))


class StackedPort(_Packed):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.lstm1 = nn.LSTM(DIM, HIDDEN, batch_first=True)
        self.lstm2 = nn.LSTM(HIDDEN, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)
        _one_bias(self.lstm1)
        _one_bias(self.lstm2)

    def forward(self, ids):
        out, _ = self.run(self.lstm1, self.emb(ids), ids)  # a PackedSequence when packed
        _, (h, _) = self.lstm2(out)  # the packed sequence goes on as it is
        return self.head(h[-1])


class StackedFused(_Packed):
    """Both Keras LSTMs as one nn.LSTM(num_layers=2) on the packed sequence."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.lstm = nn.LSTM(DIM, HIDDEN, num_layers=2, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)
        _one_bias(self.lstm)

    def forward(self, ids):
        _, (h, _) = self.run(self.lstm, self.emb(ids), ids)
        return self.head(h[-1])


class StackedNoPacking(StackedPort):
    pack = False


class StackedLengthsOffByOne(StackedPort):
    def lengths(self, ids):
        return ((ids != 0).sum(1) - 1).clamp(min=1)


class BiGruPort(_Packed):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.gru = nn.GRU(DIM, HIDDEN, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * HIDDEN, CLASSES)

    def forward(self, ids):
        _, h = self.run(self.gru, self.emb(ids), ids)
        return self.head(torch.cat([h[-2], h[-1]], dim=-1))  # forward, then backward: Keras' concat


class BiGruNoPacking(BiGruPort):
    pack = False


class PooledPort(_Packed):
    plain_mean = False

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, DIM)
        self.lstm = nn.LSTM(DIM, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, CLASSES)
        _one_bias(self.lstm)

    def forward(self, ids):
        out, _ = self.run(self.lstm, self.emb(ids), ids)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, T, H), zeros where padded
        if self.plain_mean:
            return self.head(out.mean(1))
        keep = (ids != 0).unsqueeze(-1).to(out.dtype)
        return self.head((out * keep).sum(1) / keep.sum(1))


class PooledPlainMean(PooledPort):
    plain_mean = True
