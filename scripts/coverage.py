"""The port's coverage of Keras: every keras.layers class and every keras.ops
function with its status, as a markdown table (docs/coverage.md).

    .venv/bin/python scripts/coverage.py            # print the table
    .venv/bin/python scripts/coverage.py --write    # rewrite docs/coverage.md

Statuses:
- ported: a converter is registered for it (keras_impl/convert, `@keras_converter`);
- traced: no converter of its own; a keras.layers.Layer subclass without one
  is read by running its call() (keras_impl/read/trace.py), which ports when
  every op it records is ported (the custom-layer path);
- refused: a converter that always refuses, or a known limit, with the reason;
- not yet: nothing reads it; a model that uses it exits 2 naming it.
tests/architecture/test_coverage.py checks docs/coverage.md is this script's output.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "coverage.md"

# Known limits without a converter: class -> reason.
KNOWN_REFUSED = {
    "ConvLSTM1D": "torch has no ConvLSTM; an explicit cell loop is not yet written",
    "ConvLSTM2D": "torch has no ConvLSTM; an explicit cell loop is not yet written",
    "ConvLSTM3D": "torch has no ConvLSTM; an explicit cell loop is not yet written",
    "InputLayer": "not a computation: a model's input (read as the graph's input)",
    "Input": "not a computation: a model's input (read as the graph's input)",
}
# The custom-layer paths: classes users subclass (or wrap code in), read by tracing.
TRACED = {"Layer": "subclasses without a converter run call() on symbolic inputs (keras_impl/read/trace.py)",
          "Lambda": "its function is traced (needs --unsafe: safe_mode refuses code)",
          "Attention": "call() traced (ops.matmul, swapaxes, softmax: keras.io's Perceiver, tests/flows/port/test_port_kerasio.py); "
                       "masks and use_causal_mask not yet"}


def _layer_rows(converters) -> list:
    import keras

    rows = []
    for name in sorted(dir(keras.layers)):
        obj = getattr(keras.layers, name)
        if not (inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)) and name != "Input":
            continue
        status, note = _status(obj.__name__, converters)  # the registry keys the class's own name
        if obj.__name__ != name:
            note = f"alias of `{obj.__name__}`" + (f"; {note}" if note else "")
        rows.append((name, status, note))
    return rows


def _status(key, converters) -> tuple:
    if key in converters:
        reason = getattr(converters[key], "refusal", None)
        return ("refused", reason) if reason else ("ported", "")
    name = key.removeprefix("ops.")
    if name in KNOWN_REFUSED:
        return "refused", KNOWN_REFUSED[name]
    if name in TRACED:
        return "traced", TRACED[name]
    return "not yet", ""


def _op_class(fn):
    """The keras Operation class behind a keras.ops function (ops.numpy.add -> Add), or None."""
    mod = sys.modules.get(getattr(fn, "__module__", ""), None)
    want = fn.__name__.replace("_", "").lower()
    for cname, cls in vars(mod or object).items():
        if inspect.isclass(cls) and cname.replace("_", "").lower() == want and hasattr(cls, "call"):
            return cname
    return None


def _op_rows(converters) -> list:
    import keras

    rows = []
    for name in sorted(dir(keras.ops)):
        fn = getattr(keras.ops, name)
        if name.startswith("_") or not inspect.isfunction(fn):
            continue
        cls = _op_class(fn)
        status = _status(f"ops.{cls}", converters) if cls else ("not yet", "no keras Operation class of the same name found")
        rows.append((name, *status))
    return rows


def registries() -> dict:
    """The four registries of the port, every family module imported (shared/graph/registries.py)."""
    import keras_impl.read  # noqa: F401  (registers every converter)
    import keras_impl.write.math_ops  # noqa: F401  (the Keras writers' families)
    import keras_impl.write.ops  # noqa: F401
    import keras_impl.write.tensor_ops  # noqa: F401
    import torch_impl.read.aten  # noqa: F401  (the torch readers' families)
    import torch_impl.read.aten_layout  # noqa: F401
    import torch_impl.read.norms  # noqa: F401
    import torch_impl.read.ops  # noqa: F401
    import torch_impl.read.tensor_ops  # noqa: F401
    import torch_impl.write  # noqa: F401  (registers every emitter)
    from keras_impl.read.registry import CONVERTERS
    from keras_impl.write import WRITERS
    from torch_impl.write.registry import EMITTERS
    from torch_impl.read import READERS

    return {"converters": CONVERTERS, "writers": WRITERS, "emitters": EMITTERS, "readers": READERS}


def _graph_op_rows(emitters, writers) -> list:
    """Each op of the graph's vocabulary (shared/graph/ir.py's table, and any op a writer knows):
    whether model.py (torch emitter) and model_keras.py (Keras writer) can write it."""
    import shared.graph.ir as g

    table = [o for row in re.findall(r"^\| ((?:`\w+`(?:, )?)+) \|", g.__doc__, flags=re.M) for o in re.findall(r"`(\w+)`", row)]
    ops = table + sorted((set(emitters) | set(writers)) - set(table))
    return [(op, "yes" if op in emitters else "no", "yes" if op in writers else "no") for op in ops]


def table() -> str:
    """The markdown text of docs/coverage.md."""
    import keras

    reg = registries()
    layers, ops = _layer_rows(reg["converters"]), _op_rows(reg["converters"])
    graph_ops = _graph_op_rows(reg["emitters"], reg["writers"])
    out = [f"# Port coverage (Keras {keras.__version__})", "", "Generated by `scripts/coverage.py --write` from the "
           "port's registries; `tests/architecture/test_coverage.py` fails when it is stale.", "",
           summary(layers, ops, graph_ops, reg), ""]
    for title, rows in (("keras.layers", layers), ("keras.ops", ops)):
        out += [f"## {title}", "", "| name | status | note |", "|---|---|---|"]
        out += [f"| `{n}` | {s} | {r.replace('|', '/')} |" for n, s, r in rows]
        out.append("")
    out += ["## Graph ops (shared/graph/ir.py) and the code each direction writes", "",
            "| op | model.py (`@torch_emitter`) | model_keras.py (`@keras_writer`) |", "|---|---|---|"]
    out += [f"| `{op}` | {t} | {k} |" for op, t, k in graph_ops]
    out += ["", "## PyTorch modules and functions read (`@torch_reader`)", "",
            ", ".join(f"`{k}`" for k in sorted(map(str, reg["readers"]))), ""]
    return "\n".join(out)


def summary(layers, ops, graph_ops, reg) -> str:
    def counts(rows):
        c = {s: sum(1 for r in rows if r[1] == s) for s in ("ported", "traced", "refused", "not yet")}
        return f"{len(rows)}: " + ", ".join(f"{v} {k}" for k, v in c.items())

    to_torch = sum(t == "yes" for _, t, _ in graph_ops)
    to_keras = sum(k == "yes" for _, _, k in graph_ops)
    return (f"keras.layers classes {counts(layers)}. keras.ops functions {counts(ops)}. "
            f"Graph ops {len(graph_ops)}: {to_torch} written to PyTorch, {to_keras} written to Keras; "
            f"{len(reg['readers'])} PyTorch modules and functions read.")


def main(argv=None) -> int:
    text = table()
    if "--write" in (argv or sys.argv[1:]):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text)
        readme = ROOT / "README.md"
        line = re.search(r"keras\.layers classes [^\n]*", text).group(0)
        r = readme.read_text()
        r = re.sub(r"(<!-- coverage -->\n).*?(\n<!-- /coverage -->)", lambda m: m.group(1) + line + m.group(2), r, flags=re.S)
        readme.write_text(r)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
