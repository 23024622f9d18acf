"""`compare.py verify`: a hand-written PyTorch port against its Keras model (issue 12).

The Keras CNN (tests/verify_models/keras_cnn.py) and its hand-written ports
(tests/verify_models/torch_ports.py): the correct port passes; each classic
bug fails and is located at the right layer, with its trap named.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # torch before TensorFlow
pytest.importorskip("tensorflow")

import compare  # noqa: E402
from shared.flows.verify import MatchError, Mapping  # noqa: E402
from tests.verify_models import keras_cnn, torch_ports  # noqa: E402

STEPS = 2


def verify(port, **kw):
    kw.setdefault("train_steps", STEPS)
    return compare.verify_models(keras_cnn.build(), port(), **kw)


def failing(res, dtype=None):
    return [c for c in res.checks if not c.passed and not c.info and (dtype is None or c.dtype == dtype)]


def check(res, name, dtype):
    return next(c for c in res.checks if c.check == name and c.dtype == dtype)


@pytest.fixture(scope="module")
def correct():
    return verify(torch_ports.CorrectPort)


def test_correct_port_passes(correct):
    assert correct.passed, [c.check for c in failing(correct)]
    assert correct.localisation is None
    assert [(p.keras, p.torch) for p in correct.mapping.pairs] == [
        ("conv1", "conv1"), ("bn1", "bn1"), ("dw", "dw"), ("fc", "fc"), ("head", "head")]
    fc = correct.mapping.pairs[3]
    assert fc.transform == "flatten" and fc.flatten == {"keras_shape": [2, 2, 8], "torch_order": "chw"}
    out64 = check(correct, "model output", "float64")
    assert out64.max_abs_diff < 1e-14, out64
    kinds = {c.check.split(" ")[0] for c in correct.checks}
    assert {"output", "model", "gradient", "training"} <= kinds
    assert any("dropout switched off" in n for n in correct.notes)
    print(f"correct port: float64 output {out64.max_abs_diff:.2g}, float32 "
          f"{check(correct, 'model output', 'float32').max_abs_diff:.2g}, {len(correct.checks)} checks")


def test_nhwc_flatten_port_passes_with_plain_transpose():
    res = verify(torch_ports.FlattenNHWC, train_steps=0, gradients=False)
    assert res.passed, [c.check for c in failing(res)]
    assert res.mapping.pairs[3].flatten["torch_order"] == "hwc"


def test_contiguous_on_contiguous_tensors_is_traced_and_passes():
    """`t.contiguous()` returns `t` itself: the trace must not record `t` as its own source (it looped until OOM)."""
    from torch_impl.verify.trace import Mode

    t = torch.ones(2, 3)
    with Mode(record=True) as mode:
        assert t.contiguous() is t
    assert id(t) not in mode.prov and not mode.keep
    res = verify(torch_ports.ContiguousCalls, train_steps=0, gradients=False)
    assert res.passed, [c.check for c in failing(res)]
    assert res.mapping.pairs[3].flatten == {"keras_shape": [2, 2, 8], "torch_order": "chw"}
    assert check(res, "model output", "float64").max_abs_diff < 1e-14


def test_bn_epsilon_default_is_located_and_named():
    res = verify(torch_ports.BnEpsDefault, train_steps=0)
    assert not res.passed
    assert res.localisation["first_differing"] == "bn1"
    assert res.localisation["last_agreeing"] == "conv1"
    assert any("epsilon differs: Keras 0.001, torch 'bn1' 1e-05" in d for d in res.diagnoses), res.diagnoses


def test_subtle_bn_epsilon_is_caught():
    """eps 1.001e-3 for 1e-3: an effect of ~1e-6 of the output, caught in float64 by orders of magnitude."""
    res = verify(torch_ports.BnEpsSubtle, train_steps=0, gradients=False)
    out64 = check(res, "model output", "float64")
    bn64 = check(res, "output of bn1 <-> torch 'bn1'", "float64")
    scale = out64.max_abs_diff / out64.max_rel_diff if out64.max_rel_diff else 1.0
    effect = out64.max_abs_diff / max(1.0, scale)
    assert 1e-8 < effect < 1e-5, effect  # subtle: below 1e-5 of the output
    assert not out64.passed and not bn64.passed
    assert bn64.max_abs_diff > 1e3 * bn64.tolerance
    assert res.localisation["first_differing"] == "bn1"
    print(f"subtle eps: effect {effect:.2g} of the output; float64 bn1 diff {bn64.max_abs_diff:.2g} vs tolerance "
          f"{bn64.tolerance:.2g}; float32 output check {'passes' if check(res, 'model output', 'float32').passed else 'fails'}")


def test_bn_momentum_copied_from_keras_fails_training():
    res = verify(torch_ports.BnMomentumKeras)
    assert check(res, "model output", "float64").passed  # inference is unaffected
    bad = {c.check.split(" ")[0] for c in failing(res, "float64")}
    assert "bn1.running_mean" in bad, bad
    assert any("momentum" in d and "bn1" in d for d in res.diagnoses), res.diagnoses


def test_stock_batchnorm_running_variance_fails_with_the_factor():
    res = verify(torch_ports.BnStock)
    assert check(res, "model output", "float64").passed
    var = next(c for c in failing(res, "float64") if c.check.startswith("bn1.running_var"))
    assert var.max_abs_diff > 1e3 * var.tolerance
    assert not any(c.check.startswith("bn1.running_mean") for c in failing(res, "float64"))
    assert any("unbiased" in d and "n/(n-1) = 64/63" in d for d in res.diagnoses), res.diagnoses


def test_symmetric_padding_is_located_at_the_conv():
    res = verify(torch_ports.SymmetricPadding, train_steps=0, gradients=False)
    assert res.localisation["first_differing"] == "conv1"
    assert res.localisation["last_agreeing"] is None
    assert any("padding differs" in d and "(0, 1)" in d for d in res.diagnoses), res.diagnoses
    assert check(res, "output of conv1 <-> torch 'conv1'", "float64").max_abs_diff > 0.1


def test_dropout_left_on_in_eval():
    res = verify(torch_ports.DropoutInEval, train_steps=0, gradients=False)
    assert not check(res, "torch dropout in eval mode", "float32").passed
    assert not check(res, "torch eval forward twice (deterministic)", "float32").passed
    assert res.localisation["first_differing"] == "head" and res.localisation["between"] == ["drop"]
    assert "between `fc` (agrees) and `head`" in res.localisation["text"]
    assert any("training` defaults to True" in d and "after module 'fc'" in d for d in res.diagnoses), res.diagnoses


def test_functional_op_bug_names_the_layers_between():
    res = verify(torch_ports.AvgPool, train_steps=0, gradients=False)
    loc = res.localisation
    assert loc["first_differing"] == "fc" and loc["last_agreeing"] == "dw"
    assert loc["between"] == ["dw_act", "pool", "flat"]
    assert loc["text"].startswith("between `dw` (agrees) and `fc` (differs, torch 'fc'): dw_act, pool, flat. ")
    assert any(op.startswith("pool: max_pool(") for op in loc["keras_ops"]) and "avg_pool2d(2)" in loc["torch_ops"]


def test_missing_bias_is_an_impossible_match():
    with pytest.raises(MatchError, match=r"^head: Keras Dense has a bias, torch Linear 'head' has none$"):
        verify(torch_ports.MissingBias)


def test_missing_bias_as_is_fails_at_the_head():
    port = torch_ports.MissingBias()
    good = torch_ports.CorrectPort()
    compare.verify_models(keras_cnn.build(), good, train_steps=0, gradients=False)  # copies Keras' weights into good
    state = {k: v for k, v in good.state_dict().items() if k != "head.bias"}
    port.load_state_dict(state)
    res = compare.verify_models(keras_cnn.build(), port, weights="as-is", train_steps=0, gradients=False)
    assert res.localisation["first_differing"] == "head"
    assert any("has a bias" in n for n in res.notes), res.notes


def _naive_copy(keras_model, module):
    """A hand copy with every layout rule right except the Flatten order (Dense: K.T)."""
    from shared.graph.layout import conv_kernel_to_weight, dense_kernel_to_weight

    k = {layer.name: layer.get_weights() for layer in keras_model.layers}
    c1, b1 = k["conv1"]
    dw, dwb = k["dw"]
    state = {"conv1.weight": conv_kernel_to_weight(c1), "conv1.bias": b1,
             "bn1.weight": k["bn1"][0], "bn1.bias": k["bn1"][1], "bn1.running_mean": k["bn1"][2], "bn1.running_var": k["bn1"][3],
             "dw.weight": np.transpose(dw, (2, 3, 0, 1)).reshape(8, 1, 3, 3), "dw.bias": dwb,
             "fc.weight": dense_kernel_to_weight(k["fc"][0]), "fc.bias": k["fc"][1],
             "head.weight": dense_kernel_to_weight(k["head"][0]), "head.bias": k["head"][1]}
    module.load_state_dict({**module.state_dict(), **{n: torch.as_tensor(np.ascontiguousarray(a)) for n, a in state.items()}})


def test_flatten_order_bug_with_own_weights():
    keras_model, port = keras_cnn.build(), torch_ports.CorrectPort()
    _naive_copy(keras_model, port)
    res = compare.verify_models(keras_model, port, weights="as-is", train_steps=0, gradients=False)
    assert res.localisation["first_differing"] == "fc" and res.localisation["between"] == ["dw_act", "pool", "flat"]
    assert any("flatten order" in d and "fc.weight" in d for d in res.diagnoses), res.diagnoses
    assert len([d for d in res.diagnoses if "differs from the Keras weight" in d]) == 0


def test_mapping_round_trips_and_is_checked(correct):
    text = correct.mapping.to_json()
    res = verify(torch_ports.CorrectPort, mapping=text, train_steps=0, gradients=False)
    assert res.passed and res.mapping.to_json() == text
    bad = Mapping.from_json(text)
    bad.pairs[3].torch, bad.pairs[4].torch = "head", "fc"
    with pytest.raises(MatchError, match=r"mapping: fc: Keras Dense weight is \(16, 32\)"):
        verify(torch_ports.CorrectPort, mapping=bad)


def test_assert_parity_grows_the_same_depth():
    x = np.random.default_rng(3).standard_normal((4, 8, 8, 3)).astype(np.float32)
    compare.assert_parity(keras_cnn.build(), torch_ports.CorrectPort(), x, weights="keras", gradients=True, train_steps=1)
    with pytest.raises(AssertionError, match=r"bn1"):
        compare.assert_parity(keras_cnn.build(), torch_ports.BnEpsDefault(), x, weights="keras", train_steps=0)


# ---- activation, pooling and normalisation traps (keras_cnn.build_traps)
def verify_traps(port, **kw):
    kw.setdefault("train_steps", 0)
    kw.setdefault("gradients", False)
    return compare.verify_models(keras_cnn.build_traps(), port(), **kw)


def test_traps_port_passes_with_smoothed_ce_and_sgd_weight_decay():
    res = verify_traps(torch_ports.TrapsPort, train_steps=STEPS, gradients=True)
    assert res.passed, [c.check for c in failing(res)]
    assert res.config["loss"]["label_smoothing"] == pytest.approx(0.1) and res.config["optimizer"]["class"] == "SGD"
    assert any("['conv', 'leaky'] computed exactly" in n for n in res.notes), res.notes
    print(f"traps port: float64 output {check(res, 'model output', 'float64').max_abs_diff:.2g}")


@pytest.mark.parametrize("port, keras_says, torch_ran, trap", [
    ("GeluTanh", "conv's activation: gelu(approximate=False)", "gelu(approximate='tanh')", "gelu: Keras approximate=False"),
    ("LeakyDefault", "leaky: leaky_relu(negative_slope=0.3)", "leaky_relu(negative_slope=0.01)", "LeakyReLU slope: Keras 0.3, torch 0.01"),
    ("AvgPoolCountPad", "count_include_pad=False", "avg_pool2d(3, 2, padding=1)", "AveragePooling 'same'"),
])
def test_functional_traps_are_located_and_named(port, keras_says, torch_ran, trap):
    res = verify_traps(getattr(torch_ports, port))
    loc = res.localisation
    assert loc["first_differing"] == "fc" and loc["last_agreeing"] == "conv" and loc["between"] == ["avg", "leaky", "flat"]
    assert any(keras_says in op for op in loc["keras_ops"]), loc["keras_ops"]
    assert torch_ran in loc["torch_ops"], loc["torch_ops"]
    assert any(d.startswith(trap) for d in res.diagnoses), res.diagnoses


def test_layer_norm_epsilon_is_located_and_named():
    res = verify_traps(torch_ports.LayerNormEps)
    assert res.localisation["first_differing"] == "ln" and res.localisation["last_agreeing"] == "fc"
    assert any("LayerNorm epsilon differs: Keras 0.001, torch 'ln' 1e-05" in d for d in res.diagnoses)


# ---- sequences (needs the Keras reader's LSTM converter)
def _has_lstm():
    from keras_impl.read.registry import CONVERTERS
    import keras_impl.read  # noqa: F401  (registers the converters)

    return "LSTM" in CONVERTERS


@pytest.mark.skipif(not _has_lstm(), reason="the graph reader has no LSTM converter yet")
def test_lstm_port_and_the_two_bias_trap():
    from tests.verify_models import keras_seq, torch_seq_ports

    res = compare.verify_models(keras_seq.build(), torch_seq_ports.SeqPort(), train_steps=STEPS)
    assert res.passed, [c.check for c in failing(res)]
    assert [p.kind for p in res.mapping.pairs] == ["embedding", "rnn_lstm", "linear"]
    bad = compare.verify_models(keras_seq.build(), torch_seq_ports.SeqTwoBiases(), train_steps=STEPS)
    assert check(bad, "model output", "float64").passed  # the copied bias_hh is zero: inference agrees
    assert any(c.check.startswith("lstm.bias_ih_l0 after training") for c in failing(bad, "float64"))
    assert any("trains two" in d for d in bad.diagnoses), bad.diagnoses


def test_separable_conv_is_two_modules():
    res = compare.verify_models(keras_cnn.build_separable(), torch_ports.SeparablePort(), train_steps=STEPS)
    assert res.passed, [c.check for c in failing(res)]
    assert [(p.keras, p.torch, p.kind) for p in res.mapping.pairs] == [
        ("sep_depthwise", "depthwise", "depthwise2d"), ("sep_pointwise", "pointwise", "conv2d"), ("head", "head", "linear")]
    assert res.config["loss"]["class"] == "MeanSquaredError" and res.config["optimizer"]["class"] == "SGD"
