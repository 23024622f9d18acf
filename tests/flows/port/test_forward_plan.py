"""torch_impl/write/forward_plan.py: the generated forward chains single-use tensors
in `x`, deletes the others after their last use, and the per-node capture
still reads every tensor (issue 20: a forward that holds every activation ran
at 0.6-0.8 of torchvision's speed). Framework-free graphs, torch only."""

from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import torch

from shared.graph.ir import Graph, Node, TensorSpec
from torch_impl.write.forward_plan import CHAIN, forward_plan
from torch_impl.write import build_module, capture, graph_values, variable_names, write_source


def _residual_graph() -> Graph:
    """inp -> relu -> a ; a -> sigmoid -> tanh -> b ; a + b -> s ; relu(s) -> out, and s also an output."""
    g = Graph("residual", inputs=["inp"], outputs=["out", "s"])
    for name in ("inp", "a", "t", "b", "s", "out"):
        g.tensors[name] = TensorSpec(name, (None, 4))

    def act(name, fn, x, y):
        g.nodes.append(Node(name, "activation", [x], [y], attrs={"fn": fn}))

    act("relu_a", "relu", "inp", "a")
    act("sig", "sigmoid", "a", "t")
    act("tanh_b", "tanh", "t", "b")
    g.nodes.append(Node("add", "add", ["a", "b"], ["s"]))
    act("relu_out", "relu", "s", "out")
    return g


def test_plan_chains_single_use_tensors_and_frees_the_rest():
    g = _residual_graph()
    statements, var = forward_plan(g.nodes, variable_names(g), set(g.inputs) | set(g.outputs))
    assert var["t"] == CHAIN  # read once, by the next statement
    assert var["b"] == CHAIN  # read once, by the next statement (the add)
    assert var["a"] == "a"  # read twice: keeps its name
    assert var["s"] == "s" and var["out"] == "out" and var["inp"] == "inp"  # outputs and inputs keep theirs
    frees = [s.frees for s in statements if s.node is None]
    assert frees == [["a"]]  # deleted right after the add, its last reader; outputs never
    src = write_source(g)
    body = src.split("def forward(self, inp):")[1]
    assert "        x = torch.sigmoid(a)  # t: (N, 4)" in body
    assert "        x = torch.tanh(x)  # b: (N, 4)" in body
    assert "        s = a + x  # (N, 4)\n        del a\n" in body
    assert body.rstrip().endswith("return out, s")


def test_capture_reads_every_tensor_including_chained_and_deleted_ones():
    g = _residual_graph()
    module, _ = build_module(g, dtype=torch.float64)
    x = np.random.default_rng(0).standard_normal((3, 4))
    values = graph_values(module, g, [x])
    a = np.maximum(x, 0)
    t = 1 / (1 + np.exp(-a))
    b = np.tanh(t)
    expected = {"inp": x, "a": a, "t": t, "b": b, "s": a + b, "out": np.maximum(a + b, 0)}
    assert set(values) == set(expected)
    for name, want in expected.items():
        np.testing.assert_allclose(values[name], want, rtol=1e-15, atol=1e-15, err_msg=name)


def test_capture_keeps_gradients_and_restores_the_tracer():
    g = _residual_graph()
    module, _ = build_module(g, dtype=torch.float64)
    x = torch.tensor(np.random.default_rng(1).standard_normal((2, 4)), requires_grad=True)
    marker = []

    def outer(frame, event, arg):  # a tracer already set (a debugger, coverage) comes back afterwards
        marker.append(event)

    old = sys.gettrace()
    sys.settrace(outer)
    try:
        out, values = capture(module, g, [x])
        restored = sys.gettrace()
    finally:
        sys.settrace(old)
    assert restored is outer
    assert values["out"] is out[0] and values["s"] is out[1]
    values["t"].sum().backward()  # a chained intermediate is still part of the autograd graph
    a = torch.relu(x.detach())
    want = torch.sigmoid(a) * (1 - torch.sigmoid(a)) * (x.detach() > 0)
    assert torch.allclose(x.grad, want, rtol=0, atol=1e-15)


def test_plain_forward_frees_dead_activations(monkeypatch):
    """When the last statement runs, the intermediates `t` (chained, rebound)
    and `a` (deleted after its last reader) are already freed; a forward
    holding every local until it returns keeps both alive there."""
    g = _residual_graph()
    module, _ = build_module(g, dtype=torch.float64)
    refs, alive_at_last = {}, {}
    sigmoid, relu = torch.sigmoid, torch.nn.functional.relu

    def spy_sigmoid(x):
        out = sigmoid(x)
        refs["t"] = weakref.ref(out)
        return out

    def spy_relu(x, *args, **kw):
        out = relu(x, *args, **kw)
        if "a" not in refs:
            refs["a"] = weakref.ref(out)  # the first relu makes `a`
        else:  # the last statement
            gc.collect()
            alive_at_last.update({k: r() is not None for k, r in refs.items()})
        return out

    monkeypatch.setattr(torch, "sigmoid", spy_sigmoid)
    monkeypatch.setattr(torch.nn.functional, "relu", spy_relu)
    with torch.no_grad():
        module(torch.randn(2, 4, dtype=torch.float64))
    assert alive_at_last == {"a": False, "t": False}


def _dense_relu_graph() -> Graph:
    """inp -> Dense -> h -> relu -> r -> sigmoid -> s -> relu -> out."""
    g = Graph("dense", inputs=["inp"], outputs=["out"])
    for name, width in (("inp", 3), ("h", 4), ("r", 4), ("s", 4), ("out", 4)):
        g.tensors[name] = TensorSpec(name, (None, width))
    rng = np.random.default_rng(2)
    g.nodes.append(Node("dense", "linear", ["inp"], ["h"], attrs={"in_features": 3, "out_features": 4, "bias": True},
                        weights={"weight": rng.standard_normal((4, 3)), "bias": rng.standard_normal(4)}))
    g.nodes.append(Node("relu", "activation", ["h"], ["r"], attrs={"fn": "relu"}))
    g.nodes.append(Node("sig", "activation", ["r"], ["s"], attrs={"fn": "sigmoid"}))
    g.nodes.append(Node("relu_2", "activation", ["s"], ["out"], attrs={"fn": "relu"}))
    return g


def test_activation_after_a_new_tensor_runs_in_place_and_the_check_reads_its_input_first():
    g = _dense_relu_graph()
    src = write_source(g)
    assert "x = F.relu(x, inplace=True)  # r: (N, 4)" in src  # after the Dense: its own new tensor
    assert "out = F.relu(x)  # (N, 4)" in src  # after a sigmoid (its backward reads its output): a new tensor
    module, _ = build_module(g, dtype=torch.float64)
    x = torch.tensor(np.random.default_rng(3).standard_normal((5, 3)), requires_grad=True)
    out, values = capture(module, g, [x])
    w, b = module.dense.weight.detach(), module.dense.bias.detach()
    h = x.detach() @ w.T + b
    assert (h < 0).any()  # the relu changes something: a shared tensor would show it
    assert torch.allclose(values["h"].detach(), h, rtol=1e-14, atol=1e-14)  # read before the relu overwrote it
    assert torch.equal(values["r"].detach(), torch.relu(values["h"].detach()))
    out.sum().backward()  # in-place relu after the Dense leaves the gradient intact
    hh = h.clone().requires_grad_(True)
    torch.relu(torch.sigmoid(torch.relu(hh))).sum().backward()
    assert torch.allclose(x.grad, hh.grad @ w, rtol=0, atol=1e-15)


def test_in_place_after_a_deleted_operand_still_reads_the_sum_first():
    """s = a + t; del a; out = relu(s) in place: the `del` line between the two
    statements must not make the check read s after the relu overwrote it."""
    g = Graph("sum", inputs=["inp"], outputs=["out"])
    for name in ("inp", "a", "t", "s", "out"):
        g.tensors[name] = TensorSpec(name, (None, 6))
    g.nodes += [Node("neg", "activation", ["inp"], ["a"], attrs={"fn": "neg"}),
                Node("sig", "activation", ["a"], ["t"], attrs={"fn": "sigmoid"}),
                Node("add", "add", ["a", "t"], ["s"]),
                Node("relu", "activation", ["s"], ["out"], attrs={"fn": "relu"})]
    src = write_source(g)
    assert "x = a + x  # s: (N, 6)\n        del a\n        out = F.relu(x, inplace=True)" in src
    module, _ = build_module(g, dtype=torch.float64)
    x = np.random.default_rng(4).standard_normal((4, 6)) * 3
    values = graph_values(module, g, [x])
    s = -x + 1 / (1 + np.exp(x))
    assert (s < 0).any()
    np.testing.assert_allclose(values["s"], s, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(values["out"], np.maximum(s, 0), rtol=1e-15, atol=1e-15)


def test_a_forward_with_its_own_x_chains_in_h_and_keeps_x_until_its_last_reader():
    """A traced layer's class forward takes call()'s `x`: the chained tensors
    are `h` there, `x` is never overwritten or deleted (a parameter), and with
    x, h and y all taken nothing is chained (torch_impl/write/scopes.py)."""
    g = _residual_graph()
    nodes = [Node(n.name, n.op, ["x" if t == "inp" else t for t in n.inputs], n.outputs, n.attrs) for n in g.nodes]
    names = {"x": "x", **{t: t for t in ("a", "t", "b", "s", "out")}}
    statements, var = forward_plan(nodes, names, {"x", "out", "s"})
    assert var["t"] == var["b"] == "h" and var["x"] == "x" and var["a"] == "a"
    assert [s.frees for s in statements if s.node is None] == [["a"]]  # never x, a parameter
    _, var = forward_plan(nodes, {**names, "a": "h", "s": "y"}, {"x", "out", "s"})
    assert var == {**names, "a": "h", "s": "y"}  # no free name: every tensor keeps its own
