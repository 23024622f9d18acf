"""shared/graph/ir.py and the layout helpers of the converter registry, without
any framework: weight transforms both ways, JSON, and where permutes go."""

from __future__ import annotations

import json

import numpy as np

from keras_impl.read.registry import Context, same_pads
from shared.graph.ir import Graph, TensorSpec, apply_transform, channels_first_perm, identifier, invert_transform


def test_transforms_round_trip_depthwise_and_conv():
    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, 5, 4, 2))  # depthwise (kh, kw, C, M)
    steps = [("transpose", (2, 3, 0, 1)), ("reshape", (8, 1, 3, 5))]
    w = apply_transform(k, steps)
    assert w.shape == (8, 1, 3, 5)
    assert w[2 * 2 + 1, 0, 1, 4] == k[1, 4, 2, 1]  # output channel c*M+m
    assert np.array_equal(invert_transform(w, steps, k.shape), k)
    conv = rng.standard_normal((3, 3, 4, 6))
    steps = [("transpose", (3, 2, 0, 1))]
    assert np.array_equal(invert_transform(apply_transform(conv, steps), steps, conv.shape), conv)


def test_same_pads_match_tf_formula():
    assert same_pads(8, 3, 2) == (0, 1)  # even size, stride 2: the odd pixel goes after
    assert same_pads(7, 3, 2) == (1, 1)
    assert same_pads(6, 1, 2) == (0, 0)
    assert same_pads(None, 5, 1, dilation=2) == (4, 4)


def _graph():
    g = Graph("g", inputs=["x"])
    g.tensors["x"] = TensorSpec("x", (None, 3, 4, 5), keras_perm=channels_first_perm(4))  # Keras (N, 4, 5, 3)
    return g


def test_context_permutes_only_when_needed_and_remaps_axes():
    g = _graph()
    ctx = Context(g)
    assert ctx.tensor("x", "cf") == "x" and not g.nodes
    assert ctx.axis("x", -1) == 1 and ctx.axis("x", 1) == 2
    cl = ctx.tensor("x", "as_is")
    assert g.nodes[-1].op == "permute" and g.nodes[-1].attrs["dims"] == (0, 2, 3, 1)
    assert g.tensors[cl].shape == (None, 4, 5, 3) and g.tensors[cl].keras_perm is None and g.tensors[cl].internal
    assert ctx.tensor("x", "as_is") == cl and len(g.nodes) == 1  # cached: one permute per tensor and layout
    const = ctx.const_to_neutral(np.arange(3.0), "x")
    assert const.shape == (1, 3, 1, 1)


def test_graph_prints_and_serialises_without_weight_values():
    g = _graph()
    ctx = Context(g)
    ctx.emit("rescale", ["x"], "y", attrs={"scale": 0.5, "offset": 0.0}, weights={"extra": np.ones((3,))},
             node_name="rescaling", source={"framework": "keras", "layer": "rescaling", "class": "Rescaling"})
    g.outputs = ["y"]
    assert "y = rescale(x; scale=0.5, offset=0.0) [extra(3,)]" in str(g)
    d = json.loads(g.to_json())
    assert d["nodes"][0]["weights"] == {"extra": {"shape": [3], "dtype": "float64"}}
    assert d["tensors"]["y"]["keras_perm"] == [0, 3, 1, 2]
    assert identifier("block1/conv-1") == "block1_conv_1" and identifier("1x") == "l_1x"
    taken = {"a"}
    assert identifier("a", taken) == "a_2" and "a_2" in taken


def _imported(paths) -> set:
    """Top-level package names the files import (statically, imports inside functions included)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    names = set()
    for pattern in paths:
        for f in root.glob(pattern):
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names


FRAMEWORKS = {"torch", "tensorflow", "keras", "tf2onnx"}


def test_each_side_imports_only_its_framework():
    """The architecture rule, read from the sources (no slow framework import)."""
    assert not _imported(["shared/graph/ir.py", "shared/flows/port.py", "shared/flows/port_check.py", "shared/flows/side.py", "shared/flows/port_reverse.py"]) & (FRAMEWORKS | {"keras_impl", "torch_impl"})
    keras_side = _imported(["keras_impl/read/__init__.py", "keras_impl/port.py", "keras_impl/side.py", "keras_impl/read/*.py"])
    assert "torch" not in keras_side and "torch_impl" not in keras_side and "keras" in keras_side
    torch_side = _imported(["torch_impl/write/__init__.py", "torch_impl/port.py", "torch_impl/side.py", "torch_impl/write/*.py"])
    assert not torch_side & {"tensorflow", "keras", "tf2onnx", "keras_impl"} and "torch" in torch_side
