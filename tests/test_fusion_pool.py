"""⊕*'s pool (issue 16, item 7): ``fuse`` with no ``methods:`` key runs the paper's methods
(the rows of L2R² Tables 9-14, ``FusionMethod.paper``) and selects ⊕* among them; the method
outside the paper's tables (``max_conf_cts``) runs, and may win ⊕*, only when named.

The logits are built so that ``max_conf_cts`` is the best method on val: input 1 is right when
it predicts class 0 and wrong (over-confidently) when it predicts class 1, input 2 the mirror
image; only class-wise temperatures tell the two apart. The train split has the labels of the
disagreements flipped, so the learnt heads learn nothing useful either.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from occam_l2r.cli import main
from occam_l2r.fusion.config import SweepConfig
from occam_l2r.fusion.fusers import REGISTRY, method_names, paper_method_names
from occam_l2r.logits import LogitsFile

#: the rows of L2R² Table 9 (Tables 10-14 have the same), in table order.
PAPER_ROWS = ["max_conf", "max_conf_ts", "threshold", "ts_average", "ts_weighted_average",
              "concat_fc", "weighted_logits", "oracle"]  # fmt: skip


def test_paper_methods_are_the_paper_rows_and_the_default_methods():
    assert paper_method_names() == PAPER_ROWS
    assert [m for m in method_names() if not REGISTRY[m].paper] == ["max_conf_cts"]
    config = SweepConfig(runs={"FULL": ["a"], "FG_C": ["b"]})
    assert config.methods == PAPER_ROWS
    named = SweepConfig(runs={"FULL": ["a"], "FG_C": ["b"]}, methods=["max_conf_cts"])
    assert named.methods == ["max_conf_cts"]  # still available by name


def _logits(pred: np.ndarray, high: np.ndarray, c: int = 3, low: float = 4.0) -> np.ndarray:
    z = np.full((len(pred), c), low, np.float32)
    z[np.arange(len(pred)), pred] = high
    return z


def _runs(root: Path) -> dict[str, list[str]]:
    """FG_C (input 1) and FULL (input 2), one seed, 50 samples per split: 10 where only FG_C is
    right (label 0), 10 where only FULL is (label 2), 30 where both are."""
    y = np.array([0] * 10 + [2] * 10 + [0, 1, 2] * 10)
    p1 = np.array([0] * 10 + [1] * 10 + [0, 1, 2] * 10)
    p2 = np.array([1] * 10 + [2] * 10 + [0, 1, 2] * 10)
    h1 = np.array([6.0] * 10 + [8.0] * 10 + [7.0] * 30)
    h2 = np.array([8.0] * 10 + [6.0] * 10 + [7.0] * 30)
    runs: dict[str, list[str]] = {}
    for view, z in (("FG_C", _logits(p1, h1)), ("FULL", _logits(p2, h2))):
        run = root / view / "seed0"
        for split in ("train", "val", "test"):
            labels = np.where(np.arange(len(y)) < 20, 1, y) if split == "train" else y
            LogitsFile(ids=[f"s{i}" for i in range(len(y))], labels=labels, logits=z,
                       split=split, view=view).save(run / "logits" / f"{split}.npz")  # fmt: skip
        runs[view] = [str(run)]
    return runs


def _best_row(out: Path) -> str:
    return next(line for line in (out / "fusion_table.md").read_text().splitlines()
                if line.startswith("| Best - "))  # fmt: skip


def _fuse(tmp_path: Path, name: str, runs: dict, **extra) -> Path:
    out = tmp_path / name
    cfg = {"runs": runs, "output_dir": str(out), "pairs": [["FG_C", "FULL"]],
           "test_splits": ["test"], "heads": {"max_epochs": 2, "batch_size": 32}, **extra}  # fmt: skip
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    main(["fuse", "--config", str(tmp_path / f"{name}.yaml")])
    return out


def test_fuse_without_methods_selects_best_among_the_paper_methods(tmp_path):
    runs = _runs(tmp_path / "runs")
    every = _fuse(tmp_path, "every", runs, methods=method_names())
    recs = [json.loads(line) for line in (every / "results.jsonl").read_text().splitlines()]
    val = {r["method"]: r["metrics"]["val"]["acc"] for r in recs if r["kind"] == "pair"}
    paper_best = max(v for m, v in val.items() if m in PAPER_ROWS and m != "oracle")
    assert val["max_conf_cts"] > paper_best  # the old pool (every method) picks it ...
    assert "Best - Max class-wise scaled conf |" in _best_row(every)  # ... when it is named

    default = _fuse(tmp_path, "default", runs)  # no `methods:` key
    recs = [json.loads(line) for line in (default / "results.jsonl").read_text().splitlines()]
    assert sorted({r["method"] for r in recs if r["kind"] == "pair"}) == sorted(PAPER_ROWS)
    best = _best_row(default)
    assert "class-wise" not in best
    winners = [m for m, v in val.items() if m in PAPER_ROWS and m != "oracle" and v == paper_best]
    for m in winners:
        assert REGISTRY[m].label in best
    assert "⊕maxCTS" not in (default / "summary.md").read_text()
