"""Helpers of the segmentation tests: tiny models on disk, configs, and store checks."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.segment.tiny import TINY_SAM, tiny_grounding_dino, tiny_owlv2, tiny_sam
from occam_l2r.store import SegmentationStore, config_hash

#: the embedded benchmark in small: 4 classes x 5 splits x 3 images = 60 images
SYNTH = {"num_classes": 4, "train_per_class": 3, "val_per_class": 3, "test_per_class": 3}


def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny GroundingDINO / OWLv2 folders, a tiny SAM checkpoint and the small benchmark, built
    once per test session (shared by every segmentation test module)."""
    base = tmp_path_factory.getbasetemp() / "segment_shared"
    paths = {
        "gdino": base / "gdino",
        "owlv2": base / "owlv2",
        "sam": base / "sam_tiny.pth",
        "synthetic": base / "synthetic",
    }
    if not (paths["gdino"] / "config.json").is_file():
        tiny_grounding_dino(paths["gdino"])
    if not (paths["owlv2"] / "config.json").is_file():
        tiny_owlv2(paths["owlv2"])
    if not paths["sam"].is_file():
        tiny_sam(paths["sam"])
    SyntheticSpurious(root=str(paths["synthetic"]), **SYNTH).prepare()
    return paths


def dataset_section(root: Path) -> dict[str, Any]:
    return {
        "class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
        "init_args": {"root": str(root), **SYNTH},
    }


def sam_section(path: Path) -> dict[str, Any]:
    return {"checkpoint": str(path), "model_type": "custom", "arch": asdict(TINY_SAM)}


#: the trainer of the segmentation tests: one CPU process, no progress bar
CPU = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}


def segment_config(
    root: Path,
    segmenter: dict[str, Any],
    store: Path | None = None,
    trainer: dict[str, Any] | None = None,
    **data: Any,
) -> dict[str, Any]:
    """A ``segment`` config in LightningCLI's shape: ``model:`` (segmenter, store), ``data:``
    (the small benchmark, ``splits``, ``limit``, ``batch_size``, ``num_workers``), ``trainer:``
    (CPU, one device, no progress bar unless ``trainer`` says otherwise)."""
    model: dict[str, Any] = {"segmenter": segmenter}
    if store is not None:
        model["store"] = str(store)
    return {
        "model": model,
        "data": {"dataset": dataset_section(root), "num_workers": 0, **data},
        "trainer": {**CPU, **(trainer or {})},
    }


def detect_config(
    paths: dict[str, Path],
    store: Path,
    detector: str = "gdino",
    prompts: dict[str, Any] | None = None,
    with_sam: bool = True,
    keep: str = "top1",
    **data: Any,
) -> dict[str, Any]:
    """A ``segment`` config: tiny detector (+ tiny SAM) on the small benchmark, CPU; ``**data``
    goes into the ``data:`` section (``splits``, ``limit``, ``batch_size``)."""
    cls = {"gdino": "GroundingDino", "owlv2": "Owlv2"}[detector]
    init = {"model": str(paths[detector])}
    init.update({"box_threshold": 0.3} if detector == "gdino" else {"threshold": 0.1})
    segmenter: dict[str, Any] = {
        "detector": {"class_path": f"occam_l2r.segment.detectors.{cls}", "init_args": init},
        "prompts": prompts
        or {
            "class_path": "occam_l2r.segment.prompts.MetaPrompt",
            "init_args": {"prompts": ["dog"]},
        },
        "keep": keep,
    }
    if with_sam:
        segmenter["sam"] = sam_section(paths["sam"])
    section = {
        "class_path": "occam_l2r.segment.segmenters.DetectAndSegment",
        "init_args": segmenter,
    }
    return segment_config(paths["synthetic"], section, store, **{"batch_size": 4, **data})


def detector_args(cfg: dict[str, Any]) -> dict[str, Any]:
    """The detector's ``init_args`` of a :func:`detect_config` config (to edit in place)."""
    return cfg["model"]["segmenter"]["init_args"]["detector"]["init_args"]


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def check_store(store: Path, dataset: SyntheticSpurious, image_ids: list[str]) -> SegmentationStore:
    """Assert the store's invariants: one row per image, the manifest's config hash on every row,
    RLE masks decoding to the image size, boxes inside the image, consistent columns."""
    reader = SegmentationStore(store)
    table = reader.table
    ids = table.column("image_id").to_pylist()
    assert sorted(ids) == sorted(image_ids), "exactly one row per image of the run"
    assert len(set(ids)) == len(ids)
    manifest_hash = reader.manifest["config_hash"]
    assert manifest_hash == config_hash(reader.manifest["config"])
    assert set(table.column("config_hash").to_pylist()) == {manifest_hash}
    h, w = dataset.params["height"], dataset.params["width"]
    for image_id in image_ids:
        seg = reader[image_id]
        assert (seg.height, seg.width) == (h, w)
        assert seg.segmenter == reader.segmenter
        if len(seg):
            assert np.all(seg.boxes[:, 0] >= 0) and np.all(seg.boxes[:, 1] >= 0)
            assert np.all(seg.boxes[:, 2] <= w) and np.all(seg.boxes[:, 3] <= h)
            assert np.all(seg.boxes[:, 2] > seg.boxes[:, 0]) and np.all(
                seg.boxes[:, 3] > seg.boxes[:, 1]
            )
            assert np.all(np.diff(seg.scores) <= 0), "detections are stored best first"
        for i in range(len(seg.masks_rle)):
            m = seg.mask(i)
            assert m.shape == (h, w) and m.dtype == bool
    return reader
