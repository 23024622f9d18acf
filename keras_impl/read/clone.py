"""Custom layer classes whose config Keras cannot take back, made clonable
for the port's float64 copy (keras_impl/read/__init__.py cast_model).

`Layer.get_config` always adds `name`, `trainable` and `dtype` to the
arguments Keras captured from the layer's __init__ (keras/src/layers/layer.py
get_config), and `Layer.from_config` calls `cls(**config)`. A custom layer
whose __init__ takes neither **kwargs nor those keywords (keras.io's
Involution: `__init__(self, channel, ..., name)`) cannot be rebuilt from its
own config: Keras' own save/load and clone_model fail on it, and so would the
float64 copy. While the copy is built, such a class's from_config passes only
the keywords its __init__ accepts, and only when what it leaves out is
`trainable` / `dtype` (the copy is built under the float64 dtype policy, so the
layer and the layers it makes get float64 all the same; cast_model copies the
names back). A dropped key of its own is no base-layer key: that stays an error.
"""

from __future__ import annotations

import contextlib
import inspect
import re

from shared.core.errors import UsageError

__all__ = ["lenient_from_config", "model_config"]

def model_config(model) -> dict:
    """Keras' config of `model`, which the float64 copy is built from. A
    custom layer or model whose get_config Keras cannot generate (its __init__
    took a value Keras cannot serialise, and it defines no get_config of its
    own: keras.io's subclassed Perceiver) cannot be copied: exit 2, naming
    the class and the fix (Keras' own save/load needs the same get_config)."""
    import keras

    try:
        return keras.saving.serialize_keras_object(model)
    except NotImplementedError as e:
        found = re.search(r"Object (\w+) was created", str(e))  # keras/src/ops/operation.py get_config
        cls = found.group(1) if found else type(model).__name__
        first = " ".join(str(e).split())[:160]
        raise UsageError(f"the port's float64 copy of {model.name!r} is built from its config, and Keras cannot "
                         f"make the config of class {cls} ({first}...): give {cls} a get_config() returning its "
                         "__init__ arguments (Keras' own model.save needs it too)") from None


# Layer.get_config's own keys that the float64 copy may do without (see above).
_BASE_KEYS = {"trainable", "dtype"}


def _accepts(cls):
    """The keywords cls.__init__ accepts, or None when it takes **kwargs."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {k for k, p in params.items() if k != "self" and p.kind is not p.VAR_POSITIONAL}


@contextlib.contextmanager
def lenient_from_config(classes):
    """While active, each class in `classes` whose __init__ lacks **kwargs and
    which has no from_config of its own takes its config minus the base keys
    its __init__ does not accept."""
    patched = []
    for cls in classes:
        accepted = _accepts(cls)
        if accepted is None or "from_config" in vars(cls):
            continue

        def from_config(c, config, _accepted=accepted, _original=cls.from_config):
            dropped = set(config) - _accepted
            if dropped and dropped <= _BASE_KEYS:
                return c(**{k: v for k, v in config.items() if k in _accepted})
            return _original(config)

        cls.from_config = classmethod(from_config)
        patched.append(cls)
    try:
        yield
    finally:
        for cls in patched:
            del cls.from_config
