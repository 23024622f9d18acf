"""Which graph nodes came from which call of a traced custom layer (issue 20).

The Keras reader traces a custom layer without a converter into ordinary
nodes (keras_impl/read/trace.py). It records each traced call as a scope in
`graph.meta["scopes"]`, a list of plain dicts:

    {"id": 3, "parent": 1 or None, "layer": "block_1", "class": "TransformerBlock",
     "call": 0 (the layer's n-th call), "first": id of its first call's scope,
     "base": "block_1" (the prefix of its names), "attr": "block_1" (the
     attribute that holds it in the enclosing class), "inputs": {graph tensor:
     call() parameter name}, "outputs": [graph tensors the call returns]}

and each node inside one carries `node.source["scope"]` (the scope ids,
outermost first) and `node.source["local"]` (its attribute in the innermost
scope's class: "att" for "block_1_att"). The torch writer makes one
`nn.Module` class per custom class from this (torch_impl/write/scopes.py),
so a node's module path, hence its state_dict key, is the attribute chain:
`block_1.att.weight`. `Graph.weight_key` is the one place that says so.

`settle_scopes` keeps only the scopes a class can express: the scope's nodes
are contiguous in topological order (it runs as one call); a shared weight is
reached from inside (a layer called twice within it) or, for a later call of
a shared custom layer, from its first call (the same module called again,
which then owns no weights itself and sits where the first call's module is
reachable). Any other scope is dissolved: its nodes join the enclosing scope,
as before issue 20. Nothing here imports a framework.
"""

from __future__ import annotations

from shared.graph.ir import Graph, identifier

__all__ = ["settle_scopes", "scope_table", "node_scope", "module_path", "weight_key"]


def scope_table(graph: Graph) -> dict:
    """Scope id -> scope dict (graph.meta["scopes"])."""
    return {s["id"]: s for s in graph.meta.get("scopes", [])}


def node_scope(node) -> tuple:
    """The ids of the scopes around `node`, outermost first (() at the top level)."""
    return tuple(node.source.get("scope", ()))


def module_path(graph: Graph, node) -> str:
    """The node's submodule path in the written model ("block_1.att"; its name at the top level)."""
    chain = node_scope(node)
    if not chain:
        return node.name
    table = scope_table(graph)
    return ".".join([table[s]["attr"] for s in chain] + [node.source["local"]])


def weight_key(graph: Graph, node, wname: str) -> str:
    """The state_dict key of the node's weight `wname`."""
    return f"{module_path(graph, node)}.{wname}"


def _valid(graph: Graph, scopes: dict) -> set:
    """The scope ids a class can express (module docstring), by fixpoint."""
    index = {n.name: i for i, n in enumerate(graph.nodes)}
    chains = [set(node_scope(n)) for n in graph.nodes]
    members = {sid: [i for i, c in enumerate(chains) if sid in c] for sid in scopes}
    valid = {sid for sid, rows in members.items() if rows and rows[-1] - rows[0] + 1 == len(rows)}

    def context(sid):  # the nearest valid enclosing scope (None: the model)
        p = scopes[sid]["parent"]
        while p is not None and p not in valid:
            p = scopes[p]["parent"]
        return p

    def module(sid):  # a later call runs its first call's module
        return None if sid is None else scopes[sid]["first"]

    def encloses(outer, sid):  # outer's module (None: the model) is sid's or one of its ancestors'
        while sid is not None and module(sid) != module(outer):
            sid = scopes[sid]["parent"]
        return module(sid) == module(outer)

    changed = True
    while changed:
        changed = False
        for sid in sorted(valid):
            s, rows = scopes[sid], members[sid]
            later = s["call"] > 0
            ok = True
            if later:
                ok = (s["first"] in valid and not any(graph.nodes[i].weights for i in rows)
                      and encloses(context(sid), s["first"]))
            for i in rows if ok else ():
                shared = graph.nodes[i].attrs.get("shares")
                if shared is None or shared not in index:
                    continue
                owner = chains[index[shared]]
                if sid not in owner and not (later and s["first"] in owner):
                    ok = False
                    break
            if not ok:
                valid.discard(sid)
                changed = True
    return valid


def _prefix_stripped(name: str, base: str) -> str:
    prefix = identifier(base) + "_"
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else name


def settle_scopes(graph: Graph, scopes: list) -> None:
    """Keep the expressible scopes (module docstring), name every scoped node's
    attribute (`local`) and every scope's (`attr`), and key the weights by
    module path (graph.weight_sources). Called once, at the end of read_graph."""
    table = {s["id"]: dict(s) for s in scopes}
    valid = _valid(graph, table) if table else set()
    for s in table.values():  # parents skip dissolved scopes
        p = s["parent"]
        while p is not None and p not in valid:
            p = table[p]["parent"]
        s["parent"] = p
    kept = {sid: table[sid] for sid in sorted(valid)}
    taken = {None: {n.name for n in graph.nodes if not any(s in valid for s in node_scope(n))}}
    for sid in kept:
        taken[sid] = set()
    for sid, s in kept.items():  # attributes, first calls first (ids follow the walk's order)
        if s["call"] > 0:
            s["attr"] = kept[s["first"]]["attr"]
            continue
        parent = s["parent"]
        rel = _relative(s["base"], kept[parent]["base"] if parent is not None else "")
        s["attr"] = identifier(rel, taken[parent])
    if kept:
        graph.meta["scopes"] = list(kept.values())
    else:
        graph.meta.pop("scopes", None)
    renamed = {}
    for node in graph.nodes:
        chain = [sid for sid in node_scope(node) if sid in valid]
        node.source.pop("scope", None)
        node.source.pop("local", None)
        if not chain:
            continue
        node.source["scope"] = chain
        local = _prefix_stripped(node.name, kept[chain[-1]]["base"])
        node.source["local"] = identifier(local, taken[chain[-1]])
        for w in node.weights:
            renamed[f"{node.name}.{w}"] = weight_key(graph, node, w)
    graph.weight_sources = {renamed.get(k, k): v for k, v in graph.weight_sources.items()}


def _relative(base: str, parent_base: str) -> str:
    return base[len(parent_base) + 1:] if parent_base and base.startswith(parent_base + "/") else base
