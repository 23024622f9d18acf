"""Sequence benchmark (issue 13): time to a port verdict for a 2-layer
bidirectional LSTM text classifier and a 2-block Transformer encoder, and the
generated model.py's forward speed against the same models written with stock
torch modules. Prints figures; asserts nothing.

    OMP_NUM_THREADS=1 python scripts/bench_sequences.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import compare  # noqa: E402
from seq_models import lstm_classifier, padded_ids, right_padded_ids, transformer_encoder  # noqa: E402

VOCAB, STEPS, BATCH = 1000, 64, 32


class StockBiLSTM(nn.Module):
    def __init__(self, emb=64, units=64, classes=3):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, emb)
        self.lstm = nn.LSTM(emb, units, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * units, classes)

    def forward(self, ids):
        _, (h, _) = self.lstm(self.emb(ids))
        return torch.softmax(self.head(torch.cat([h[-2], h[-1]], dim=-1)), dim=-1)


class StockEncoder(nn.Module):
    def __init__(self, d=64, heads=4, ffn=128, classes=3):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d)
        self.proj = nn.Linear(d, d)
        layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.0, batch_first=True, layer_norm_eps=1e-6)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        return torch.softmax(self.head(self.blocks(self.proj(self.tok(ids))).mean(1)), dim=-1)


def timed(fn, reps=20):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main():
    torch.set_num_threads(1)
    cases = {
        "2-layer BiLSTM classifier": (lstm_classifier(2, VOCAB, STEPS, 64, 64, 3, BATCH), StockBiLSTM()),
        "2-block Transformer encoder": (transformer_encoder(2, VOCAB, STEPS, 64, 4, 16, 128, 3, BATCH), StockEncoder()),
    }
    print(f"batch {BATCH}, {STEPS} steps, vocab {VOCAB}, 1 thread")
    for name, ((model, data), stock) in cases.items():
        t0 = time.perf_counter()
        res = compare.port_checks(model, data)
        verdict = time.perf_counter() - t0
        failed = sum(not c.passed for c in res.checks)
        ids = torch.as_tensor(padded_ids(BATCH, STEPS, VOCAB))
        unpadded = ids.clamp(min=1)
        gen = res.module.eval()
        stock.eval()
        with torch.no_grad():
            t_gen = timed(lambda: gen(unpadded))
            t_gen_mask = timed(lambda: gen(ids), reps=5)
            right = torch.as_tensor(right_padded_ids(BATCH, STEPS, VOCAB))
            t_gen_right = timed(lambda: gen(right), reps=5)
            t_stock = timed(lambda: stock(unpadded))
        print(f"{name}: verdict {verdict:.1f} s ({len(res.checks)} checks, {failed} failed); forward "
              f"generated {t_gen * 1e3:.2f} ms, stock {t_stock * 1e3:.2f} ms (ratio {t_gen / t_stock:.2f}); "
              f"generated with padded ids: holes/left padding (step loop) {t_gen_mask * 1e3:.2f} ms, "
              f"right padding (packed, fused) {t_gen_right * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
