"""Sequence benchmark (issue 13): time to a port verdict for a 2-layer
bidirectional LSTM text classifier and a 2-block Transformer encoder, the
generated model.py's forward speed against the same models written with stock
torch modules, and the time to a `verify` verdict for those stock modules as
hand-written ports of the Keras models. Prints figures; asserts nothing.

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
        for name, p in self.lstm.named_parameters():  # Keras' LSTM has one bias
            if name.startswith("bias_hh"):
                nn.init.zeros_(p)
                p.requires_grad_(False)

    def forward(self, ids):
        _, (h, _) = self.lstm(self.emb(ids))
        return torch.softmax(self.head(torch.cat([h[-2], h[-1]], dim=-1)), dim=-1)


class PackedBiLSTM(StockBiLSTM):
    """StockBiLSTM as a careful hand-written port of the masked Keras model:
    right-padded ids are packed, so the padding is skipped as Keras' mask does."""

    def forward(self, ids):
        lengths = (ids != 0).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.emb(ids), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
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
    # verify: the stock modules as hand-written ports. The encoder without mask_zero:
    # Keras' MultiHeadAttention masks padded queries and keys in the first block
    # and drops the mask after it, which nn.TransformerEncoder cannot express.
    ports = {
        "2-layer BiLSTM classifier": lambda: (lstm_classifier(2, VOCAB, STEPS, 64, 64, 3, BATCH)[0], PackedBiLSTM()),
        "2-block Transformer encoder": lambda: (transformer_encoder(2, VOCAB, STEPS, 64, 4, 16, 128, 3, BATCH,
                                                                    mask_zero=False)[0], StockEncoder()),
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
        keras_model, port = ports[name]()
        t0 = time.perf_counter()
        try:
            ver = compare.verify_models(keras_model, port)
            failed = [c.check for c in ver.checks if not (c.passed or c.info)]
            print(f"  verify (stock torch module as the hand-written port): {time.perf_counter() - t0:.1f} s, "
                  f"{len(ver.checks)} checks, {'passed' if ver.passed else f'FAILED: {failed[:3]}'}")
        except Exception as e:  # a model verify cannot match: say so, keep the figures above
            print(f"  verify: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
