"""``classify`` (issue 11 parts 1 and 2): new images through views, models and a fitted fusion.

End to end: two tiny ClassifierTask checkpoints (FG_C, FULL), ``predict`` + ``fuse`` on the tiny
embedded benchmark, then ``classify`` on a folder holding copies of its test images (with a store
of their segmentations) and a grayscale, an RGBA, an EXIF-rotated and a corrupt file. The fused
class of every copied image equals the one ``fuse``'s parameters give on ``predict``'s logits;
the cascade gives the threshold fusion's predictions and reports its share of second-model calls.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from occam_l2r.classify.cascade import cascade_threshold
from occam_l2r.classify.inputs import ClassifyInputError, list_images
from occam_l2r.cli import main
from occam_l2r.fusion import methods
from occam_l2r.fusion.saved import SavedFusionError, load_fusion
from tests.conftest import TINY, tiny_fit_args

SPLIT = "test_id"


def _checkpoint(path: Path, seed: int) -> Path:
    """A ClassifierTask checkpoint of a seeded random tiny model (what ``fit`` would save)."""
    from occam_l2r.tasks.classifier import ClassifierTask

    torch.manual_seed(seed)
    task = ClassifierTask(model_name="convnextv2_atto", num_classes=4)
    hparams = {"_class_path": "occam_l2r.tasks.classifier.ClassifierTask", **task.hparams}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": lightning.__version__}, path)  # fmt: skip
    return path


def _extras(folder: Path, source: np.ndarray) -> None:
    """A grayscale PNG, an RGBA PNG, a JPEG with EXIF orientation 6 and a corrupt JPEG."""
    Image.fromarray(source).convert("L").save(folder / "extra_gray.png")
    Image.fromarray(source).convert("RGBA").save(folder / "extra_rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(source[:, : source.shape[1] // 2]).save(folder / "extra_rotated.jpg", exif=exif)
    (folder / "extra_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


@pytest.fixture(scope="module")
def setup(tiny_synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.segmentation import Segmentation
    from occam_l2r.store import StoreWriter

    tmp = tmp_path_factory.mktemp("classify")
    root = tiny_synthetic_root
    ckpts = {"FG_C": _checkpoint(tmp / "fg.ckpt", 1), "FULL": _checkpoint(tmp / "full.ckpt", 2)}
    for view, ckpt in ckpts.items():
        main(["predict", *tiny_fit_args(root, tmp / "runs"), "--trainer.logger", "false",
              "--data.init_args.view", view, "--data.init_args.test_splits", f"[{SPLIT}]",
              "--ckpt_path", str(ckpt), "--model.init_args.logits_dir", str(tmp / view)])  # fmt: skip
    fuse_cfg = {
        "runs": {"FG_C": [str(tmp / "FG_C")], "FULL": [str(tmp / "FULL")]},
        "output_dir": str(tmp / "fusion"), "pairs": [["FG_C", "FULL"]],
        "methods": ["threshold", "max_conf_ts"], "test_splits": [SPLIT], "baseline": "FULL",
        "summary_methods": ["threshold"],
    }  # fmt: skip
    (tmp / "fuse.yaml").write_text(yaml.safe_dump(fuse_cfg))
    main(["fuse", "--config", str(tmp / "fuse.yaml")])

    ds = SyntheticSpurious(root=str(root), **TINY)
    folder, writer = tmp / "new_images", StoreWriter(tmp / "store", "gt", {"kind": "test"})
    folder.mkdir()
    segs, copies = [], {}
    for k, rec in enumerate(ds.records(SPLIT)):
        name = f"img{k:02d}{ds.image_path(rec).suffix}"
        shutil.copy(ds.image_path(rec), folder / name)
        copies[name] = rec.image_id
        (mask,) = ds.gt_masks(rec)
        segs.append(Segmentation.from_masks(name, [mask], labels=["object"], label_ids=[0]))
    writer.write(segs)
    writer.close()
    _extras(folder, ds.read_image(ds.records(SPLIT)[0]))
    cfg = {
        "images": str(folder), "output_dir": str(tmp / "out"),
        "checkpoints": {k: str(v) for k, v in ckpts.items()}, "fusion_dir": str(tmp / "fusion"),
        "pair": "FG_C+FULL", "method": "threshold", "segmentation": str(tmp / "store"),
        "image_size": 32, "batch_size": 8,
    }  # fmt: skip
    (tmp / "classify.yaml").write_text(yaml.safe_dump(cfg))
    return {"tmp": tmp, "copies": copies, "config": tmp / "classify.yaml"}


@pytest.mark.slow
def test_classify_equals_predict_and_fuse(setup: dict) -> None:
    from occam_l2r.fusion.fusers import REGISTRY
    from occam_l2r.fusion.inputs import align_pair, load_run_split

    tmp = setup["tmp"]
    out = main(["classify", "--config", str(setup["config"]), "--preview"])
    table = pd.read_csv(tmp / "out" / "predictions.csv", keep_default_na=False)
    assert (tmp / "out" / "predictions.parquet").is_file()
    assert len(table) == len(setup["copies"]) + 4
    rows = table.set_index("image_id")
    # the corrupt file gets an error row; grayscale, RGBA and rotated ones a FULL fallback prediction
    assert rows.loc["extra_corrupt.jpg", "status"] == "error"
    assert "cannot decode" in rows.loc["extra_corrupt.jpg", "error"]
    for name in ("extra_gray.png", "extra_rgba.png", "extra_rotated.jpg"):
        assert rows.loc[name, "status"] == "ok"
        assert rows.loc[name, "fallback_reason"] == "no_segmentation"
        assert rows.loc[name, "decided_by"] == "FULL (fallback)"
        assert int(rows.loc[name, "pred"]) == int(rows.loc[name, "FULL_top1"])
    rotated = out["result"].items[[i.image_id for i in out["result"].items].index(
        "extra_rotated.jpg")].image  # fmt: skip
    assert rotated.shape[0] < rotated.shape[1]  # upright: the portrait JPEG turned by EXIF 6

    # the reference: fuse's fitted threshold applied to predict's logits of the same images
    fusion = load_fusion(tmp / "fusion", "FG_C+FULL", "threshold")
    pair = align_pair(load_run_split(tmp / "FG_C", SPLIT), load_run_split(tmp / "FULL", SPLIT))
    ref = REGISTRY["threshold"].from_params(fusion.params).apply(pair)
    expected = dict(zip(pair.ids.tolist(), ref.pred.tolist(), strict=True))
    for name, image_id in setup["copies"].items():
        assert rows.loc[name, "status"] == "ok"
        assert int(rows.loc[name, "pred"]) == expected[image_id], name
        assert rows.loc[name, "box_x1"] != ""  # the store's box
    assert out["errors"] == 1 and out["second_model_share"] == 1.0
    # each view's logits, not only the fused argmax: classify's equal predict's on every copy
    result = out["result"]
    index = {item.image_id: i for i, item in enumerate(result.items)}
    for view in ("FG_C", "FULL"):
        ref_split = load_run_split(tmp / view, SPLIT)
        ref_rows = dict(zip(ref_split.ids.tolist(), ref_split.logits, strict=True))
        got = np.stack([result.logits[view][index[name]] for name in setup["copies"]])
        want = np.stack([ref_rows[image_id] for image_id in setup["copies"].values()])
        assert want.std(0).min() > 1e-3  # the random models' logits differ between images
        # float32 through two batchings of the same model: agreement to ~1e-6, not bitwise
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=view)
    html = (tmp / "out" / "preview.html").read_text()
    assert html.count("<figure>") == len(setup["copies"]) + 3 and "extra_corrupt.jpg" in html


@pytest.mark.slow
def test_cascade_equals_threshold_fusion(setup: dict) -> None:
    """With ``t`` set (``threshold_t``) to the median FG confidence, about half the images need
    the FULL model; the cascade's fused classes equal the full threshold fusion's."""
    from occam_l2r.fusion.inputs import load_run_split

    tmp = setup["tmp"]
    _, p_val = methods.predict_confidence(load_run_split(tmp / "FG_C", SPLIT).logits)
    cfg = yaml.safe_load((tmp / "fuse.yaml").read_text())
    cfg.update(output_dir=str(tmp / "fusion_t"), threshold_t=float(np.median(p_val)),
               methods=["threshold"])  # fmt: skip
    (tmp / "fuse_t.yaml").write_text(yaml.safe_dump(cfg))
    main(["fuse", "--config", str(tmp / "fuse_t.yaml")])
    args = ["classify", "--config", str(setup["config"]), "--fusion_dir", str(tmp / "fusion_t")]
    full = main([*args, "--output_dir", str(tmp / "full")])
    cas = main([*args, "--cascade", "--output_dir", str(tmp / "cascade")])
    a, b = full["table"].set_index("image_id"), cas["table"].set_index("image_id")
    assert a["pred"].fillna(-1).astype(int).equals(b["pred"].fillna(-1).astype(int))
    assert a["decided_by"].fillna("").equals(b["decided_by"].fillna(""))
    summary = json.loads((tmp / "cascade" / "summary.json").read_text())
    t = load_fusion(tmp / "fusion_t", "FG_C+FULL", "threshold").params["t"]
    _, p1 = methods.predict_confidence(cas["result"].logits["FG_C"])
    need = p1 <= t
    assert np.array_equal(cas["result"].second, need)
    assert summary["second_model_share"] == pytest.approx(need.mean()) and 0 < need.mean() < 1
    # FULL ran where ⊕R needed it and for the images that fell back, nowhere else
    assert summary["model_calls"]["FULL"] == int((need | cas["result"].flags).sum())
    assert np.isnan(cas["result"].logits["FULL"][~(need | cas["result"].flags)]).all()


def test_cascade_threshold_equals_threshold_and_skips_confident_rows() -> None:
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(200, 5)) * 2, rng.normal(size=(200, 5)) * 2
    for temps in ((1.0, 1.0), (0.7, 1.6), (rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5))):
        _, p1 = methods.predict_confidence(z1, temps[0])
        t = float(np.median(p1))
        asked: list[np.ndarray] = []
        out, need = cascade_threshold(
            z1, lambda r, asked=asked: asked.append(r) or z2[r], t, *temps
        )
        ref = methods.threshold(z1, z2, t, *temps)
        assert np.array_equal(out.pred, ref.pred) and np.allclose(out.conf, ref.conf)
        assert np.array_equal(out.chosen, ref.chosen)
        assert np.array_equal(need, p1 <= t) and 0 < need.mean() < 1
        assert np.array_equal(np.concatenate(asked), np.flatnonzero(p1 <= t))


def test_list_images_and_saved_fusion_errors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.PNG")
    (tmp_path / "a" / "notes.txt").write_text("no image")
    assert [i for i, _ in list_images(tmp_path / "a")] == ["x.PNG"]
    (tmp_path / "list.txt").write_text("# images\na/x.PNG\n\nmissing.jpg\n")
    listed = list_images(tmp_path / "list.txt")
    assert [(i, p) for i, p in listed] == [
        ("a/x.PNG", tmp_path / "a" / "x.PNG"), ("missing.jpg", tmp_path / "missing.jpg")
    ]  # fmt: skip
    with pytest.raises(ClassifyInputError, match="not found"):
        list_images(tmp_path / "nope")
    with pytest.raises(SavedFusionError, match="no fitted fusion"):
        load_fusion(tmp_path, "FG_C+FULL", "threshold")
    rec = {"cell": "pair|FG_C+BG_S|threshold|seed0", "kind": "pair", "name": "FG_C+BG_S",
           "method": "threshold", "seed": 0, "runs": ["r1", "r2"], "params": {"t": 0.5}}  # fmt: skip
    (tmp_path / "results.jsonl").write_text(json.dumps(rec) + "\n")
    got = load_fusion(tmp_path, "FG_C+BG_S", "threshold", 0)
    assert got.views == ("FG_C", "BG_S") and got.params == {"t": 0.5}
    with pytest.raises(SavedFusionError, match="FG_C\\+BG_S threshold seed0"):
        load_fusion(tmp_path, "FG_C+FULL", "threshold")


def test_resolve_checkpoint_of_a_run_folder(tmp_path: Path) -> None:
    from occam_l2r.classify.models import CheckpointNotFoundError, resolve_checkpoint

    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    best = ckpts / "epoch=3-step=40.ckpt"
    best.write_bytes(b"best")
    # the run moved: the recorded absolute path is gone, the file beside last.ckpt is found
    cb = {"RunCheckpoint{'monitor': 'val/acc'}": {"best_model_path": f"/gone/{best.name}"}}
    torch.save({"callbacks": cb}, ckpts / "last.ckpt")
    assert resolve_checkpoint(tmp_path / "run") == best
    assert resolve_checkpoint(best) == best
    torch.save({"callbacks": {}}, ckpts / "last.ckpt")
    assert resolve_checkpoint(tmp_path / "run") == ckpts / "last.ckpt"
    with pytest.raises(CheckpointNotFoundError, match="checkpoints/last.ckpt"):
        resolve_checkpoint(tmp_path / "nothing")


def test_synthetic_classify_config_parses() -> None:
    from jsonargparse import ArgumentParser

    from occam_l2r.classify.config import ClassifyConfig

    config = Path(__file__).parents[1] / "configs" / "synthetic" / "classify.yaml"
    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_class_arguments(ClassifyConfig)
    cfg = parser.parse_args(["--config", str(config), "--cascade", "true"])
    assert set(cfg.checkpoints) == {"FG_C", "FULL", "BG_S"} and cfg.method == "threshold"
    assert cfg.cascade is True and cfg.class_names == ["zero", "one", "two", "three"]


def test_bare_switches_mean_true() -> None:
    from occam_l2r.commands.classify import with_switch_values

    assert with_switch_values(["--preview", "--cascade"]) == [
        "--preview", "true", "--cascade", "true"
    ]  # fmt: skip
    assert with_switch_values(["--cascade", "false", "--preview"]) == [
        "--cascade", "false", "--preview", "true"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "pair, message",
    [("FG_C-FULL", "names no fused pair"), ("FG_C+FUL", "unknown view 'FUL'")],
)
def test_the_pair_is_parsed_once_into_a_typed_pair(pair: str, message: str) -> None:
    """``pair`` is read once into a :class:`~occam_l2r.fusion.pairs.Pair` when the config is
    built: a malformed pair or an unknown view is one message (exit 3 through the CLI)."""
    from occam_l2r.classify.config import ClassifyConfig
    from occam_l2r.errors import UserError
    from occam_l2r.fusion.pairs import Pair

    views = {"FG_C": "a.ckpt", "FULL": "b.ckpt"}
    ok = ClassifyConfig(images="x", output_dir="o", checkpoints=views, fusion_dir="f")
    assert Pair.parse(ok.pair) == Pair("FG_C", "FULL")
    with pytest.raises(UserError, match=message):
        ClassifyConfig(images="x", output_dir="o", checkpoints=views, fusion_dir="f", pair=pair)
