"""Top-k without ground truth with several FULL seeds (issue 16, item 8; L2R² Table 7 bottom,
Table 8): the candidates and ``z_Full`` come from the FULL run that prompted the candidate store
(``topk.candidates_from``, default FULL seed 0, as the shipped segment configs prompt it), so two
FULL seeds that disagree on their top-k leave no candidate row missing. With
``candidates_from: each`` (one store per FULL seed) fed one store, every missing row is counted
in ``results.jsonl``, the tables and a warning: never a silent stand-in."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.logits import LogitsFile

N, C = 8, 4
Y = np.arange(N) % C
W, P = (Y + 1) % C, (Y + 3) % C  # W: a wrong class that both FULL seeds rank first


def _save(run: Path, split: str, labels, logits, **extra) -> str:
    ids = extra.pop("ids", [f"s{i}" for i in range(len(labels))])
    LogitsFile(ids=ids, labels=labels, logits=logits, split=split, view=run.parent.name,
               **extra).save(run / "logits" / f"{split}.npz")  # fmt: skip
    return str(run)


def _full(second: np.ndarray) -> np.ndarray:
    """FULL ranks W first, ``second`` second."""
    z = np.zeros((N, C))
    z[np.arange(N), W], z[np.arange(N), second] = 3.0, 2.0
    return z


def two_seed_runs(root: Path) -> dict[str, list[str]]:
    """FULL seed 0 ranks (W, Y), seed 1 (W, P): they disagree on the second candidate. One
    candidate store prompted from FULL seed 0's top-2 (W, Y), as
    ``configs/segment/hard_imagenet_topk_*.yaml`` build it; the FG model of each seed scores the
    prompted class Y highest (seed 1 a little less)."""
    runs: dict[str, list[str]] = {"FULL": [], "FG_C_topk": []}
    rows = [(i, c) for i in range(N) for c in (W[i], Y[i])]
    for split in ("val", "test"):
        full = [_save(root / "FULL" / f"seed{s}", split, Y, _full(second))
                for s, second in enumerate((Y, P))]  # fmt: skip
        fg = []
        for seed, hi in enumerate((5.0, 4.0)):
            z = np.zeros((len(rows), C))
            for r, (i, c) in enumerate(rows):
                z[r, c] = hi if c == Y[i] else 1.0
            fg.append(_save(root / "FG_C_topk" / f"seed{seed}", split, [Y[i] for i, _ in rows],
                            z, ids=[f"s{i}" for i, _ in rows], candidates=[c for _, c in rows]))  # fmt: skip
        runs = {"FULL": full, "FG_C_topk": fg}
    return runs


def _fuse(tmp_path: Path, name: str, runs: dict, **topk) -> Path:
    out = tmp_path / name
    cfg = {"runs": runs, "output_dir": str(out), "pairs": [], "methods": ["max_conf"],
           "test_splits": ["test"], "topk": {"fg": "FG_C_topk", "ks": [2], **topk}}  # fmt: skip
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    main(["fuse", "--config", str(tmp_path / f"{name}.yaml")])
    return out


def _topk_records(out: Path) -> list[dict]:
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [r for r in recs if r["kind"] == "topk"]


def test_two_full_seeds_that_disagree_use_the_store_s_full_run(tmp_path):
    runs = two_seed_runs(tmp_path / "runs")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = _fuse(tmp_path, "default", runs)
    assert not [w for w in seen if "FULL's logit" in str(w.message)]  # no stand-in
    recs = _topk_records(out)
    assert sorted({r["seed"] for r in recs}) == [0, 1]
    for r in recs:
        assert r["runs"][0] == runs["FULL"][0]  # FULL seed 0 for both seeds
        assert r["params"]["missing_rows_by_split"] == {"val": 0, "test": 0}, r["seed"]
        assert r["params"]["full_run"] == runs["FULL"][0]
        if r["method"] in ("FG", "FULL+FG"):
            assert r["metrics"]["test"]["acc"] == 1.0, (r["method"], r["seed"])  # always Y
    table = (out / "fusion_table.md").read_text()
    assert "top-k candidates: FULL seed 0's top-k for every seed" in table.splitlines()[0]
    assert "missing candidate rows" not in table


def test_one_store_per_full_seed_counts_and_reports_missing_rows(tmp_path):
    runs = two_seed_runs(tmp_path / "runs")
    with pytest.warns(
        UserWarning, match=r"seed1: .* took FULL's logit \(val k=2: 8, test k=2: 8\)"
    ):
        out = _fuse(tmp_path, "each", runs, candidates_from="each")
    recs = {(r["method"], r["seed"]): r for r in _topk_records(out)}
    assert recs["FG", 0]["params"]["missing_rows_by_split"] == {"val": 0, "test": 0}
    assert recs["FG", 1]["runs"][0] == runs["FULL"][1]
    # FULL seed 1's second candidate P was never prompted: 8 rows per split took FULL's logit
    assert recs["FG", 1]["params"]["missing_rows_by_split"] == {"val": 8, "test": 8}
    table = (out / "fusion_table.md").read_text()
    assert "top-k candidates: each seed's own FULL top-k" in table.splitlines()[0]
    assert "| FG_C_topk (k=2; 16 missing candidate rows took FULL's logit) |" in table


def test_candidates_from_names_an_existing_full_run(tmp_path, monkeypatch, capsys):
    runs = two_seed_runs(tmp_path / "runs")
    cfg = {"runs": runs, "output_dir": str(tmp_path / "out"), "pairs": [],
           "topk": {"fg": "FG_C_topk", "candidates_from": 2}}  # fmt: skip
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "fuse", "--config", str(path)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "topk.candidates_from is 2, but FULL has 2 runs" in err
