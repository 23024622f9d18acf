"""Speed and memory of the Keras side, one built-in pair per process.

`python compare.py bench` (shared/bench/orchestrate.py) starts
`python -m keras_impl.bench --pair P --settings JSON --json FILE`, so that
this part's import time and peak RSS are its own. Mirrors torch_impl/bench.py
name for name. Never imports torch.

Figures (lists: one value per repeat; shared/bench/orchestrate.py takes the medians):
  train.project   the project's path: keras_impl.train.train_step, one
                  tf.function (GradientTape + optimizer.apply,
                  jit_compile=False) traced once per (model, optimizer), on
                  tensors converted before the clock starts; float(loss) each
                  step, as the harness reads it.
  train.plain     Keras' recommended path for the same model: a Sequential of
                  stock layers (Dense(activation="relu"), ...), compile(SGD
                  with the same momentum, the stock loss) + fit(x, y,
                  batch_size, shuffle=False) over the same batches: one fit()
                  call, one epoch per repeat, each epoch timed by a callback
                  (fit's own set-up, a few tens of ms per call, reported apart).
                  jit_compile="auto" resolves to False on a CPU-only machine
                  (keras/src/trainers/trainer.py, _resolve_auto_jit_compile),
                  so both Keras paths run the same oneDNN/Eigen kernels.
  train.compiled  the project's step body in tf.function(jit_compile=True) (XLA).
  infer.project   keras_impl.models.forward: eager model(x, training=False) -> numpy.
  infer.plain     batch 1: model(x, training=False) (Keras' advice for inputs
                  that fit one batch, Model.predict's docstring); batch 256:
                  model.predict(x, batch_size=256).
  bare            what the harness' checks compute, without the harness:
                  eager forward on the validation split (float32, float64) and
                  one eager forward+backward (GradientTape) on a training batch.
  export          keras_impl.export.export_onnx of the project model, twice
                  (the first includes tf2onnx's import).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from shared.bench import bench_parts as sb

_T0 = time.perf_counter()
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from keras_impl import export, losses, models, train  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - _T0
RSS_AFTER_IMPORT_MIB = sb.peak_rss_mib()

__all__ = [
    "FRAMEWORK",
    "PATHS",
    "IMPORT_SECONDS",
    "threads",
    "versions",
    "build_plain_model",
    "plain_loss",
    "train_project",
    "train_plain",
    "train_compiled",
    "infer_project",
    "infer_plain",
    "bare_passes",
    "export_project",
    "bench_pair",
    "main",
]

FRAMEWORK = "keras"
PATHS = {
    "train.project": "keras_impl.train.train_step: one tf.function (GradientTape + optimizer.apply), jit_compile=False",
    "train.plain": "keras.Sequential of stock layers, compile(SGD momentum, stock loss) + fit(shuffle=False); "
                   "jit_compile='auto' = off on CPU-only machines",
    "train.compiled": "the project's step in tf.function(jit_compile=True) (XLA)",
    "infer.project": "keras_impl.models.forward: eager model(x, training=False) -> numpy",
    "infer.plain": "batch 1: model(x, training=False) -> numpy; batch 256: model.predict(batch_size=256)",
    "bare": "eager forward (valid split, f32 and f64); eager GradientTape forward+backward on one batch",
}


def threads() -> dict:
    return {
        "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads() or f"0 = all cores ({os.cpu_count()})",
        "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads() or f"0 = all cores ({os.cpu_count()})",
    }


def versions() -> dict:
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def build_plain_model(config) -> keras.Sequential:
    """The same architecture written the way Keras' guides write it (stock layers, defaults)."""
    if config.model == "mlp":
        return keras.Sequential(
            [keras.Input(config.input_shape), *[layers.Dense(w, activation="relu") for w in config.hidden],
             layers.Dense(config.num_outputs)])
    c1, c2 = config.conv_channels
    return keras.Sequential([
        keras.Input(config.input_shape),
        layers.Conv2D(c1, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.Conv2D(c2, 3, strides=2, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(config.dense_units, activation="relu"), layers.Dense(config.num_outputs),
    ])


def plain_loss(task: str) -> keras.losses.Loss:
    """The stock loss a Keras user compiles with (logits in)."""
    if task == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if task in ("multilabel", "binary"):
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return keras.losses.MeanSquaredError()


def train_project(config, settings: dict, data: dict) -> dict:
    model = models.build_model(config, seed=int(settings["seed"]))
    opt = train.make_optimizer(model, sb.train_config(settings, data["batch_size"]))
    tensors = [train.to_framework(x, y) for x, y in data["train"]]
    return sb.timed_steps(lambda x, y: train.train_step(model, config, opt, x, y), tensors,
                        int(settings["warmup"]), int(settings["repeats"]), data["batch_size"])


def train_plain(config, settings: dict, data: dict) -> dict:
    model = build_plain_model(config)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=float(settings["learning_rate"]),
                                                 momentum=float(settings["momentum"])),
                  loss=plain_loss(config.task))
    bs, warmup = data["batch_size"], int(settings["warmup"])
    xw = np.concatenate([x for x, _ in data["train"][:warmup]])
    yw = np.concatenate([y for _, y in data["train"][:warmup]])
    x = np.concatenate([x for x, _ in data["train"][warmup:]])
    y = np.concatenate([y for _, y in data["train"][warmup:]])
    t0 = time.perf_counter()
    model.fit(xw, yw, batch_size=bs, epochs=1, shuffle=False, verbose=0)  # builds and traces train_function
    first = time.perf_counter() - t0
    # One fit() with an epoch per repeat, as one trains; each epoch timed by a
    # callback (iterator set-up included, fit's own set-up not: reported apart).
    marks = []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs=None: marks.append(time.perf_counter()),
                                           on_epoch_end=lambda e, logs=None: marks.append(time.perf_counter()))
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=bs, epochs=int(settings["repeats"]), shuffle=False, verbose=0, callbacks=[timer])
    total = time.perf_counter() - t0
    epochs = [marks[i + 1] - marks[i] for i in range(0, len(marks) - 1, 2)]
    return {"samples_per_s": [len(x) / e for e in epochs], "first_step_s": first,
            "first_step_note": f"first fit() ({warmup} steps)", "fit_setup_s": total - sum(epochs)}


def train_compiled(config, settings: dict, data: dict) -> dict:
    model = models.build_model(config, seed=int(settings["seed"]))
    opt = train.make_optimizer(model, sb.train_config(settings, data["batch_size"]))
    task = config.task

    @tf.function(jit_compile=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)
            loss = losses.mean_loss(task, logits, yb)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply(grads, model.trainable_variables)
        return loss

    tensors = [train.to_framework(x, y) for x, y in data["train"]]
    return sb.timed_steps(lambda x, y: float(step(x, y)), tensors, int(settings["warmup"]), int(settings["repeats"]),
                        data["batch_size"])


def _infer(fn_one, fn_big, settings: dict, data: dict) -> dict:
    lat, thr = [], []
    rows = int(settings["infer_batch"])
    fn_big(data["x_big"][0])  # warm-up at the big shape
    for _ in range(int(settings["repeats"])):
        lat.append(sb.per_call(lambda: fn_one(data["x_one"]), int(settings["latency_calls"])))
        thr.append(sb.throughput(fn_big, data["x_big"], rows))
    return {"latency_b1_s": lat, "throughput_samples_per_s": thr}


def infer_project(model, config, settings: dict, data: dict) -> dict:
    fwd = lambda x: models.forward(model, x)  # noqa: E731
    return _infer(fwd, fwd, settings, data)


def infer_plain(model, config, settings: dict, data: dict) -> dict:
    rows = int(settings["infer_batch"])
    x_all = np.concatenate(data["x_big"])
    one = lambda x: keras.ops.convert_to_numpy(model(x, training=False))  # noqa: E731
    lat, thr = [], []
    model.predict(data["x_big"][0], batch_size=rows, verbose=0)  # builds predict_function
    for _ in range(int(settings["repeats"])):
        lat.append(sb.per_call(lambda: one(data["x_one"]), int(settings["latency_calls"])))
        t0 = time.perf_counter()
        model.predict(x_all, batch_size=rows, verbose=0)
        thr.append(len(x_all) / (time.perf_counter() - t0))
    return {"latency_b1_s": lat, "throughput_samples_per_s": thr}


def bare_passes(config, settings: dict, data: dict) -> dict:
    """Eager forward on the validation split (f32, f64) and forward+backward on one batch, per repeat."""
    calls = int(settings["bare_calls"])
    out = {"forward_valid_s": [], "forward_valid_f64_s": [], "backward_s": []}
    m32 = models.build_model(config, seed=int(settings["seed"]))
    cfg64 = config.replace(dtype="float64")
    m64 = models.build_model(cfg64, seed=int(settings["seed"]))
    xv = tf.convert_to_tensor(data["x_valid"])
    xv64 = tf.convert_to_tensor(data["x_valid"].astype(np.float64))
    xb, yb = train.to_framework(*data["batch0"])

    def backward():
        with tf.GradientTape() as tape:
            loss = losses.mean_loss(config.task, m32(xb, training=True), yb)
        return tape.gradient(loss, m32.trainable_variables)

    for _ in range(int(settings["repeats"])):
        out["forward_valid_s"].append(sb.per_call(lambda: m32(xv, training=False), calls))
        out["forward_valid_f64_s"].append(sb.per_call(lambda: m64(xv64, training=False), calls))
        out["backward_s"].append(sb.per_call(backward, calls))
    return out


def export_project(model, config, path) -> dict:
    """Export twice to `path`: the first call pays the exporter's import."""
    t0 = time.perf_counter()
    export.export_onnx(model, config, path)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    export.export_onnx(model, config, path)
    return {"first_s": first, "again_s": time.perf_counter() - t0, "path": str(path)}


def bench_pair(pair_name: str, settings: dict) -> dict:
    """Every Keras figure for one built-in pair (see the module docstring)."""
    settings = {**sb.DEFAULTS, **settings}
    if settings.get("threads"):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(settings["threads"]))
            tf.config.threading.set_inter_op_parallelism_threads(int(settings["threads"]))
        except RuntimeError:  # TensorFlow already initialised its thread pools
            pass
    return sb.bench_part(sys.modules[__name__], pair_name, settings)


def main(argv=None) -> int:
    return sb.part_main(sys.argv[1:] if argv is None else argv, bench_pair, "keras_impl")


if __name__ == "__main__":
    sys.exit(main())
