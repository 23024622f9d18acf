"""model.py with one nn.Module class per traced custom Keras layer (issue 20).

The graph says which nodes came from which call of a custom layer
(graph.meta["scopes"], shared/graph/scopes.py). Each such call becomes a
submodule, `self.block_1 = TransformerBlock()`, called once per use in the
enclosing forward; its class holds the submodules named after the Keras
sub-layers (`self.att`, `self.ffn_dense`) and a forward over them. The inputs
of a call are the tensors its nodes read from outside (the call() parameter
names where Keras handed them in), its outputs the tensors read after it.
Calls whose code is the same, shape comments aside, share one class named
after the Keras class. Calls whose __init__ differs only in numbers that are,
call by call, arguments of the layer's config share one class taking them
(`TransformerBlock(ff_dim=32)`: the numbers are the config's, so the code is
the same as written out); a call with other code gets a class of its own,
`TransformerBlock_2`. A later call of the same layer calls the first call's
module again (written out in place when its forward differs).

Every forward, the model's and each class's, chains and frees its tensors
(torch_impl/write/forward_plan.py: `x = ...` for a tensor read once by the next
statement, `del` after a tensor's last use, activations in place after a
new tensor). `Layout.frames` maps each module path ("" for the model) to one
(first line, line reads, aliases) per call, in call order, so the per-node
check reads every tensor back from the forward frames as they run
(forward_plan.capture_forward).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace

from shared.core.errors import UsageError
from shared.graph.ir import Graph, identifier
from shared.graph.scopes import module_path, node_scope, scope_table
from torch_impl.write.registry import emitter_for
from torch_impl.write.helpers import HELPERS
from torch_impl.write.forward_plan import forward_plan

__all__ = ["Layout", "layout", "render", "shape_comment"]


def shape_comment(shapes, note: str = "") -> str:
    """'(N, 8, 16)' per tensor; a size given as text (a class argument, '?') stays as it is."""
    text = ", ".join("(" + ", ".join("N" if i == 0 and s is None else ("?" if s is None else str(s if isinstance(s, str) else int(s)))
                                     for i, s in enumerate(shape)) + ")" for shape in shapes)
    return text + (f"; {note}" if note else "")


@dataclass
class _Step:
    """One statement of a forward before its variables are chosen: a node, or
    (op "call") a call of a traced layer's module."""

    op: str
    inputs: list
    outputs: list
    target: str  # the submodule the statement calls, without "self."
    node: object = None
    attrs: dict = field(default_factory=dict)


@dataclass
class _Body:
    """One forward's code: __init__ lines, (statement, output shapes, note, label) per line."""

    init: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    reads: dict = field(default_factory=dict)  # body line -> [(variable, graph tensor, copy)] it assigns
    aliases: list = field(default_factory=list)  # (tensor, tensor it equals) of lines written as a comment
    calls: list = field(default_factory=list)  # (module path, body) of the calls made, in order
    params: list = field(default_factory=list)
    returns: list = field(default_factory=list)

    def key(self, head: str) -> tuple:
        """What two calls must share to share a class (the shape comments aside)."""
        return (head, tuple(self.init), tuple(line[0] for line in self.lines), tuple(self.params), tuple(self.returns))


def render(code: str, shapes, note: str = "", label: str = "") -> str:
    """A forward line: `code  # label(shapes)`; a `del` line bare; an identity
    of a chained tensor (code a comment) `# name: x as is, (shapes)`."""
    if shapes is None:
        return code
    if code.startswith("#"):
        return f"{code}, {shape_comment(shapes, note)}"
    return f"{code}  # {label}{shape_comment(shapes, note)}"


@dataclass
class Layout:
    classes: list  # class source texts, dependencies first
    init: list
    forward: list  # rendered forward lines of the model
    helpers: list
    frames: dict  # module path -> [(first line, reads, aliases) per call] (forward_plan.capture_forward)


class _Env:
    """Forward variable names of one class: graph tensor -> Python name."""

    def __init__(self, strip: str):
        self.strip, self.vars, self.taken = strip, {}, {"self", *HELPERS}

    def label(self, tensor: str) -> str:
        """The tensor's name as a comment gives it (a class's: without the call's prefix)."""
        base = tensor[len(self.strip):] if self.strip and tensor.startswith(self.strip) else tensor
        return re.sub(r"@\d+", "", base) if self.strip else base

    def name(self, tensor: str, want: str | None = None) -> str:
        if tensor not in self.vars:
            base = want or (tensor[len(self.strip):] if self.strip and tensor.startswith(self.strip) else tensor)
            if self.strip:  # in a class: a later call's "w@1" reads as the first call's "w"
                base = re.sub(r"@\d+", "", base)
            if base == "x" and "x" not in self.taken:  # identifier() keeps "x" for the flat model's helpers
                self.taken.add("x")
                self.vars[tensor] = "x"
            else:
                self.vars[tensor] = identifier(base, self.taken)
        return self.vars[tensor]


class _Writer:
    """One pass over the graph. groups: class code key -> (class id, {(init line,
    token): parameter}) from the previous pass (_group)."""

    def __init__(self, graph: Graph, names: dict, groups: dict):
        self.graph, self.names, self.groups = graph, names, groups
        self.scopes = scope_table(graph)
        self.items = defaultdict(list)  # context (scope id or None) -> [("node", node) | ("scope", id)]
        self.members = defaultdict(list)  # scope id -> every node inside it
        self.helpers, self.classes = [], []  # classes: class ids, in definition order
        self.class_names = {"Model", "F", "nn", "torch", *HELPERS}  # a class named F would hide torch.nn.functional
        self.entries = {}  # class id -> {"name", "body" (the first instance's), "params", "shapes" per instance}
        self.code_of = {}  # scope id -> class code key (first calls)
        self.instances = []  # (scope id, code key, body) of every first call, in order
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
        emitted = self.emit(node, [env.name(t) for t in node.inputs], target)
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
        out.steps.append(_Step(node.op, node.inputs, node.outputs, target, node, node.attrs))

    def emit(self, node, args: list, target: str):
        try:
            return emitter_for(node)(node, args, f"self.{target}", self.graph)
        except NotImplementedError as e:
            src = node.source
            raise UsageError(f"layer {src.get('layer', node.name)!r} of class {src.get('class', '?')}: {e} "
                             "is not supported by the port") from None

    def finish(self, env, out: _Body, kept: set) -> None:
        """Render out.steps: chained, freed and in-place as forward_plan says,
        with the reads the per-node check makes line by line."""
        names = {t: env.name(t) for step in out.steps for t in step.inputs + step.outputs}
        statements, var = forward_plan(out.steps, names, kept)
        for st in statements:
            if st.node is None:
                out.lines.append((f"del {', '.join(st.frees)}", None, "", ""))
                continue
            step = st.node
            args = [var[t] for t in step.inputs]
            shapes = self.shapes(step.outputs)
            if step.op == "call":
                result = ", ".join(st.targets) if st.targets else "_"
                out.reads[len(out.lines)] = [(v, t, False) for v, t in zip(st.targets, step.outputs)]
                out.lines.append((f"{result} = self.{step.target}({', '.join(args)})", shapes, "", ""))
                continue
            node = replace(step.node, attrs={**step.node.attrs, "inplace": True}) if st.inplace else step.node
            expr = self.emit(node, args, step.target).expr
            note = node.attrs.get("note", "")  # a word on what the node is (an augmentation: identity at inference)
            if st.inplace:  # overwrites the previous statement's tensor (a `del` line may stand between): read a copy
                last = max(out.reads)
                out.reads[last] = [(v, t, True) for v, t, _ in out.reads[last]]
            if st.targets == [expr]:  # `x = x`: a comment only
                out.aliases.append((step.outputs[0], step.inputs[0]))
                out.lines.append((f"# {env.label(step.outputs[0])}: {expr} as is", shapes, note, ""))
                continue
            label = ""
            if st.targets != [names[o] for o in step.outputs] and f"self.{step.target}(" not in expr:
                label = f"{', '.join(env.label(o) for o in step.outputs)}: "
            out.reads[len(out.lines)] = [(v, t, False) for v, t in zip(st.targets, step.outputs)]
            out.lines.append((f"{', '.join(st.targets)} = {expr}", shapes, note, label))

    def call(self, ctx, env, sid, out: _Body) -> None:
        s = self.scopes[sid]
        ins, outs = self.signature(sid)
        inner = self.scope_body(sid, ins, outs)
        # a later call of the layer runs its first call's module when its forward is the same (its
        # __init__ has only the weightless sub-layers, the same Keras objects as the first call's)
        if s["call"] > 0 and (s["first"] not in self.code_of or inner.key(s["class"])[2:] != self.code_of[s["first"]][2:]):
            self.body(ctx, env, self.items[sid], out)  # other code than its first call: written out in place
            return
        if s["call"] == 0:
            ctor = self.class_for(sid, inner)
            # at the top level, the Keras layer behind an attribute of another name (in a class, names differ per call)
            named = s["layer"] != s["attr"] or not ctor.startswith(s["class"] + "(")
            note = f"  # {s['class']} {s['layer']!r}" if ctx is None and named else ""
            out.init.append(f"self.{s['attr']} = {ctor}{note}")
        target = self.relative(self.path(sid), ctx)
        out.steps.append(_Step("call", ins, outs, target))
        out.calls += [(self.path(sid), inner)] + inner.calls

    def scope_body(self, sid, ins, outs) -> _Body:
        s = self.scopes[sid]
        env = _Env(s["base"] + "/")
        params = [env.name(t, want=s.get("inputs", {}).get(t)) for t in ins]
        b = _Body()
        self.body(sid, env, self.items[sid], b)
        b.params = params
        b.returns = [env.name(t) for t in outs]
        self.finish(env, b, set(ins) | set(outs))
        return b

    def class_for(self, sid, b: _Body) -> str:
        """The constructor call for scope `sid` (a first call): its class, shared
        with the calls of the same code or sizes only apart, and its arguments."""
        cls = self.scopes[sid]["class"]
        key = self.code_of[sid] = b.key(cls)
        self.instances.append((sid, key, b))
        gid, params = self.groups.get(key, (key, {}))
        entry = self.entries.get(gid)
        if entry is None:
            entry = self.entries[gid] = {"name": identifier(cls, self.class_names), "body": b, "params": params, "shapes": [],
                                                "args": []}
            self.classes.append(gid)
        entry["shapes"].append([line[1] for line in b.lines])
        tokens = [_tokens(line) for line in b.init]
        args = {}
        for (li, ti), name in sorted(params.items()):
            args.setdefault(name, tokens[li][ti])
        entry["args"].append(args)
        return f"{entry['name']}({', '.join(f'{k}={v}' for k, v in args.items())})"

    def class_text(self, gid) -> str:
        entry = self.entries[gid]
        b, params = entry["body"], entry["params"]
        merged = [_merge(shapes, entry["args"]) for shapes in zip(*entry["shapes"])]
        init = [_tokens(line) for line in b.init]
        for (li, ti), name in params.items():
            init[li][ti] = name
        names = list(dict.fromkeys(name for _, name in sorted(params.items())))
        lines = [f"class {entry['name']}(nn.Module):", f'    """The Keras layer class {gid[0]} (traced: its call() as PyTorch)."""', "",
                 f"    def __init__({', '.join(['self'] + names)}):", "        super().__init__()"]
        lines += [f"        {''.join(tokens)}" for tokens in init]
        lines += ["", f"    def forward({', '.join(['self'] + b.params)}):"]
        lines += [f"        {render(code, shapes, note, label)}" for (code, _, note, label), shapes in zip(b.lines, merged)]
        lines.append(f"        return {', '.join(b.returns)}")
        return "\n".join(lines) + "\n"


# A number in generated code (not inside a name: `dense_2`, `float32`).
_NUMBER = re.compile(r"\b(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\b")

# Passes of the writer until the classes settle: each pass fixes the classes of
# one more level of nesting (a class's code names its sub-classes), so this
# covers custom layers nested this deep; a deeper model keeps the last pass's
# classes, still correct, some split that could have been shared.
_MAX_PASSES = 8


def _tokens(line: str) -> list:
    """The line split around its numbers (numbers at the odd positions)."""
    return _NUMBER.split(line)


def _group(instances: list, scopes: dict) -> dict:
    """Code key -> (class id, parameters): calls of one Keras class whose code
    differs only in numbers that are, call by call, one of its config's
    arguments share a class that takes them (`TransformerBlock(ff_dim=32)`)."""
    by_class = defaultdict(dict)
    for sid, key, b in instances:
        by_class[key[0]].setdefault(key, (b, []))[1].append(sid)
    groups = {}
    for members in by_class.values():
        clusters = []  # [keys, parameters]
        for key, member in members.items():
            for c in clusters:
                params = _parametrize([members[k] for k in c[0]] + [member], scopes)
                if params is not None:
                    c[0].append(key)
                    c[1] = params
                    break
            else:
                clusters.append([[key], {}])
        for keys, params in clusters:
            for k in keys:
                groups[k] = (keys[0], params)
    return groups


def _parametrize(members: list, scopes: dict):
    """{(init line, token): config argument} that turns the members' __init__
    lines into one another, or None (other code, or a number no argument explains)."""
    first = members[0][0]
    if any(b.key("")[2:] != first.key("")[2:] or len(b.init) != len(first.init) for b, _ in members):
        return None
    tokens = [[_tokens(line) for line in b.init] for b, _ in members]
    words = set(re.findall(r"\w+", " ".join(first.init)))
    params = {}
    for li in range(len(first.init)):
        rows = [t[li] for t in tokens]
        if len({len(r) for r in rows}) != 1:
            return None
        for ti, values in enumerate(zip(*rows)):
            if all(v == values[0] for v in values):
                continue
            quoted = "".join(rows[0][:ti]).count("'") % 2 == 1  # a number inside a string literal is text
            name = _argument(values, members, scopes, words) if ti % 2 and not quoted else None
            if name is None:
                return None
            params[(li, ti)] = name
    for mi in range(len(members)):  # one argument, one text per call
        seen = {}
        for (li, ti), name in params.items():
            if seen.setdefault(name, tokens[mi][li][ti]) != tokens[mi][li][ti]:
                return None
    return params


def _argument(values, members, scopes: dict, words: set):
    """The config argument equal to values[i] in every call of member i, or None."""
    sizes = [[scopes[sid].get("sizes", {}) for sid in sids] for _, sids in members]
    for name in sizes[0][0]:
        if name in words or name in ("self", "nn", "torch", "F") or name in HELPERS:
            continue
        if all(name in c and float(c[name]) == float(v) for v, calls in zip(values, sizes) for c in calls):
            return name
    return None


def _merge(per_instance, args: list) -> tuple:
    """One line's output shapes over the instances of a class: a size they
    disagree on is the class argument it equals in each (`ff_dim`), else '?'."""
    first = per_instance[0]
    if all(shapes == first for shapes in per_instance):
        return first

    def size(dims):
        if all(d == dims[0] for d in dims):
            return dims[0]
        for name in args[0]:
            if all(d is not None and str(d) == a.get(name) for d, a in zip(dims, args)):
                return name
        return "?"

    return tuple(tuple(size(dims) for dims in zip(*shapes)) for shapes in zip(*per_instance))


def layout(graph: Graph, names: dict) -> Layout:
    """The model's classes, __init__ and forward lines, and the frames to read tensors from."""
    groups = {}
    for _ in range(_MAX_PASSES):
        w = _Writer(graph, names, groups)
        env = _Env("")
        env.vars = {t: v for t, v in names.items()}
        env.taken = set(names.values()) | {"self", *HELPERS}
        top = _Body()
        w.body(None, env, w.items[None], top)
        w.finish(env, top, set(graph.inputs) | set(graph.outputs))
        settled = _group(w.instances, w.scopes)
        if settled == groups:
            break
        groups = settled
    frames = defaultdict(list)
    frames[""].append((1 + len(graph.inputs), top.reads, top.aliases))  # the model's forward: input comments first
    for path, b in top.calls:
        frames[path].append((1, b.reads, b.aliases))
    forward = [render(*line) for line in top.lines]
    return Layout([w.class_text(k) for k in w.classes], top.init, forward, w.helpers, dict(frames))
