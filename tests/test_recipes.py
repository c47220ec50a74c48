"""The recipes of docs/extending.md, each followed as a contributor would follow it.

Each test defines the new thing here, in this module, where the recipe puts it in the package (a
dataset module, a view, a segmenter class, a zero-shot model overlay), names it in the one place
the recipe names, and runs it through the public entry point (``occam_l2r.cli.main``) with tiny
settings. A recipe that needs a second place fails here first. The fusion-method recipe is
checked with the fusion tests, the OCCAM foreground score with the OCCAM tests.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from occam_l2r import views
from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.models.clip_registry import CONFIG_DIR
from occam_l2r.segment.segmenters import Item, Segmenter
from occam_l2r.segmentation import Segmentation
from occam_l2r.store import SegmentationStore
from tests._clip_tiny import TINY_VIT, save_tiny_clip
from tests.conftest import TINY, TINY_FG, tiny_fit_args

CONFIGS = Path(__file__).parents[1] / "configs"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight the other tests for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _metrics(out: Path, name: str) -> dict[str, float]:
    (run,) = (out / name).glob("version_*")
    return json.loads((run / "test_metrics.json").read_text())


# ---------------------------------------------------------------- add a dataset


class Shapes(RecordDataset):
    """A dataset in its own layout, as ``occam_l2r/data/datasets/<name>.py`` would read it:
    ``<root>/index.csv`` (``file,label,split,place``), ``images/<file>`` and ``masks/<file>``
    (the object's instance mask)."""

    class_names = ["square", "disc"]
    group_names = ["square_on_dark", "square_on_light", "disc_on_dark", "disc_on_light"]
    test_splits = ["test"]

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = Path(root)

    def load_records(self) -> list[Record]:
        with (self.root / "index.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        return [
            Record(
                image_id=f"images/{row['file']}",
                label=int(row["label"]),
                split=row["split"],
                group=f"{self.class_names[int(row['label'])]}_on_{row['place']}",
                mask_path=f"masks/{row['file']}",
            )
            for row in rows
        ]


def make_fake_shapes(root: Path, per_split: dict[str, int]) -> Path:
    """The fake layout ``tests/data/<name>/make_fake.py`` would write: a square or a disc on a
    dark or light background, 32 px."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:32, :32]
    rows = []
    for split, n in per_split.items():
        for k in range(n):
            label, place = k % 2, ("dark", "light")[(k // 2) % 2]
            mask = (abs(yy - 16) < 7) & (abs(xx - 16) < 7)
            if label:
                mask = (yy - 16) ** 2 + (xx - 16) ** 2 < 49
            image = np.full((32, 32, 3), 40 if place == "dark" else 215, np.uint8)
            image[mask] = (200, 30, 30) if label else (30, 30, 200)
            name = f"{split}_{k:03d}.png"
            Image.fromarray(image).save(root / "images" / name)
            Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / name)
            rows.append({"file": name, "label": label, "split": split, "place": place})
    with (root / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "label", "split", "place"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_add_a_dataset_and_fit_on_it(tmp_path: Path) -> None:
    """Recipe "Add a dataset": the class is named by ``class_path`` in the config, nothing else;
    ``fit`` trains on FG_C of its ground-truth masks and tests on its own test split."""
    root = make_fake_shapes(tmp_path / "shapes", {"train": 8, "val": 4, "test": 4})
    cfg = yaml.safe_load(TINY_FG.read_text())
    cfg["data"]["init_args"]["dataset"] = {
        "class_path": f"{__name__}.Shapes",
        "init_args": {"root": str(root)},
    }
    config = tmp_path / "shapes.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "runs"
    main(["fit", "--config", str(config), "--trainer.logger.init_args.save_dir", str(out),
          "--trainer.default_root_dir", str(out)])  # fmt: skip
    metrics = _metrics(out, "tiny/FG_C")
    assert metrics["test/num_samples"] == 4 and 0.0 <= metrics["test/worst_group_acc"] <= 1.0
    assert metrics["test/fallback_rate"] == 0.0  # every image has its ground-truth mask
    assert (root / "segmentations" / "gt" / "manifest.json").is_file()


# ---------------------------------------------------------------- add a view

#: the images the new view was made of (its function records them)
GRAY_VIEW_IMAGES: list[tuple[int, int]] = []


@views.register_view("FG_G", role="foreground", needs_mask=True)
def fg_gray(
    image: np.ndarray, fg: views.Decomposition | None, options: views.ViewOptions
) -> np.ndarray:
    """The new view, as views.py would hold it: the object on a uniform gray background, shape
    kept (it needs the mask, and it shows no background: its role is ``foreground``)."""
    assert fg is not None and fg.mask is not None  # needs_mask: the fallback rule ran first
    GRAY_VIEW_IMAGES.append(image.shape[:2])
    out = np.full_like(image, views.GRAY)
    out[fg.mask] = image[fg.mask]
    return out


def test_add_a_view_and_train_on_it(synthetic_copy: Path, tmp_path: Path) -> None:
    """Recipe "Add a view": one function registered with ``@register_view`` (above, where
    views.py would hold it) is a view everywhere: ``fit`` trains and tests on it by name
    (``data.view``), with the shared fallback rule; its role puts it in the default pairs."""
    from occam_l2r.fusion.pairs import Pair, default_pairs

    out = tmp_path / "runs"
    GRAY_VIEW_IMAGES.clear()
    main(["fit", *tiny_fit_args(synthetic_copy, out), "--data.init_args.view", "FG_G",
          "--data.init_args.test_splits", "[test_shift]",
          "--trainer.logger.init_args.name", "tiny/FG_G"])  # fmt: skip
    metrics = _metrics(out, "tiny/FG_G")
    assert metrics["test_shift/num_samples"] == 8 and 0 <= metrics["test_shift/acc"] <= 1
    assert metrics["test_shift/fallback_rate"] == 0.0  # every image has its ground-truth mask
    assert len(GRAY_VIEW_IMAGES) >= 24 + 8 + 8  # train, val and test images made by fg_gray
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:4] = True
    made = views.apply_view("FG_G", image, Segmentation.from_masks("x.png", [mask]))
    assert np.array_equal(made.image[mask], image[mask]) and (made.image[~mask] == 128).all()
    assert views.apply_view("FG_G", image, None).fallback == "no_segmentation"
    assert default_pairs(["FULL", "FG_G", "BG_S"]) == [Pair("FG_G", "FULL"), Pair("FG_G", "BG_S")]


# ---------------------------------------------------------------- add a segmenter


class CentreBox(Segmenter):
    """A segmenter as ``occam_l2r/segment/`` would hold it: the centred box of ``fraction`` of
    the image's side as the object (no weights, so ``check_weights``/``load`` stay default)."""

    name = "centre_box"

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = fraction

    def config(self) -> dict[str, Any]:
        return {"segmenter": self.name, "fraction": self.fraction}

    def segment(self, items: list[Item]) -> list[Segmentation | str]:
        out: list[Segmentation | str] = []
        for item in items:
            h, w = item["height"], item["width"]
            dy, dx = round(h * self.fraction / 2), round(w * self.fraction / 2)
            mask = np.zeros((h, w), bool)
            mask[h // 2 - dy : h // 2 + dy, w // 2 - dx : w // 2 + dx] = True
            out.append(
                Segmentation.from_masks(
                    item["image_id"], [mask], scores=[1.0], labels=["object"], label_ids=[0]
                )
            )
        return out


def test_add_a_segmenter_and_segment_with_it(synthetic_copy: Path, tmp_path: Path) -> None:
    """Recipe "Add a segmenter": chosen by ``class_path`` in a segment config, nothing else;
    ``segment`` writes its store (config hash from ``config()``) and the views read it."""
    store = tmp_path / "centre_box"
    dataset = {"class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
               "init_args": {"root": str(synthetic_copy), **TINY}}  # fmt: skip
    config = tmp_path / "segment.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"segmenter": {"class_path": f"{__name__}.CentreBox",
                                "init_args": {"fraction": 0.5}},
                  "store": str(store)},
        "data": {"dataset": dataset, "splits": ["test_id"], "batch_size": 4, "num_workers": 0},
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
    }))  # fmt: skip
    main(["segment", "--config", str(config)])
    ds = SyntheticSpurious(root=str(synthetic_copy), **TINY)
    records = ds.records("test_id")
    reader = SegmentationStore(store)
    assert sorted(reader.ids()) == sorted(r.image_id for r in records)
    assert reader.manifest["segmenter"] == "centre_box"
    assert reader.manifest["config"] == {"segmenter": "centre_box", "fraction": 0.5}
    image = ds.read_image(records[0])
    h, w = image.shape[:2]
    seg = reader[records[0].image_id]
    dy, dx = round(h / 4), round(w / 4)
    assert views.select_foreground(seg).box == (w // 2 - dx, h // 2 - dy, w // 2 + dx, h // 2 + dy)
    fg = views.apply_view("FG_C", image, seg)  # the box, padded to a square
    assert fg.fallback is None and fg.image.shape == (2 * max(dx, dy), 2 * max(dx, dy), 3)


# ---------------------------------------------------------------- add a zero-shot model


def test_add_a_zero_shot_model_and_test_it(synthetic_copy: Path, tmp_path: Path) -> None:
    """Recipe "Add a zero-shot model": an open_clip model needs no code, one model overlay
    (``configs/zeroshot/models/<name>.yaml``: ``model_name``, ``pretrained`` and, for an
    architecture open_clip does not know, ``model_config``) composed after the base config."""
    arch = tmp_path / "recipe-tiny-vit.json"  # a new architecture: its own open_clip config
    shutil.copy(CONFIG_DIR / f"{TINY_VIT}.json", arch)
    weights = save_tiny_clip(tmp_path / "recipe.pt", name=TINY_VIT, seed=1)
    overlay = tmp_path / "recipe_tiny_vit.yaml"
    overlay.write_text(yaml.safe_dump({
        "model": {"init_args": {"model_name": "recipe-tiny-vit", "pretrained": str(weights),
                                "model_config": str(arch)}},
        "data": {"init_args": {"image_size": 64}},
    }))  # fmt: skip
    d = "--data.init_args.dataset.init_args."
    out = tmp_path / "runs"
    tested = main([
        "test", "--config", str(CONFIGS / "synthetic" / "zeroshot.yaml"), "--config", str(overlay),
        d + "root", str(synthetic_copy), *[a for k, v in TINY.items() for a in (d + k, str(v))],
        "--model.init_args.prototype_cache", str(tmp_path / "prototypes"),
        "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "16",
        "--trainer.accelerator", "cpu", "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.default_root_dir", str(out), *QUIET,
    ])  # fmt: skip
    assert tested.model.clip.name.startswith("recipe-tiny-vit")
    metrics = json.loads(Path(tested.trainer.log_dir, "test_metrics.json").read_text())
    for output in ("FULL", "FG_C", "BG_S", "CENTERCROP", "FG_C+FULL", "FG_C+BG_S"):
        assert metrics[f"test_id/{output}/num_samples"] == 4 * TINY["test_per_class"]
