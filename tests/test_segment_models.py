"""Detectors, SAM, prompts and weight checks on tiny random-initialised models (no downloads)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _segment_tiny import shared
from segment_anything import SamPredictor

from occam_l2r.logits import LogitsFile
from occam_l2r.segment.detectors import Detections, GroundingDino, Owlv2
from occam_l2r.segment.prompts import ClassNamePrompt, MetaPrompt, Query, TopKPrompt
from occam_l2r.segment.sam import SamBoxPrompter
from occam_l2r.segment.sam_automatic import SamAutomatic
from occam_l2r.segment.segmenters import select_boxes
from occam_l2r.segment.tiny import TINY_SAM
from occam_l2r.weights import WeightsNotFoundError, resolve_hf_model

SIZES = [(64, 80), (50, 90), (72, 40)]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared(tmp_path_factory)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def _check_detections(dets: list[Detections], queries: list[list[Query]]) -> None:
    assert len(dets) == len(queries)
    for d, qs, (h, w) in zip(dets, queries, SIZES, strict=True):
        assert (
            d.boxes.shape == (len(d), 4) and d.scores.shape == (len(d),) and len(d.texts) == len(d)
        )
        assert torch.all(d.boxes[:, 0::2] >= 0) and torch.all(d.boxes[:, 0::2] <= w)
        assert torch.all(d.boxes[:, 1::2] >= 0) and torch.all(d.boxes[:, 1::2] <= h)
        assert torch.all((d.query >= 0) & (d.query < max(1, len(qs))))


def test_grounding_dino_detects_phrases_of_each_query(
    paths: dict[str, Path], images: list[np.ndarray]
) -> None:
    det = GroundingDino(str(paths["gdino"]), box_threshold=0.05, text_threshold=0.05, chunk_size=2)
    det.load()
    pre = det.preprocessor()
    inputs = [pre(im) for im in images]
    queries = [
        [Query(("animal", "bird", "insect"))],
        [Query(("dog",), 1), Query(("cat",), 2)],
        [],
    ]
    dets = det.detect(inputs, SIZES, queries)
    _check_detections(dets, queries)
    assert len(dets[2]) == 0, "an image without queries has no detections"
    assert len(dets[0]) > 0 and len(dets[1]) > 0, "a random model scores above 0.05 somewhere"
    assert set(dets[0].texts) <= {"animal", "bird", "insect"}
    for text, q in zip(dets[1].texts, dets[1].query.tolist(), strict=True):
        assert text == ["dog", "cat"][q], "each box carries the phrase of the query that found it"
    # the caption joins the phrases; a '.' inside a class name cannot split a phrase
    assert GroundingDino.caption(Query(("St. Bernard", "dog"))) == (
        "st bernard . dog .",
        ["st bernard", "dog"],
    )
    # thresholds are applied: nothing survives a threshold of 1
    strict = GroundingDino(str(paths["gdino"]), box_threshold=1.0)
    strict.load()
    assert all(len(d) == 0 for d in strict.detect(inputs, SIZES, queries))


def test_grounding_dino_phrase_index(paths: dict[str, Path]) -> None:
    det = GroundingDino(str(paths["gdino"]))
    det.load()
    ids = det.processor.tokenizer(["animal . bird . insect ."], return_tensors="pt")["input_ids"]
    assert ids[0].tolist()[0] == 101 and ids[0].tolist()[-1] == 102
    assert det._phrase_index(ids)[0].tolist() == [-1, 0, -1, 1, -1, 2, -1, -1]


def test_owlv2_averages_query_embeddings(paths: dict[str, Path], images: list[np.ndarray]) -> None:
    det = Owlv2(str(paths["owlv2"]), threshold=0.0)
    det.load()
    pre = det.preprocessor()
    inputs = [pre(im) for im in images]
    avg = Query(("animal", "bird", "insect", "reptile"))
    queries = [[avg], [Query(("dog",), 3), avg], [Query(("cat",), 0)]]
    emb, mask = det.query_embeddings(queries)
    assert emb.shape[:2] == (3, 2) and mask.tolist() == [[True, False], [True, True], [True, False]]
    single = det.text_embeddings(list(avg.texts))
    assert torch.allclose(single.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert torch.allclose(emb[0, 0], single.mean(dim=0), atol=1e-6)
    assert torch.allclose(emb[1, 1], emb[0, 0])
    dets = det.detect(inputs, SIZES, queries)
    _check_detections(dets, queries)
    patches = (64 // 16) ** 2
    assert [len(d) for d in dets] == [patches, 2 * patches, patches], (
        "threshold 0 keeps every patch box"
    )
    assert set(dets[1].texts) == {"dog", avg.name}


def test_sam_box_masks_batched_equal_single(
    paths: dict[str, Path], images: list[np.ndarray]
) -> None:
    sam = SamBoxPrompter(str(paths["sam"]), model_type="custom", arch=TINY_SAM)
    sam.load()
    pre = sam.preprocessor()
    resized = [pre(im)["sam_image"] for im in images]
    boxes = [
        torch.tensor([[2.0, 3.0, 40.0, 50.0], [10.0, 5.0, 60.0, 45.0]]),
        torch.zeros((0, 4)),
        torch.tensor([[0.0, 0.0, 40.0, 72.0]]),
    ]
    batched = sam.masks(resized, SIZES, boxes)
    assert [m.shape for m in batched] == [(2, 64, 80), (0, 50, 90), (1, 72, 40)]
    assert all(m.dtype == torch.bool for m in batched)
    predictor = SamPredictor(sam.model)
    for i in (0, 2):
        alone = sam.masks([resized[i]], [SIZES[i]], [boxes[i]])[0]
        assert torch.equal(alone, batched[i]), "batching images does not change their masks"
        # segment-anything's own predictor gives the same masks
        predictor.set_image(images[i])
        prompt = predictor.transform.apply_boxes_torch(boxes[i], SIZES[i])
        ref, _, _ = predictor.predict_torch(None, None, boxes=prompt, multimask_output=False)
        assert (ref[:, 0] != batched[i]).float().mean() < 1e-3


@pytest.mark.parametrize("multimask", [False, True])
def test_sam_decoder_over_many_images_matches_sam(paths: dict[str, Path], multimask: bool) -> None:
    sam = SamBoxPrompter(
        str(paths["sam"]), model_type="custom", arch=TINY_SAM, multimask_output=multimask
    )
    model = sam.load()
    torch.manual_seed(0)
    grid = model.prompt_encoder.image_embedding_size
    embeddings = torch.randn(3, model.prompt_encoder.embed_dim, *grid)
    boxes = torch.tensor(
        [[1.0, 2.0, 30.0, 40.0], [5.0, 5.0, 60.0, 50.0], [0.0, 10.0, 20.0, 64.0], [8, 8, 9, 9.0]]
    )
    owner = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        logits, iou = sam.decode(embeddings, owner, boxes)
        for k in range(len(boxes)):
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes[k : k + 1], masks=None)
            ref, ref_iou = model.mask_decoder(
                image_embeddings=embeddings[owner[k]][None],
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            best = int(ref_iou[0].argmax())
            torch.testing.assert_close(logits[k, 0], ref[0, best], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(iou[k, 0], ref_iou[0, best], atol=1e-5, rtol=1e-5)


def test_sam_automatic_masks(paths: dict[str, Path], images: list[np.ndarray]) -> None:
    auto = SamAutomatic(
        str(paths["sam"]),
        model_type="custom",
        arch=TINY_SAM,
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        max_masks=5,
    )
    auto.load()
    pre = auto.preprocessor()
    out = auto.generate(images, [pre(im)["sam_image"] for im in images])
    assert len(out) == 3
    for (masks, scores), (h, w) in zip(out, SIZES, strict=True):
        assert 0 < len(masks) <= 5 and len(scores) == len(masks)
        assert all(m.shape == (h, w) and m.dtype == bool for m in masks)
        assert scores == sorted(scores, reverse=True)
    # the batched encoder gives the same masks as the generator encoding the image itself
    auto.generator.predictor.pending = None
    own = auto.generator.generate(images[0])
    own.sort(key=lambda a: -a["predicted_iou"])
    assert len(own[:5]) == len(out[0][0])
    for a, m in zip(own[:5], out[0][0], strict=True):
        assert np.array_equal(a["segmentation"], m)


def test_prompts(tmp_path: Path) -> None:
    names = ["zero", "one", "golden_retriever"]
    meta = MetaPrompt(["animal", "bird"])
    assert meta.queries("x", 0) == [Query(("animal", "bird"))]
    assert MetaPrompt(["animal", "bird"], average=False).queries("x", 0) == [
        Query(("animal",)),
        Query(("bird",)),
    ]
    gt = ClassNamePrompt(template="a {}")
    gt.bind(names)
    assert gt.queries("x", 2) == [Query(("a golden retriever",), 2)]
    with pytest.raises(ValueError, match="label -1"):
        gt.queries("x", -1)
    logits = np.array([[0.1, 2.0, 1.0], [3.0, -1.0, 0.5]], np.float32)
    f = LogitsFile(ids=["a.png", "b.png"], labels=[1, 0], logits=logits, view="FULL").save(
        tmp_path / "full.npz"
    )
    topk = TopKPrompt(str(f), k=2)
    topk.bind(names)
    assert topk.queries("a.png", -1) == [Query(("one",), 1), Query(("golden retriever",), 2)]
    assert topk.queries("b.png", -1) == [Query(("zero",), 0), Query(("golden retriever",), 2)]
    with pytest.raises(KeyError, match="c.png"):
        topk.queries("c.png", 0)
    bad = TopKPrompt(str(f), k=1)
    bad.bind(names[:2])
    with pytest.raises(ValueError, match="3 classes"):
        bad.queries("a.png", 0)


def test_select_boxes_top1_all_nms() -> None:
    dets = Detections(
        boxes=torch.tensor(
            [[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [5, 5, 5, 9], [0, 0, 8, 8.0]]
        ),
        scores=torch.tensor([0.9, 0.8, 0.7, 0.99, 0.6]),
        query=torch.tensor([0, 0, 0, 0, 1]),
        texts=["a"] * 4 + ["b"],
    )
    assert select_boxes(dets, "top1", None, None).tolist() == [0, 4], "zero-area box 3 is dropped"
    assert select_boxes(dets, "all", 0.5, None).tolist() == [0, 2, 4], "box 1 overlaps box 0"
    assert select_boxes(dets, "all", None, 2).tolist() == [0, 1]


def test_missing_weights_fail_fast(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="IDEA-Research/grounding-dino-base") as err:
        GroundingDino(
            "IDEA-Research/grounding-dino-base", cache_dir=str(tmp_path / "hf")
        ).check_weights()
    assert "hf download" in str(err.value) and str(tmp_path / "hf") in str(err.value)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, RuntimeError)
    with pytest.raises(WeightsNotFoundError, match="sam_vit_h_4b8939.pth"):
        SamBoxPrompter(str(tmp_path / "sam_vit_h_4b8939.pth")).check_weights()
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_hf_model(str(tmp_path / "no_such_model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        resolve_hf_model(str(tmp_path / "empty"))
    assert time.perf_counter() - t0 < 10
