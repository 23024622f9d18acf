"""Which of verify's attribute notes a measurement supports (issue 22).

shared/flows/verify.py `attribute_notes` compares hyperparameters a pair declares
(`nn.BatchNorm2d.momentum`, `eps`, `batch_first`, ...). A declared attribute is
no evidence: a BatchNorm subclass that implements Keras' momentum in its own
forward never reads `nn.BatchNorm2d.momentum`, a port that transposes its
input works with `batch_first=False`. So a note becomes a diagnosis only where
a check of its own pair failed, in the part of the run the attribute acts on:

- training-only attributes (BatchNorm momentum, a second trained LSTM bias):
  a failing training row of that pair (its weights or moving statistics
  after training);
- every other attribute (epsilon, stride, padding, batch_first, heads): a
  failing forward row of the pair (`output of LAYER <-> ...`), or the pair
  being the first differing layer of the localisation.

The others are kept as notes, saying the attribute differs and the
measurements show it does not matter here. Framework-free.
"""

from __future__ import annotations

__all__ = ["TRAINING_ONLY", "supported_notes"]

# Substrings of shared/flows/verify.py attribute_notes that describe attributes acting
# in training only (BatchNorm's moving-average update, LSTM's second bias).
TRAINING_ONLY = ("momentum", "trains two")


def _failed(checks) -> list:
    return [c for c in checks if not c.passed and not c.info]


def _training_failed(bad, keras: str) -> bool:
    return any(c.detail.get("pair") == keras or c.check.startswith(f"{keras}.") and "after training" in c.check
               for c in bad)


def _forward_failed(bad, keras: str, layer: str, where) -> bool:
    if where is not None and where.get("first_differing") == keras:
        return True
    return any(c.check.startswith((f"output of {layer} <->", f"output of {keras} <->")) for c in bad)


def supported_notes(suspects: list, checks: list, where) -> tuple:
    """(diagnoses, notes): suspects is [(Keras record name, Keras layer, note)]
    from attribute_notes; a note is a diagnosis where a failing check of its
    pair supports it (module docstring), else a note that it did not matter."""
    bad = _failed(checks)
    diagnoses, notes = [], []
    for keras, layer, note in suspects:
        training = any(s in note for s in TRAINING_ONLY)
        ok = _training_failed(bad, keras) if training else _forward_failed(bad, keras, layer, where)
        if ok:
            diagnoses.append(note)
        else:
            notes.append(f"{note} [not a diagnosis: no {'training' if training else 'forward'} check of {keras} "
                         "failed, so the module does not use this attribute as declared or it does not matter here]")
    return diagnoses, notes
