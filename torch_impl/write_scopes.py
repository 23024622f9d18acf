"""model.py with one nn.Module class per traced custom Keras layer (issue 20).

The graph says which nodes came from which call of a custom layer
(graph.meta["scopes"], shared/graph_scopes.py). Each such call becomes a
submodule, `self.block_1 = TransformerBlock()`, called once per use in the
enclosing forward; its class holds the submodules named after the Keras
sub-layers (`self.att`, `self.ffn_dense`) and a forward over them. The inputs
of a call are the tensors its nodes read from outside (the call() parameter
names where Keras handed them in), its outputs the tensors read after it.
Calls whose code is the same, whitespace and shape comments aside, share one
class named after the Keras class; a call with other code (other sizes, other
sub-layers) gets its own, `TransformerBlock_2`. A later call of the same layer
calls the first call's module again.

`Layout.frames` maps each module path ("" for the model) to one
{forward variable: graph tensor} per call, in call order, so the per-node
check reads every tensor back from the forward frames (torch_impl/write.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from shared.errors import UsageError
from shared.graph import Graph, identifier
from shared.graph_scopes import module_path, node_scope, scope_table
from torch_impl.emit import emitter_for
from torch_impl.emit.helpers import HELPERS

__all__ = ["Layout", "layout", "shape_comment"]


def shape_comment(shapes, note: str = "") -> str:
    """'(N, 8, 16)' per tensor; a size the instances of a class disagree on ("?") stays '?'."""
    text = ", ".join("(" + ", ".join("N" if i == 0 and s is None else ("?" if s is None or s == "?" else str(int(s)))
                                     for i, s in enumerate(shape)) + ")" for shape in shapes)
    return text + (f"; {note}" if note else "")


@dataclass
class _Body:
    """One forward's code: __init__ lines, (statement, output shapes, note) triples."""

    init: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    frame: dict = field(default_factory=dict)  # forward variable -> graph tensor
    calls: list = field(default_factory=list)  # (module path, frame) of the calls made, in order
    params: list = field(default_factory=list)
    returns: list = field(default_factory=list)

    def key(self, head: str) -> tuple:
        """What two calls must share to share a class (the shape comments aside)."""
        return (head, tuple(self.init), tuple(code for code, _, _ in self.lines), tuple(self.params), tuple(self.returns))


@dataclass
class Layout:
    classes: list  # class source texts, dependencies first
    init: list
    forward: list  # rendered forward lines of the model
    helpers: list
    frames: dict  # module path -> [frame per call]


class _Env:
    """Forward variable names of one class: graph tensor -> Python name."""

    def __init__(self, strip: str):
        self.strip, self.vars, self.taken = strip, {}, {"self", *HELPERS}

    def name(self, tensor: str, want: str | None = None) -> str:
        if tensor not in self.vars:
            base = want or (tensor[len(self.strip):] if self.strip and tensor.startswith(self.strip) else tensor)
            self.vars[tensor] = identifier(base, self.taken)
        return self.vars[tensor]


class _Writer:
    def __init__(self, graph: Graph, names: dict):
        self.graph, self.names = graph, names
        self.scopes = scope_table(graph)
        self.items = defaultdict(list)  # context (scope id or None) -> [("node", node) | ("scope", id)]
        self.members = defaultdict(list)  # scope id -> every node inside it
        self.helpers, self.classes = [], []
        self.class_names = {"Model", *HELPERS}
        self.by_key = {}  # class code key -> [name, [shape comments per instance]]
        self.code_of = {}  # scope id -> class code key (first calls)
        readers = defaultdict(set)
        for i, node in enumerate(graph.nodes):
            chain = node_scope(node)
            for depth, sid in enumerate(chain):
                self.members[sid].append(node)
                ctx = chain[depth - 1] if depth else None
                if ("scope", sid) not in self.items[ctx]:
                    self.items[ctx].append(("scope", sid))
            self.items[chain[-1] if chain else None].append(("node", node))
            for t in node.inputs:
                readers[t].add(i)
        self.readers = readers
        self.position = {n.name: i for i, n in enumerate(graph.nodes)}

    # --- paths ---
    def path(self, sid) -> str:
        """The module path of scope `sid` (None: the model, "")."""
        if sid is None:
            return ""
        s = self.scopes[sid]
        if s["call"] > 0:
            return self.path(s["first"])
        parent = self.path(s["parent"])
        return f"{parent}.{s['attr']}" if parent else s["attr"]

    def relative(self, full: str, ctx) -> str:
        base = self.path(ctx)
        if not base:
            return full
        if not full.startswith(base + "."):
            raise UsageError(f"internal: module {full!r} is not reachable from {base!r} in model.py")
        return full[len(base) + 1:]

    # --- outlining ---
    def signature(self, sid) -> tuple:
        """(inputs, outputs) of scope `sid`: tensors read from outside, tensors read after it."""
        nodes = self.members[sid]
        rows = {self.position[n.name] for n in nodes}
        made = [o for n in nodes for o in n.outputs]
        made_set = set(made)
        declared = list(self.scopes[sid].get("inputs", {}))
        read = [t for n in nodes for t in n.inputs if t not in made_set]
        ins = [t for t in declared if t in read] + [t for t in dict.fromkeys(read) if t not in declared]
        used_after = [t for t in made if (self.readers[t] - rows) or t in self.graph.outputs]
        returned = [t for t in self.scopes[sid].get("outputs", []) if t in made_set]
        outs = list(dict.fromkeys(returned + used_after))
        return ins, outs

    # --- code ---
    def body(self, ctx, env, items, out: _Body) -> None:
        for kind, item in items:
            if kind == "node":
                self.node(ctx, env, item, out)
            else:
                self.call(ctx, env, item, out)

    def shapes(self, tensors) -> tuple:
        return tuple(tuple(self.graph.tensors[t].shape) for t in tensors)

    def node(self, ctx, env, node, out: _Body) -> None:
        graph = self.graph
        if "shares" in node.attrs:
            target = self.relative(module_path(graph, graph.node(node.attrs["shares"])), ctx)
        elif node_scope(node) and node_scope(node)[-1] == ctx:
            target = node.source["local"]
        else:
            target = node.name
        args = [env.name(t) for t in node.inputs]
        try:
            emitted = emitter_for(node)(node, args, f"self.{target}", graph)
        except NotImplementedError as e:
            src = node.source
            raise UsageError(f"layer {src.get('layer', node.name)!r} of class {src.get('class', '?')}: {e} "
                             "is not supported by the port") from None
        if emitted.module is not None and "shares" not in node.attrs:
            src = node.source
            note = ""
            if ctx is None and src.get("layer") and src.get("layer") != node.name:
                note = f"  # {src.get('class')} {src.get('layer')!r}"
            out.init.append(f"self.{target} = {emitted.module}{note}")
            out.init += [line.format(module="self." + target) for line in emitted.setup]
        for h in emitted.helpers:
            if h not in self.helpers:
                self.helpers.append(h)
        # a note says what the node is (an augmentation: identity at inference)
        out.lines.append((f"{', '.join(env.name(o) for o in node.outputs)} = {emitted.expr}", self.shapes(node.outputs),
                          node.attrs.get("note", "")))

    def call(self, ctx, env, sid, out: _Body) -> None:
        s = self.scopes[sid]
        ins, outs = self.signature(sid)
        inner = self.scope_body(sid, ins, outs)
        if s["call"] > 0 and (s["first"] not in self.code_of or inner.key(s["class"]) != self.code_of[s["first"]]):
            self.body(ctx, env, self.items[sid], out)  # other code than its first call: written out in place
            return
        if s["call"] == 0:
            name = self.class_for(sid, inner)
            note = f"  # {s['class']} {s['layer']!r}" if s["layer"] != s["attr"] or name != s["class"] else ""
            out.init.append(f"self.{s['attr']} = {name}(){note}")
        target = self.relative(self.path(sid), ctx)
        result = ", ".join(env.name(t) for t in outs) if outs else "_"
        out.lines.append((f"{result} = self.{target}({', '.join(env.name(t) for t in ins)})", self.shapes(outs), ""))
        out.calls += [(self.path(sid), inner.frame)] + inner.calls

    def scope_body(self, sid, ins, outs) -> _Body:
        s = self.scopes[sid]
        env = _Env(s["base"] + "/")
        params = [env.name(t, want=s.get("inputs", {}).get(t)) for t in ins]
        b = _Body()
        self.body(sid, env, self.items[sid], b)
        b.params = params
        b.returns = [env.name(t) for t in outs]
        b.frame = {v: t for t, v in env.vars.items()}
        return b

    def class_for(self, sid, b: _Body) -> str:
        """The class of scope `sid` (a first call): an existing one with the same code, else a new one."""
        key = self.code_of[sid] = b.key(self.scopes[sid]["class"])
        if key not in self.by_key:
            name = identifier(self.scopes[sid]["class"], self.class_names)
            self.by_key[key] = [name, b, []]
            self.classes.append(key)
        self.by_key[key][2].append([shapes for _, shapes, _ in b.lines])
        return self.by_key[key][0]

    def class_text(self, key) -> str:
        name, b, comments = self.by_key[key]
        merged = [_merge(shapes) for shapes in zip(*comments)]
        cls = self.scopes_class(key)
        lines = [f"class {name}(nn.Module):", f'    """The Keras layer class {cls} (traced: its call() as PyTorch)."""', "",
                 "    def __init__(self):", "        super().__init__()"]
        lines += [f"        {line}" for line in b.init]
        lines += ["", f"    def forward({', '.join(['self'] + b.params)}):"]
        lines += [f"        {code}  # {shape_comment(shapes, note)}" for (code, _, note), shapes in zip(b.lines, merged)]
        lines.append(f"        return {', '.join(b.returns)}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def scopes_class(key) -> str:
        return key[0]


def _merge(per_instance) -> tuple:
    """One line's output shapes over the instances of a class: a size they disagree on is '?'."""
    first = per_instance[0]
    if all(shapes == first for shapes in per_instance):
        return first
    return tuple(tuple(dims[0] if all(d == dims[0] for d in dims) else "?" for dims in zip(*shapes))
                 for shapes in zip(*per_instance))


def layout(graph: Graph, names: dict) -> Layout:
    """The model's classes, __init__ and forward lines, and the frames to read tensors from."""
    w = _Writer(graph, names)
    env = _Env("")
    env.vars = {t: v for t, v in names.items()}
    env.taken = set(names.values()) | {"self", *HELPERS}
    top = _Body()
    w.body(None, env, w.items[None], top)
    frames = defaultdict(list)
    frames[""].append({v: t for t, v in names.items()})
    for path, frame in top.calls:
        frames[path].append(frame)
    forward = [f"{code}  # {shape_comment(shapes, note)}" for code, shapes, note in top.lines]
    return Layout([w.class_text(k) for k in w.classes], top.init, forward, w.helpers, dict(frames))
