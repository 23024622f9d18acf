"""One test per porting trap the code handles (TRAPS.md): each breaks
the handling on purpose, shows the difference is far outside FORWARD tolerance,
and shows that the handled version passes. Sizes in the docstrings were
measured on CPU (Keras 3.15, TF 2.21, torch 2.13) with the seeds used here."""

import torch  # noqa: I001  (torch before TensorFlow/Keras, as Keras' own tests do)

import copy
import warnings

import keras
import numpy as np
import pytest
from torch import nn

from helpers import random_inputs, random_targets, randomise_bn
from keras_impl import losses as klosses
from keras_impl import models as kmodels
from keras_impl import weights as kweights
from shared.graph import layout
from shared.verdict.checks import compare_arrays, format_check
from shared.data.config import ModelConfig, tf_same_padding
from shared.data.registry import pair_by_name
from shared.verdict.tolerances import FORWARD
from torch_impl import losses as tlosses
from torch_impl import models as tmodels
from torch_impl import weights as tweights

F32 = FORWARD["float32"]
F64 = FORWARD["float64"]
# "Far outside": a broken port must miss the tolerance by at least this factor.
MARGIN = 1000


def assert_passes(name, a, b, tol):
    c = compare_arrays(name, a, b, tol)
    assert c.passed, format_check(c)
    return c.max_abs_diff


def assert_broken(name, a, b, tol, margin=MARGIN):
    """The broken version misses the tolerance by `margin`; returns the max |diff|."""
    c = compare_arrays(name, a, b, tol)
    assert c.max_abs_diff > margin * c.tolerance, format_check(c)
    return c.max_abs_diff


def torch_port(k, config, tensors=None):
    """A torch twin holding `tensors` (default: k's portable weights)."""
    t = tmodels.build_model(config, seed=1)
    tweights.from_portable(t, config, kweights.to_portable(k, config) if tensors is None else tensors)
    return t


def activations(k, t, config, x, t_input=None):
    """(keras outputs rearranged to torch layout, torch outputs), by layer name."""
    k_out = kmodels.layer_outputs(k, x)
    t_out = tmodels.layer_outputs(t, layout.nhwc_to_nchw(x) if t_input is None else t_input)
    return {n: layout.keras_activation_as_torch(n, a, config) for n, a in k_out.items()}, t_out


# The real image pair (32x32x3, even: the stride-2 "same" padding is asymmetric).
CNN = pair_by_name("builtin-regression/cnn").config("float32")


@pytest.fixture(scope="module")
def cnn():
    """(config, keras model with non-trivial BN, its correct torch port, x NHWC (8,32,32,3))."""
    k = kmodels.build_model(CNN, seed=0)
    kweights.from_portable(k, CNN, randomise_bn(kweights.to_portable(k, CNN), CNN))
    return CNN, k, torch_port(k, CNN), random_inputs(CNN, 8, seed=5)


# ---- Layers -----------------------------------------------------------------

def test_dense_transpose():
    """Trap "Dense/Linear": Keras kernel (in, out), torch weight (out, in), W = K.T.

    With square layers (16 -> 16 -> 16 -> 16) K fits where K.T belongs and the
    shape check cannot notice: logits differ by 1.73 (traps file:
    "garbage"); with W = K.T they are bitwise equal here (0).
    """
    config = ModelConfig("mlp", "multiclass", (16,), 16, hidden=(16, 16))
    k = kmodels.build_model(config, seed=0)
    x = random_inputs(config, 16, seed=0)  # (16, 16)
    good = kweights.to_portable(k, config)
    broken = dict(good)
    for name in ("dense1.weight", "dense2.weight", "head.weight"):
        broken[name] = np.ascontiguousarray(good[name].T)  # the raw Keras kernel K, not K.T
        assert broken[name].shape == good[name].shape
    k_logits = kmodels.forward(k, x)
    fixed = assert_passes("logits", k_logits, tmodels.forward(torch_port(k, config, good), x), F32)
    size = assert_broken("logits", k_logits, tmodels.forward(torch_port(k, config, broken), x), F32)
    assert size > 0.3
    print(f"dense transpose: broken {size:.3g}, handled {fixed:.3g}")


def test_conv_kernel_layout(cnn):
    """Trap "Conv2D layout": Keras HWIO -> torch OIHW is transpose(3, 2, 0, 1).

    A kernel with H and W swapped (OIWH) has the right shape for a 3x3 conv, so
    it loads silently; conv1's output is off by 1.34 (max), against 0 handled.
    """
    config, k, _, x = cnn
    good = kweights.to_portable(k, config)
    broken = dict(good, **{"conv1.weight": np.ascontiguousarray(good["conv1.weight"].transpose(0, 1, 3, 2))})
    k_out, t_out = activations(k, torch_port(k, config, good), config, x)
    fixed = assert_passes("conv1", k_out["conv1"], t_out["conv1"], F32)
    k_out, t_bad = activations(k, torch_port(k, config, broken), config, x)
    size = assert_broken("conv1", k_out["conv1"], t_bad["conv1"], F32)
    assert_broken("logits", k_out["head"], t_bad["head"], F32)
    assert size > 0.1
    print(f"conv layout (OIWH): broken conv1 {size:.3g}, handled {fixed:.3g}")


def test_input_layout(cnn):
    """Trap "Conv2D layout" (input side): NHWC -> NCHW is a permute, not a reshape.

    x.reshape(N, C, H, W) has the right shape and scrambles the pixels: conv1
    is off by 1.23 and the logits by 0.31; with nhwc_to_nchw they agree (6.9e-7).
    """
    config, k, t, x = cnn
    n, h, w, c = x.shape
    reshaped = np.ascontiguousarray(x.reshape(n, c, h, w))  # wrong: same bytes, new meaning
    k_out, t_out = activations(k, t, config, x)
    fixed = assert_passes("logits", k_out["head"], t_out["head"], F32)
    _, t_bad = activations(k, t, config, x, t_input=reshaped)
    size = assert_broken("conv1", k_out["conv1"], t_bad["conv1"], F32)
    logits = assert_broken("logits", k_out["head"], t_bad["head"], F32)
    print(f"input reshape: broken conv1 {size:.3g}, logits {logits:.3g}, handled {fixed:.3g}")


def test_flatten_order(cnn):
    """Trap "Flatten -> Dense": Keras flattens (H, W, C), torch (C, H, W).

    With fc1 as a plain transpose (dense_kernel_to_weight) every layer up to the
    flatten agrees (pool, and flatten once re-ordered) and fc1 is the first to
    differ: max 2.54 at fc1, against 3.2 in the traps file (same order of
    magnitude; the size depends on the weights). Handled: 1.3e-6.
    """
    config, k, t, x = cnn
    kernel = keras.ops.convert_to_numpy(k.get_layer("fc1").kernel)  # (H*W*C, units), rows in (H,W,C) order
    broken = dict(kweights.to_portable(k, config), **{"fc1.weight": layout.dense_kernel_to_weight(kernel)})
    k_out, t_good = activations(k, t, config, x)
    _, t_bad = activations(k, torch_port(k, config, broken), config, x)
    for name in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool", "flatten"):
        assert_passes(name, k_out[name], t_bad[name], F32)
    # The flatten vectors hold the same numbers in a different order: without
    # keras_activation_as_torch's re-ordering they would not compare equal.
    assert_broken("flatten unordered", kmodels.layer_outputs(k, x)["flatten"], t_bad["flatten"], F32)
    size = assert_broken("fc1", k_out["fc1"], t_bad["fc1"], F32)
    assert_broken("logits", k_out["head"], t_bad["head"], F32)
    fixed = assert_passes("fc1", k_out["fc1"], t_good["fc1"], F32)
    assert 0.3 < size < 30  # traps file: 3.2
    print(f"flatten order: broken fc1 {size:.3g}, handled {fixed:.3g}")


def symmetric_conv2(t):
    """A copy of `t` whose conv2 is a stock nn.Conv2d(padding=1) with the same weight."""
    t = copy.deepcopy(t)
    old = t.conv2
    stock = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=2, padding=1, bias=False)
    with torch.no_grad():
        stock.weight.copy_(old.weight)
    t.conv2 = stock
    return t


def test_same_padding_even_input(cnn):
    """Trap 'padding="same", stride>1': TF pads (0, 1) for k3 s2 on an even size,
    torch padding=1 pads (1, 1): a one-pixel shift.

    On 32x32 input in [0, 1], conv2 is off by 0.54 (traps file: 3.76 at H=8,
    on other data; within an order of magnitude); Conv2dSame agrees to 1.5e-7.
    """
    config, k, t, x = cnn
    assert tf_same_padding(32, 3, 2) == (0, 1)
    assert tf_same_padding(8, 3, 2) == (0, 1)
    assert t.conv2.tf_pad == (0, 1, 0, 1)  # (left, right, top, bottom)
    k_out, t_good = activations(k, t, config, x)
    _, t_bad = activations(k, symmetric_conv2(t), config, x)
    fixed = assert_passes("conv2", k_out["conv2"], t_good["conv2"], F32)
    assert_passes("relu1", k_out["relu1"], t_bad["relu1"], F32)  # conv1 (stride 1) is symmetric anyway
    size = assert_broken("conv2", k_out["conv2"], t_bad["conv2"], F32)
    assert_broken("logits", k_out["head"], t_bad["head"], F32)
    assert 0.3 < size < 40  # traps file: 3.76
    # A one-pixel shift: the stock conv equals TF's conv of the input moved one
    # pixel down-right, everywhere but the last output row/column (where TF's
    # bottom/right zero padding meets the row that the move pushed out).
    relu1 = torch.from_numpy(t_good["relu1"])  # (8, 8, 32, 32)
    moved = torch.nn.functional.pad(relu1, (1, 0, 1, 0))[:, :, :-1, :-1]  # (8, 8, 32, 32)
    with torch.no_grad():
        tf_of_moved = t.conv2(moved).numpy()  # Conv2dSame: TF's (0, 1) padding, (8, 16, 16, 16)
    assert_passes("stock conv2 = TF conv2 of the moved input", tf_of_moved[:, :, :-1, :-1], t_bad["conv2"][:, :, :-1, :-1], F32)
    print(f"same padding, 32x32: broken conv2 {size:.3g}, handled {fixed:.3g}")


@pytest.mark.parametrize("size", [7, 31])
def test_same_padding_odd_input_is_symmetric(size):
    """Trap 'padding="same", stride>1', the other half: on an odd size TF's
    padding is symmetric, (1, 1), so a stock nn.Conv2d(padding=1) agrees
    (traps file: "H=7 equal"); measured 1e-7 at conv2, like Conv2dSame."""
    assert tf_same_padding(7, 3, 2) == (1, 1)
    assert tf_same_padding(8, 3, 2) == (0, 1)
    assert tf_same_padding(size, 3, 2) == (1, 1)
    config = ModelConfig("cnn", "regression", (size, size, 3), 2, conv_channels=(4, 8), dense_units=8)
    k = kmodels.build_model(config, seed=0)
    kweights.from_portable(k, config, randomise_bn(kweights.to_portable(k, config), config))
    t = torch_port(k, config)
    x = random_inputs(config, 8, seed=6)
    k_out, t_stock = activations(k, symmetric_conv2(t), config, x)
    assert t.conv2.tf_pad is None and t.conv2.padding == (1, 1)  # symmetric: the conv pads itself
    same = assert_passes("conv2", k_out["conv2"], t_stock["conv2"], F32)
    assert_passes("logits", k_out["head"], t_stock["head"], F32)
    print(f"same padding, {size}x{size}: stock padding=1 conv2 {same:.3g}")


def test_batchnorm_epsilon(cnn):
    """Trap "BatchNorm" (epsilon): Keras 1e-3, torch default 1e-5.

    In eval mode each centred BN output is scaled by sqrt((var + 1e-3) /
    (var + 1e-5)). With the randomised running_var (0.2..2) bn1 differs by
    1.5e-3 (traps file: "eps alone 1e-4 in output"; the size grows as var
    shrinks); with running_var 0.01 it is a 4.8% scale error, 0.53 max.
    Same eps: 2.4e-7.
    """
    config, k, t, x = cnn
    k_out, t_good = activations(k, t, config, x)
    fixed = assert_passes("bn1", k_out["bn1"], t_good["bn1"], F32)
    t_bad = copy.deepcopy(t)
    t_bad.bn1.eps = t_bad.bn2.eps = 1e-5  # torch's default
    _, t_bad_out = activations(k, t_bad, config, x)
    # The smallest trap here: ~500x the tolerance, so a margin of 100.
    size = assert_broken("bn1", k_out["bn1"], t_bad_out["bn1"], F32, margin=100)
    assert 1e-4 < size < 1e-2

    # Small running variance: the relative error approaches 0.5 * (1e-3 - 1e-5) / var.
    tensors = kweights.to_portable(k, config)
    tensors["bn1.running_var"] = np.full_like(tensors["bn1.running_var"], 0.01)
    k_small = kmodels.build_model(config)
    kweights.from_portable(k_small, config, tensors)
    t_small = torch_port(k_small, config)
    k_out, t_out = activations(k_small, t_small, config, x)
    assert_passes("bn1 (var 0.01)", k_out["bn1"], t_out["bn1"], F32)
    t_small.bn1.eps = 1e-5
    _, t_out = activations(k_small, t_small, config, x)
    small = assert_broken("bn1 (var 0.01)", k_out["bn1"], t_out["bn1"], F32)
    # Exactly the epsilon factor on the centred output: (y - beta) scales by sqrt((v+1e-3)/(v+1e-5)).
    beta = tensors["bn1.bias"][None, :, None, None]
    ratio = (t_out["bn1"] - beta) / (k_out["bn1"] - beta)
    # Only where y - beta is well above the float32 ulp of y (|y| up to ~|beta| + 10):
    # at |y - beta| ~ 1e-2 the float32 rounding of y alone moves the ratio by ~1e-4.
    mask = np.abs(k_out["bn1"] - beta) > 1e-1
    np.testing.assert_allclose(ratio[mask], np.sqrt(0.011 / 0.01001), rtol=1e-4)
    print(f"BN epsilon: broken bn1 {size:.3g} (var 0.2..2), {small:.3g} (var 0.01); handled {fixed:.3g}")


def test_batchnorm_momentum_and_statistics():
    """Trap "BatchNorm" (momentum / running statistics), one training step.

    float64, batch (4, 4, 4, 3) so n = batch*H*W = 64 values per channel.
    BatchNorm2dKeras' running stats equal Keras' moving stats (~1e-16) and the
    training-mode logits agree. Stock nn.BatchNorm2d(momentum=0.1) (torch's
    default) moves the variance 10x further: 0.114 off after one step (traps
    file: 1.076 vs 1.787, with its own data). nn.BatchNorm2d(momentum=1-0.99)
    still stores the unbiased variance: its batch term is exactly n/(n-1) =
    64/63 of Keras' (1.4e-4 on the running var).
    """
    config = ModelConfig("cnn", "regression", (4, 4, 3), 2, conv_channels=(4, 8), dense_units=8, dtype="float64")
    k = kmodels.build_model(config, seed=0)
    start = randomise_bn(kweights.to_portable(k, config), config)
    kweights.from_portable(k, config, start)
    t = torch_port(k, config)
    x = random_inputs(config, 4, seed=7) * 3.0  # (4, 4, 4, 3): batch variance far from 1
    conv1_out = tmodels.layer_outputs(t, layout.nhwc_to_nchw(x))["conv1"]  # (4, 4, 4, 4), BN's input

    k_logits = keras.ops.convert_to_numpy(k(x, training=True))  # updates the moving statistics
    t_logits = tmodels.forward(t, layout.nhwc_to_nchw(x), training=True)
    assert_passes("training-mode logits", k_logits, t_logits, F64)
    k_stats, t_stats = kweights.to_portable(k, config), tweights.to_portable(t, config)
    for name in ("bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"):
        assert not np.allclose(k_stats[name], start[name])  # the step moved them
        assert_passes(name, k_stats[name], t_stats[name], F64)

    def stock(momentum):
        bn = nn.BatchNorm2d(4, eps=config.bn_epsilon, momentum=momentum).double()
        bn.load_state_dict({"weight": torch.from_numpy(start["bn1.weight"]), "bias": torch.from_numpy(start["bn1.bias"]),
                            "running_mean": torch.from_numpy(start["bn1.running_mean"]),
                            "running_var": torch.from_numpy(start["bn1.running_var"]),
                            "num_batches_tracked": torch.tensor(0)})
        bn.train()
        with torch.no_grad():
            bn(torch.from_numpy(conv1_out))
        return bn.running_var.numpy()

    keras_var = k_stats["bn1.running_var"]
    default = assert_broken("running_var, torch default momentum 0.1", stock(0.1), keras_var, F64)
    assert default > 1e-2
    converted = stock(1.0 - config.bn_momentum)
    unbiased = assert_broken("running_var, momentum 0.01, unbiased", converted, keras_var, F64)
    n = 4 * 4 * 4  # values per channel in the batch
    old = 0.99 * start["bn1.running_var"]
    np.testing.assert_allclose((converted - old) / (keras_var - old), n / (n - 1), rtol=1e-9)
    print(f"BN stats: momentum 0.1 {default:.3g}, unbiased var {unbiased:.3g} (factor {n}/{n - 1})")


# ---- Losses -----------------------------------------------------------------

def test_loss_dtype_float64():
    """Numerics (float64) / keras_impl.losses.make_loss: a Keras Loss computes in
    its own dtype, floatx() = float32, whatever its inputs.

    BinaryCrossentropy(from_logits=True) without dtype on float64 logits returns
    float32 and is 5.8e-8 off torch's float64 BCEWithLogitsLoss; per_sample_loss
    passes the logits' dtype: 2.2e-16.
    """
    config = ModelConfig("mlp", "multilabel", (4,), 10, dtype="float64")
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((16, 10))  # float64
    y = random_targets(config, 16, seed=9)
    ref = tlosses.per_sample_loss("multilabel", torch.from_numpy(logits), torch.from_numpy(y)).numpy()
    assert ref.dtype == np.float64
    naive = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)(y, logits)
    assert keras.backend.standardize_dtype(naive.dtype) == "float32"
    size = assert_broken("per-sample BCE, float32 loss", keras.ops.convert_to_numpy(naive), ref, F64)
    assert 1e-9 < size < 1e-6
    handled = klosses.per_sample_loss("multilabel", keras.ops.convert_to_tensor(logits), y)
    assert keras.backend.standardize_dtype(handled.dtype) == "float64"
    fixed = assert_passes("per-sample BCE, float64 loss", keras.ops.convert_to_numpy(handled), ref, F64)
    print(f"loss dtype: float32 loss {size:.3g}, float64 loss {fixed:.3g}")


def test_logits_not_probabilities_at_extreme_logits():
    """Trap "BCE on probabilities" / "SCCE vs CrossEntropyLoss": always feed logits.

    At logits +-40 and +-100 on the wrong side (true loss = |z|), Keras
    BinaryCrossentropy(from_logits=True) and BCEWithLogitsLoss give 40, 40,
    100, 100 exactly. Sigmoid first, then a loss on probabilities (float32):
    Keras clips p to [1e-7, 1-1e-7] -> 15.94 / 16.12 (the 16.12 cap); torch
    BCELoss gets 1 - sigmoid(40) = 0 and clamps log at -100 -> 100 instead of
    40 (and 99.983 for -100: sigmoid(-100) is a float32 denormal). Multiclass: -log(softmax) in torch gives 99.98 for 100 (a float32
    denormal) and Keras SCCE on probabilities 16.12; both CE-from-logits 100.
    """
    z = np.array([[40.0], [-40.0], [100.0], [-100.0]], dtype=np.float32)  # (4, 1)
    y = np.array([[0.0], [1.0], [0.0], [1.0]], dtype=np.float32)  # wrong side: loss = |z|
    true = np.logaddexp(0.0, np.abs(z[:, 0]).astype(np.float64))  # softplus(|z|)

    k_logits = keras.ops.convert_to_numpy(keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)(y, z))
    t_logits = nn.BCEWithLogitsLoss(reduction="none")(torch.from_numpy(z), torch.from_numpy(y)).numpy()[:, 0]
    assert np.all(np.isfinite(k_logits)) and np.all(np.isfinite(t_logits))
    assert_passes("BCE from logits, keras vs torch", k_logits, t_logits, F32)
    assert_passes("BCE from logits vs softplus", k_logits, true, F32)

    p = (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)  # plain numpy probabilities
    k_naive = keras.ops.convert_to_numpy(keras.losses.BinaryCrossentropy(reduction=None)(y, p))
    t_naive = nn.BCELoss(reduction="none")(torch.from_numpy(p), torch.from_numpy(y)).numpy()[:, 0]
    assert np.all(k_naive < 16.2)  # Keras' clip caps every loss at -log(1e-7) = 16.12
    np.testing.assert_allclose(k_naive.max(), -np.log(1e-7), rtol=1e-3)
    assert t_naive[0] == pytest.approx(100.0)  # 1 - sigmoid(40) == 0 in float32: log clamped at -100
    assert abs(t_naive[0] - true[0]) == pytest.approx(60.0, rel=1e-3)
    assert np.max(np.abs(k_naive - t_naive)) > 50  # the two naive paths disagree with each other
    assert np.max(np.abs(k_naive - true)) > 80  # ... and with the true value
    assert np.max(np.abs(t_naive - true)) > 50

    # A Keras sigmoid output remembers its logits (_keras_logits) and
    # BinaryCrossentropy silently uses them: the naive Keras path looks right.
    p_keras = keras.ops.sigmoid(keras.ops.convert_to_tensor(z))
    assert_passes("BCE on a Keras sigmoid output", keras.ops.convert_to_numpy(
        keras.losses.BinaryCrossentropy(reduction=None)(y, p_keras)), true, F32)

    # Multiclass: log(softmax) vs CrossEntropyLoss on logits.
    zc = np.array([[0.0, 40.0], [0.0, 100.0]], dtype=np.float32)  # (2, 2), label 0: loss ~ 40, 100
    label = np.array([0, 0])
    true_c = np.logaddexp(0.0, zc[:, 1].astype(np.float64))
    t_ce = nn.CrossEntropyLoss(reduction="none")(torch.from_numpy(zc), torch.from_numpy(label)).numpy()
    k_ce = keras.ops.convert_to_numpy(keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(label, zc))
    assert_passes("CE from logits, keras vs torch", k_ce, t_ce, F32)
    assert_passes("CE from logits vs true", t_ce, true_c, F32)
    probs = torch.softmax(torch.from_numpy(zc), dim=-1)
    t_log_softmax = (-torch.log(probs)[:, 0]).numpy()
    k_scce_probs = keras.ops.convert_to_numpy(keras.losses.SparseCategoricalCrossentropy(reduction=None)(label, probs.numpy()))
    # exp(-100) is a float32 denormal (3.8e-44, 2 significant bits): -log(p) = 99.983, 0.017 off;
    # exp(-200) underflows to 0: -log(p) = inf. Keras clips p at 1e-7: 16.12 for both.
    assert abs(t_log_softmax[1] - true_c[1]) > 0.01
    assert np.isinf(-torch.log(torch.softmax(torch.tensor([0.0, 200.0]), dim=-1))[0])
    np.testing.assert_allclose(k_scce_probs, -np.log(1e-7), rtol=1e-3)
    assert np.max(np.abs(k_scce_probs - t_log_softmax)) > 80  # naive paths disagree with each other
    assert np.max(np.abs(k_scce_probs - true_c)) > 80  # ... and with the true value
    print(f"extreme logits: keras naive BCE {k_naive}, torch naive BCE {t_naive}, true {true}; "
          f"-log(softmax) {t_log_softmax}, keras SCCE(probs) {k_scce_probs}, true {true_c}")


def test_mse_broadcast():
    """Trap "MSE": torch MSELoss on pred (B, 1) vs target (B,) broadcasts to
    (B, B) with a UserWarning and returns a different number (1.33 vs 1.09
    here, B=16); Keras squeezes. torch_impl.losses.per_sample_loss uses view_as
    and matches Keras per sample (0 here) and in the mean."""
    rng = np.random.default_rng(10)
    pred = rng.standard_normal((16, 1)).astype(np.float32)  # (B, 1): a 1-output regression head
    target = rng.standard_normal(16).astype(np.float32)  # (B,)
    true = float(np.mean((pred[:, 0].astype(np.float64) - target) ** 2))
    with pytest.warns(UserWarning, match="target size"):
        broadcast = float(nn.MSELoss()(torch.from_numpy(pred), torch.from_numpy(target)))
    assert abs(broadcast - true) > 0.1 * true
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the handled path must not warn
        t_per = tlosses.per_sample_loss("regression", torch.from_numpy(pred), torch.from_numpy(target)).numpy()
        t_mean = float(tlosses.mean_loss("regression", torch.from_numpy(pred), torch.from_numpy(target)))
    k_per = keras.ops.convert_to_numpy(klosses.per_sample_loss("regression", keras.ops.convert_to_tensor(pred), target))
    assert t_per.shape == k_per.shape == (16,)
    fixed = assert_passes("per-sample MSE", k_per, t_per, F32)
    assert t_mean == pytest.approx(true, rel=1e-6)
    assert_passes("mean MSE", keras.ops.convert_to_numpy(klosses.mean_loss(
        "regression", keras.ops.convert_to_tensor(pred), target)), np.float32(t_mean), F32)
    print(f"MSE broadcast: BxB {broadcast:.3g} vs true {true:.3g}; handled per-sample {fixed:.3g}")
