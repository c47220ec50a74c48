"""``occam_l2r.load`` and ``python -m occam_l2r export`` (issue 20 item 1).

A tiny trained L2R² system is written by hand as ``fuse`` and ``fit`` leave it: two seeded random
``convnextv2_atto`` checkpoints in run folders (``<runs>/<view>/seed0/checkpoints/last.ckpt``,
with ``config.yaml`` and a logits file carrying the class names) and a ``results.jsonl`` of a
fitted ⊕R with class-wise temperatures, plus a FULL single-model record (the fallback run). Then:

- ``occam_l2r.load(export_dir)(images)`` equals ``classify`` on the same images: every view's
  logits (the images where the model ran), the fused class, confidence, deciding view and
  fallback reason; and so does ``occam_l2r.load(run folder)``;
- the export folder holds only ``.json`` and ``.safetensors`` files, no optimizer state, and
  loads in a fresh interpreter with ``HF_HUB_OFFLINE=1`` without importing Lightning;
- PIL images, arrays and a tensor batch give the same result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

import occam_l2r
from occam_l2r.cli import main
from occam_l2r.logits import LogitsFile
from occam_l2r.segmentation import Segmentation
from occam_l2r.store import StoreWriter
from tests.test_classify import _checkpoint

NAMES = ["zero", "one", "two", "three"]
#: the columns of classify's table the API must reproduce
COLUMNS = ["pred", "confidence", "decided_by", "fallback_reason", "second_model",
           "FG_C_top1", "FG_C_top1_conf", "FULL_top1", "FULL_top2_conf"]  # fmt: skip


def _run(folder: Path, view: str, seed: int) -> Path:
    """A ``fit`` run folder: its checkpoint, config.yaml and a logits file with class names."""
    (folder / "checkpoints").mkdir(parents=True)
    _checkpoint(folder / "checkpoints" / "last.ckpt", seed)
    data = {"image_size": 32, "crop_box": "mask", "fg_aspect": "pad", "fill": 0,
            "segmentation": "gt", "view": view}  # fmt: skip
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"init_args": data}}))
    z = np.zeros((2, 4), np.float32)
    LogitsFile(np.array(["a", "b"]), np.zeros(2, np.int64), z, split="val", view=view,
               run=str(folder), class_names=NAMES).save(folder / "logits" / "val.npz")  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("api")
    runs = {v: _run(tmp / "exp" / v / "seed0", v, s) for v, s in (("FG_C", 1), ("FULL", 2))}
    fusion = tmp / "exp" / "fusion"
    fusion.mkdir()
    params = {"t": 0.3, "t1": [1.5, 0.5, 2.0, 1.0], "t2": 0.8}
    records = [
        {"cell": "pair|FG_C+FULL|threshold|seed0", "kind": "pair", "name": "FG_C+FULL",
         "method": "threshold", "seed": 0, "runs": [str(runs["FG_C"]), str(runs["FULL"])],
         "params": params},
        {"cell": "single|FULL|seed0", "kind": "single", "name": "FULL", "method": "single",
         "seed": 0, "runs": [str(runs["FULL"])], "params": {}},
    ]  # fmt: skip
    (fusion / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    segs = []
    for k in range(6):
        name = f"im{k}.png"
        Image.fromarray(rng.integers(0, 256, (20 + k, 24, 3), dtype=np.uint8)).save(images / name)
        mask = np.zeros((20 + k, 24), bool)
        mask[3 : 12 + k, 4:15] = True
        if k < 4:  # im4, im5: no segmentation, they fall back to FULL
            segs.append(Segmentation.from_masks(name, [mask], labels=["obj"], label_ids=[0]))
    writer = StoreWriter(tmp / "store", "gt", {"kind": "test"})
    writer.write(segs)
    writer.close()
    cfg = {
        "images": str(images), "output_dir": str(tmp / "out"),
        "checkpoints": {v: str(r) for v, r in runs.items()}, "fusion_dir": str(fusion),
        "segmentation": str(tmp / "store"), "image_size": 32, "batch_size": 4,
        "class_names": NAMES, "top_k": 3,
    }  # fmt: skip
    (tmp / "classify.yaml").write_text(yaml.safe_dump(cfg))
    classified = main(["classify", "--config", str(tmp / "classify.yaml")])
    export = tmp / "export"
    main(["export", "--run", str(tmp / "exp"), "--output_dir", str(export)])
    return {"tmp": tmp, "images": images, "store": tmp / "store", "classified": classified,
            "export": export, "exp": tmp / "exp"}  # fmt: skip


def _same_as_classify(system: dict, out: occam_l2r.api.Predictions, ids: list[str]) -> None:
    ref = system["classified"]
    ref_result = ref["result"]
    rows = {item.image_id: k for k, item in enumerate(ref_result.items)}
    for view, z in ref_result.logits.items():
        ran = ref_result.ran[view]
        got = out.logits[view][[ids.index(i) for i in rows]]
        assert np.array_equal(np.isnan(got[:, 0]), ~ran), view
        np.testing.assert_allclose(got[ran], z[ran], rtol=1e-5, atol=1e-5, err_msg=view)
    want = ref["table"].set_index("image_id").loc[ids, COLUMNS + ["pred_name"]].reset_index()
    got = out.table.assign(image_id=ids).set_index("image_id")[COLUMNS + ["pred_name"]]
    pd.testing.assert_frame_equal(got.reset_index(), want, check_dtype=False, rtol=1e-5)


@pytest.mark.slow  # the module's fixture runs classify and export (about 40 s)
def test_the_export_equals_classify(system: dict) -> None:
    names = sorted(p.name for p in system["images"].iterdir())
    images = [Image.open(system["images"] / n) for n in names]
    from occam_l2r.store import SegmentationStore

    store = SegmentationStore(system["store"])
    model = occam_l2r.load(system["export"])
    out = model(images, segmentations=[store.get(n) for n in names])
    assert len(out) == 6 and out.table.pred_name.notna().all()
    _same_as_classify(system, out, names)
    table = out.table.set_index(pd.Index(names))
    assert (table.loc[["im4.png", "im5.png"], "decided_by"] == "FULL (fallback)").all()
    assert (table.loc[["im4.png", "im5.png"], "fallback_reason"] == "no_segmentation").all()
    # the same with ids and a store, with arrays, and with a tensor batch of one size
    by_store = model(
        [system["images"] / n for n in names], segmentations=system["store"], ids=names
    )
    _same_as_classify(system, by_store, names)
    arrays = [np.asarray(im.convert("RGB")) for im in images[:1]]
    batch = torch.from_numpy(arrays[0]).permute(2, 0, 1)[None]
    one = model(batch, segmentations=[store.get(names[0])], ids=names[:1])
    assert one.table.pred.tolist() == out.table.pred.tolist()[:1]
    # another batch size: equal up to float rounding
    np.testing.assert_allclose(one.logits["FG_C"][0], out.logits["FG_C"][0], atol=1e-5)


@pytest.mark.slow  # the module's fixture runs classify and export (about 40 s)
def test_a_pipeline_folder_loads_as_classify(system: dict) -> None:
    names = sorted(p.name for p in system["images"].iterdir())
    model = occam_l2r.load(system["exp"])
    assert model.class_names == NAMES and model.config.image_size == 32
    out = model([system["images"] / n for n in names], segmentations=system["store"], ids=names)
    _same_as_classify(system, out, names)


@pytest.mark.slow  # the module's fixture runs classify and export (about 40 s)
def test_the_export_holds_json_and_safetensors_only(system: dict) -> None:
    from safetensors.torch import load_file

    files = sorted(p.name for p in system["export"].iterdir())
    assert files == ["FG_C.safetensors", "FULL.safetensors", "config.json"], files
    config = json.loads((system["export"] / "config.json").read_text())
    assert config["class_names"] == NAMES and config["fusion"]["method"] == "threshold"
    assert config["fusion"]["params"]["t1"] == [1.5, 0.5, 2.0, 1.0]
    assert config["view_settings"]["image_size"] == 32
    assert config["segmenter"] == {"segmenter": "gt", "config": None}
    weights = load_file(system["export"] / "FG_C.safetensors")
    assert not any(k.startswith(("model.", "optimizer", "train_acc")) for k in weights)
    ckpt = torch.load(system["exp"] / "FG_C" / "seed0" / "checkpoints" / "last.ckpt",
                      weights_only=True)["state_dict"]  # fmt: skip
    for key, value in weights.items():
        assert torch.equal(ckpt[f"model.{key}"], value), key


@pytest.mark.slow  # the module's fixture runs classify and export (about 40 s)
def test_the_export_loads_offline_without_lightning(system: dict) -> None:
    code = (
        "import sys, numpy as np, occam_l2r\n"
        f"m = occam_l2r.load({str(system['export'])!r})\n"
        "out = m([np.zeros((20, 20, 3), np.uint8)])\n"
        "assert out.table.decided_by[0] == 'FULL (fallback)', out.table\n"
        "bad = sorted(x for x in sys.modules if x.startswith(('lightning', 'pytorch_lightning')))\n"
        "assert not bad, bad[:5]\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]


def test_import_occam_l2r_stays_light() -> None:
    code = "import sys, occam_l2r; assert 'torch' not in sys.modules; occam_l2r.load\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow  # the module's fixture runs classify and export (about 40 s)
def test_errors_are_one_message(system: dict, tmp_path: Path) -> None:
    from occam_l2r.errors import UserError

    bad = tmp_path / "bad"
    shutil.copytree(system["export"], bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(UserError, match="version 99.*export it again"):
        occam_l2r.load(bad)
    with pytest.raises(UserError, match="neither an export"):
        occam_l2r.load(tmp_path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="Hugging Face hub"):
        occam_l2r.load("nobody/no-such-export")
