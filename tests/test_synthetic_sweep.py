"""``benchmarks/synthetic_sweep.py`` (issue 16, item 10): the committed sweep table is what the script
tabulates from the committed per-cell numbers, worst-group accuracy is the minimum over the groups
present, and one tiny cell runs end to end through the script's entry point (train, predict,
fuse, tabulate)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "benchmarks" / "synthetic_sweep.py"
COMMITTED = ROOT / "docs" / "results" / "synthetic_sweep.md"


def _sweep():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("synthetic_sweep", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_table_is_tabulated_from_committed_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # main() changes into the repository; the fixture changes back
    out = tmp_path / "sweep.md"
    shutil.copy(COMMITTED.with_suffix(".json"), out.with_suffix(".json"))
    _sweep().main([
        "--tabulate", "--num-classes", "4", "8", "2", "6", "3", "7", "5",
        "--generator-seeds", "0", "1", "2",
        "--experiment-root", str(tmp_path / "no_runs_here"), "--out", str(out),
    ])  # fmt: skip
    assert out.read_text() == COMMITTED.read_text()
    assert out.with_suffix(".json").read_bytes() == COMMITTED.with_suffix(".json").read_bytes()
    cells = json.loads(out.with_suffix(".json").read_text())
    assert {(c["k"], c["generator_seed"]) for c in cells.values()} == {
        (k, g) for k in range(2, 9) for g in range(3)
    }


def test_worst_group_is_the_minimum_over_present_groups() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    groups = np.array([0, 0, 1, 1, 1, 1])  # (0, 0), (0, 1), (1, 1); (1, 0) holds no image
    pred = np.array([0, 0, 1, 1, 1, 0])
    acc, worst = _sweep().accuracy(pred, labels, groups)
    assert acc == pytest.approx(100 * 4 / 6)
    assert worst == 0.0  # group (0, 1): its one image is wrong


@pytest.mark.slow
def test_one_tiny_cell_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OCCAM_L2R_DATA", str(tmp_path / "data"))
    out = tmp_path / "sweep.md"
    ds = "--data.init_args.dataset.init_args"
    _sweep().main([
        "--num-classes", "2", "--generator-seeds", "1",
        "--experiment-root", str(tmp_path / "runs"), "--out", str(out),
        "--fit-args", "--trainer.max_epochs", "1", "--data.init_args.num_workers", "0",
        f"{ds}.train_per_class", "16", f"{ds}.val_per_class", "8", f"{ds}.test_per_class", "8",
    ])  # fmt: skip
    cells = json.loads(out.with_suffix(".json").read_text())
    assert set(cells) == {"k2_g1"}
    numbers = cells["k2_g1"]["numbers"]
    assert set(numbers) == {"FULL", "FG_C", "FG_M", "BG_S", "FG_C ⊕R BG_S", "FG_M ⊕R BG_S"}
    for model in numbers.values():
        for acc, worst in model.values():
            assert 0.0 <= worst <= acc <= 100.0
    table = out.read_text()
    assert "| FG_M ⊕R BG_S | 2 | 1 |" in table and "Range over the 1 finished cells" in table
