"""``python -m occam_l2r segment`` end to end (in process) on the small embedded benchmark."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from _segment_tiny import (
    SYNTH,
    check_store,
    detect_config,
    detector_args,
    sam_section,
    segment_config,
    shared,
    write_config,
)

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.gt_store import build_gt_store
from occam_l2r.logits import LogitsFile
from occam_l2r.segment.segmenters import GroundTruth
from occam_l2r.store import SegmentationStore, config_hash
from occam_l2r.views import apply_view
from occam_l2r.weights import WeightsNotFoundError
from tests.conftest import clean_copy


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared(tmp_path_factory)


@pytest.fixture(scope="module")
def dataset(paths: dict[str, Path]) -> SyntheticSpurious:
    return SyntheticSpurious(root=str(paths["synthetic"]), **SYNTH)


def _ids(dataset: SyntheticSpurious, splits: list[str]) -> list[str]:
    return [r.image_id for s in splits for r in dataset.records(s)]


def _summary(store: Path) -> dict:
    return json.loads((store / "summary.json").read_text())


def test_gdino_sam_meta_prompt_end_to_end_and_resume(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    store = tmp_path / "gdino_sam"
    prompts = {
        "class_path": "occam_l2r.segment.prompts.MetaPrompt",
        "init_args": {"prompts": ["animal", "bird", "insect", "reptile"]},
    }
    cfg = write_config(
        tmp_path / "gdino.yaml",
        detect_config(paths, store, prompts=prompts, splits=["train", "test_shift"]),
    )
    main(["segment", "--config", str(cfg)])
    ids = _ids(dataset, ["train", "test_shift"])
    reader = check_store(store, dataset, ids)
    assert reader.segmenter == "gdino+sam"
    assert reader.manifest["config"]["detector"]["box_threshold"] == 0.3
    summary = _summary(store)
    assert summary["images"] == summary["stored"] == summary["computed"] == len(ids)
    assert summary["failures"] == 0 and summary["skipped"] == 0
    assert sum(summary["detections_per_image"].values()) == len(ids)
    assert summary["empty"] == summary["detections_per_image"].get("0", 0)
    n_det = 0
    for image_id in ids:
        seg = reader[image_id]
        assert seg.prompts == ["animal+bird+insect+reptile"]
        assert len(seg) <= 1, "top1 keeps the best box of the single (averaged) query"
        assert set(seg.labels) <= {"animal", "bird", "insect", "reptile"}
        assert len(seg.masks_rle) == len(seg), "one SAM mask per kept box"
        n_det += len(seg)
    assert n_det > 0
    # a rerun resumes: nothing is recomputed, the store is unchanged
    before = reader.table
    main(["segment", "--config", str(cfg)])
    again = _summary(store)
    assert again["computed"] == 0 and again["skipped"] == len(ids) and again["stored"] == len(ids)
    assert SegmentationStore(store).table.equals(before)
    # extending the run to more splits computes only the new images
    main(["segment", "--config", str(cfg), "--data.splits", "[train, test_shift, val]"])
    more = _summary(store)
    assert more["computed"] == len(dataset.records("val")) and more["skipped"] == len(ids)
    check_store(store, dataset, ids + _ids(dataset, ["val"]))


def test_owlv2_sam_gt_label_prompts(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    store = tmp_path / "owl"
    prompts = {
        "class_path": "occam_l2r.segment.prompts.ClassNamePrompt",
        "init_args": {"template": "a photo of a {}"},
    }
    cfg = detect_config(paths, store, detector="owlv2", prompts=prompts, keep="all", splits=["val"])
    cfg["model"]["segmenter"]["init_args"]["max_detections"] = 3
    detector_args(cfg)["threshold"] = 0.0
    main(["segment", "--config", str(write_config(tmp_path / "owl.yaml", cfg))])
    ids = _ids(dataset, ["val"])
    reader = check_store(store, dataset, ids)
    assert reader.segmenter == "owlv2+sam"
    for rec in dataset.records("val"):
        seg = reader[rec.image_id]
        name = dataset.class_names[rec.label]
        assert seg.prompts == [f"a photo of a {name}"]
        assert 1 <= len(seg) <= 3, "threshold 0 keeps boxes; max_detections caps them"
        assert set(seg.label_ids.tolist()) == {rec.label}, (
            "the oracle query stands for the image's class"
        )
        assert seg.labels == [f"a photo of a {name}"] * len(seg)


def test_topk_prompts_from_logits_file_boxes_only(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    recs = dataset.records("test_random")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(recs), dataset.num_classes)).astype(np.float32)
    lf = LogitsFile(
        ids=[r.image_id for r in recs],
        labels=[r.label for r in recs],
        logits=logits,
        view="FULL",
        split="test_random",
    )
    path = lf.save(tmp_path / "full_test_random.npz")
    prompts = {
        "class_path": "occam_l2r.segment.prompts.TopKPrompt",
        "init_args": {"logits": str(path), "k": 2},
    }
    store = tmp_path / "topk"
    cfg = detect_config(
        paths, store, detector="owlv2", prompts=prompts, with_sam=False, splits=["test_random"]
    )
    main(["segment", "--config", str(write_config(tmp_path / "topk.yaml", cfg))])
    reader = check_store(store, dataset, [r.image_id for r in recs])
    assert reader.segmenter == "owlv2"
    for rec, row in zip(recs, logits, strict=True):
        seg = reader[rec.image_id]
        top = np.argsort(-row)[:2].tolist()
        assert seg.prompts == [dataset.class_names[c] for c in top]
        assert sorted(seg.label_ids.tolist()) == sorted(top), "one detection per candidate class"
        assert not seg.has_masks
        assert apply_view("FG_C", dataset.read_image(rec), seg).fallback is None


def test_sam_automatic_masks_and_gt(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    auto = {
        "class_path": "occam_l2r.segment.segmenters.AutomaticMasks",
        "init_args": {
            "sam": {
                **sam_section(paths["sam"]),
                "points_per_side": 4,
                "pred_iou_thresh": 0.0,
                "stability_score_thresh": 0.0,
                "max_masks": 4,
            }
        },
    }
    store = tmp_path / "auto"
    cfg = segment_config(paths["synthetic"], auto, store, splits=["test_id"])
    main(["segment", "--config", str(write_config(tmp_path / "auto.yaml", cfg))])
    ids = _ids(dataset, ["test_id"])
    reader = check_store(store, dataset, ids)
    assert reader.segmenter == "sam_auto"
    for image_id in ids:
        seg = reader[image_id]
        assert 1 <= len(seg) <= 4 and seg.has_masks and set(seg.label_ids.tolist()) == {-1}
        for i in range(len(seg)):
            ys, xs = np.nonzero(seg.mask(i))
            assert seg.boxes[i].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], (
                "tight mask box"
            )
    # the gt source through the same command, into <root>/segmentations/gt as build_gt_store does
    gt_section = {"class_path": "occam_l2r.segment.segmenters.GroundTruth"}
    gt_cfg = write_config(
        tmp_path / "synthetic_gt.yaml",
        segment_config(paths["synthetic"], gt_section, splits=["test_id"]),
    )
    main(["segment", "--config", str(gt_cfg)])
    gt_store = paths["synthetic"] / "segmentations" / "gt"
    gt = check_store(gt_store, dataset, ids)
    segmenter = GroundTruth()
    segmenter.bind(dataset)
    assert gt.config_hash == config_hash(segmenter.config()), "same store as build_gt_store"
    for rec in dataset.records("test_id"):
        seg = gt[rec.image_id]
        assert len(seg) == 1 and seg.label_ids.tolist() == [rec.label]
        assert np.array_equal(seg.mask(0), dataset.gt_masks(rec)[0])
    # build_gt_store (no Lightning) writes the same rows and hash, and completes the verb's store
    plain = build_gt_store(dataset, tmp_path / "plain_gt", dataset.records("test_id"))
    assert SegmentationStore(plain).table.equals(gt.table)
    shutil.copytree(gt_store, tmp_path / "gt_copy")
    build_gt_store(
        dataset, tmp_path / "gt_copy", dataset.records("test_id") + dataset.records("val")
    )
    check_store(tmp_path / "gt_copy", dataset, ids + _ids(dataset, ["val"]))


def test_empty_detections_are_stored_empty(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    store = tmp_path / "empty"
    cfg = detect_config(paths, store, splits=["val"], limit=3)
    detector_args(cfg)["box_threshold"] = 1.0
    main(["segment", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    recs = dataset.records("val")[:3]
    reader = check_store(store, dataset, [r.image_id for r in recs])
    summary = _summary(store)
    assert summary["empty"] == 3 and summary["detections_per_image"] == {"0": 3}
    for rec in recs:
        seg = reader[rec.image_id]
        assert len(seg) == 0 and seg.masks_rle == [] and seg.prompts == ["dog"]
        assert apply_view("BG_S", dataset.read_image(rec), seg).fallback == "no_detection"


def test_unreadable_image_is_listed_not_dropped(paths: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "copy"
    clean_copy(paths["synthetic"], root)
    ds = SyntheticSpurious(root=str(root), **SYNTH)
    bad = ds.records("val")[1]
    (root / bad.image_id).write_bytes(b"not a png")
    cfg = detect_config(paths, tmp_path / "store", splits=["val"], limit=3)
    cfg["data"]["dataset"]["init_args"]["root"] = str(root)
    main(["segment", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    summary = _summary(tmp_path / "store")
    assert summary["failures"] == 1 and summary["failed_ids"] == [bad.image_id]
    assert summary["stored"] == 2 and summary["missing"] == 0
    failures = SegmentationStore(tmp_path / "store").failures()
    assert [f["image_id"] for f in failures] == [bad.image_id] and "corrupt" in failures[0]["error"]


def test_missing_weights_fail_fast_through_cli(paths: dict[str, Path], tmp_path: Path) -> None:
    cfg = detect_config(paths, tmp_path / "store")
    detector_args(cfg)["model"] = "IDEA-Research/grounding-dino-tiny"
    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="IDEA-Research/grounding-dino-tiny"):
        main(["segment", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    cfg = detect_config(paths, tmp_path / "store")
    sam = cfg["model"]["segmenter"]["init_args"]["sam"]
    sam.update(checkpoint=str(tmp_path / "sam_vit_b_01ec64.pth"), model_type="vit_b")
    with pytest.raises(WeightsNotFoundError, match="sam_vit_b_01ec64.pth"):
        main(["segment", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    assert time.perf_counter() - t0 < 10


def test_config_mismatch_and_print_config(
    paths: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    cfg = detect_config(paths, store, splits=["val"], limit=2)
    main(["segment", "--config", str(write_config(tmp_path / "a.yaml", cfg))])
    detector_args(cfg)["box_threshold"] = 0.5
    with pytest.raises(ValueError, match="config hash"):
        main(["segment", "--config", str(write_config(tmp_path / "b.yaml", cfg))])
    with pytest.raises(SystemExit):
        main(["segment", "--config", str(tmp_path / "b.yaml"), "--print_config"])
    printed = capsys.readouterr().out
    assert (
        "box_threshold: 0.5" in printed
        and "class_path: occam_l2r.segment.segmenters.DetectAndSegment" in printed
    )


CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "segment"


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_parse(config: Path) -> None:
    from occam_l2r.commands.segment import segment_config

    cfg = segment_config(["--config", str(config)])
    assert cfg.model.segmenter.class_path.startswith("occam_l2r.segment.")
    assert cfg.data.dataset.class_path.startswith("occam_l2r.data.datasets.")
    assert cfg.trainer.logger is False and cfg.trainer.use_distributed_sampler is False


def test_synthetic_config_shares_the_training_dataset_section() -> None:
    import yaml

    training = yaml.safe_load((CONFIGS.parent / "synthetic" / "base.yaml").read_text())
    for name in ("synthetic_gt.yaml", "synthetic_gdino_sam.yaml"):
        segment = yaml.safe_load((CONFIGS / name).read_text())
        assert segment["data"]["dataset"] == training["data"]["init_args"]["dataset"]


@pytest.mark.parametrize("source", ["gdino", "owlv2", "auto"])
def test_bf16_autocast(
    source: str, paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    store = tmp_path / source
    if source == "auto":
        sam = {
            **sam_section(paths["sam"]),
            "points_per_side": 4,
            "pred_iou_thresh": 0.0,
            "stability_score_thresh": 0.0,
        }
        auto = {
            "class_path": "occam_l2r.segment.segmenters.AutomaticMasks",
            "init_args": {"sam": sam},
        }
        cfg = segment_config(paths["synthetic"], auto, store)
    else:
        cfg = detect_config(paths, store, detector=source, keep="all")
    cfg["data"].update(splits=["val"], limit=2)
    cfg["trainer"]["precision"] = "bf16-mixed"
    main(["segment", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    reader = check_store(store, dataset, _ids(dataset, ["val"])[:2])
    assert all(len(reader[i]) > 0 and reader[i].has_masks for i in reader.ids())
