"""One registry mechanism for the four directions of the port: Keras layer ->
graph (`@keras_converter`), torch op -> graph (`@torch_reader`), graph op ->
Keras code (`@keras_writer`), graph op -> torch code (`@torch_emitter`).

Registering a key twice is an error (as onnx2torch's node_converters registry
does), so which function serves a key never depends on import order; a
plugin that means to replace a built-in says so with replace=True.
"""

from __future__ import annotations

from shared.core.errors import UsageError

__all__ = ["Registry", "DuplicateRegistrationError"]


class DuplicateRegistrationError(UsageError):
    """A key registered twice without replace=True."""


class Registry(dict):
    """key -> function, filled by the decorator `registry.register(*keys)`."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name  # the decorator users see, for messages: "@keras_converter"

    def register(self, *keys: str, replace: bool = False):
        def decorate(fn):
            for key in keys:
                old = self.get(key)
                if old is not None and old is not fn and not replace:
                    raise DuplicateRegistrationError(
                        f"{self.name}({key!r}) is already registered by {_where(old)}; {_where(fn)} registers it "
                        f"again (pass replace=True to {self.name} to replace it on purpose)")
                self[key] = fn
            return fn

        return decorate


def _where(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
