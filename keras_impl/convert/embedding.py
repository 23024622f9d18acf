"""Embedding (without a mask: `mask_zero=True` changes what later layers do,
which a per-layer port cannot show; it is refused here).

Keras casts non-integer ids to int32 and gathers rows (embedding.py,
Embedding.call); nn.Embedding gathers the same rows from weight (input_dim,
output_dim), the Keras `embeddings` variable as it is. The graph records the
vocabulary size in meta["input_high"] for the model input that feeds it, so
the check draws ids the table has.
"""

from __future__ import annotations

from keras_impl.convert import keras_converter, unsupported

__all__ = []


@keras_converter("Embedding")
def embedding(ctx, layer, call):
    if layer.mask_zero:
        raise unsupported(layer, "mask_zero=True")
    if getattr(layer, "lora_enabled", False):
        raise unsupported(layer, "LoRA")
    x = ctx.tensor(call.inputs[0], "as_is")
    vocab, dim = (int(s) for s in layer.embeddings.shape)
    if x in ctx.graph.inputs:
        highs = ctx.graph.meta.setdefault("input_high", {})
        highs[x] = min(highs.get(x, vocab), vocab)
    ctx.emit("embedding", [x], call.outputs[0], layout="as_is",
             attrs={"num_embeddings": vocab, "embedding_dim": dim}, weights={"weight": (layer.embeddings, [])})
