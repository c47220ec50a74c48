"""Layers point one way: a lower layer never imports Lightning, ``tasks/`` or a higher layer.

Reads the imports of every module with ``ast`` (module-level and function-level imports alike)
and checks them against the layer map of the design (docs/extending.md):

1. ``data/datasets/``, ``data/records.py`` — the records of each dataset
2. ``segmentation.py``, ``store.py``, ``store_files.py``, ``logits.py`` — the stored formats
3. ``views.py``
4. ``segment/``, ``models/``, ``fusion/``, ``occam/``, ``weights.py``, ``discovery.py``,
   ``reporting/`` — plain models, methods and reports
5. ``data/`` (DataModules) and ``tasks/`` — Lightning wiring
6. ``cli.py``, ``commands/`` — the verbs
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "occam_l2r"

#: module prefix (dotted, relative to the package) -> prefixes it must not import
FORBIDDEN = {
    "data.datasets": ["lightning", "torch", "occam_l2r.data.datamodule", "occam_l2r.tasks",
                      "occam_l2r.segment", "occam_l2r.views", "occam_l2r.fusion",
                      "occam_l2r.models", "occam_l2r.commands", "occam_l2r.store"],
    "data.records": ["lightning", "occam_l2r.tasks", "occam_l2r.segment", "occam_l2r.views",
                     "occam_l2r.commands"],
    "store": ["lightning", "torch", "occam_l2r.tasks", "occam_l2r.data", "occam_l2r.views",
              "occam_l2r.segment", "occam_l2r.fusion", "occam_l2r.models", "occam_l2r.commands"],
    "segmentation": ["lightning", "torch", "occam_l2r"],
    "store_files": ["lightning", "torch", "occam_l2r"],
    "logits": ["lightning", "torch", "occam_l2r"],
    "views": ["lightning", "occam_l2r.tasks", "occam_l2r.segment", "occam_l2r.data",
              "occam_l2r.fusion", "occam_l2r.models", "occam_l2r.commands"],
    "segment": ["lightning", "pytorch_lightning", "occam_l2r.tasks", "occam_l2r.commands",
                "occam_l2r.fusion", "occam_l2r.data.datamodule", "occam_l2r.cli"],
    "models": ["lightning", "pytorch_lightning", "occam_l2r.tasks", "occam_l2r.commands",
               "occam_l2r.data", "occam_l2r.segment", "occam_l2r.fusion", "occam_l2r.cli"],
    "fusion": ["lightning", "pytorch_lightning", "occam_l2r.tasks", "occam_l2r.commands",
               "occam_l2r.data", "occam_l2r.segment", "occam_l2r.cli"],
    "occam": ["lightning", "pytorch_lightning", "occam_l2r.tasks", "occam_l2r.commands",
              "occam_l2r.data", "occam_l2r.segment", "occam_l2r.fusion", "occam_l2r.cli"],
    "weights": ["lightning", "occam_l2r"],
    "discovery": ["lightning", "pytorch_lightning", "occam_l2r.tasks", "occam_l2r.commands",
                  "occam_l2r.cli", "occam_l2r.data.datamodule", "occam_l2r.segment",
                  "occam_l2r.views", "occam_l2r.fusion", "occam_l2r.models"],
    "reporting": ["lightning", "pytorch_lightning", "occam_l2r.tasks", "occam_l2r.commands",
                  "occam_l2r.cli", "occam_l2r.data.datamodule", "occam_l2r.segment"],
    "data": ["occam_l2r.tasks", "occam_l2r.commands", "occam_l2r.cli"],
    "tasks": ["occam_l2r.commands", "occam_l2r.cli"],
    "classify": ["occam_l2r.commands", "occam_l2r.cli"],
}  # fmt: skip


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _rules(module: str) -> list[str]:
    """The forbidden prefixes of the most specific rule that covers ``module``."""
    best = None
    for prefix in FORBIDDEN:
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best):
                best = prefix
    return FORBIDDEN[best] if best else []


def violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        rules = _rules(module)
        for lineno, name in _imports(path):
            for bad in rules:
                if name == bad or name.startswith(bad + "."):
                    own = "occam_l2r." + module
                    if name == own or name.startswith(own + "."):
                        continue  # a package may import its own modules
                    found.append(f"occam_l2r/{path.relative_to(PACKAGE)}:{lineno} imports {name}")
    return found


def test_lower_layers_do_not_import_higher_ones():
    assert violations() == []


@pytest.mark.parametrize(
    "module, name, bad",
    [("views", "occam_l2r.tasks.base", True), ("fusion.methods", "lightning", True),
     ("segment.sam", "lightning.pytorch", True), ("tasks.base", "occam_l2r.models.metrics", False),
     ("data.datamodule", "lightning", False), ("store", "numpy", False)],
)  # fmt: skip
def test_the_rules_catch_an_upward_import(module, name, bad):
    hit = any(name == b or name.startswith(b + ".") for b in _rules(module))
    assert hit is bad
