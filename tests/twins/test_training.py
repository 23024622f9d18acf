"""Fifty optimizer steps on both twins: same loss curve, same final tensors.

For each built-in pair x dtype x optimizer: the Keras model is built (seeded),
its weights are ported to torch, both train on the same synthetic batches
(shared.data.batches plan), and the per-step pre-update losses and every final
tensor (BatchNorm moving statistics included) are compared with TRAINING[dtype]
(BatchNorm CNNs: TRAINING_BATCHNORM, see its comment in shared/verdict/tolerances.py).
Both loops must report the fingerprints of the batches they were given.
Run with -s to see the largest differences and the timings.
"""

import torch  # noqa: F401  (torch before TensorFlow/Keras, as Keras' own tests do)

import numpy as np
import pytest

from helpers import max_record, random_inputs
from keras_impl import models as kmodels
from keras_impl import train as ktrain
from keras_impl import weights as kweights
from shared.verdict import tolerances
from shared.data.batches import batch_fingerprints, batch_plan, cast_batches, make_batches
from shared.verdict.checks import assert_checks, compare_arrays, compare_named, format_check
from shared.data.registry import PAIRS
from torch_impl import models as tmodels
from torch_impl import train as ttrain
from torch_impl import weights as tweights

STEPS = 50
ITEMS = 256  # 8 batches of 32 per epoch: the plan reshuffles every 8 steps
# Adam at Keras' default learning rate (keras/src/optimizers/adam.py: 0.001);
# SGD keeps each pair's TrainConfig (lr 0.01, momentum 0.9).
ADAM_LR = 1e-3
EMPTY_ROW_EVERY = 5  # every 5th multilabel item has no label at all
LARGEST: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread_and_report():
    # With 2 OpenMP threads on a 2-core machine that is also running other
    # work, torch's CNN steps take 8-14 s per 50 steps instead of 0.5 s
    # (OpenMP barrier spinning under oversubscription, measured here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for key, value in sorted(LARGEST.items()):
        print(f"\nlargest {key}: {value:.3g}")


def synthetic_targets(config, n: int, seed: int) -> np.ndarray:
    """Random targets in the Dataset conventions (float32 / int64 whatever the model dtype).

    multiclass int64 (n,); multilabel multi-hot float32 (n, C) with some all-zero
    rows; binary float32 (n, 1) in {0, 1}; regression float32 (n, T) in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    if config.task == "multiclass":
        return rng.integers(0, config.num_outputs, size=n).astype(np.int64)
    if config.task == "multilabel":
        y = (rng.random((n, config.num_outputs)) < 0.2).astype(np.float32)
        y[::EMPTY_ROW_EVERY] = 0.0
        return y
    if config.task == "binary":
        return (rng.random((n, 1)) < 0.5).astype(np.float32)
    return rng.uniform(-1.0, 1.0, (n, config.num_outputs)).astype(np.float32)


def synthetic_batches(config, seed: int = 0) -> list:
    """STEPS batches of 32 in the data layer's conventions: float32 inputs
    (standard normal features; images NHWC in [0, 1]) whatever the model dtype."""
    x = random_inputs(config.replace(dtype="float32"), n=ITEMS, seed=seed)
    y = synthetic_targets(config, ITEMS, seed + 1)
    return make_batches(x, y, batch_plan(ITEMS, 32, STEPS, seed))


def _params():
    out = []
    for pair in PAIRS:
        for dtype in ("float32", "float64"):
            for opt in ("sgd", "adam"):
                out.append(pytest.param(pair, dtype, opt, id=f"{pair.name}-{dtype}-{opt}"))
    return out


def _train_both(pair, dtype, opt):
    config = pair.config(dtype)
    tc = pair.train.replace(optimizer=opt, steps=STEPS, **({"learning_rate": ADAM_LR} if opt == "adam" else {}))
    kmodel = kmodels.build_model(config, seed=0)
    tmodel = tmodels.build_model(config)
    tweights.from_portable(tmodel, config, kweights.to_portable(kmodel, config))
    batches = synthetic_batches(config)
    k_res = ktrain.train(kmodel, config, tc, batches)
    t_res = ttrain.train(tmodel, config, tc, batches)
    return config, batches, k_res, t_res, kweights.to_portable(kmodel, config), tweights.to_portable(tmodel, config)


@pytest.mark.parametrize("pair,dtype,opt", _params())
def test_fifty_steps_agree(pair, dtype, opt):
    config, batches, k_res, t_res, k_w, t_w = _train_both(pair, dtype, opt)

    # Both feeds cast to the model dtype; for float32 that is the batches' own bytes.
    expected = batch_fingerprints(cast_batches(batches, dtype))
    assert k_res.fingerprints == t_res.fingerprints == expected
    assert (expected == batch_fingerprints(batches)) == (dtype == "float32")
    assert k_res.losses.shape == t_res.losses.shape == (STEPS,)

    tol = tolerances.for_check("training", dtype, batchnorm=config.model == "cnn")
    ctx = dict(task=config.task, model=config.model, dtype=dtype)
    checks = [compare_arrays("loss curve", k_res.losses, t_res.losses, tol, **ctx)]
    checks += compare_named("final", k_w, t_w, tol, **ctx)
    print(f"\n{pair.name}-{dtype}-{opt}: keras {k_res.seconds:.2f}s torch {t_res.seconds:.2f}s")
    for c in checks:
        print(format_check(c))
    max_record(LARGEST, f"loss-curve diff {config.model} {dtype} {opt}", checks[0].max_abs_diff)
    max_record(LARGEST, f"final-tensor rel diff {config.model} {dtype} {opt}", max(c.max_rel_diff for c in checks[1:]))
    assert_checks(checks)
    # Training moved the weights (a loop that skipped its updates would "agree").
    start = kweights.to_portable(kmodels.build_model(config, seed=0), config)
    moved = max(np.abs(t_w[n] - start[n]).max() for n in start)
    assert moved > 100 * tolerances.TRAINING["float32"].allowed(1.0), moved
    assert k_res.losses[-8:].mean() < k_res.losses[:8].mean()  # last epoch vs first epoch


def test_on_step_reports_every_step_in_order():
    pair = PAIRS[0]
    config = pair.config("float32")
    batches = synthetic_batches(config)[:5]
    tc = pair.train.replace(steps=5)
    seen = {"keras": [], "torch": []}
    kmodel = kmodels.build_model(config, seed=0)
    tmodel = tmodels.build_model(config)
    k_res = ktrain.train(kmodel, config, tc, batches, on_step=lambda i, loss: seen["keras"].append((i, loss)))
    t_res = ttrain.train(tmodel, config, tc, batches, on_step=lambda i, loss: seen["torch"].append((i, loss)))
    assert [i for i, _ in seen["keras"]] == [0, 1, 2, 3, 4] == [i for i, _ in seen["torch"]]
    np.testing.assert_array_equal([v for _, v in seen["keras"]], k_res.losses)
    np.testing.assert_array_equal([v for _, v in seen["torch"]], t_res.losses)
    assert k_res.seconds > 0 and t_res.seconds > 0
