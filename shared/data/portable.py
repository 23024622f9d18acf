"""The portable weights file: safetensors in PyTorch layout plus a JSON sidecar.

`model.safetensors` holds every tensor of `shared.data.config.parameter_spec`,
keyed by the PyTorch state_dict name, in PyTorch layout. `model.json` beside it
says what the tensors are for: task, model config, class names, dtype, and the
framework (and version) that wrote them. Loading checks all of it and refuses
with the name of the first tensor (or field) that does not fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from shared.core.atomic import atomic_write_bytes, atomic_write_text
from shared.data.config import ModelConfig, parameter_spec
from shared.core.errors import WeightsError

__all__ = ["FORMAT", "FORMAT_VERSION", "sidecar_path", "check_tensors", "save_portable", "load_portable", "file_store"]

FORMAT = "keras-torch-parity/portable-weights"
FORMAT_VERSION = 1


def sidecar_path(path) -> Path:
    """`weights.safetensors` -> `weights.json`."""
    return Path(path).with_suffix(".json")


def check_tensors(config: ModelConfig, tensors: dict, source: str = "weights") -> None:
    """Refuse tensors that do not fit `config`: missing, unexpected, shape, dtype.

    Raises:
        WeightsError naming the tensor, what was expected and what was received.
    """
    spec = parameter_spec(config)
    missing = [n for n in spec if n not in tensors]
    if missing:
        raise WeightsError(f"{source}: missing tensor {missing[0]!r} (expected shape {spec[missing[0]]}); missing: {missing}")
    unexpected = [n for n in tensors if n not in spec]
    if unexpected:
        raise WeightsError(f"{source}: unexpected tensor {unexpected[0]!r} for a {config.model}/{config.task} model; unexpected: {unexpected}")
    for name, shape in spec.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise WeightsError(f"{source}: tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}")
        if str(t.dtype) != config.dtype:
            raise WeightsError(f"{source}: tensor {name!r} has dtype {t.dtype}, expected {config.dtype}")


def save_portable(path, tensors: dict, config: ModelConfig, *, classes=(), framework: str, framework_version: str) -> Path:
    """Write `path` (.safetensors) and its JSON sidecar, each atomically.

    Returns:
        The path of the safetensors file.
    """
    path = Path(path)
    check_tensors(config, tensors, source=f"writing {path.name}")
    ordered = {n: np.ascontiguousarray(tensors[n]) for n in parameter_spec(config)}
    sidecar = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": config.task,
        "model": config.model,
        "config": config.to_dict(),
        "classes": list(classes),
        "dtype": config.dtype,
        "layout": "pytorch",
        "framework": framework,
        "framework_version": framework_version,
        "tensors": {n: list(t.shape) for n, t in ordered.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, st_save(ordered, metadata={"format": FORMAT}))
    atomic_write_text(sidecar_path(path), json.dumps(sidecar, indent=2) + "\n")
    return path


def load_portable(path, config: ModelConfig | None = None) -> tuple:
    """Read and check a portable weights file.

    Args:
        path: the .safetensors file; its sidecar must sit beside it.
        config: the model the tensors are meant for. If given, the sidecar's
            task, model and config must equal it; if None, the sidecar's
            config is used.

    Returns:
        (tensors, sidecar, config).
    """
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if not side.is_file():
        raise WeightsError(f"{path}: its sidecar {side.name} is missing (it says which task and model the tensors are for)")
    try:
        sidecar = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{side}: not valid JSON ({exc})") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise WeightsError(f"{side}: not a {FORMAT} sidecar (format={sidecar.get('format') if isinstance(sidecar, dict) else None!r})")
    try:
        file_config = ModelConfig.from_dict(sidecar["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{side}: bad 'config' field ({exc})") from None
    for key in ("task", "model", "dtype"):
        if sidecar.get(key) != getattr(file_config, key):
            raise WeightsError(f"{side}: field {key}={sidecar.get(key)!r} contradicts its own config ({key}={getattr(file_config, key)!r})")
    if config is not None:
        for key in ("task", "model"):
            if getattr(file_config, key) != getattr(config, key):
                raise WeightsError(
                    f"{side}: written for {key}={getattr(file_config, key)!r}, "
                    f"but the model to load into has {key}={getattr(config, key)!r}"
                )
        if file_config != config:
            diff = {k: (v, getattr(config, k)) for k, v in file_config.to_dict().items() if v != config.to_dict()[k]}
            raise WeightsError(f"{side}: model config differs (file, model): {diff}")
    else:
        config = file_config
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise WeightsError(f"{path}: not a safetensors file ({exc})") from None
    check_tensors(config, tensors, source=str(path))
    return tensors, sidecar, config


def file_store(folder, stem: str, config: ModelConfig, classes=(), versions: dict | None = None):
    """The engine's `store` (shared.flows.engine.weights_check): each side's tensors go
    through `folder/{stem}.{side}.safetensors` and come back as read from it.

    Args:
        versions: {side: framework version} for the sidecars.
    """
    versions = versions or {}

    def store(side: str, tensors: dict) -> dict:
        path = save_portable(Path(folder) / f"{stem}.{side}.safetensors", tensors, config, classes=classes,
                             framework=side, framework_version=versions.get(side, ""))
        return load_portable(path, config)[0]

    return store
