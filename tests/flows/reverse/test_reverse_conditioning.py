"""Float64 training rows of the reverse port on ill-conditioned models
(shared/flows/port_reverse.py, CONDITIONING_FACTOR): a row that misses the fixed 1e-10
is judged against how far torch's own run moves when its start is perturbed by
the measured float64 forward difference. An untrained Inception-V3 at 75x75
(logits of 1e8) passes that way (tests/flows/reverse/test_reverse_timm.py, slow: 234 rows
re-judged, worst margin 0.12; 235 rows failed before); a training-only bug in
a well-conditioned model is still caught."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow
pytest.importorskip("tensorflow")

import compare  # noqa: E402
from shared.flows import port_reverse as pr  # noqa: E402
from shared.core.spill import spill  # noqa: E402
from torch import nn  # noqa: E402



class Side:
    def __init__(self, name):
        self.name = name


class G:
    name = "m"


def test_a_row_within_four_times_torchs_own_spread_passes_and_says_why():
    tw = {"w": np.array([1.0, 2.0]), "b": np.array([0.5])}
    kw = {"w": tw["w"] + 5e-9, "b": tw["b"] + 1e-9}
    pw = {"w": tw["w"] - 2e-9, "b": tw["b"]}  # torch's own run from the perturbed start
    calls = []

    def sensitivity():
        calls.append(1)
        return [1.0], spill(dict(pw))

    rows = pr._training_rows(Side("keras"), Side("torch"), G(), ([1.0], spill(dict(tw))), ([1.0], spill(dict(kw))),
                             sensitivity, 3e-15)
    curve, w, b = rows
    assert curve.status == "pass" and curve.tolerance_from.startswith("fixed")
    assert w.status == "pass" and w.tolerance == pytest.approx(pr.CONDITIONING_FACTOR * 2e-9 + 2e-10)
    assert "ill-conditioned" in w.tolerance_from and "3e-15" in w.tolerance_from
    assert b.status == "fail" and b.max_abs_diff == pytest.approx(1e-9)  # torch did not move there: no room
    assert calls == [1]  # the perturbed run: once, and only because a row missed the fixed bound
    assert pr._training_rows(Side("keras"), Side("torch"), G(), ([1.0], spill(dict(tw))), ([1.0], spill(dict(tw))),
                             sensitivity, 3e-15)[1].status == "pass" and calls == [1]


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn, self.fc = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))


def test_a_training_only_bug_in_a_well_conditioned_model_is_still_caught(monkeypatch):
    """Keras' trained weights moved by 1e-8 (a bug that shows only in training):
    the conditioning run measures torch's own spread (~1e-15) and leaves the rows failing."""
    from keras_impl.side import KerasSide

    original = KerasSide.train_steps

    def buggy(*args, **kw):
        losses, pairs = original(*args, **kw)
        return losses, ((name, w + 1e-8) for name, w in pairs)

    monkeypatch.setattr(KerasSide, "train_steps", buggy)
    res = compare.reverse_port_checks(Small(), (3, 6, 6))
    failed = [c for c in res.checks if not c.passed and not c.info]
    assert failed and all(c.check.startswith("trained ") and c.dtype == "float64" for c in failed), \
        [(c.check, c.max_abs_diff) for c in failed]
    assert all(c.max_abs_diff == pytest.approx(1e-8, rel=1e-3) for c in failed)
    rejudged = [c for c in failed if "ill-conditioned" in c.tolerance_from]  # "fixed ...; also beyond ill-conditioned ..."
    assert rejudged and max(c.tolerance for c in rejudged) < 1e-9  # torch's own spread gave no room
