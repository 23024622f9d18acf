"""docs/coverage.md and README's coverage line are scripts/coverage.py's output (cannot go stale)."""

from __future__ import annotations

import torch  # noqa: F401  (torch before TensorFlow)

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# scripts/coverage.py by path: the name `coverage` is also the coverage.py package
_spec = importlib.util.spec_from_file_location("port_coverage", ROOT / "scripts" / "coverage.py")
cov = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cov)


def test_coverage_doc_is_current():
    text = cov.table()
    assert (ROOT / "docs" / "coverage.md").read_text() == text, "run scripts/coverage.py --write"
    line = re.search(r"keras\.layers classes [^\n]*", text).group(0)
    readme = (ROOT / "README.md").read_text()
    assert f"<!-- coverage -->\n{line}\n<!-- /coverage -->" in readme, "run scripts/coverage.py --write"


def test_coverage_statuses_are_real():
    text, graph_ops = cov.table().split("## Graph ops")
    rows = dict(re.findall(r"^\| `(\w+)` \| ([a-z ]+) \|", text, flags=re.M))
    assert rows["Resizing"] == rows["CenterCrop"] == rows["RandomFlip"] == rows["Conv2D"] == "ported"
    assert rows["Convolution2D"] == "ported"  # an alias: the registry keys the class's own name
    assert rows["StringLookup"] == rows["TextVectorization"] == "refused"
    assert rows["Layer"] == "traced" and rows["add"] == "ported"


def test_graph_ops_table_reads_the_registries():
    """Every op a writer registers is a row, with yes exactly where that direction's registry has it."""
    reg = cov.registries()
    rows = {op: (t, k) for op, t, k in cov._graph_op_rows(reg["emitters"], reg["writers"])}
    assert set(reg["emitters"]) | set(reg["writers"]) <= set(rows)
    assert rows["conv"] == ("yes", "yes") and rows["batch_norm"] == ("yes", "yes")
    assert all((t == "yes") == (op in reg["emitters"]) and (k == "yes") == (op in reg["writers"]) for op, (t, k) in rows.items())
    assert len(reg["readers"]) > 50 and len(reg["converters"]) > 100
