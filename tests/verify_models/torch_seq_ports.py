"""Hand-written PyTorch ports of keras_seq.build: the correct one freezes
torch's second LSTM bias at zero (Keras has one bias); the classic port trains it."""

import torch
from torch import nn


class SeqPort(nn.Module):
    freeze_bias_hh = True

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.lstm = nn.LSTM(6, 8, batch_first=True)
        self.head = nn.Linear(8, 3)
        if self.freeze_bias_hh:
            with torch.no_grad():
                self.lstm.bias_hh_l0.zero_()
            self.lstm.bias_hh_l0.requires_grad_(False)

    def forward(self, ids):
        out, _ = self.lstm(self.emb(ids))
        return self.head(out[:, -1])


class SeqTwoBiases(SeqPort):
    freeze_bias_hh = False
