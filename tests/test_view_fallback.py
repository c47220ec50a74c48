"""The one fallback rule of every view (docs/views_and_data.md, "Fallback"), per case and view,
and the top-k candidate without a detection through ``predict`` (L2R² appendix C.1 footnote)."""

from __future__ import annotations

import numpy as np
import pytest

from occam_l2r.segmentation import Segmentation
from occam_l2r.views import FALLBACK_REASONS, apply_view, full_fallback

NON_FULL = ("FG_C", "FG_M", "BG_S", "BG_B", "crop_resize_gray", "alpha")


def _image() -> np.ndarray:
    v = (10 * np.arange(4)[:, None] + np.arange(6)[None, :] + 1).astype(np.uint8)
    return np.repeat(v[..., None], 3, axis=2)


def _mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((4, 6), bool)
    m[y0:y1, x0:x1] = True
    return m


def _case(name: str) -> tuple[Segmentation | None, dict]:
    """(segmentation, apply_view kwargs) of one row of the fallback table."""
    obj = _mask(1, 3, 2, 4)
    if name == "no_segmentation":
        return None, {}
    if name == "no_detection":
        return Segmentation("img.png", 6, 4), {}
    if name == "low_score":
        return Segmentation.from_masks("img.png", [obj], scores=[0.2]), {"score_threshold": 0.5}
    if name == "empty_mask":  # SAM returned nothing inside the detector's box
        empty = np.zeros((4, 6), bool)
        return Segmentation.from_masks("img.png", [empty], boxes=np.array([[1, 1, 4, 3]])), {}
    assert name == "empty_box"  # a degenerate detector box, cropped by the detector box
    return (
        Segmentation.from_masks("img.png", [obj], boxes=np.array([[2.0, 1.0, 2.0, 3.0]])),
        {"crop_box": "detector"},
    )


@pytest.mark.parametrize("view", NON_FULL)
@pytest.mark.parametrize("case", FALLBACK_REASONS)
def test_every_case_falls_back_to_full_in_every_view(case, view):
    seg, kwargs = _case(case)
    res = apply_view(view, _image(), seg, **kwargs)
    assert res.fallback == case
    assert np.array_equal(res.image, full_fallback(view, _image()))
    if view == "alpha":  # RGB plus an all-foreground channel
        assert res.image.shape == (4, 6, 4) and (res.image[..., 3] == 255).all()
    else:
        assert np.array_equal(res.image, _image())


def test_empty_box_of_a_boxes_only_store():
    seg = Segmentation("img.png", 6, 4, boxes=[[7.0, 0.0, 9.0, 2.0]], scores=[1.0])  # off-image
    for view in ("FG_C", "BG_B"):
        res = apply_view(view, _image(), seg)
        assert res.fallback == "empty_box" and np.array_equal(res.image, _image())


def test_a_score_equal_to_the_threshold_is_kept():
    """``score_threshold`` is inclusive: under it the image falls back, at it the view is made."""
    obj = _mask(1, 2, 2, 4) | _mask(2, 3, 3, 4)
    low = Segmentation.from_masks("img.png", [obj], scores=[0.2])
    res = apply_view("FG_C", _image(), low, score_threshold=0.3)
    assert res.fallback == "low_score" and np.array_equal(res.image, _image())
    at = Segmentation.from_masks("img.png", [obj], scores=[0.3])
    assert apply_view("FG_C", _image(), at, score_threshold=0.3).fallback is None


@pytest.mark.parametrize("crop_box", ["mask", "detector"])
def test_empty_mask_falls_back_whichever_box_crops(crop_box):
    """A detector box whose SAM mask came out empty: the same fallback for both crop boxes."""
    empty = np.zeros((4, 6), bool)
    seg = Segmentation.from_masks("img.png", [empty], scores=[0.9], boxes=np.array([[1, 1, 3, 3]]))
    for view in ("FG_C", "FG_M", "BG_S", "BG_B", "crop_resize_gray"):
        res = apply_view(view, _image(), seg, crop_box=crop_box)
        assert res.fallback == "empty_mask" and np.array_equal(res.image, _image())


@pytest.mark.parametrize("crop_box", ["mask", "detector"])
def test_mask_covering_the_whole_image_is_no_fallback(crop_box):
    """The object fills the frame: FG views are the image, BG views a constant, no flag."""
    seg = Segmentation.from_masks("img.png", [np.ones((4, 6), bool)])
    img = _image()
    out = {v: apply_view(v, img, seg, fill=0, crop_box=crop_box) for v in NON_FULL}
    assert all(r.fallback is None for r in out.values())
    padded = np.zeros((6, 6, 3), np.uint8)
    padded[1:5] = img
    assert np.array_equal(out["FG_C"].image, padded) and np.array_equal(out["FG_M"].image, padded)
    assert not out["BG_S"].image.any() and not out["BG_B"].image.any()
    # OCCAM's crop + resize (the authors' geometry): the square of side 6 centred (in integer
    # pixels, rounding down) on the 4 x 6 box starts at row -2, column -1: gray padding above
    # and left, stretched back to 4 x 6; an odd-sided square image comes back as it is
    crg = out["crop_resize_gray"].image
    assert crg.shape == img.shape and (crg[0] == 128).all() and (crg[:, 0] == 128).all()
    square = np.repeat(np.arange(25, dtype=np.uint8).reshape(5, 5, 1), 3, axis=2)
    whole = Segmentation.from_masks("sq.png", [np.ones((5, 5), bool)])
    assert np.array_equal(apply_view("crop_resize_gray", square, whole).image, square)
    assert (
        np.array_equal(out["alpha"].image[..., :3], img)
        and (out["alpha"].image[..., 3] == 255).all()
    )


@pytest.fixture
def root(synthetic_copy):
    return synthetic_copy


def test_one_flag_for_every_view_of_an_image(root, tmp_path):
    """Through the DataModule: an image whose SAM mask is empty is flagged in all five views."""
    import torch

    from occam_l2r.data.datamodule import ViewDataModule
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.store import StoreWriter
    from tests.conftest import TINY

    ds = SyntheticSpurious(root=str(root), **TINY)
    recs = ds.records("test_id")
    writer = StoreWriter(tmp_path / "store", "owlv2+sam", {"k": 1})
    segs = []
    for i, rec in enumerate(recs):
        (mask,) = ds.gt_masks(rec)
        if i == 0:
            mask = np.zeros_like(mask)  # the detector found a box, SAM no pixel
        boxes = np.array([[10.0, 10.0, 40.0, 40.0]])
        segs.append(Segmentation.from_masks(rec.image_id, [mask], scores=[0.9], boxes=boxes))
    writer.write(segs)
    writer.close()
    views = ["FG_C", "FG_M", "BG_S", "BG_B", "FULL"]
    dm = ViewDataModule(ds, view=views, segmentation=str(tmp_path / "store"), image_size=32,
                        batch_size=8, num_workers=0, test_splits=["test_id"], on_missing="full")  # fmt: skip
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()[0]))
    first = batch["id"].index(recs[0].image_id)
    for view in views[:4]:
        flags = batch["fallbacks"][view]
        assert flags[first] == 1 and flags.sum() == 1, view
        assert torch.equal(batch["views"][view][first], batch["views"]["FULL"][first])
    assert batch["fallbacks"]["FULL"].sum() == 0


@pytest.mark.slow
def test_topk_store_with_an_empty_candidate_through_predict(root, tmp_path):
    """Every prompted candidate of an image gets a logits row; one without a detection is the
    FULL image, flagged ``fallback`` (L2R² appendix C.1: "when the detector output is empty,
    FG and BG are replaced by the full image"); eq. 5 fusion then finds every row."""
    from occam_l2r.cli import main
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.fusion.topk import topk_fusion
    from occam_l2r.logits import LogitsFile
    from occam_l2r.store import StoreWriter
    from tests.conftest import TINY, tiny_fit_args

    ds = SyntheticSpurious(root=str(root), **TINY)
    store = tmp_path / "topk_store"
    writer = StoreWriter(store, "owlv2+sam", {"prompts": {"kind": "topk", "k": 4}})
    segs, nothing = [], ds.records("test_shift")[0].image_id
    for rec in ds.all_records():  # prompted with all 4 classes; detections for 0 and 2 only
        (mask,) = ds.gt_masks(rec)
        found = [] if rec.image_id == nothing else [0, 2]
        segs.append(
            Segmentation.from_masks(
                rec.image_id,
                [mask] * len(found),
                label_ids=found,
                labels=["x"] * len(found),
                prompts=["zero", "one", "two", "three"],
                prompt_ids=[0, 1, 2, 3],
                height=mask.shape[0],
                width=mask.shape[1],
            )  # fmt: skip
        )
    writer.write(segs)
    writer.close()

    out = tmp_path / "runs"
    main(["predict", *tiny_fit_args(root, out), "--trainer.logger", "false",
          "--data.init_args.segmentation", str(store), "--data.init_args.per_candidate", "true",
          "--data.init_args.test_splits", "[test_shift]",
          "--model.init_args.logits_dir", str(tmp_path / "fg")])  # fmt: skip
    fg = LogitsFile.load(tmp_path / "fg" / "test_shift.npz")
    assert len(fg.ids) == 4 * 8
    rows = {(i, int(c)): k for k, (i, c) in enumerate(zip(fg.ids, fg.candidates, strict=True))}
    for sid in set(fg.ids.tolist()):
        empty = {1, 3} if sid != nothing else {0, 1, 2, 3}
        assert {c for c in range(4) if fg.fallback[rows[(sid, c)]]} == empty, sid
        # every empty candidate's row is the FULL image: the same logits, unlike an FG crop's
        z = {c: fg.logits[rows[(sid, c)]] for c in range(4)}
        np.testing.assert_allclose(z[1], z[3], rtol=1e-5, atol=1e-6)
        if sid != nothing:
            assert not np.allclose(z[0], z[1], rtol=1e-5, atol=1e-6)
    # candidate 1 found nothing in any image: its rows are FULL's logits (same model, image)
    at = [rows[(i, 1)] for i in dict.fromkeys(fg.ids.tolist())]
    full = LogitsFile(ids=fg.ids[at], labels=fg.labels[at], logits=fg.logits[at], view="FULL")
    result = topk_fusion(full, fg, k=4)  # every (sample, candidate) row is there
    assert result.candidates.shape == (8, 4)


class _OneBoxDetector:
    """A stand-in detector (no weights): one box for each image's first query, none for others."""

    name = "fake"

    def detect(self, items, sizes, queries):
        import torch

        from occam_l2r.segment.detectors import Detections

        box = torch.tensor([[1.0, 1.0, 5.0, 3.0]])
        return [Detections(box, torch.tensor([0.8]), torch.tensor([0]), ["t"]) for _ in items]


def test_topk_segmenter_stores_every_prompted_candidate(tmp_path):
    """``DetectAndSegment`` with ``TopKPrompt`` records the candidates in ``prompt_ids``, so a
    candidate without detection is known to the views (one item per candidate)."""
    from occam_l2r.data.records import Record
    from occam_l2r.logits import LogitsFile
    from occam_l2r.segment.prompts import TopKPrompt
    from occam_l2r.segment.segmenters import DetectAndSegment

    logits = np.array([[0.1, 3.0, 2.0, -1.0]])  # top-3: 1, 2, 0
    LogitsFile(ids=["a.png"], labels=[1], logits=logits).save(tmp_path / "full.npz")
    prompts = TopKPrompt(str(tmp_path / "full.npz"), k=3)
    prompts.bind(["zero", "one", "two", "three"])
    segmenter = DetectAndSegment(_OneBoxDetector(), prompts)  # type: ignore[arg-type]
    item = {"record": Record("a.png", 1, "test"), "image_id": "a.png", "label": 1, "height": 4,
            "width": 6}  # fmt: skip
    (seg,) = segmenter.segment([item])
    assert seg.prompts == ["one", "two", "zero"] and seg.prompt_ids == [1, 2, 0]
    assert seg.label_ids.tolist() == [1]  # only the first candidate was found
    assert seg.candidates() == [1, 2, 0]
    row = Segmentation.from_row(seg.to_row())
    assert row.prompt_ids == [1, 2, 0]
    for c, reason in [(1, None), (2, "no_detection"), (0, "no_detection")]:
        part = row.subset(np.nonzero(row.label_ids == c)[0])
        assert apply_view("FG_C", _image(), part).fallback == reason
