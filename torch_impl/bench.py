"""Speed and memory of the PyTorch side, one built-in pair per process.

`python compare.py bench` (shared/bench/orchestrate.py) starts
`python -m torch_impl.bench --pair P --settings JSON --json FILE`, so that
this part's import time and peak RSS are its own. Mirrors keras_impl/bench.py
name for name. Never imports TensorFlow or Keras.

Figures (lists: one value per repeat; shared/bench/orchestrate.py takes the medians):
  train.project   the project's path: torch_impl.train.train_step, eager
                  (model.train(), zero_grad, loss, backward, SGDKeras.step,
                  float(loss)), on tensors converted (NCHW) before the clock
                  starts. The model has the two porting fixes:
                  Conv2dSame (F.pad + padding=0 conv) and BatchNorm2dKeras
                  (Keras' moving statistics, computed besides F.batch_norm).
  train.plain     PyTorch's recommended path for the same model: nn.Sequential
                  of stock layers (nn.Conv2d(padding=1), nn.BatchNorm2d), stock
                  loss (mean reduction), torch.optim.SGD(momentum), the
                  standard zero_grad / backward / step loop with loss.item().
  train.compiled  torch.compile(project model) driven by the project's train_step.
  infer.project   torch_impl.models.forward: eval(), no_grad, model(x) -> numpy.
  infer.plain     torch.inference_mode(), model(torch.from_numpy(x)).numpy().
  bare            what the harness' checks compute, without the harness:
                  forward on the validation split (float32, float64, no_grad)
                  and one forward+backward on a training batch.
  export          torch_impl.export.export_onnx of the project model, twice
                  (the first includes the exporter's first-use cost).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from shared.bench import bench_parts as sb
from shared.graph.layout import nhwc_to_nchw

_T0 = time.perf_counter()
import torch  # noqa: E402
from torch import nn  # noqa: E402

from torch_impl import export, losses, models, train  # noqa: E402

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

FRAMEWORK = "torch"
PATHS = {
    "train.project": "torch_impl.train.train_step: eager; Conv2dSame + BatchNorm2dKeras; SGDKeras (foreach=False)",
    "train.plain": "nn.Sequential of stock layers (Conv2d(padding=1), BatchNorm2d), stock loss, torch.optim.SGD, "
                   "zero_grad/backward/step loop with loss.item()",
    "train.compiled": "torch.compile(project model) (inductor), the project's train_step",
    "infer.project": "torch_impl.models.forward: eval(), no_grad, model(x) -> numpy",
    "infer.plain": "inference_mode, model(torch.from_numpy(x)).numpy()",
    "bare": "no_grad forward (valid split, f32 and f64); forward+backward on one batch",
}


def threads() -> dict:
    return {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads()}


def versions() -> dict:
    return {"torch": torch.__version__}


def build_plain_model(config) -> nn.Sequential:
    """The same architecture written the way PyTorch's tutorials write it (stock layers, defaults)."""
    if config.model == "mlp":
        mods, fan_in = [], config.input_shape[0]
        for w in config.hidden:
            mods += [nn.Linear(fan_in, w), nn.ReLU()]
            fan_in = w
        return nn.Sequential(*mods, nn.Linear(fan_in, config.num_outputs))
    c_in = config.input_shape[2]
    c1, c2 = config.conv_channels
    fh, fw, fc = config.flatten_hwc
    return nn.Sequential(
        nn.Conv2d(c_in, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(fc * fh * fw, config.dense_units), nn.ReLU(), nn.Linear(config.dense_units, config.num_outputs),
    )


def plain_loss(task: str) -> nn.Module:
    """The stock loss a PyTorch user writes (logits in, mean reduction)."""
    if task == "multiclass":
        return nn.CrossEntropyLoss()
    if task in ("multilabel", "binary"):
        return nn.BCEWithLogitsLoss()
    return nn.MSELoss()


def train_project(config, settings: dict, data: dict) -> dict:
    model = models.build_model(config, seed=int(settings["seed"]))
    opt = train.make_optimizer(model, sb.train_config(settings, data["batch_size"]))
    tensors = [train.to_framework(x, y) for x, y in data["train"]]
    return sb.timed_steps(lambda x, y: train.train_step(model, config, opt, x, y), tensors,
                        int(settings["warmup"]), int(settings["repeats"]), data["batch_size"])


def train_plain(config, settings: dict, data: dict) -> dict:
    torch.manual_seed(int(settings["seed"]))
    model = build_plain_model(config)
    opt = torch.optim.SGD(model.parameters(), lr=float(settings["learning_rate"]), momentum=float(settings["momentum"]))
    loss_fn = plain_loss(config.task)
    tensors = [(torch.from_numpy(nhwc_to_nchw(x) if x.ndim == 4 else x), torch.from_numpy(y)) for x, y in data["train"]]
    model.train()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return sb.timed_steps(step, tensors, int(settings["warmup"]), int(settings["repeats"]), data["batch_size"])


def train_compiled(config, settings: dict, data: dict) -> dict:
    model = models.build_model(config, seed=int(settings["seed"]))
    opt = train.make_optimizer(model, sb.train_config(settings, data["batch_size"]))
    compiled = torch.compile(model)
    tensors = [train.to_framework(x, y) for x, y in data["train"]]
    return sb.timed_steps(lambda x, y: train.train_step(compiled, config, opt, x, y), tensors,
                        int(settings["warmup"]), int(settings["repeats"]), data["batch_size"])


def _layout(x: np.ndarray) -> np.ndarray:
    return nhwc_to_nchw(x) if x.ndim == 4 else x


def _infer(fn_one, fn_big, settings: dict, data: dict) -> dict:
    lat, thr = [], []
    rows = int(settings["infer_batch"])
    x_one = _layout(data["x_one"])
    x_big = [_layout(x) for x in data["x_big"]]
    fn_big(x_big[0])  # warm-up at the big shape
    for _ in range(int(settings["repeats"])):
        lat.append(sb.per_call(lambda: fn_one(x_one), int(settings["latency_calls"])))
        thr.append(sb.throughput(fn_big, x_big, rows))
    return {"latency_b1_s": lat, "throughput_samples_per_s": thr}


def infer_project(model, config, settings: dict, data: dict) -> dict:
    fwd = lambda x: models.forward(model, x)  # noqa: E731
    return _infer(fwd, fwd, settings, data)


def infer_plain(model, config, settings: dict, data: dict) -> dict:
    model.eval()

    def fwd(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return _infer(fwd, fwd, settings, data)


def bare_passes(config, settings: dict, data: dict) -> dict:
    """no_grad forward on the validation split (f32, f64) and forward+backward on one batch, per repeat."""
    calls = int(settings["bare_calls"])
    out = {"forward_valid_s": [], "forward_valid_f64_s": [], "backward_s": []}
    m32 = models.build_model(config, seed=int(settings["seed"]))
    m64 = models.build_model(config.replace(dtype="float64"), seed=int(settings["seed"]))
    xv = torch.from_numpy(_layout(data["x_valid"]))
    xv64 = xv.double()
    xb, yb = train.to_framework(*data["batch0"])

    def forward(m, x):
        with torch.no_grad():
            return m(x)

    def backward():
        m32.zero_grad(set_to_none=True)
        m32.train()
        loss = losses.mean_loss(config.task, m32(xb), yb)
        loss.backward()
        m32.eval()

    m32.eval()
    m64.eval()
    for _ in range(int(settings["repeats"])):
        out["forward_valid_s"].append(sb.per_call(lambda: forward(m32, xv), calls))
        out["forward_valid_f64_s"].append(sb.per_call(lambda: forward(m64, xv64), calls))
        out["backward_s"].append(sb.per_call(backward, calls))
    return out


def export_project(model, config, path) -> dict:
    """Export twice to `path`: the first call pays the exporter's first-use cost."""
    t0 = time.perf_counter()
    export.export_onnx(model, config, path)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    export.export_onnx(model, config, path)
    return {"first_s": first, "again_s": time.perf_counter() - t0, "path": str(path)}


def bench_pair(pair_name: str, settings: dict) -> dict:
    """Every PyTorch figure for one built-in pair (see the module docstring)."""
    settings = {**sb.DEFAULTS, **settings}
    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    return sb.bench_part(sys.modules[__name__], pair_name, settings)


def main(argv=None) -> int:
    return sb.part_main(sys.argv[1:] if argv is None else argv, bench_pair, "torch_impl")


if __name__ == "__main__":
    sys.exit(main())
