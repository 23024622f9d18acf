"""The inputs of a PyTorch module for the reverse port (`--input-shape`), framework-free.

Two forms:

- `3,64,64`: one float input, its shape without the batch (the module is
  called with one positional argument);
- `input_ids=16:int64,attention_mask=16:int64:2,pixel_values=3x32x32`: named
  inputs, passed as keyword arguments in this order. Each is
  `NAME=SHAPE[:DTYPE[:HIGH]]`: SHAPE is the sizes without the batch joined by
  `x`, DTYPE a numpy dtype name (default float32), HIGH (integers only) the
  exclusive upper bound of the seeded random values. Without HIGH an integer
  input gets the size of the Embedding it feeds (torch_impl/read/__init__.py), else
  DEFAULT_INT_HIGH.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["InputSpec", "parse_input_shape", "as_specs", "DEFAULT_INT_HIGH", "INPUT_DTYPES"]

# An integer input that feeds no Embedding is most often a mask or a segment id
# (transformers' attention_mask, token_type_ids): values 0 and 1.
DEFAULT_INT_HIGH = 2
INPUT_DTYPES = ("float32", "float64", "int64", "int32", "bool")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class InputSpec:
    """One input: name (None: the module's single positional input), shape
    without the batch, dtype, and for integers the random values' upper bound."""

    name: str | None
    shape: tuple
    dtype: str = "float32"
    high: int | None = None

    @property
    def is_int(self) -> bool:
        return "int" in self.dtype or self.dtype == "bool"


def _sizes(text: str, sep: str, whole: str) -> tuple:
    try:
        dims = tuple(int(a) for a in text.split(sep))
    except ValueError:
        raise ValueError(f"{whole!r}: expected sizes separated by {sep!r}, e.g. 3{sep}64{sep}64") from None
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"{whole!r}: sizes must be positive")
    return dims


def _one(part: str, whole: str) -> InputSpec:
    name, _, rest = part.partition("=")
    if not _NAME.match(name.strip()):
        raise ValueError(f"{whole!r}: {name!r} is not an input name (a Python identifier)")
    fields = rest.split(":")
    if len(fields) > 3 or not fields[0]:
        raise ValueError(f"{whole!r}: expected NAME=SHAPE[:DTYPE[:HIGH]] for {part!r}, e.g. input_ids=16:int64")
    dtype = fields[1] if len(fields) > 1 else "float32"
    if dtype not in INPUT_DTYPES:
        raise ValueError(f"{whole!r}: dtype {dtype!r} of {name!r}; expected one of {', '.join(INPUT_DTYPES)}")
    high = None
    if len(fields) == 3:
        if "int" not in dtype or not fields[2].isdigit() or int(fields[2]) < 1:
            raise ValueError(f"{whole!r}: HIGH of {name!r} must be a positive integer bound of an integer input")
        high = int(fields[2])
    return InputSpec(name.strip(), _sizes(fields[0], "x", whole), dtype, high)


def parse_input_shape(text: str):
    """`3,64,64` -> (3, 64, 64); the named form -> a tuple of InputSpec."""
    text = text.strip()
    if "=" not in text:
        return _sizes(text, ",", text)
    specs = tuple(_one(p, text) for p in text.split(",") if p.strip())
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{text!r}: an input named twice")
    return specs


def as_specs(input_shape) -> tuple:
    """A plain shape (one float input) or InputSpecs -> a tuple of InputSpec."""
    if input_shape and all(isinstance(s, InputSpec) for s in input_shape):
        return tuple(input_shape)
    return (InputSpec(None, tuple(int(d) for d in input_shape)),)
