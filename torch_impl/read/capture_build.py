"""torch.export's ExportedProgram -> an fx.GraphModule the readers walk
(torch_impl/read/capture.py explains why and what it holds).

`rebuild(ep, root, input_names, name)`:
- placeholders of parameters, buffers and lifted constants -> `get_attr`
  nodes of the tensors themselves (the user's Parameter objects), named after
  their module path (`embeddings_cls_token`);
- user inputs -> placeholders named `input_names`;
- each call of a module whose class has a reader (a run of ATen nodes with the
  same innermost known entry of `meta["nn_module_stack"]`, one tensor coming
  in from outside besides the module's own state, one going out) -> one
  `call_module` node named after the module path (`encoder_layer_0_attention_self_query`);
- every other ATen node copied as it is (name, stack trace, module stack).
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch.export.graph_signature import InputKind

__all__ = ["rebuild", "known_module_classes"]

_PREFIX = "m."  # torch_impl/read/capture.py's wrapper attribute


def known_module_classes() -> set:
    """Class names of the modules with a reader (`@torch_reader("Conv2d")`)."""
    from torch_impl.read import aten as read_aten, aten_layout as read_aten_layout, ops as read_ops, tensor_ops as read_tensor_ops  # noqa: F401  (register readers)
    from torch_impl.read import READERS

    return {k for k in READERS if "." not in k}


def _strip(path: str) -> str:
    """The path inside the user's module (the wrapper's "m." removed)."""
    return path[len(_PREFIX):] if path.startswith(_PREFIX) else path


def _short(path: str) -> str:
    return _strip(path).replace(".", "_") or "module"


def _leaf(node, root, known) -> tuple | None:
    """(stack key, module path) of the outermost module with a reader that made `node`."""
    for key, entry in (node.meta.get("nn_module_stack") or {}).items():
        path = entry[0]
        try:
            mod = root.get_submodule(path)
        except AttributeError:
            continue
        if type(mod).__name__ in known:
            return key, path
    return None


def _groups(ep, root, known, state_of) -> dict:
    """last node of a collapsible module call -> (module path, its one outside input node, member set)."""
    runs, cur = [], None
    for n in ep.graph.nodes:
        leaf = _leaf(n, root, known) if n.op == "call_function" else None
        if leaf is not None and cur is not None and cur[0] == leaf:
            cur[1].append(n)
        else:
            cur = (leaf, [n]) if leaf is not None else None
            if cur is not None:
                runs.append(cur)
    out = {}
    for (_, path), members in runs:
        mset = set(members)
        ext = []
        for m in members:
            for a in m.all_input_nodes:
                own = state_of.get(a.name, "").startswith(path + ".")
                size = not isinstance(a.meta.get("val"), torch.Tensor)  # a size the module computes again itself
                if a not in mset and not own and not size and a not in ext:
                    ext.append(a)
        leaving = [m for m in members if any(u not in mset for u in m.users)]
        if len(ext) == 1 and len(leaving) == 1 and leaving[0] is members[-1]:
            out[members[-1]] = (path, ext[0], mset)
    return out


def rebuild(ep, root, input_names: list, name: str) -> fx.GraphModule:
    """The ExportedProgram as an fx.GraphModule over `root`'s own modules and tensors."""
    known = known_module_classes()
    sig = ep.graph_signature
    state_of = {s.arg.name: s.target for s in sig.input_specs if s.kind in (InputKind.PARAMETER, InputKind.BUFFER)}
    const_of = {s.arg.name: s.target for s in sig.input_specs if s.kind == InputKind.CONSTANT_TENSOR}
    groups = _groups(ep, root, known, state_of)
    in_group = {m for _, _, ms in groups.values() for m in ms}
    g, env, attrs = fx.Graph(), {}, {}
    params = dict(root.named_parameters())
    user = iter(input_names)
    for n in ep.graph.nodes:
        if n.op == "placeholder":
            if n.name in state_of:
                full = state_of[n.name]
                target = _strip(full)
                attrs[target] = root.get_parameter(full) if full in params else root.get_buffer(full)
            elif n.name in const_of:
                target = "_constants." + const_of[n.name].replace(".", "_")
                attrs[target] = ep.constants[const_of[n.name]]
            else:
                env[n] = g.placeholder(next(user))
                env[n].meta = dict(n.meta)
                continue
            env[n] = g.create_node("get_attr", target, name=_short(target))
            env[n].meta = dict(n.meta)
        elif n.op == "output":
            g.output(tuple(env[a] for a in n.args[0]))
        elif n in groups:
            path, x, _ = groups[n]
            attrs[_strip(path)] = root.get_submodule(path)
            env[n] = g.create_node("call_module", _strip(path), (env[x],), name=_short(path))
            env[n].meta = {k: n.meta[k] for k in ("stack_trace", "nn_module_stack") if k in n.meta}
        elif n not in in_group:
            env[n] = g.node_copy(n, lambda a: env[a])
    for node in [a for a in g.nodes if a.op == "get_attr" and not a.users]:  # the state of collapsed modules
        g.erase_node(node)
    g.lint()
    return fx.GraphModule(attrs, g, name)
