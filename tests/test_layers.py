"""Layers point one way, with no import circles, and the plain modules load without Lightning.

Reads the imports of every module with ``ast`` — module-level, function-level and
``if TYPE_CHECKING:`` imports alike, relative imports resolved — and checks them against the
layer map of the design (docs/extending.md):

1. ``data/datasets/``, ``data/records.py`` — the records of each dataset
2. ``segmentation.py``, ``store.py``, ``store_files.py``, ``store_location.py``, ``gt_store.py``,
   ``logits.py`` — the stored formats
3. ``views.py``
4. ``segment/``, ``models/``, ``fusion/``, ``occam/``, ``weights.py``, ``discovery.py``,
   ``reporting/`` — plain models, methods and reports
5. ``data/`` (DataModules) and ``tasks/`` — Lightning wiring; of the DataModules only the segment
   task's (``data/segment_datamodule.py``) imports ``segment/``: training reads the store
6. ``cli.py``, ``commands/`` — the verbs

Then the import graph of ``occam_l2r/`` has no circle, ``classify/`` (inference) imports nothing
from ``reporting/``, and importing the plain modules in a fresh interpreter loads no Lightning.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "occam_l2r"
ROOT = PACKAGE.name

#: module prefix (dotted, relative to the package) -> prefixes it must not import
FORBIDDEN = {
    "data.datasets": ["lightning", "torch", "occam_l2r.data.datamodule", "occam_l2r.tasks",
                      "occam_l2r.segment", "occam_l2r.views", "occam_l2r.fusion",
                      "occam_l2r.models", "occam_l2r.commands", "occam_l2r.store"],
    "data.records": ["lightning", "occam_l2r.tasks", "occam_l2r.segment", "occam_l2r.views",
                     "occam_l2r.commands"],
    "store": ["lightning", "torch", "occam_l2r.tasks", "occam_l2r.data", "occam_l2r.views",
              "occam_l2r.segment", "occam_l2r.fusion", "occam_l2r.models", "occam_l2r.commands"],
    "store_identity": ["lightning", "torch", "occam_l2r.tasks", "occam_l2r.data",
                       "occam_l2r.views", "occam_l2r.segment", "occam_l2r.fusion",
                       "occam_l2r.models", "occam_l2r.commands"],
    "store_location": ["lightning", "torch", "occam_l2r.tasks", "occam_l2r.data",
                       "occam_l2r.views", "occam_l2r.segment", "occam_l2r.fusion",
                       "occam_l2r.models", "occam_l2r.commands"],
    # the gt store reads the records (layer 1), nothing of the DataModules
    "gt_store": ["lightning", "torch", "occam_l2r.tasks", "occam_l2r.data.datamodule",
                 "occam_l2r.data.occam_datamodule", "occam_l2r.data.segment_datamodule",
                 "occam_l2r.data.loaders", "occam_l2r.data.view_dataset", "occam_l2r.views",
                 "occam_l2r.segment", "occam_l2r.fusion", "occam_l2r.models",
                 "occam_l2r.commands"],
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
    # training and OCCAM read the store; only the segment task's DataModule runs segmenters
    "data": ["occam_l2r.tasks", "occam_l2r.commands", "occam_l2r.cli", "occam_l2r.segment"],
    "data.segment_datamodule": ["occam_l2r.tasks", "occam_l2r.commands", "occam_l2r.cli"],
    "tasks": ["occam_l2r.commands", "occam_l2r.cli"],
    # inference does not depend on the report
    "classify": ["occam_l2r.commands", "occam_l2r.cli", "occam_l2r.reporting"],
}  # fmt: skip


def _module_name(path: Path) -> str:
    """``occam_l2r/fusion/__init__.py`` -> ``occam_l2r.fusion``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (packages under their own name)."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, module: str) -> str:
    """The absolute module of a ``from ... import``, resolving ``.``/``..`` against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if modules()[module].name != "__init__.py":
        base = base[:-1]  # a plain module's ``.`` is its package
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> Iterator[tuple[int, str]]:
    """(line, imported name) of every import in ``module``, wherever it stands in the file.

    ``from pkg import name`` yields ``pkg`` and also ``pkg.name`` when that is a module of the
    package (importing it runs that module)."""
    path = modules()[module]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module)
            yield node.lineno, source
            for alias in node.names:
                if f"{source}.{alias.name}" in modules():
                    yield node.lineno, f"{source}.{alias.name}"


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rules(module: str) -> list[str]:
    """The forbidden prefixes of the most specific rule that covers ``module`` (package-relative)."""
    best = None
    for prefix in FORBIDDEN:
        if _under(module, prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return FORBIDDEN[best] if best else []


def violations() -> list[str]:
    found = []
    for module, path in modules().items():
        for lineno, name in imports(module):
            if _under(name, module):
                continue  # a package may import its own modules
            for bad in _rules(module.removeprefix(ROOT + ".")):
                if _under(name, bad):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{lineno} imports {name}")
    return sorted(set(found))


def test_lower_layers_do_not_import_higher_ones():
    found = violations()
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "module, name, bad",
    [("views", "occam_l2r.tasks.base", True), ("fusion.methods", "lightning", True),
     ("segment.sam", "lightning.pytorch", True), ("tasks.base", "occam_l2r.models.metrics", False),
     ("data.datamodule", "lightning", False), ("store", "numpy", False),
     ("data.occam_datamodule", "occam_l2r.segment.gt", True),
     ("data.datamodule", "occam_l2r.segment", True),
     ("data.segment_datamodule", "occam_l2r.segment.gt", False),
     ("classify.engine", "occam_l2r.reporting.predictions", True)],
)  # fmt: skip
def test_the_rules_catch_an_upward_import(module, name, bad):
    hit = any(_under(name, b) for b in _rules(module))
    assert hit is bad


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (itself and third-party names left out)."""
    return {
        module: {name for _, name in imports(module) if name in modules() and name != module}
        for module in modules()
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert circles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_relative_and_from_imports_are_resolved(tmp_path, monkeypatch):
    pkg = tmp_path / "occam_l2r"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "top.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import one\n")
    (pkg / "sub" / "one.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..top import X\n"
    )
    (pkg / "sub" / "two.py").write_text(
        "def f():\n    from .one import g\n    import occam_l2r.top\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    modules.cache_clear()
    try:
        graph = import_graph()
    finally:
        modules.cache_clear()
    assert graph["occam_l2r.sub"] == {"occam_l2r.sub.one"}
    assert graph["occam_l2r.sub.one"] == {"occam_l2r.top"}
    assert graph["occam_l2r.sub.two"] == {"occam_l2r.sub.one", "occam_l2r.top"}


def test_no_import_circles():
    """Function-level and ``TYPE_CHECKING`` imports count: a circle hidden in a function is still
    two modules that cannot be understood (or split) one without the other."""
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_plain_modules_load_without_lightning():
    """OCCAM, fusion and the views run in a notebook without Lightning (issue 15, acceptance):
    the packages and the modules a notebook uses (the Occam module, every fusion method, the
    sweep and its tables) load neither Lightning nor its utilities."""
    code = (
        "import sys, occam_l2r.occam, occam_l2r.fusion, occam_l2r.views\n"
        "import occam_l2r.occam.model, occam_l2r.fusion.fusers, occam_l2r.fusion.runner\n"
        "import occam_l2r.fusion.outputs\n"
        "bad = sorted(m for m in sys.modules if m.startswith('lightning'))\n"
        "ours = sorted(m for m in sys.modules if m.startswith('occam_l2r'))\n"
        "assert not bad, f'{bad[:5]} loaded; occam_l2r modules loaded: {ours}'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
