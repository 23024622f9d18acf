"""The architecture rules, read from the sources (no framework import).

- shared/ imports neither TensorFlow, Keras, torch nor keras_impl/torch_impl;
  each of its subpackages imports only the subpackages its __init__ docstring
  names ("Imports: core, data."): the layering is data, checked on every file.
- keras_impl/ never imports torch, torch_impl/ never TensorFlow or Keras.
- keras_impl/ and torch_impl/ mirror each other: the same top-level modules and
  subpackages (a few one-sided files are listed below with their reason).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
FRAMEWORKS = {"torch", "tensorflow", "keras", "tf2onnx", "torchvision"}
SUBPACKAGES = sorted(p.name for p in SHARED.iterdir() if (p / "__init__.py").exists())


def imports(path: Path) -> set:
    """Dotted names a file imports (imports inside functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            if node.module == "shared":
                out |= {f"shared.{a.name}" for a in node.names}
    return out


def allowed(pkg: str) -> set:
    """The subpackages `pkg` may import, from its docstring's `Imports:` sentence."""
    doc = ast.get_docstring(ast.parse((SHARED / pkg / "__init__.py").read_text())) or ""
    m = re.search(r"Imports: ([^.]*)\.", doc)
    assert m, f"shared/{pkg}/__init__.py must say what it may import ('Imports: core, data.')"
    said = m.group(1)
    if said.startswith("nothing"):
        return {pkg}
    if said.startswith("every subpackage but "):
        return set(SUBPACKAGES) - {w.strip() for w in said.removeprefix("every subpackage but ").split(",")}
    return {w.strip() for w in said.split(",")} | {pkg}


def test_shared_is_only_subpackages():
    loose = sorted(p.name for p in SHARED.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"shared/ holds subpackages only; place {loose} in one of {SUBPACKAGES}"


def test_every_subpackage_states_its_imports_and_they_are_subpackages():
    for pkg in SUBPACKAGES:
        assert allowed(pkg) <= set(SUBPACKAGES), (pkg, allowed(pkg) - set(SUBPACKAGES))


@pytest.mark.parametrize("pkg", SUBPACKAGES)
def test_shared_layering(pkg):
    ok = allowed(pkg)
    bad = []
    for f in sorted((SHARED / pkg).rglob("*.py")):
        for name in imports(f):
            top = name.split(".")[0]
            if top in FRAMEWORKS | {"keras_impl", "torch_impl", "compare"}:
                bad.append(f"{f.relative_to(ROOT)} imports {name}")
            elif top == "shared" and name != "shared" and name.split(".")[1] not in ok:
                bad.append(f"{f.relative_to(ROOT)} imports {name} (shared/{pkg} may import {sorted(ok)})")
    assert bad == []


@pytest.mark.parametrize("impl,forbidden", [("keras_impl", {"torch", "torchvision", "torch_impl"}),
                                            ("torch_impl", {"tensorflow", "keras", "tf2onnx", "keras_impl"})])
def test_each_side_imports_only_its_framework(impl, forbidden):
    bad = [f"{f.relative_to(ROOT)} imports {n}" for f in sorted((ROOT / impl).rglob("*.py"))
           for n in imports(f) if n.split(".")[0] in forbidden]
    assert bad == []


def test_the_layering_test_can_fail(tmp_path):
    """The rule reads real imports: a planted back edge is seen."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from shared.flows import engine\n    import torch\n")
    assert imports(f) == {"shared.flows", "torch"}


# Files on one side only, with the reason (everything else mirrors by name).
ONE_SIDED = {
    "keras_impl/masks.py": "Keras carries padding masks with the tensors (compute_mask); torch code passes them explicitly",
    "torch_impl/faults.py": "the planted porting bugs of shared/data/faults.py are planted in the torch twin",
}


def _modules(impl: str) -> set:
    """Top-level modules and subpackages of keras_impl/ or torch_impl/ (impl-relative, e.g. 'read/', 'port.py')."""
    base = ROOT / impl
    return {p.name + "/" if p.is_dir() else p.name for p in base.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").exists()) and f"{impl}/{p.name}" not in ONE_SIDED}


def test_keras_impl_and_torch_impl_mirror_file_for_file():
    keras_side, torch_side = _modules("keras_impl"), _modules("torch_impl")
    assert keras_side ^ torch_side == set(), (sorted(keras_side - torch_side), sorted(torch_side - keras_side))
    assert {"read/", "write/", "verify/"} <= keras_side
    for f in ONE_SIDED:
        assert (ROOT / f).exists(), f"{f} is listed as one-sided but does not exist"
