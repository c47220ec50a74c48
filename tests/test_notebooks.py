"""The notebooks run: every code cell of each notebook is executed in order (no Jupyter needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("OCCAM_L2R_NOTEBOOK_TEST", "1")
    monkeypatch.setenv("OCCAM_L2R_NOTEBOOK_ROOT", str(tmp_path / "data"))
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    assert (tmp_path / "data" / "views_tour.png").is_file()
