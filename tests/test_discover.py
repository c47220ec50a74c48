"""Object discovery: FG-ARI and mBO on hand-made cases, and the ``discover`` verb end to end."""

from __future__ import annotations

import csv
import json
import math
import sys
from math import comb
from pathlib import Path

import numpy as np
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.data.datasets.movi import MOVi
from occam_l2r.data.records import Record
from occam_l2r.discovery import (
    MissingSegmentationsError,
    fg_ari,
    label_map,
    markdown_table,
    mbo,
    resize_labels,
    score_image,
    summarize,
)
from occam_l2r.errors import EXIT_USER_ERROR
from occam_l2r.segmentation import Segmentation
from occam_l2r.store import StoreWriter
from tests.conftest import TINY, load_fake

REPO = Path(__file__).parents[1]
fake = load_fake("movi")


def three_objects() -> np.ndarray:
    """GT labels: A (4 px, label 1), B (4 px, label 2), C (2 px, label 3), background 0."""
    gt = np.zeros((4, 5), dtype=np.int32)
    gt[0, :4], gt[1, :4], gt[2, :2] = 1, 2, 3
    return gt


def test_perfect_masks_score_one() -> None:
    gt = three_objects()
    relabelled = np.where(gt > 0, 10 - gt, 7)  # other ids, background in one more segment
    assert fg_ari(gt, relabelled) == 1.0
    assert fg_ari(gt, gt) == 1.0 and mbo(gt, gt) == 1.0


def test_merged_pair_by_hand() -> None:
    """A and B predicted as one segment, C exact: the ARI formula over the 10 FG pixels."""
    gt = three_objects()
    pred = np.zeros_like(gt)
    pred[0:2, :4], pred[2, :2] = 1, 2
    # contingency: (A, P1) = 4, (B, P1) = 4, (C, P2) = 2; rows 4, 4, 2; columns 8, 2; n = 10
    index = comb(4, 2) + comb(4, 2) + comb(2, 2)
    rows = comb(4, 2) + comb(4, 2) + comb(2, 2)
    cols = comb(8, 2) + comb(2, 2)
    expected = rows * cols / comb(10, 2)
    ari = (index - expected) / ((rows + cols) / 2 - expected)
    assert ari == pytest.approx(26 / 71)
    assert fg_ari(gt, pred) == pytest.approx(ari)
    # best IoU: A -> P1 = 4/8, B -> P1 = 4/8, C -> P2 = 2/2
    assert mbo(gt, pred) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_background_is_ignored_by_fg_ari_not_by_mbo() -> None:
    gt = three_objects()
    pred = gt.copy()
    pred[3, :] = 1  # A's segment also covers a background row (5 px)
    assert fg_ari(gt, pred) == 1.0
    assert mbo(gt, pred) == pytest.approx((4 / 9 + 1 + 1) / 3)


def test_uncovered_pixels_form_one_label_but_no_segment() -> None:
    gt = three_objects()
    only_a = label_map([gt == 1], shape=gt.shape)  # B and C covered by no mask: label 0
    assert fg_ari(gt, only_a) == pytest.approx(
        # predicted clusters {A} (4 px) and {B, C} (6 px): index C(4,2)+C(4,2)+C(2,2) = 13,
        # rows 6+6+1 = 13, columns C(4,2)+C(6,2) = 21, n = 10 (C(10,2) = 45)
        (13 - 13 * 21 / 45) / ((13 + 21) / 2 - 13 * 21 / 45)
    )
    assert mbo(gt, only_a) == pytest.approx(1 / 3)  # only A is found


def test_overlapping_masks_highest_score_wins() -> None:
    big = np.ones((2, 3), dtype=bool)
    small = np.zeros((2, 3), dtype=bool)
    small[:, 0] = True
    assert label_map([big, small], [0.9, 0.5]).tolist() == [[1, 1, 1], [1, 1, 1]]
    assert label_map([big, small], [0.5, 0.9]).tolist() == [[2, 1, 1], [2, 1, 1]]
    assert label_map([big, small]).tolist() == [[2, 1, 1], [2, 1, 1]]  # ties: later mask


def test_predictions_are_resized_nearest_to_the_gt_resolution() -> None:
    small = np.array([[1, 2], [0, 3]], dtype=np.int32)
    gt = np.kron(small, np.ones((3, 3), dtype=np.int32))  # 6x6, each label a 3x3 block
    up = resize_labels(small, 6, 6)
    assert np.array_equal(up, gt)
    rec = Record(image_id="a.png", label=-1, split="test")
    masks = [small == k for k in (1, 2, 3)]
    seg = Segmentation.from_masks("a.png", masks, scores=[0.5, 0.6, 0.7], height=2, width=2)
    score = score_image(rec, [gt == k for k in (1, 2, 3)], seg)
    assert (score.fg_ari, score.mbo, score.gt_objects, score.pred_masks) == (1.0, 1.0, 3, 3)


def test_gt_overlaps_ignored_and_empty_images_skipped() -> None:
    a = np.zeros((3, 3), dtype=bool)
    a[0, :] = True
    b = np.zeros((3, 3), dtype=bool)
    b[0:2, 0] = True  # shares pixel (0, 0) with a
    rec = Record(image_id="x.png", label=-1, split="test")
    pred = [a & ~b, b & ~a]  # the two objects without the shared pixel
    seg = Segmentation.from_masks("x.png", pred, height=3, width=3)
    score = score_image(rec, [a, b], seg)
    assert score.fg_ari == 1.0 and score.mbo == 1.0
    empty = score_image(rec, [np.zeros((3, 3), bool)], seg)
    assert empty.gt_objects == 0 and math.isnan(empty.fg_ari) and math.isnan(empty.mbo)
    summary = summarize([score, empty])
    assert (summary["images"], summary["scored"], summary["fg_ari"]) == (2, 1, 1.0)
    table = markdown_table({"X": {"src": summary}, "Y": {}})
    assert table.splitlines()[0] == "| mask source | X FG-ARI | X mBO | Y FG-ARI | Y mBO |"
    assert table.splitlines()[2] == "| src | 100.0 | 100.0 | – | – |"


@pytest.mark.slow
def test_discover_cli_on_the_embedded_benchmark_gt_store(
    tiny_synthetic_root: Path, tmp_path: Path
) -> None:
    cfg = yaml.safe_load((REPO / "configs/synthetic/discover.yaml").read_text())
    cfg["benchmarks"][0]["dataset"]["init_args"].update(root=str(tiny_synthetic_root), **TINY)
    cfg["output_dir"] = str(tmp_path / "out")
    conf = tmp_path / "discover.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    result = main(["discover", "--config", str(conf)])
    assert result["results"]["synthetic"]["GT"]["fg_ari"] == 1.0
    assert result["results"]["synthetic"]["GT"]["mbo"] == 1.0
    with open(result["per_image"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    n_test = 3 * 4 * TINY["test_per_class"]  # three test splits, four classes
    assert len(rows) == n_test and {r["fg_ari"] for r in rows} == {"1.0"}
    summary = json.loads(Path(result["summary"]).read_text())
    assert summary["benchmarks"]["synthetic"]["sources"]["GT"]["scored"] == n_test
    assert "| GT | 100.0 | 100.0 |" in Path(result["table"]).read_text()


def test_discover_builds_the_gt_store_in_gt_store_dir(
    tiny_synthetic_root: Path, tmp_path: Path
) -> None:
    cfg = yaml.safe_load((REPO / "configs/synthetic/discover.yaml").read_text())
    bench = cfg["benchmarks"][0]
    bench["dataset"]["init_args"].update(root=str(tiny_synthetic_root), **TINY)
    bench.update(splits=["test_id"], gt_store_dir=str(tmp_path / "gt"))
    cfg["output_dir"] = str(tmp_path / "out")
    conf = tmp_path / "discover.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    result = main(["discover", "--config", str(conf)])
    assert result["results"]["synthetic"]["GT"]["fg_ari"] == 1.0
    summary = json.loads(Path(result["summary"]).read_text())
    assert summary["benchmarks"]["synthetic"]["sources"]["GT"]["store"] == str(tmp_path / "gt")


def wrong_store(ds: MOVi, path: Path) -> Path:
    """Every frame's objects merged into one mask (FG-ARI 0), plus a mask off the objects."""
    writer = StoreWriter(path, "merged", {"segmenter": "merged"})
    rows = []
    for rec in ds.records("test"):
        merged = np.any(ds.gt_masks(rec), axis=0)
        corner = np.zeros_like(merged)
        corner[-2:, -2:] = True
        rows.append(Segmentation.from_masks(rec.image_id, [merged, corner], scores=[0.9, 0.8]))
    writer.write(rows)
    writer.close()
    return path


@pytest.mark.slow
def test_discover_cli_on_fake_movi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "movi"
    fake.make_fake(root, "C")
    ds = MOVi(root=str(root))
    wrong = wrong_store(ds, tmp_path / "stores" / "merged")
    cfg = {
        "benchmarks": [
            {
                "name": "MOVi-C",
                "dataset": {"class_path": "occam_l2r.data.datasets.movi.MOVi",
                            "init_args": {"root": str(root), "level": "C"}},
                "stores": {"GT": "gt", "merged": str(wrong)},
            }
        ],
        "output_dir": str(tmp_path / "out"),
    }  # fmt: skip
    conf = tmp_path / "discover.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    result = main(["discover", "--config", str(conf)])["results"]["MOVi-C"]
    assert (result["GT"]["fg_ari"], result["GT"]["mbo"]) == (1.0, 1.0)
    assert result["merged"]["fg_ari"] == 0.0  # one segment for three objects
    assert 0.0 < result["merged"]["mbo"] < 1.0
    assert result["merged"]["images"] == fake.VIDEOS * fake.FRAMES

    # a store lacking images: one message naming them, exit status 3 on the command line
    (root / "MOVi-C" / "validation" / "00000002").mkdir()
    fake_frame = root / "MOVi-C" / "validation" / "00000000"
    for name in ("000000.jpg", "000000_mask.png"):
        (root / "MOVi-C" / "validation" / "00000002" / name).write_bytes(
            (fake_frame / name).read_bytes()
        )
    cfg["benchmarks"][0]["stores"] = {"merged": str(wrong)}
    conf.write_text(yaml.safe_dump(cfg))
    with pytest.raises(MissingSegmentationsError, match="00000002/000000.jpg"):
        main(["discover", "--config", str(conf)])
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "discover", "--config", str(conf)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_USER_ERROR
    assert "lacks 1 of the 7 images" in capsys.readouterr().err
    skipped = main(["discover", "--config", str(conf), "--on_missing", "skip"])
    assert skipped["results"]["MOVi-C"]["merged"]["images"] == fake.VIDEOS * fake.FRAMES


@pytest.mark.slow
def test_discover_cli_names_a_missing_movi_layout(tmp_path: Path) -> None:
    cfg = {
        "benchmarks": [
            {"name": "MOVi-E",
             "dataset": {"class_path": "occam_l2r.data.datasets.movi.MOVi",
                         "init_args": {"root": str(tmp_path / "movi"), "level": "E"}},
             "stores": {"GT": "gt"}}
        ],
        "output_dir": str(tmp_path / "out"),
    }  # fmt: skip
    conf = tmp_path / "discover.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    with pytest.raises(FileNotFoundError, match=r"folder not found: .*movi.*download_movi.py"):
        main(["discover", "--config", str(conf)])


def test_an_image_without_predicted_masks_scores_zero() -> None:
    gt = three_objects()
    rec = Record(image_id="e.png", label=-1, split="test")
    seg = Segmentation.from_masks("e.png", [], height=2, width=2)  # stored, nothing found
    score = score_image(rec, [gt == k for k in (1, 2, 3)], seg)
    assert (score.pred_masks, score.fg_ari, score.mbo) == (0, 0.0, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "verb, configs",
    [("discover", ["configs/movi/discover.yaml"]), ("discover", ["configs/synthetic/discover.yaml"]),
     ("segment", ["configs/movi/sam_auto.yaml"]), ("segment", ["configs/movi/gt.yaml"]),
     ("segment", ["configs/movi/sam_auto.yaml", "configs/movi/level_e.yaml"])],
)  # fmt: skip
def test_discovery_configs_parse(
    verb: str, configs: list[str], capsys: pytest.CaptureFixture
) -> None:
    args = [a for c in configs for a in ("--config", str(REPO / c))]
    with pytest.raises(SystemExit) as exit_:
        main([verb, *args, "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    if verb == "segment" and len(configs) == 2:
        assert printed["data"]["dataset"]["init_args"]["level"] == "E"
        assert printed["model"]["store"].endswith("movi_e_sam_auto")
