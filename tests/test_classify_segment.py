"""``classify`` with ``segment_config`` (issue 11 part 1): it segments the new images itself.

End to end: tiny GroundingDINO + SAM (``tests/_segment_tiny.py``) and the tiny checkpoints and
fitted fusion of ``tests/test_classify.py``'s ``setup`` fixture, on its folder of new images
(copies of test images, a grayscale, an RGBA, an EXIF-rotated and a corrupt file). ``classify``
with ``segment_config`` writes a store of every readable image under
``<output_dir>/segmentations`` and gives the same rows as ``classify`` with ``segmentation:``
pointing to a store that ``python -m occam_l2r segment`` built with the ``ImageFiles`` dataset;
a rerun resumes. Cheap tests: :class:`ImageFiles` on a folder and a list file, and the errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.engine import ClassifyConfigError
from occam_l2r.classify.inputs import ClassifyInputError, list_images
from occam_l2r.classify.run import classify as classify_with_store
from occam_l2r.cli import main
from occam_l2r.commands.classify import IMAGE_FILES, segment_run_config
from occam_l2r.data.datasets import ImageFiles
from occam_l2r.data.datasets._layout import DatasetLayoutError
from occam_l2r.errors import UserError
from occam_l2r.segment.prompts import ClassNamePrompt, MetaPrompt
from occam_l2r.store import SegmentationStore
from tests import test_classify
from tests._segment_tiny import detect_config, shared, write_config

#: the tiny checkpoints, the fitted fusion and the folder of new images of test_classify.py
classify_setup = test_classify.setup
CORRUPT = "extra_corrupt.jpg"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared(tmp_path_factory)


def _rows(store: SegmentationStore) -> list[dict]:
    return sorted(store.table.to_pylist(), key=lambda row: row["image_id"])


def _classify(base: dict, path: Path, **changes: object) -> dict:
    cfg = {k: v for k, v in {**base, **changes}.items() if v is not None}
    return main(["classify", "--config", str(write_config(path, cfg))])


@pytest.mark.slow
def test_classify_segments_the_images_like_the_segment_verb(
    classify_setup: dict, paths: dict[str, Path], tmp_path: Path
) -> None:
    folder = classify_setup["tmp"] / "new_images"
    base = yaml.safe_load(classify_setup["config"].read_text())
    # a segment config of another dataset: its dataset, splits, limit and store are replaced
    seg_cfg = detect_config(paths, tmp_path / "not_used", splits=["val"], limit=2)
    segment_config = write_config(tmp_path / "gdino_sam.yaml", seg_cfg)
    own = tmp_path / "own"
    out = _classify(base, tmp_path / "own.yaml", output_dir=str(own), segmentation=None,
                    segment_config=str(segment_config))  # fmt: skip

    ids = [i for i, _ in list_images(folder)]
    readable = [i for i in ids if i != CORRUPT]
    store = SegmentationStore(own / "segmentations")
    assert sorted(store.table.column("image_id").to_pylist()) == sorted(readable)
    assert [f["image_id"] for f in store.failures()] == [CORRUPT]
    assert store.segmenter == "gdino+sam" and not (tmp_path / "not_used").exists()
    written = yaml.safe_load((own / "segment.yaml").read_text())
    assert written["data"]["dataset"] == {
        "class_path": IMAGE_FILES, "init_args": {"images": str(folder.absolute())}
    }  # fmt: skip
    assert "splits" not in written["data"] and "limit" not in written["data"]
    assert written["model"]["segmenter"] == seg_cfg["model"]["segmenter"]
    rows = out["table"].set_index("image_id")
    assert sorted(rows.index) == sorted(ids)
    assert rows.loc[CORRUPT, "status"] == "error" and "cannot decode" in rows.loc[CORRUPT, "error"]
    assert (rows.loc[readable, "status"] == "ok").all()
    detected = [i for i in readable if len(store[i])]
    assert detected, "the tiny detector finds something on some images"
    used = rows.loc[detected]  # their views are made from the store's detections
    assert (used["fallback_reason"].fillna("") == "").all() and used["box_x1"].notna().all()
    assert out["errors"] == 1

    # the reference: `segment` with ImageFiles on the same folder, then classify reading it
    ref_cfg = detect_config(paths, tmp_path / "ref_store")
    ref_cfg["data"]["dataset"] = {"class_path": IMAGE_FILES, "init_args": {"images": str(folder)}}
    main(["segment", "--config", str(write_config(tmp_path / "ref_segment.yaml", ref_cfg))])
    assert _rows(SegmentationStore(tmp_path / "ref_store")) == _rows(store)
    ref = _classify(base, tmp_path / "ref.yaml", output_dir=str(tmp_path / "ref"),
                    segmentation=str(tmp_path / "ref_store"))  # fmt: skip
    pd.testing.assert_frame_equal(out["table"], ref["table"])

    # a rerun resumes: nothing is segmented again, the rows are the same
    again = _classify(base, tmp_path / "own.yaml", output_dir=str(own), segmentation=None,
                      segment_config=str(segment_config))  # fmt: skip
    summary = json.loads((own / "segmentations" / "summary.json").read_text())
    assert summary["computed"] == 0 and summary["skipped"] == len(readable)
    assert summary["failures"] == 1 and summary["failed_ids"] == [CORRUPT]
    pd.testing.assert_frame_equal(again["table"], out["table"])

    # the store describes these images: other images under the same names (each turned upside
    # down: same ids, same sizes, other content) are refused with one message naming the store
    other = tmp_path / "other_images"
    other.mkdir()
    for image_id in ids:
        if image_id == CORRUPT:
            continue
        with Image.open(folder / image_id) as im:
            im.transpose(Image.Transpose.ROTATE_180).save(other / image_id)
    with pytest.raises(UserError, match="ref_store"):
        _classify(base, tmp_path / "other.yaml", output_dir=str(tmp_path / "other"),
                  images=str(other), segmentation=str(tmp_path / "ref_store"))  # fmt: skip


def test_image_files_folder_list_file_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "sub/c.webp"):
        Image.new("RGB", (8, 6)).save(folder / name, format="PNG" if name.endswith("png") else None)
    (folder / "notes.txt").write_text("not an image")
    ds = ImageFiles(str(folder))
    recs = ds.records("images")
    assert [r.image_id for r in recs] == ["a.JPG", "b.png", "sub/c.webp"]
    assert {r.label for r in recs} == {-1} and ds.class_names == [] and ds.test_splits == ["images"]
    assert ds.train_split is None and ds.val_split is None
    assert ds.image_path(recs[2]) == folder / "sub" / "c.webp"
    assert ds.read_image(recs[0]).shape == (6, 8, 3)
    assert list_images(folder) == [(r.image_id, ds.image_path(r)) for r in recs]
    assert ImageFiles(str(folder), class_names=["cat", "dog"]).num_classes == 2

    absolute = folder / "b.png"
    listing = tmp_path / "lists" / "new.txt"
    listing.parent.mkdir()
    listing.write_text(f"# new images\n../images/sub/c.webp\n\n{absolute}\nmissing.jpg\n")
    listed = ImageFiles(str(listing))
    assert [(r.image_id, listed.image_path(r)) for r in listed.records("images")] == [
        ("../images/sub/c.webp", listing.parent / "../images/sub/c.webp"),
        (str(absolute), absolute),
        ("missing.jpg", listing.parent / "missing.jpg"),  # kept: segment and classify list it
    ]

    listing.write_text("a.png\nb.png\na.png\n")
    with pytest.raises(DatasetLayoutError, match="twice"):
        ImageFiles(str(listing)).all_records()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClassifyInputError, match="no images in"):
        ImageFiles(str(tmp_path / "empty")).all_records()
    with pytest.raises(FileNotFoundError, match="not found"):
        list_images(tmp_path / "nope")

    # unlabeled: the GT-label prompt refuses the images, a meta-prompt takes them
    oracle = ClassNamePrompt()
    oracle.bind(ds.class_names)
    with pytest.raises(ValueError, match="needs a labelled image"):
        oracle.queries(recs[0].image_id, recs[0].label)
    meta = MetaPrompt(["digit"])
    meta.bind(ds.class_names)
    assert meta.queries(recs[0].image_id, recs[0].label)[0].texts == ("digit",)


def test_segment_config_errors_and_resolved_config(tmp_path: Path) -> None:
    seg = write_config(tmp_path / "seg.yaml", {
        "model": {"segmenter": {"class_path": "x.Y"}, "store": "elsewhere"},
        "data": {"dataset": {"class_path": "z.W"}, "splits": ["val"], "batch_size": 3},
        "trainer": {"accelerator": "cpu"},
    })  # fmt: skip
    base = {"images": "imgs", "output_dir": str(tmp_path / "out"), "checkpoints": {},
            "fusion_dir": str(tmp_path / "no_fusion"), "class_names": ["a", "b"]}  # fmt: skip
    cfg = segment_run_config(ClassifyConfig(**base, segment_config=str(seg)))
    assert cfg["model"] == {
        "segmenter": {"class_path": "x.Y"}, "store": str(tmp_path / "out" / "segmentations")
    }  # fmt: skip
    assert cfg["data"] == {
        "dataset": {
            "class_path": IMAGE_FILES,
            "init_args": {"images": str(Path("imgs").absolute()), "class_names": ["a", "b"]},
        },
        "batch_size": 3,
    }
    assert cfg["trainer"] == {"accelerator": "cpu"}

    both = ClassifyConfig(**base, segmentation="store", segment_config=str(seg))
    with pytest.raises(ClassifyConfigError, match="not both"):
        segment_run_config(both)
    with pytest.raises(ClassifyConfigError, match="not both"):  # before any model or fusion
        _classify({**base, "segmentation": "store"}, tmp_path / "c.yaml",
                  segment_config=str(seg))  # fmt: skip
    with pytest.raises(ClassifyConfigError, match="not found"):
        segment_run_config(ClassifyConfig(**base, segment_config=str(tmp_path / "nope.yaml")))
    (tmp_path / "bad.yaml").write_text("data: {}\n")
    with pytest.raises(ClassifyConfigError, match="no `model:` section"):
        segment_run_config(ClassifyConfig(**base, segment_config=str(tmp_path / "bad.yaml")))
    with pytest.raises(ClassifyConfigError, match="occam_l2r.commands.classify.classify"):
        classify_with_store(ClassifyConfig(**base, segment_config=str(seg)))
    assert not (tmp_path / "out").exists()
