"""The ``report`` verb on hand-made logits fused by ``fuse``: every figure is written and
embedded, the page's tables are fuse's Markdown tables cell for cell, the figures' numbers are
the logits files', and missing parts leave a note instead of failing."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from occam_l2r.cli import main
from occam_l2r.fusion import tables
from occam_l2r.fusion.calibration import expected_calibration_error, fit_temperature
from occam_l2r.fusion.synthetic import write_synthetic_runs
from occam_l2r.html_page import Page
from occam_l2r.logits import LogitsFile
from occam_l2r.reporting.sources import FuseOutputMissingError, read_markdown_table
from occam_l2r.reporting.stats import per_class_accuracy, reliability

REPO = Path(__file__).parents[1]
SIZES = {"train": 120, "val": 80, "test_id": 80, "test_shift": 80}
TESTS = ["test_id", "test_shift"]
METHODS = ["max_conf", "threshold", "ts_average", "weighted_logits", "oracle"]
FLAG_EVERY = 10  # every 10th sample of FG_C falls back to the full image


def _flag_fallbacks(run: str) -> None:
    for split in SIZES:
        path = Path(run) / "logits" / f"{split}.npz"
        lf = LogitsFile.load(path)
        lf.fallback = np.arange(len(lf.ids)) % FLAG_EVERY == 0
        lf.save(path)


def _write_topk_run(full_run: str, fg_run: str, dest: Path, k: int = 2) -> None:
    """FG logits prompted with FULL's top-k classes; candidate 2 of every 3rd sample is empty."""
    for split in ["val", *TESTS]:
        full = LogitsFile.load(Path(full_run) / "logits" / f"{split}.npz")
        fg = LogitsFile.load(Path(fg_run) / "logits" / f"{split}.npz")
        top = np.argsort(-full.logits, axis=1, kind="stable")[:, :k]
        n = len(full.ids)
        rows = [(i, j) for i in range(n) for j in range(k)]
        LogitsFile(
            ids=[full.ids[i] for i, _ in rows], labels=[full.labels[i] for i, _ in rows],
            logits=np.stack([fg.logits[i] for i, _ in rows]),
            candidates=[top[i, j] for i, j in rows],
            fallback=[i % 3 == 0 and j == 1 for i, j in rows], split=split, view="FG_C_topk",
            class_names=full.class_names,
        ).save(dest / "logits" / f"{split}.npz")  # fmt: skip


def _write_images(root: Path, ids: np.ndarray) -> None:
    for i, image_id in enumerate(ids):
        path = root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 16), ((37 * i) % 255, 90, 160)).save(path)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> dict[str, Path]:
    """Hand-made runs (FG_C with flagged samples, a top-k FG run, images on disk, a FULL run
    config naming the dataset root), fused by ``fuse`` through the command line."""
    tmp = tmp_path_factory.mktemp("report")
    runs = write_synthetic_runs(tmp / "runs", num_classes=4, seeds=2, sizes=SIZES)
    for run in runs["FG_C"]:
        _flag_fallbacks(run)
    _write_topk_run(runs["FULL"][0], runs["FG_C"][0], tmp / "runs" / "FG_C_topk" / "seed0")
    runs["FG_C_topk"] = [str(tmp / "runs" / "FG_C_topk" / "seed0")]
    data = tmp / "data"
    for split in TESTS:
        _write_images(data, LogitsFile.load(Path(runs["FULL"][0]) / "logits" / f"{split}.npz").ids)
    dataset = {"class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
               "init_args": {"root": str(data), "num_classes": 4}}  # fmt: skip
    Path(runs["FULL"][0], "config.yaml").write_text(
        yaml.safe_dump({"data": {"init_args": {"dataset": dataset}}})
    )
    fuse_cfg = {
        "runs": runs, "output_dir": str(tmp / "fusion"), "pairs": [["FG_C", "BG_S"]],
        "ensembles": ["FG_C"], "methods": METHODS, "test_splits": TESTS,
        "heads": {"max_epochs": 2, "batch_size": 128}, "sample_reports": ["threshold"],
        "topk": {"fg": "FG_C_topk", "ks": [1, 2]},
    }  # fmt: skip
    (tmp / "fuse.yaml").write_text(yaml.safe_dump(fuse_cfg))
    main(["fuse", "--config", str(tmp / "fuse.yaml")])
    return {"tmp": tmp, "fusion": tmp / "fusion", "runs": runs, "data": data}


class _Tables(HTMLParser):
    """The cells of every ``<table data-source=...>`` of a page, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._source, self._cell = None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._source = dict(attrs).get("data-source")
            if self._source:
                self.tables[self._source] = []
        elif self._source and tag == "tr":
            self.tables[self._source].append([])
        elif self._source and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._source = None
        elif self._source and tag in ("td", "th") and self._cell is not None:
            self.tables[self._source][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _markdown_cells(path: Path) -> list[list[str]]:
    """The header and rows of a fuse Markdown table, read independently of the report code."""
    lines = [x for x in path.read_text().splitlines() if x.startswith("|") and "---" not in x]
    return [[c.strip().replace("**", "") for c in x.strip("|").split("|")] for x in lines]


@pytest.fixture(scope="module")
def report(experiment) -> dict:
    """``report --config`` on the fused experiment (run once for the tests that read it)."""
    out = experiment["tmp"] / "report"
    cfg = experiment["tmp"] / "report.yaml"
    cfg.write_text(yaml.safe_dump({"fusion_dir": str(experiment["fusion"]),
                                   "output_dir": str(out), "grid_images": 8}))  # fmt: skip
    return {**main(["report", "--config", str(cfg)]), "out": out}


@pytest.mark.slow
def test_report_writes_every_figure_and_fuse_tables(experiment, report):
    fusion, out, result = experiment["fusion"], report["out"], report
    html = (out / "report.html").read_text(encoding="utf-8")
    names = {Path(p).name for p in result["figures"]}
    expected = {"accuracy.png", "fallback_rates.png", "weights_FG_C+BG_S.png",
                "weights_FG_Cx2.png"}  # fmt: skip
    expected |= {f"reliability_{v}.png" for v in ("FULL", "FG_C", "BG_S")}
    expected |= {f"{f}_{s}.png" for s in TESTS
                 for f in ("class_deltas", "disagreements", "nonempty_candidates")}  # fmt: skip
    expected |= {"nonempty_candidates_val.png"}  # FG_C falls back: the fallback chart is drawn
    assert expected <= names, expected - names
    for p in result["figures"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(p).parent == out / "figures"
    assert html.count("data:image/png;base64,") == len(result["figures"])  # self-contained
    assert result["skipped"] == []
    ok, total = result["checks"]
    assert total >= 2 * len(TESTS) and ok == total  # recomputed fused predictions match fuse's
    assert "No dataset root" not in html and "Dataset root not found" not in html
    for split in TESTS:  # thumbnails read through the FULL run's config.yaml
        total = len(pd.read_csv(out / f"disagreements_{split}.csv"))
        n = min(8, total)
        assert n > 0 and f"{split}: {n} of the {total} disagreements, sampled across" in html
        assert f"{n} of {n} images read from {experiment['data']}" in html

    parsed = _Tables()
    parsed.feed(html)
    for md in ("summary.md", "fusion_table.md"):
        assert parsed.tables[md] == _markdown_cells(fusion / md), md
        csv = pd.read_csv((fusion / md).with_suffix(".csv"), dtype=str, keep_default_na=False)
        rows = [[c.replace("**", "") for c in r] for r in csv.values.tolist()]
        assert parsed.tables[md] == [list(csv.columns), *rows]
    assert any("Top-k" in r[0] for r in parsed.tables["fusion_table.md"])


@pytest.mark.slow
def test_report_numbers_are_the_logits_files(experiment, report):
    out = report["out"]
    runs = experiment["runs"]
    rates = pd.read_csv(out / "fallback_rates.csv", index_col="view")
    assert rates.loc["FG_C"].to_numpy() == pytest.approx(1 / FLAG_EVERY)
    assert rates.loc["FULL"].to_numpy() == pytest.approx(0.0)

    def load(view, seed, split):
        return LogitsFile.load(Path(runs[view][seed]) / "logits" / f"{split}.npz")

    deltas = pd.read_csv(out / "class_deltas_test_shift.csv")
    want = np.mean([
        per_class_accuracy(load("FG_C", s, "test_shift").logits.argmax(1),
                           load("FG_C", s, "test_shift").labels, 4)
        - per_class_accuracy(load("FULL", s, "test_shift").logits.argmax(1),
                             load("FULL", s, "test_shift").labels, 4)
        for s in (0, 1)
    ], axis=0)  # fmt: skip
    assert deltas["FG_C"].to_numpy() == pytest.approx(want)
    calib = pd.read_csv(out / "calibration.csv")
    val = load("BG_S", 1, "val")
    row = calib[(calib.view == "BG_S") & (calib.seed == 1) & (calib.split == "test_id")].iloc[0]
    assert row.temperature == pytest.approx(fit_temperature(val.logits, val.labels))
    test = load("BG_S", 1, "test_id")
    assert row.ece_before == pytest.approx(expected_calibration_error(test.logits, test.labels))
    grid = pd.read_csv(out / "disagreements_test_shift.csv")
    assert len(grid) > 8 and set(grid.columns) == {"id", "true", "FULL", "fused"}
    assert (grid["FULL"] != grid["fused"]).all()


@pytest.mark.slow
def test_report_without_optional_parts(experiment, tmp_path):
    fusion = tmp_path / "fusion"
    shutil.copytree(experiment["fusion"], fusion)
    for part in ("weights", "samples", "topk"):
        shutil.rmtree(fusion / part, ignore_errors=True)
    (fusion / "summary.md").unlink()
    result = main(["report", "--fusion_dir", str(fusion), "--baseline", "NOPE",
                   "--test_splits", "[test_id]", "--dataset_root", str(tmp_path / "none")])  # fmt: skip
    html = Path(result["html"]).read_text(encoding="utf-8")
    # Fig. 8 from the weights in results.jsonl, as fuse's weights/ CSV would give it
    assert any(f.endswith("weights_FG_C+BG_S.png") for f in result["figures"])
    assert "No weighted-logits rows" not in html
    # fuse's own top-k rows are still found in results.jsonl: Fig. 11 is drawn from the run
    assert any("nonempty_candidates" in f for f in result["figures"])
    assert len(result["skipped"]) == 2  # Fig. 12 and the grid need the baseline view
    assert all("NOPE" in s for s in result["skipped"])
    assert 'data-source="summary.md"' not in html and 'data-source="fusion_table.md"' in html
    assert result["checks"][0] == result["checks"][1]


def test_report_needs_a_fuse_folder(tmp_path):
    with pytest.raises(FuseOutputMissingError, match="metrics_long.csv"):
        main(["report", "--fusion_dir", str(tmp_path)])


def test_reliability_bins_and_ece():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 500)
    z = (3 * np.eye(3)[y] + 1.5 * rng.standard_normal((500, 3))).astype(np.float32)
    y[:5] = -1  # unlabelled rows are left out
    rel = reliability(z, y, 2.0, n_bins=10)
    assert rel.count.sum() == 495 and len(rel.edges) == 11
    keep = y >= 0
    assert rel.ece == pytest.approx(expected_calibration_error(z[keep] / 2.0, y[keep], 10))
    filled = rel.count > 0
    assert ((rel.confidence[filled] >= rel.edges[:-1][filled] - 1e-9)
            & (rel.confidence[filled] <= rel.edges[1:][filled] + 1e-9)).all()  # fmt: skip
    assert np.isnan(rel.accuracy[~filled]).all()


def test_markdown_tables_read_back_and_html_escapes(tmp_path):
    df = pd.DataFrame([["**A ⊕ B**", "", ""], ["<x>", "1.00 ± 0.10", "–"]],
                      columns=["model", "val acc", "val fallback %"])  # fmt: skip
    tables.write_table(df, tables.markdown(df), tmp_path / "t", "# A title")
    t = read_markdown_table(tmp_path / "t.md")
    assert t.title == "A title" and t.header == list(df.columns)
    assert t.rows == df.values.tolist()
    page = Page("r", tmp_path)
    page.table(t.header, t.rows, source="t.md")
    text = page.render()
    assert "<strong>A ⊕ B</strong>" in text and "&lt;x&gt;" in text and "<x>" not in text


def test_report_config_parses(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--config", str(REPO / "configs/synthetic/report.yaml"), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["fusion_dir"].endswith("synthetic_rho097/fusion")
    assert printed["grid_pair"] == "FG_C+BG_S"


def test_figures_leave_the_matplotlib_backend_alone(tmp_path):
    """Figures are plain ``Figure`` objects: a notebook's backend is not switched to Agg."""
    import matplotlib

    from occam_l2r.reporting.figures import plot_nonempty_histogram, plot_reliability, plot_weights

    before = matplotlib.get_backend()
    matplotlib.use("pdf")
    try:
        rng = np.random.default_rng(0)
        rel = reliability(rng.normal(size=(40, 3)), rng.integers(0, 3, 40))
        paths = [
            plot_reliability(rel, rel, "FG_C", tmp_path / "rel.png"),
            plot_nonempty_histogram({"test": np.array([0, 1, 1, 2])}, tmp_path / "h.png", "s"),
            plot_weights(
                pd.DataFrame({"name": ["a", "b"], "w1": [1.0, 0.2], "w2": [0.5, 1.0],
                              "share1": [2 / 3, 1 / 6]}), tmp_path / "w.png",
            ),
        ]  # fmt: skip
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(before)
    for path in paths:
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) > 100
