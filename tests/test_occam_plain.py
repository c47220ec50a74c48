"""The plain OCCAM module (:class:`occam_l2r.occam.model.Occam`) on one image, without Lightning:
the same choice and prediction as the task gives that image through the ``predict`` verb.

A tiny random ViT CLIP, the scikit-image regions store of ``test_id`` (several candidates per
image; the last images of the split left out, so they have no masks) and a child Python process
that imports no Lightning: it builds the module from :mod:`occam_l2r.models.zeroshot` as a
notebook would and calls :meth:`Occam.predict` on each image (a PIL image and the store's
:class:`~occam_l2r.segmentation.Segmentation`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.logits import LogitsFile
from tests._clip_tiny import save_tiny_clip
from tests.conftest import PRISTINE, TINY

REPO = Path(__file__).parents[1]
REGIONS = REPO / "configs" / "segment" / "synthetic_regions.yaml"
QUIET = ["--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]
TEMPLATE = "a photo of the digit {c}."
MODES = ["crop_resize_gray", "crop_resize_original"]
SCORES = ["max_prob", "bbox_iou"]
STORED = 6  # images of test_id in the store (of 8)

#: the notebook: OCCAM on one image at a time, no Lightning anywhere
NOTEBOOK = r"""
import json, sys
from PIL import Image
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.models.zeroshot import ZeroShotClassifier, load_clip
from occam_l2r.occam.ground_truth import ground_truth
from occam_l2r.occam.model import Occam
from occam_l2r.store import SegmentationStore

root, weights, out, args = sys.argv[1:5]
args = json.loads(args)
dataset = SyntheticSpurious(root=root, **args["tiny"])
clip = load_clip("occam-tiny-vit", pretrained=weights)
classifier = ZeroShotClassifier(clip, dataset.class_names, args["template"])
occam = Occam(classifier, args["scores"], image_size=64)
store = SegmentationStore(f"{root}/segmentations/synthetic_regions")
results = {}
for rec in dataset.records("test_id"):
    image = Image.open(f"{root}/{rec.image_id}")
    box, _ = ground_truth(dataset, rec, (image.height, image.width))
    masks = store.get(rec.image_id) or []
    for mode in args["modes"]:
        for score in args["scores"]:
            p = occam.predict(image, masks, mode, score, label=rec.label, box=box)
            results[f"{rec.image_id}|synthetic_regions/{mode}/{score}"] = {
                "index": p.index, "prediction": p.prediction, "logits": p.logits.tolist(),
                "mask_logits": p.mask_logits.tolist(), "probs_sum": float(p.probs.sum()),
            }
lightning = [m for m in sys.modules if m.startswith("lightning")]
assert not lightning, lightning[:3]
json.dump(results, open(out, "w"))
"""


@pytest.fixture(scope="module")
def run(tiny_synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The regions store, the task's logits through ``predict`` and the notebook's results."""
    tmp = tmp_path_factory.mktemp("occam_plain")
    root = tmp / "tiny"
    shutil.copytree(tiny_synthetic_root, root, ignore=PRISTINE)
    dataset_args = ["--data.dataset.init_args.root", str(root)]
    for key, value in TINY.items():
        dataset_args += [f"--data.dataset.init_args.{key}", str(value)]
    main([
        "segment", "--config", str(REGIONS), *dataset_args, "--data.splits", "[test_id]",
        "--data.limit", str(STORED), *QUIET,
    ])  # fmt: skip
    weights = save_tiny_clip(tmp / "tiny_vit.pt")
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
        "model": {
            "class_path": "occam_l2r.tasks.occam.OccamTask",
            "init_args": {
                "model_name": "occam-tiny-vit", "pretrained": str(weights), "scores": SCORES,
                "templates": TEMPLATE, "prototype_cache": None, "logits_dir": str(tmp / "logits"),
            },
        },
        "data": {
            "class_path": "occam_l2r.data.occam_datamodule.OccamDataModule",
            "init_args": {
                "dataset": {
                    "class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
                    "init_args": {"root": str(root), **TINY},
                },
                "mask_sources": ["synthetic_regions"], "apply_modes": MODES,
                "on_missing": "empty", "splits": ["test_id"], "image_size": 64,
                "batch_size": 3, "num_workers": 0,
            },
        },
    }  # fmt: skip
    cfg = tmp / "occam_predict.yaml"
    cfg.write_text(yaml.safe_dump(config))
    main(["predict", "--config", str(cfg)])
    out = tmp / "notebook.json"
    args = {"tiny": TINY, "template": TEMPLATE, "modes": MODES, "scores": SCORES}
    subprocess.run(
        [sys.executable, "-c", NOTEBOOK, str(root), str(weights), str(out), json.dumps(args)],
        check=True,
        cwd=REPO,
    )
    return {"logits": tmp / "logits", "notebook": json.loads(out.read_text())}


@pytest.mark.slow  # spawns a process
def test_one_image_gives_the_tasks_choice_and_prediction(run: dict):
    notebook = run["notebook"]
    chosen_masks = set()
    for mode in MODES:
        for score in SCORES:
            row = f"synthetic_regions/{mode}/{score}"
            task = LogitsFile.load(run["logits"] / row / "test_id.npz")
            assert len(task.ids) == 8
            for image_id, logits in zip(task.ids, task.logits, strict=True):
                one = notebook[f"{image_id}|{row}"]
                assert one["prediction"] == int(np.argmax(logits)), (image_id, row)
                np.testing.assert_allclose(one["logits"], logits, rtol=1e-5, atol=1e-5)
                assert one["probs_sum"] == pytest.approx(1.0)
                # the task took the logits of the mask the module chose (none: the whole image)
                masks = np.asarray(one["mask_logits"]).reshape(-1, len(logits))
                same = [k for k, z in enumerate(masks) if np.allclose(z, logits, atol=1e-5)]
                assert (same[:1] or [-1]) == [one["index"]], (image_id, row)
                chosen_masks.add(one["index"])
    assert -1 in chosen_masks, "the images without masks are classified whole"
    assert len(chosen_masks - {-1}) > 1, "the choice is not always the first mask"
