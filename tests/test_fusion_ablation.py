"""The ``fuse`` verb end to end on synthetic logits files: tables, rows, resumability, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.commands import fuse as fuse_command
from occam_l2r.fusion.config import MetadataConfig, SweepConfig
from occam_l2r.fusion.fusers import method_labels, method_names
from occam_l2r.fusion.plan import Cell, plan
from occam_l2r.fusion.runner import run_sweep
from occam_l2r.fusion.synthetic import write_synthetic_runs
from occam_l2r.logits import LogitsFile

SIZES = {"train": 400, "val": 300, "test_id": 300, "test_shift": 300}
FAST_METHODS = ["max_conf", "threshold", "ts_average", "weighted_logits", "oracle"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list[str]]:
    return write_synthetic_runs(
        tmp_path_factory.mktemp("logits"), num_classes=4, seeds=2, sizes=SIZES
    )


def write_config(path: Path, runs: dict, out: Path, **extra) -> Path:
    cfg = {
        "runs": runs,
        "output_dir": str(out),
        "pairs": [["FG_C", "BG_S"], ["FG_C", "FULL"]],
        "ensembles": ["FG_C"],
        "methods": FAST_METHODS,
        "test_splits": ["test_id", "test_shift"],
        "heads": {"max_epochs": 2, "batch_size": 128},
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def n_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_fuse_end_to_end_and_resume(runs, tmp_path, capsys):
    out = tmp_path / "out"
    # metadata table: the background kind as a "habitat" column (a perfect BG prior)
    meta_rows = []
    for split in SIZES:
        lf = LogitsFile.load(Path(runs["FG_C"][0]) / "logits" / f"{split}.npz")
        meta_rows += list(zip(lf.ids, lf.groups, strict=True))
    meta = tmp_path / "meta.csv"
    pd.DataFrame(meta_rows, columns=["image_id", "habitat"]).to_csv(meta, index=False)
    cfg = write_config(
        tmp_path / "fuse.yaml", runs, out,
        metadata={"table": str(meta), "fields": ["habitat"], "views": ["FG_C"]},
        sample_reports=["threshold"],
    )  # fmt: skip
    main(["fuse", "--config", str(cfg)])
    first = capsys.readouterr().out
    # 3 views x 2 seeds + 2 metadata + (2 pairs x 2 seeds + 1 ensemble x 1 seed) x 5 methods
    n_cells = 6 + 2 + 5 * len(FAST_METHODS)
    assert f"{n_cells} cells computed, 0 cached" in first
    results = out / "results.jsonl"
    assert n_lines(results) == n_cells

    table = (out / "fusion_table.md").read_text()
    for row in ["| FULL |", "| FG_C |", "| BG_S |", "| FG_C + habitat |", "**FG_C ⊕ BG_S**",
                "**FG_C ⊕ FULL**", "**FG_C × 2**", "| Best - ", "| Oracle |"]:  # fmt: skip
        assert row in table, row
    for m in FAST_METHODS:
        assert f"| {method_labels()[m]} |" in table
    assert "val acc | val macro acc | val fallback % | test_id acc" in table
    wide = pd.read_csv(out / "fusion_table.csv")
    assert (wide.model.str.startswith("Best - ")).sum() == 3 and (wide.model == "Oracle").sum() == 3

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == [
        "model",
        "test_id",
        "test_id fallback %",
        "test_shift",
        "test_shift fallback %",
    ]
    rows = dict(zip(summary.model, summary.test_shift, strict=True))
    assert rows["FULL"].count(" ") == 0 and rows["FG_C"].startswith("+")  # delta then value
    assert any(m.startswith("FG_C ⊕* BG_S (") for m in rows) and "FG_C ⊕R BG_S" in rows

    # the paper's pattern on data with a spurious background
    def shift(m: str) -> float:
        return float(rows[m].split()[-1])

    assert shift("FG_C ⊕max BG_S") < shift("FG_C") - 5  # BG over-confidence hurts under the shift
    assert shift("FG_C ⊕R BG_S") > shift("FG_C ⊕max BG_S")  # ⊕R keeps more of FG
    test_id = dict(zip(summary.model, summary.test_id, strict=True))
    assert float(test_id["FG_C ⊕WL FULL"].split()[-1]) > float(test_id["FG_C"].split()[-1])
    assert float(test_id["FG_C + habitat"].split()[0]) > float(test_id["FG_C"].split()[0])

    assert (out / "weights" / "FG_C+BG_S_seed0.csv").is_file()
    assert (out / "weights" / "FG_C+BG_S_seed0.png").is_file()
    rep = pd.read_csv(out / "samples" / "FG_C+BG_S" / "seed0" / "threshold_test_shift.csv")
    assert len(rep) == SIZES["test_shift"] and set(rep.decided_by) <= {"FG_C", "BG_S"}

    # second run: everything cached, nothing appended
    mtime = (out / "fusion_table.md").stat().st_mtime_ns
    main(["fuse", "--config", str(cfg)])
    assert f"0 cells computed, {n_cells} cached" in capsys.readouterr().out
    assert n_lines(results) == n_cells
    assert (out / "fusion_table.md").read_text() == table and (
        out / "fusion_table.md"
    ).stat().st_mtime_ns >= mtime

    # a line cut short by an interrupted run is skipped and does not corrupt the next one
    with results.open("a") as fh:
        fh.write('{"cell": "pair|FG_C+BG_S|thr')
    main(["fuse", "--config", str(cfg)])
    assert "0 cells computed" in capsys.readouterr().out

    # re-exporting one run's logits invalidates exactly the cells that read it
    bg1 = Path(runs["BG_S"][1]) / "logits" / "test_shift.npz"
    LogitsFile.load(bg1).save(bg1)
    main(["fuse", "--config", str(cfg)])
    # BG_S seed1 single + FG_C+BG_S seed1 x 5 methods
    assert f"{1 + len(FAST_METHODS)} cells computed" in capsys.readouterr().out
    main(["fuse", "--config", str(cfg)])
    assert "0 cells computed" in capsys.readouterr().out


def test_fuse_every_method_and_ensemble(runs, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "fuse.yaml", runs, out, methods=method_names(),
                       ensembles=["FULL", "FG_C"])  # fmt: skip
    main(["fuse", "--config", str(cfg)])
    assert f"{6 + 6 * len(method_labels())} cells computed" in capsys.readouterr().out
    table = (out / "fusion_table.md").read_text()
    for label in method_labels().values():
        assert table.count(f"| {label} |") == 4, label
    assert "**FULL × 2**" in table and "**FG_C × 2**" in table
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    wl = next(r for r in recs if r["method"] == "weighted_logits")
    assert len(wl["params"]["w1"]) == 4
    cts = next(r for r in recs if r["method"] == "max_conf_cts")
    assert len(cts["params"]["t1"]) == 4 and min(cts["params"]["t1"]) > 0


def test_fuse_print_config(runs, tmp_path, capsys):
    cfg = write_config(tmp_path / "fuse.yaml", runs, tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main(["fuse", "--config", str(cfg), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["heads"]["max_epochs"] == 2 and printed["val_split"] == "val"


def test_plan_typed_cells(runs, tmp_path):
    cfg = SweepConfig(
        runs, str(tmp_path), ensembles=["FG_C"], methods=["max_conf", "weighted_logits"],
        metadata=MetadataConfig(table="meta.csv", fields=["habitat"], views=["FULL"]),
    )  # fmt: skip
    assert cfg.pairs == [("FG_C", "FULL"), ("FG_C", "BG_S")]  # default_pairs: FG ⊕ FULL first
    cells = plan(cfg)
    assert [c.kind for c in cells[:8]] == ["single"] * 6 + ["metadata"] * 2
    pair = next(c for c in cells if c.name == "FG_C+BG_S" and c.method == "weighted_logits")
    assert pair.views == ("FG_C", "BG_S") and pair.name == "FG_C+BG_S" and pair.needs_train
    assert pair.runs == (runs["FG_C"][0], runs["BG_S"][0]) and pair.settings["max_epochs"] == 30
    assert pair.cell_id == "pair|FG_C+BG_S|weighted_logits|seed0"
    ens = [c for c in cells if c.kind == "ensemble"]
    assert len(ens) == 2 and ens[0].views == ("FG_C", "FG_C") and ens[0].name == "FG_Cx2"
    assert ens[0].runs == tuple(runs["FG_C"][:2])  # seed s with seed s+1, once for 2 seeds
    assert cells[6].name == "FULL + habitat" and cells[6].settings["field"] == "habitat"
    assert Cell("single", ("FULL",), "model", 0, ("r",)).name == "FULL"


def test_fuse_function_api(runs, tmp_path, capsys):
    """The call the ``pipeline`` verb makes: ``fuse(SweepConfig(...))``."""
    out = tmp_path / "out"
    result = fuse_command.fuse(
        fuse_command.SweepConfig(
            runs=runs, output_dir=str(out), pairs=[("FG_C", "BG_S")], ensembles=[],
            test_splits=["test_id"], summary_metric="macro_acc", methods=["max_conf"],
        )
    )  # fmt: skip
    assert result == {
        "fusion_table": str(out / "fusion_table.md"),
        "summary": str(out / "summary.md"),
        "computed": 8,
        "cached": 0,
        "select_metric": "acc",
    }
    assert "fuse: 8 cells computed, 0 cached" in capsys.readouterr().out
    assert (out / "summary.csv").is_file() and (out / "fusion_table.csv").is_file()


def test_ablation_config_errors(runs, tmp_path):
    with pytest.raises(ValueError, match="view 'BG_B' .* has no runs"):
        SweepConfig(runs, str(tmp_path), pairs=[("FG_C", "BG_B")])
    with pytest.raises(ValueError, match="needs runs of at least 2 seeds"):
        SweepConfig({"FULL": runs["FULL"][:1]}, str(tmp_path), pairs=[], ensembles=["FULL"])
    with pytest.raises(ValueError, match="unknown fusion methods \\['avg'\\]"):
        SweepConfig(runs, str(tmp_path), methods=["avg"])
    with pytest.raises(ValueError, match="metadata view 'BG_B' has no runs"):
        SweepConfig(runs, str(tmp_path), metadata=MetadataConfig("m.csv", ["h"], views=["BG_B"]))
    with pytest.raises(ValueError, match="`runs` is empty"):
        SweepConfig({}, str(tmp_path))


def test_ablation_reports_bad_inputs(runs, tmp_path):
    bad = tmp_path / "bad"
    for split in ("train", "val", "test"):
        lf = LogitsFile.load(
            Path(runs["FG_C"][0]) / "logits" / f"{split if split != 'test' else 'test_id'}.npz"
        )
        if split == "val":
            lf.logits[3, 1] = np.nan
        lf.save(bad / "logits" / f"{split}.npz")
    cfg = SweepConfig({"FULL": [str(bad)]}, str(tmp_path / "o"), pairs=[], test_splits=["test"])
    with pytest.raises(ValueError, match=r"bad/logits/val\.npz: 1 of 300 samples have NaN/inf"):
        run_sweep(cfg)
    # a FULL run from another dataset (other ids) fused with FG
    other = write_synthetic_runs(tmp_path / "other", num_classes=4, seeds=1,
                                 sizes={"train": 50, "val": 40, "test_id": 40, "test_shift": 40},
                                 views={"FULL": (1.0, 1.0)})  # fmt: skip
    cfg = SweepConfig({"FG_C": runs["FG_C"][:1], "FULL": other["FULL"]}, str(tmp_path / "o2"),
                      pairs=[("FG_C", "FULL")], methods=["max_conf"], test_splits=["test_id"])  # fmt: skip
    with pytest.raises(
        ValueError, match="sample ids differ between FG_C .*300 samples.*FULL .*40 samples"
    ):
        run_sweep(cfg)
    info = json.loads((tmp_path / "o2" / "results.jsonl").read_text().splitlines()[0])
    assert info["kind"] == "single"  # finished cells were kept before the failure
