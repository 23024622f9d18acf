"""shared/flows/verify.py on synthetic records: matching, the flatten column order,
the mapping file and the localisation text. No framework needed."""

from __future__ import annotations

import numpy as np
import pytest

from shared.graph.layout import flatten_dense_kernel_to_weight
from shared.flows.verify import (KerasRecord, Mapping, MatchError, TorchRecord, check_mapping, flatten_columns, localise,
                           match, weights_to_torch)


def dense(name, out, inp, bias=True, flat=None):
    w = {"weight": (out, inp), **({"bias": (out,)} if bias else {})}
    return KerasRecord(name, name, "Dense", "linear", w, flatten_from=flat)


def linear(path, out, inp, bias=True, flatten=None):
    p = {"weight": (out, inp), **({"bias": (out,)} if bias else {})}
    return TorchRecord(path, "Linear", "linear", p, flatten=flatten)


def test_in_order_match_and_messages():
    ks = [dense("a", 4, 3), dense("b", 2, 4)]
    m = match(ks, [linear("0", 4, 3), linear("1", 2, 4)])
    assert [(p.keras, p.torch) for p in m.pairs] == [("a", "0"), ("b", "1")]
    with pytest.raises(MatchError, match=r"^b: Keras Dense has a bias, torch Linear '1' has none$"):
        match(ks, [linear("0", 4, 3), linear("1", 2, 4, bias=False)])
    with pytest.raises(MatchError, match=r"^b: Keras Dense weight is \(2, 4\) in torch layout, torch Linear '1' has \(5, 4\)$"):
        match(ks, [linear("0", 4, 3), linear("1", 5, 4)])
    with pytest.raises(MatchError, match=r"torch Linear '2' has parameters \['bias', 'weight'\] but no Keras layer is left"):
        match(ks, [linear("0", 4, 3), linear("1", 2, 4), linear("2", 2, 2)])
    bn = TorchRecord("bn", "BatchNorm1d", "batch_norm", {"weight": (4,)})
    with pytest.raises(MatchError, match=r"^a: Keras Dense is a dense/linear, torch BatchNorm1d 'bn' is a batch normalisation$"):
        match(ks[:1], [bn])
    with pytest.raises(MatchError, match=r"^torch BatchNorm1d 'bn' has parameters \['weight'\] but no Keras layer is left"):
        match(ks, [bn, linear("0", 4, 3), linear("1", 2, 4)])  # the extra module is named


def test_out_of_order_unique_fit_and_ambiguity():
    ks = [dense("a", 4, 3), dense("b", 2, 4)]
    m = match(ks, [linear("x", 2, 4), linear("y", 4, 3)])  # torch ran them in another order
    assert [(p.keras, p.torch) for p in m.pairs] == [("a", "y"), ("b", "x")]
    ks = [dense("a", 4, 4), dense("b", 2, 4), dense("c", 4, 4)]
    with pytest.raises(MatchError, match=r"^a: .*2 later torch modules would fit \('y', 'z'\): ambiguous"):
        match(ks, [linear("x", 2, 4), linear("y", 4, 4), linear("z", 4, 4)])


def test_flatten_columns_equal_the_layout_rule():
    h, w, c, f = 3, 2, 4, 5
    kernel = np.random.default_rng(0).standard_normal((h * w * c, f))
    src = [c, h, w]
    grid = np.arange(c * h * w).reshape(src)
    pair = match([dense("fc", f, h * w * c, flat=(h, w, c))],
                 [linear("fc", f, h * w * c, flatten={"source_shape": src, "index": grid.ravel().tolist()})]).pairs[0]
    assert pair.transform == "flatten" and pair.flatten["torch_order"] == "chw"
    np.testing.assert_array_equal(weights_to_torch(pair, "weight", kernel.T), flatten_dense_kernel_to_weight(kernel, (h, w, c)))
    # a port that permutes to NHWC before flattening reads Keras' own order: plain transpose
    nhwc = np.transpose(grid, (1, 2, 0)).ravel().tolist()
    pair = match([dense("fc", f, h * w * c, flat=(h, w, c))],
                 [linear("fc", f, h * w * c, flatten={"source_shape": src, "index": nhwc})]).pairs[0]
    assert pair.flatten["torch_order"] == "hwc"
    np.testing.assert_array_equal(weights_to_torch(pair, "weight", kernel.T), kernel.T)
    # any other order: the explicit index, still exact
    odd = np.random.default_rng(1).permutation(c * h * w)
    pair = match([dense("fc", f, h * w * c, flat=(h, w, c))],
                 [linear("fc", f, h * w * c, flatten={"source_shape": src, "index": odd.tolist()})]).pairs[0]
    assert "torch_index" in pair.flatten
    c_, h_, w_ = np.unravel_index(odd, src)
    np.testing.assert_array_equal(flatten_columns(pair.flatten), h_ * w * c + w_ * c + c_)


def test_mapping_json_round_trip_and_checks():
    ks, ts = [dense("a", 4, 3), dense("b", 2, 4)], [linear("0", 4, 3), linear("1", 2, 4)]
    m = match(ks, ts)
    again = Mapping.from_json(m.to_json())
    assert again.to_json() == m.to_json()
    check_mapping(again, ks, ts)
    again.pairs[1].torch = "0"
    with pytest.raises(MatchError, match=r"mapping: b: Keras Dense weight is \(2, 4\)"):
        check_mapping(again, ks, ts)
    with pytest.raises(Exception, match=r"expected \{\"version\": 1"):
        Mapping.from_json('{"pairs": []}')


def test_localise_text():
    order = ["conv", "bn", "relu", "dw", "dw_act", "pool", "flat", "fc", "drop", "head"]
    pairs = [("conv", "conv", "c"), ("bn", "bn", "b"), ("dw", "dw", "d"), ("fc", "fc", "f"), ("head", "head", "h")]
    assert localise(order, pairs, dict.fromkeys(["conv", "bn", "dw", "fc", "head"], True)) is None
    loc = localise(order, pairs, {"conv": True, "bn": True, "dw": True, "fc": False, "head": False})
    assert loc["text"] == "between `dw` (agrees) and `fc` (differs, torch 'f'): dw_act, pool, flat"
    loc = localise(order, pairs, {"conv": False})
    assert loc["text"] == "`conv` (torch 'c') is the first matched pair and already differs"


def test_weight_notes_name_the_copying_mistake():
    from shared.flows.verify import Pair, weight_notes

    rng = np.random.default_rng(0)
    k = rng.standard_normal((4, 4))  # neutral (torch layout) Dense weight
    pair = Pair("fc", "fc", "linear", "Dense", "Linear")
    assert weight_notes(pair, {"weight": k}, {"weight": k.copy()}) == []
    assert "copied without transposing" in weight_notes(pair, {"weight": k}, {"weight": k.T.copy()})[0]
    conv = rng.standard_normal((2, 3, 3, 3))
    cp = Pair("c", "c", "conv2d", "Conv2D", "Conv2d")
    assert "height and width are swapped" in weight_notes(cp, {"weight": conv}, {"weight": conv.transpose(0, 1, 3, 2).copy()})[0]
    assert "flipped spatially" in weight_notes(cp, {"weight": conv}, {"weight": conv[:, :, ::-1, ::-1].copy()})[0]
    bn = Pair("bn", "bn", "batch_norm", "BatchNormalization", "BatchNorm2d")
    notes = weight_notes(bn, {"running_var": np.full(3, 2.0)}, {"running_var": np.ones(3)})
    assert "not copied" in notes[0]
    assert "max |diff| 0.5" in weight_notes(pair, {"weight": k}, {"weight": k + 0.5})[0]
