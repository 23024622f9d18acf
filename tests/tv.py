"""torchvision for the reverse-port tests, or None when it is not installed.

The registry's torchvision wheel is built for the CUDA torch; with the CPU
torch of this project `pip install --no-deps torchvision==0.28.0` installs,
and its classification models work once `torchvision._meta_registrations`
(C++ detection operators that cannot load) is stubbed before the import.
Tests that need it: `tv = tests.tv.torchvision_or_skip()`.
"""

from __future__ import annotations

import importlib.util
import sys
import types

__all__ = ["load_torchvision", "torchvision_or_skip"]


def load_torchvision():
    """The torchvision module, or None when it is absent or cannot import."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    import torch  # noqa: F401  (torch before torchvision, and before TensorFlow)

    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import torchvision
        import torchvision.models  # noqa: F401
    except Exception:  # a broken install: skip rather than fail the suite
        return None
    return torchvision


def torchvision_or_skip():
    import pytest

    tv = load_torchvision()
    if tv is None:
        pytest.skip("torchvision is not installed (pip install --no-deps torchvision==0.28.0)")
    return tv
