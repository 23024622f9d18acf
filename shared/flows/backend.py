"""The engine's old `Backend` interface, now shared.flows.side.Side (issue 19).

The default run (shared/flows/engine.py) drives the same `Side` as the port,
the reverse port and `verify`; its sides are keras_impl/backend.py,
torch_impl/backend.py and shared/onnx/onnx_backend.py (the default-run column
of shared/flows/side.py's table). `Backend` stays one release as an alias.
"""

from shared.flows.side import Side

__all__ = ["Backend"]

Backend = Side
