"""`compare.py verify`: matching the idioms of Hugging Face style ports.

shared/flows/verify.py pairs Keras layers with torch modules of the same kind. Ports
written as transformers writes them add:

- **Parameters used directly.** A module that owns parameters and uses them
  itself (ViTEmbeddings' cls_token and position_embeddings, a block's layer
  scale gamma, an embeddings module holding its table and its LayerNorm's
  scale and shift for F.layer_norm) is one torch record of kind "params". Its
  parameters absorb Keras records in execution order, each Keras weight going
  to a parameter of the same shape (leading axes of 1 aside: HF's (1, 17, H)
  position table is Keras' (17, H) Embedding); one such module may take
  several Keras layers, and one Keras layer with several weights (a
  LayerNormalization's gamma and beta) goes to one module. The pairs have
  transform "params" ({"names": {Keras weight: torch parameter}, "shapes":
  {Keras weight: torch shape}}) and no output of their own to compare.
- **A Keras variable read by ops** (keras-hub's ReversibleEmbedding and
  PositionEmbedding, traced: keras_impl/read/trace.py) is a record of kind
  "variable"; an nn.Embedding of its shape takes it.
- **Broadcast outputs.** HF computes a position table once, (1, T, H); Keras
  layers often broadcast it to the batch, (B, T, H). Such pair outputs are
  compared after broadcasting (every row must agree with the one row).

Tied parameters (GPT-2's lm_head.weight is wte.weight) and modules whose
parameters never reach the compared outputs (BERT's pooler when the Keras
model has none) are the torch side's (torch_impl/verify/params.py).
"""

from __future__ import annotations

import numpy as np

__all__ = ["KIND_FITS", "PARAMS", "fits", "match_params", "torch_name", "to_torch_shape", "broadcast_outputs"]

PARAMS = "params"  # torch record kind: a module using its own parameters directly
# (Keras kind, torch kind) pairs that take the same weights though named differently.
KIND_FITS = {("variable", "embedding")}


def _squeezed(shape) -> tuple:
    shape = tuple(int(s) for s in shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def fits(keras_shape, torch_shape, exact: bool) -> bool:
    if exact:
        return tuple(keras_shape) == tuple(torch_shape)
    return _squeezed(keras_shape) == _squeezed(torch_shape)


def _absorb(k, free: dict, exact: bool) -> dict | None:
    """{Keras weight: torch parameter} taking every weight of k into free parameters, or None."""
    names, left = {}, dict(free)
    for w, shape in k.weights.items():
        hit = next((n for n in left if fits(shape, left[n], exact)), None)
        if hit is None:
            return None
        names[w] = hit
        left.pop(hit)
    return names


def match_params(keras: list, torch: list) -> tuple:
    """(pairs, Keras records left, torch records left): every "params" torch
    record paired with the Keras records its parameters take (exact shapes
    first, then shapes equal but for leading axes of 1).

    Raises:
        MatchError naming a module with a parameter no Keras weight is left for.
    """
    from shared.flows.verify import MatchError, Pair

    pairs, used = [], set()
    for t in [t for t in torch if t.kind == PARAMS]:
        free = dict(t.params)
        for exact in (True, False):
            for k in keras:
                if k.name in used or not free or k.attrs.get("role"):
                    continue
                names = _absorb(k, free, exact)
                if names is None:
                    continue
                used.add(k.name)
                for n in names.values():
                    free.pop(n)
                shapes = {w: list(t.params[n]) for w, n in names.items()}
                pairs.append(Pair(k.name, t.path, k.kind, k.cls, t.cls, "params", {"names": names, "shapes": shapes},
                                  f"Keras {', '.join(names)} -> torch '{t.path}' parameters {', '.join(names.values())} (used directly)"))
        if free:
            raise MatchError(f"torch {t.cls} '{t.path}' uses its own parameters {sorted(free)} "
                             f"{[tuple(s) for s in free.values()]} directly, and no Keras weight of that shape is left")
    return pairs, [k for k in keras if k.name not in used], [t for t in torch if t.kind != PARAMS]


def torch_name(pair, name: str) -> str:
    """The torch parameter a Keras weight of `pair` goes to."""
    return pair.flatten["names"].get(name, name) if pair.transform == PARAMS else name


def to_torch_shape(pair, name: str, a: np.ndarray) -> np.ndarray:
    return np.reshape(a, pair.flatten["shapes"][name]) if pair.transform == PARAMS else a


def broadcast_outputs(k_out: np.ndarray, t_out: np.ndarray) -> tuple:
    """(k_out, t_out, note): outputs of the same rank whose shapes differ only
    where one has 1 (HF's (1, T, H) position table, Keras' (B, T, H)),
    broadcast to the common shape; as they are otherwise."""
    if k_out.shape == t_out.shape or k_out.ndim != t_out.ndim:
        return k_out, t_out, ""
    if any(a != b and 1 not in (a, b) for a, b in zip(k_out.shape, t_out.shape)):
        return k_out, t_out, ""
    shape = np.broadcast_shapes(k_out.shape, t_out.shape)
    note = f"Keras {k_out.shape}, torch {t_out.shape}: compared broadcast to {shape}"
    return np.broadcast_to(k_out, shape), np.broadcast_to(t_out, shape), note
