"""`path/file.py:NAME` and `package.module:NAME`: a user's model given on the command line.

Framework-free: the object is imported and called here; the caller says what
type it must return (an nn.Module for `verify` and the reverse port).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from shared.core import user_code
from shared.core.errors import UsageError

__all__ = ["import_user_module", "load_object", "build_from_spec"]


def import_user_module(target: str, *, label: str | None = None, file_module_name: str | None = None):
    """A user's module by dotted name or .py path, registered as the user's code
    (shared/core/user_code.py) before it runs, so its errors are named as theirs.

    label: how messages name what was asked for (default `target`);
    file_module_name: the sys.modules name of a .py file (default its stem),
    kept there so classes defined in it stay importable (pickling, dataclasses)."""
    label = label or target
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise UsageError(f"{label}: no such file {target}")
        module_spec = importlib.util.spec_from_file_location(file_module_name or path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        user_code.register(module)  # before it runs: its errors are the user's, wherever the file lies
        module_spec.loader.exec_module(module)
        return module
    try:
        module = importlib.import_module(target)
    except ImportError as e:
        if user_code.user_fault(e) is not None:  # raised inside the user's module: named by compare.py
            raise
        raise UsageError(f"{label}: cannot import module {target!r} ({e})") from None
    user_code.register(module)
    return module


def load_object(spec: str):
    """NAME from `path/file.py:NAME` or `package.module:NAME` (UsageError naming what is wrong)."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise UsageError(f"{spec}: expected path/file.py:NAME or package.module:NAME")
    module = import_user_module(target, label=spec, file_module_name=f"ktp_user_{Path(target).stem}")
    obj = getattr(module, name, None)
    if obj is None or not callable(obj):
        raise UsageError(f"{spec}: {target} has no class or function {name!r}")
    return obj


def build_from_spec(spec: str, expected: type, expected_name: str):
    """Call NAME with no arguments (a class or a factory function); check what it returns."""
    factory = load_object(spec)
    name = spec.rpartition(":")[2]
    try:
        obj = factory()
    except TypeError as e:
        if e.__traceback__.tb_next is not None:  # raised inside NAME, not by the call's arguments: the user's error
            raise
        raise UsageError(f"{spec}: {name}() needs arguments ({e}); give a class with a no-argument constructor "
                         f"or a function returning {expected_name}") from None
    if not isinstance(obj, expected):
        raise UsageError(f"{spec}: {name}() returned {type(obj).__name__}, expected {expected_name}")
    return obj
