"""Issue 9 through the ``fuse`` verb on hand-made logits files: the FULL fallback at the output,
top-k rows, the headline metric, ⊕* ties, a manual ⊕R t, metadata priors (Table 4), train
columns and Table 1 across datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.fusion import methods as M
from occam_l2r.fusion.compute import FallbackError
from occam_l2r.fusion.fusers import paper_method_names
from occam_l2r.fusion.metadata import MetadataPrior
from occam_l2r.logits import LogitsFile


def conf_logits(pred: np.ndarray, conf: np.ndarray | float, c: int) -> np.ndarray:
    """Logits whose softmax puts ``conf`` on ``pred`` and spreads the rest evenly."""
    pred = np.asarray(pred)
    conf = np.broadcast_to(np.asarray(conf, np.float64), pred.shape)
    z = np.repeat(np.log((1 - conf) / (c - 1))[:, None], c, axis=1)
    z[np.arange(len(pred)), pred] = np.log(conf)
    return z


def save(run: Path, split: str, labels, logits, **extra) -> str:
    """One logits file ``<run>/logits/<split>.npz``; ``ids`` default to ``s<i>``."""
    headline = extra.pop("headline", None)
    ids = extra.pop("ids", [f"s{i}" for i in range(len(labels))])
    LogitsFile(ids=ids, labels=labels, logits=logits, split=split, view=run.parent.name,
               config={"headline_metric": headline} if headline else {},
               **extra).save(run / "logits" / f"{split}.npz")  # fmt: skip
    return str(run)


def fuse(tmp_path: Path, name: str, **config) -> tuple[Path, dict]:
    out = tmp_path / name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(out), **config}))
    return out, main(["fuse", "--config", str(path)])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- 3: the fallback at the output
def fallback_runs(root: Path) -> dict[str, list[str]]:
    """30 samples, 3 classes; samples 0-5 had no detection (flagged in FG_C and BG_S). There
    FULL is wrong, FG and BG right; elsewhere FULL and FG are right, BG is noise."""
    n, c = 30, 3
    y = np.arange(n) % c
    flags = np.arange(n) < 6
    rng = np.random.default_rng(0)
    runs: dict[str, list[str]] = {v: [] for v in ("FULL", "FG_C", "BG_S")}
    for seed in range(2):
        for split in ("train", "val", "test"):
            full = conf_logits(np.where(flags, (y + 1) % c, y), 0.6, c)
            fg = conf_logits(y, np.where(flags, 0.9, 0.7), c)
            bg = conf_logits(
                np.where(flags, y, rng.integers(0, c, n)), np.where(flags, 0.9, 0.5), c
            )
            for view, z, fb in (("FULL", full, None), ("FG_C", fg, flags), ("BG_S", bg, flags)):
                run = root / view / f"seed{seed}"
                save(run, split, y, z, fallback=fb, groups=np.full(n, "g"))
                if split == "train":
                    runs[view].append(str(run))
    return runs


@pytest.mark.slow
def test_no_detection_gets_full_prediction_in_every_fused_row(tmp_path):
    runs = fallback_runs(tmp_path / "runs")
    meta = tmp_path / "meta.csv"
    pd.DataFrame({"image_id": [f"s{i}" for i in range(30)], "habitat": "forest"}).to_csv(meta)
    common = {
        "runs": runs, "pairs": [["FG_C", "BG_S"], ["FG_C", "FULL"]], "ensembles": ["FG_C"],
        "test_splits": ["test"], "heads": {"max_epochs": 1, "batch_size": 32},
        "sample_reports": paper_method_names(), "report_train": True,
        "metadata": {"table": str(meta), "fields": ["habitat"], "views": ["FG_C"]},
    }  # fmt: skip
    out, _ = fuse(tmp_path, "full", **common)
    reports = sorted((out / "samples").rglob("*_test.csv"))
    # every method of 2 pairs x 2 seeds and 1 ensemble
    assert len(reports) == len(paper_method_names()) * 5  # `methods:` defaults to the paper's
    for path in reports:
        rep = pd.read_csv(path)
        flagged = rep[rep.fallback]
        assert len(flagged) == 6, path
        assert (flagged.fused_pred == (flagged.label + 1) % 3).all(), path  # FULL's prediction
        assert (flagged.decided_by == "FULL (fallback)").all(), path
    recs = {(r["name"], r["method"], r["seed"]): r["metrics"]["test"] for r in records(out)}
    assert recs["FG_C", "model", 0]["acc"] == 1.0  # the FG model itself is right there
    assert recs["FG_C + habitat", "prior", 0]["acc"] == pytest.approx(0.8)  # FULL + prior
    assert recs["FG_C+BG_S", "max_conf", 0]["fallback_rate"] == pytest.approx(0.2)
    table = (out / "fusion_table.md").read_text()
    header = "| model | train acc | train macro acc | train fallback % | val acc |"
    assert header in table  # Tables 12 and 14: train columns first
    summary = pd.read_csv(out / "summary.csv", dtype=str)
    rows = dict(zip(summary.model, summary["test fallback %"], strict=True))
    assert rows["FULL"] == "0.00" and rows["FG_C"] == "20.00" and rows["FG_C ⊕max BG_S"] == "20.00"

    # `fallback: none` keeps today's behaviour: the fused (correct) prediction stays
    none = {**common, "fallback": "none", "methods": ["max_conf"], "metadata": None}
    out, _ = fuse(tmp_path, "none", **none)
    rep = pd.read_csv(out / "samples" / "FG_C+BG_S" / "seed0" / "max_conf_test.csv")
    assert (rep[rep.fallback].fused_pred == rep[rep.fallback].label).all()
    assert "no fallback at the output" in (out / "summary.md").read_text()

    # flagged samples but no FULL run to fall back to
    no_full = {"FG_C": runs["FG_C"], "BG_S": runs["BG_S"]}
    with pytest.raises(FallbackError, match="6 samples of FG_C\\+BG_S .* no 'FULL' view"):
        fuse(tmp_path, "nofull", runs=no_full, baseline="FG_C", pairs=[["FG_C", "BG_S"]],
             methods=["max_conf"], test_splits=["test"])  # fmt: skip


# ---------------------------------------------------------------- 5: top-k rows
def topk_runs(root: Path) -> dict[str, list[str]]:
    """8 samples, 4 classes; FULL ranks a wrong class w first, the label y second. The FG (BG)
    view prompted with y scores it highest. Sample 0: no candidate detected (all rows flagged);
    sample 1: an older export that dropped its third candidate's row."""
    n, c = 8, 4
    y = np.arange(n) % c
    w, o = (y + 1) % c, (y + 2) % c
    runs: dict[str, list[str]] = {"FULL": [], "FG_C_topk": [], "BG_S_topk": []}
    for split in ("train", "val", "test"):
        z = np.zeros((n, c))
        z[np.arange(n), w], z[np.arange(n), y], z[np.arange(n), o] = 3.0, 2.0, 1.0
        runs["FULL"] = [save(root / "FULL" / "seed0", split, y, z)]
        if split == "train":
            continue  # the candidate views need no train export, even with report_train
        for view, hi, lo in (("FG_C_topk", 5.0, 1.0), ("BG_S_topk", 2.0, 1.5)):
            rows = [(i, cand) for i in range(n) for cand in (w[i], y[i], o[i])
                    if (i, cand) != (1, o[1])]  # fmt: skip
            logits = np.zeros((len(rows), c))
            for r, (i, cand) in enumerate(rows):
                logits[r, cand] = hi if cand == y[i] else lo
            runs[view] = [save(
                root / view / "seed0", split, [y[i] for i, _ in rows], logits,
                ids=[f"s{i}" for i, _ in rows], candidates=[cand for _, cand in rows],
                fallback=[i == 0 for i, _ in rows],
            )]  # fmt: skip
    return runs


def test_topk_rows_choose_k_on_val_and_plot_nonempty_candidates(tmp_path):
    runs = topk_runs(tmp_path / "runs")
    with pytest.warns(UserWarning, match=r"took FULL's logit \(val k=3: 2\)"):
        out, _ = fuse(tmp_path, "topk", runs=runs, methods=["max_conf"], test_splits=["test"],
                      topk={"fg": "FG_C_topk", "bg": "BG_S_topk", "ks": [1, 2, 3, 5]},
                      report_train=True)  # fmt: skip
    recs = [r for r in records(out) if r["kind"] == "topk"]
    assert sorted(r["method"] for r in recs) == ["BG", "FG", "FULL+FG", "FULL+FG+BG"]
    for r in recs:
        assert r["params"]["k"] == 2  # k = 1 is FULL's (wrong) top-1; k = 3 ties: the smaller k
        assert set(r["params"]["val_by_k"]) == {"1", "2", "3"}  # 5 > the 3 exported candidates
        # sample 1's dropped third candidate (FG and BG): counted where k = 3 was tried
        assert r["params"]["missing_rows_val_by_k"] == {"1": 0, "2": 0, "3": 2}
        assert r["params"]["missing_rows_by_split"] == {"val": 0, "test": 0}  # at k = 2
        # sample 0 had no detection: FULL's (wrong) prediction; the other 7 are right
        assert r["metrics"]["test"]["acc"] == pytest.approx(7 / 8)
        assert r["metrics"]["test"]["fallback_rate"] == pytest.approx(1 / 8)
    table = (out / "fusion_table.md").read_text()
    assert "**Top-k candidates: FULL, FG_C_topk, BG_S_topk**" in table
    assert "top-k candidates: FULL seed 0's top-k for every seed" in table.splitlines()[0]
    # no train column for the top-k rows (Table 7 has none); val as test: 7 of 8
    assert "| FULL ⊕ FG_C_topk ⊕ BG_S_topk (k=2) | – | – | – | 87.50 ± 0.00 |" in table
    summary = pd.read_csv(out / "summary.csv", dtype=str)
    rows = dict(zip(summary.model, summary.test, strict=True))
    assert rows["top-k FULL ⊕ FG_C_topk"] == "+87.50 87.50" and rows["FULL"] == "0.00"
    hist = pd.read_csv(out / "topk" / "nonempty_candidates.csv")
    val = hist[hist.split == "val"].set_index("nonempty")["images"].to_dict()
    assert val == {0: 1, 1: 0, 2: 1, 3: 6}
    png = out / "topk" / "nonempty_candidates_val.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- 6, 9, 12: headline metric
def imbalanced(root: Path, headline: str | None = "macro_acc") -> dict[str, list[str]]:
    """FungiTastic-like: class 0 has 90 samples, classes 1 and 2 five each. FG predicts 0
    everywhere (acc 0.90, macro 0.33); max conf with BG gets the rare classes but loses 15
    common samples to BG's over-confidence (acc 0.85, macro 0.94)."""
    y = np.r_[np.zeros(90, int), np.ones(5, int), np.full(5, 2)]
    fg = conf_logits(np.zeros(100, int), 0.6, 3)
    bg_pred = np.r_[np.ones(15, int), np.zeros(75, int), y[90:]]
    bg = conf_logits(bg_pred, np.r_[np.full(15, 0.8), np.full(75, 0.5), np.full(10, 0.9)], 3)
    runs = {}
    for view, z in (("FULL", fg), ("FG_C", fg), ("BG_S", bg)):
        for split in ("train", "val", "test"):
            runs[view] = [save(root / view / "seed0", split, y, z, headline=headline)]
    return runs


def test_fitted_threshold_and_alpha_follow_the_metric():
    y = np.r_[np.zeros(90, int), np.ones(5, int), np.full(5, 2)]
    fg = conf_logits(np.zeros(100, int), 0.6, 3)
    bg_pred = np.r_[np.ones(15, int), np.zeros(75, int), y[90:]]
    bg = conf_logits(bg_pred, np.r_[np.full(15, 0.8), np.full(75, 0.5), np.full(10, 0.9)], 3)
    assert M.fit_threshold(fg, bg, y, metric="acc") == 0.0  # always FG: 0.90
    assert M.fit_threshold(fg, bg, y, metric="macro_acc") == pytest.approx(0.6)  # max conf
    rng = np.random.default_rng(5)
    y = np.where(rng.random(40) < 0.8, 0, rng.integers(1, 3, 40))
    z1 = rng.normal(size=(40, 3)) * 1.5 + 2 * np.eye(3)[y] * (rng.random(40) < 0.7)[:, None]
    z2 = rng.normal(size=(40, 3)) * 1.5 + 2 * np.eye(3)[y] * (rng.random(40) < 0.5)[:, None]
    chosen = {}
    for metric in ("acc", "macro_acc"):
        chosen[metric] = M.fit_alpha(z1, z2, y, metric=metric)
        grid = [M.score(M.ts_weighted_average(z1, z2, a).pred, y, metric)
                for a in np.linspace(0, 1, 101)]  # fmt: skip
        best = M.score(M.ts_weighted_average(z1, z2, chosen[metric]).pred, y, metric)
        assert best == pytest.approx(max(grid))
    assert chosen["acc"] != chosen["macro_acc"]


def test_fungitastic_like_run_selects_on_macro_accuracy(tmp_path):
    runs = imbalanced(tmp_path / "runs")
    common = {"runs": runs, "pairs": [["FG_C", "BG_S"]], "methods": ["max_conf", "threshold"],
              "test_splits": ["test"], "threshold_t": 0.0}  # fmt: skip
    out_a, res = fuse(tmp_path, "macro", **common)
    assert res["select_metric"] == "macro_acc"  # stored in the logits files by predict
    table = (out_a / "fusion_table.md").read_text()
    assert "Best selected on val macro_acc" in table and "| Best - Max conf |" in table
    assert "| Threshold conf (t=0) |" in table  # §3.3: t set by hand
    thr = next(r for r in records(out_a) if r["method"] == "threshold")
    assert thr["params"] == {"t": 0.0, "manual": True}
    assert "Summary: macro_acc" in (out_a / "summary.md").read_text()

    # selection on micro accuracy picks the other method; Table 1 across both "datasets"
    out_b, res = fuse(tmp_path, "micro", **common, select_metric="acc",
                      across_datasets={"name": "B", "others": {"A": str(out_a)}})  # fmt: skip
    assert res["select_metric"] == "acc"
    assert "| Best - Threshold conf (t=0) |" in (out_b / "fusion_table.md").read_text()
    across = pd.read_csv(out_b / "datasets_table.csv", dtype=str)
    assert list(across.columns) == ["model", "B test (acc)", "A test (macro_acc)", "mean"]
    rows = {r.model: r for r in across.itertuples(index=False)}
    # FULL: acc 90.00, macro 33.33 -> mean 61.67; FG_C ⊕* BG_S: B threshold 90.00, A max conf 94.44
    assert rows["FULL"][1:] == ("90.00", "33.33", "61.67")
    assert rows["FG_C ⊕* BG_S"][1:] == ("+0.00 90.00", "+61.11 94.44", "+30.56 92.22")


@pytest.mark.slow
def test_checkpoint_monitor_and_logits_follow_the_headline_metric(tmp_path):
    runs = imbalanced(tmp_path / "runs")
    out = tmp_path / "fit"
    conf = Path(__file__).parents[1] / "configs" / "fusion" / "weighted_logits.yaml"
    args = ["--config", str(conf), "--data.init_args.input1", runs["FG_C"][0],
            "--data.init_args.input2", runs["BG_S"][0], "--data.init_args.test_splits", "[test]",
            "--trainer.logger.init_args.save_dir", str(out), "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
    cli = main(["fit", *args, "--test_after_fit", "false"])
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.checkpoint_callback.monitor == "val/headline"
    assert float(metrics["val/headline"]) == pytest.approx(float(metrics["val/macro_acc"]))
    assert float(metrics["val/macro_acc"]) != pytest.approx(float(metrics["val/acc"]))
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    main(["predict", *args, "--ckpt_path", ckpt])
    fused = LogitsFile.load(Path(ckpt).parents[1] / "fused_logits" / "test.npz")
    assert fused.config["headline_metric"] == "macro_acc"


def test_headline_metric_of_datamodules():
    from occam_l2r.data.base import BaseDataModule
    from occam_l2r.data.datasets.fungitastic import FungiTasticMini

    assert FungiTasticMini.headline_metric == "macro_acc"
    dm = BaseDataModule()
    dm.dataset = FungiTasticMini.__new__(FungiTasticMini)
    assert dm.headline_metric == "macro_acc", "a DataModule declares its dataset's metric"


# ---------------------------------------------------------------- 7: ⊕* ties
def test_tied_methods_show_as_a_tie(tmp_path):
    """On val BG equals FG, so every method ties; on test BG differs and so do the methods."""
    n, c = 30, 3
    y = np.arange(n) % c
    fg = conf_logits(np.where(np.arange(n) < 10, (y + 1) % c, y), 0.6, c)
    bg = conf_logits(y, 0.9, c)
    runs = {}
    for view in ("FULL", "FG_C", "BG_S"):
        save(tmp_path / view / "seed0", "val", y, fg)
        runs[view] = [save(tmp_path / view / "seed0", "test", y, bg if view == "BG_S" else fg)]
    out, _ = fuse(tmp_path, "ties", runs=runs, pairs=[["FG_C", "BG_S"]],
                  methods=["max_conf", "threshold", "ts_average"], test_splits=["test"])  # fmt: skip
    wide = pd.read_csv(out / "fusion_table.csv", dtype=str)
    row = wide[wide.model.str.startswith("Best - ")].iloc[0]
    assert row.model == "Best - tie: Max conf, Threshold conf, TempScaled AvgPred"
    assert row["test acc"] == "66.67–100.00"  # threshold keeps FG (t = 0); the others take BG
    summary = pd.read_csv(out / "summary.csv", dtype=str)
    label = "FG_C ⊕* BG_S (tie: Max conf, Threshold conf, TempScaled AvgPred)"
    assert dict(zip(summary.model, summary.test, strict=True))[label] == "+0.00–+33.33 66.67–100.00"


# ---------------------------------------------------------------- 10: metadata priors, Table 4
def test_metadata_prior_guards_and_table4(tmp_path):
    # smoothing 0 and class 2 absent from train: no NaN, class 2's probability left as it is
    prior = MetadataPrior(smoothing=0.0).fit(np.array([0, 0, 1]), np.array(["a", "a", "b"]), 3)
    # p(k|a) = (1, 0, 0), p(k) = (2/3, 1/3, 0): ratios (3/2, 0, 1)
    out = prior.apply(np.array([[0.2, 0.3, 0.5]]), np.array(["a"]))
    np.testing.assert_allclose(out[0], np.array([0.3, 0.0, 0.5]) / 0.8)
    # p(k) counts every labelled train sample, with or without a metadata value:
    # p(k) = (3/4, 1/4); p(k|a) = (1/2, 1/2) -> ratios (2/3, 2)
    prior = MetadataPrior(smoothing=0.0).fit(
        np.array([0, 0, 0, 1]), np.array(["a", "", "", "a"]), 2
    )
    np.testing.assert_allclose(np.exp(prior.log_ratio[0]), [2 / 3, 2.0])

    n, c = 40, 3
    y = np.r_[np.arange(n - 4) % 2, np.full(4, 2)]  # class 2 only outside train
    habitat = np.where(y == 0, "forest", "meadow")
    runs = {}
    for view, conf in (("FULL", 0.5), ("FG_C", 0.6)):
        for split in ("train", "val", "test"):
            keep = slice(0, n - 4) if split == "train" else slice(None)
            z = conf_logits(np.where(np.arange(n) % 4 == 0, (y + 1) % c, y)[keep], conf, c)
            runs[view] = [save(tmp_path / view / "seed0", split, y[keep], z,
                               ids=[f"s{i}" for i in range(n)][keep])]  # fmt: skip
    meta = tmp_path / "meta.csv"
    pd.DataFrame({"image_id": [f"s{i}" for i in range(n)], "habitat": habitat}).to_csv(meta)
    out, _ = fuse(tmp_path, "meta", runs=runs, pairs=[], test_splits=["test"],
                    metadata={"table": str(meta), "fields": ["habitat"], "smoothing": 0.0})  # fmt: skip
    t4 = pd.read_csv(out / "metadata_table.csv", dtype=str)
    assert list(t4.columns) == ["model", "img", "+habitat"]
    recs = {r["name"]: r["metrics"]["test"]["acc"] for r in records(out)}
    for view in ("FULL", "FG_C"):
        img, md = recs[view], recs[f"{view} + habitat"]
        row = t4[t4.model == view].iloc[0]
        assert row["img"] == f"{100 * img:.2f}"
        assert row["+habitat"] == f"{100 * md:.2f} {100 * (md - img):+.2f}"  # over the same model
        assert md > img  # NaN probabilities (the old smoothing-0 bug) would predict class 0
