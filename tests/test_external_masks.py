"""External instance-id masks: which ids are candidate masks, per source (issue 16, item 4).

The OCCAM authors make every value of an id map a candidate (``np.unique`` over the map): id 0 is
CropFormer's uncovered area and FT-Dinosaur's slot 0. ``configs/occam/import_masks.yaml`` takes
the source's rule; the old fixed ``background: 0`` dropped them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.segment.external import ExternalMasks, default_background
from occam_l2r.store import SegmentationStore
from tests.conftest import TINY, clean_copy

IMPORT_MASKS = Path(__file__).parent.parent / "configs" / "occam" / "import_masks.yaml"
QUIET = ["--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]


def _write(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint8)).save(path)


def _cropformer_map() -> np.ndarray:
    ids = np.zeros((8, 10), np.int64)  # 0: pixels no CropFormer mask covers
    ids[1:4, 1:5] = 2
    ids[5:8, 6:10] = 1
    return ids


def _slot_map() -> np.ndarray:
    return (np.arange(80).reshape(8, 10) // 16) % 5  # FT-Dinosaur's argmax: slots 0..4


@pytest.mark.parametrize(
    "source, ids, expected",
    [("cropformer", _cropformer_map(), [0, 1, 2]), ("ft_dinosaur", _slot_map(), [0, 1, 2, 3, 4])],
)
def test_every_id_is_a_candidate_for_the_authors_sources(tmp_path, source, ids, expected):
    _write(tmp_path / "a.png", ids)
    reader = ExternalMasks(str(tmp_path), source=source)
    seg = reader.read("a.jpg", 8, 10)
    assert len(seg) == len(expected)
    for i, v in enumerate(expected):
        assert np.array_equal(seg.mask(i), ids == v)
    assert reader.config()["background"] is None


def test_other_sources_and_an_explicit_background_drop_id_0(tmp_path):
    ids = _cropformer_map()
    _write(tmp_path / "a.png", ids)
    assert len(ExternalMasks(str(tmp_path), source="external").read("a.png", 8, 10)) == 2
    explicit = ExternalMasks(str(tmp_path), source="cropformer", background=0)
    assert len(explicit.read("a.png", 8, 10)) == 2 and explicit.config()["background"] == 0
    assert ExternalMasks(str(tmp_path), source="cropformer", background=None).background is None
    assert default_background("CropFormer") is None and default_background("sam") == 0


def test_the_shipped_import_config_keeps_cropformers_id_0(tiny_synthetic_root, tmp_path):
    root = clean_copy(tiny_synthetic_root, tmp_path / "data")
    dataset = SyntheticSpurious(root=str(root), **TINY)
    records = dataset.records("test_id")
    folder = tmp_path / "cropformer_out"
    for rec in records:
        h, w = dataset.read_image(rec).shape[:2]
        ids = np.zeros((h, w), np.int64)
        ids[: h // 2] = 1  # one mask; the lower half uncovered (id 0)
        _write(folder / Path(rec.image_id).with_suffix(".png"), ids)
    store = tmp_path / "store"
    args = ["--data.dataset.class_path", "occam_l2r.data.datasets.synthetic.SyntheticSpurious"]
    args += ["--data.dataset.init_args.root", str(root), "--data.splits", "[test_id]"]
    for key, value in TINY.items():
        args += [f"--data.dataset.init_args.{key}", str(value)]
    args += ["--model.segmenter.init_args.folder", str(folder)]
    args += ["--model.segmenter.init_args.source", "cropformer", "--model.store", str(store)]
    summary = main(["segment", "--config", str(IMPORT_MASKS), *args, *QUIET])
    assert summary["stored"] == len(records)
    reader = SegmentationStore(store)
    seg = reader[records[0].image_id]
    assert len(seg) == 2  # the uncovered half is a candidate, as in the authors' code
    assert seg.mask(0)[-1].all() and seg.mask(1)[0].all()
    assert (
        yaml.safe_load(IMPORT_MASKS.read_text())["model"]["segmenter"]["init_args"]["background"]
        == "source"
    )
