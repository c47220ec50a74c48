"""The notebooks under notebooks/: each runs, and each is committed with the outputs of a run.

``test_notebook_runs`` executes every code cell in order at the notebooks' tiny size
(``OCCAM_L2R_NOTEBOOK_TEST=1``; no Jupyter needed: ``display`` is the only name Jupyter adds) with
``OCCAM_L2R_NOTEBOOK_ROOT`` set to a temporary folder, then checks the files the notebook declares
in its metadata (``metadata.occam_l2r.writes``, paths relative to that root). A notebook may also
assert on its own results in its last cell. ``test_notebook_committed_with_outputs`` checks the
committed file: executed top to bottom in one run, no error, pictures included, small enough for
GitHub to show (notebooks/README.md says how to re-execute one).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
#: what GitHub renders comfortably; the outputs are PNG figures at modest dpi
MAX_BYTES = 1_500_000


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _params() -> list:
    """One case per notebook; those declaring ``"slow": true`` (they train) carry the mark."""
    return [
        pytest.param(p, id=p.name, marks=[pytest.mark.slow] if _meta(_load(p)).get("slow") else [])
        for p in NOTEBOOKS
    ]


def _meta(notebook: dict) -> dict:
    return notebook.get("metadata", {}).get("occam_l2r", {})


def _code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def test_there_are_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert "01_views_tour.ipynb" in names and "02_walkthrough.ipynb" in names, names


@pytest.mark.parametrize("path", _params())
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    notebook = _load(path)
    writes = _meta(notebook).get("writes")
    assert writes, f"{path.name}: list the files it writes in metadata.occam_l2r.writes"
    assert all(not Path(w).is_absolute() and ".." not in Path(w).parts for w in writes), writes
    root = tmp_path / "data"
    monkeypatch.setenv("OCCAM_L2R_NOTEBOOK_TEST", "1")
    monkeypatch.setenv("OCCAM_L2R_NOTEBOOK_ROOT", str(root))
    displayed: list = []
    namespace: dict = {"__name__": "__main__", "display": displayed.append}
    try:
        for k, cell in enumerate(_code_cells(notebook)):
            exec(compile("".join(cell["source"]), f"{path.name}[code cell {k}]", "exec"), namespace)
    finally:
        plt.close("all")
    missing = [w for w in writes if not (root / w).is_file() or (root / w).stat().st_size == 0]
    assert not missing, f"{path.name} did not write {missing} under {root}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_with_outputs(path: Path) -> None:
    """Executed in order in one run, without errors, with its pictures, and small."""
    fix = f"re-execute it with outputs (notebooks/README.md) and commit it: {path}"
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes; {fix}"
    cells = _code_cells(_load(path))
    counts = [c.get("execution_count") for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name} execution counts {counts}; {fix}"
    outputs = [o for c in cells for o in c.get("outputs", [])]
    errors = [o.get("ename") for o in outputs if o["output_type"] == "error"]
    assert not errors, f"{path.name} holds errors {errors}; {fix}"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} holds no picture; {fix}"
