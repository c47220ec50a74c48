"""The real CLI end to end: fit (then test), predict -> logits files, config errors, weights."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from occam_l2r.cli import main
from occam_l2r.logits import LogitsFile
from tests._metrics_ref import assert_logged_match
from tests.conftest import tiny_fit_args

CONF = Path(__file__).parent / "conf" / "tiny_fg.yaml"


@pytest.fixture
def root(synthetic_copy):
    return synthetic_copy


@pytest.mark.slow
def test_fit_test_predict(root, tmp_path):
    out = tmp_path / "runs"
    main(["fit", *tiny_fit_args(root, out)])
    run = out / "tiny" / "FG_C" / "version_0"
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents*"))
    metrics = json.loads((run / "test_metrics.json").read_text())
    for split in ("test_id", "test_shift", "test_random"):
        for key in ("acc", "macro_acc", "worst_group_acc", "fallback_rate"):
            assert 0.0 <= metrics[f"{split}/{key}"] <= 1.0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    main(["predict", *tiny_fit_args(root, out), "--ckpt_path", str(ckpt)])
    for split, n in [
        ("train", 24),
        ("val", 8),
        ("test_id", 8),
        ("test_shift", 8),
        ("test_random", 8),
    ]:
        lf = LogitsFile.load(run / "logits" / f"{split}.npz")
        assert lf.logits.shape == (n, 4) and np.isfinite(lf.logits).all()
        assert (
            lf.view == "FG_C"
            and lf.split == split
            and lf.class_names == ["zero", "one", "two", "three"]
        )
        assert len(set(lf.ids)) == n and lf.config["model"]["model_name"] == "convnextv2_atto"

    # every logged test metric (acc, macro_acc, group_acc/<group>, worst_group_acc,
    # fallback_rate, num_samples) is recomputed with numpy from the logits of the checkpoint
    # that was tested (the best one, written as epoch=*.ckpt)
    (best,) = (run / "checkpoints").glob("epoch=*.ckpt")
    main(["predict", *tiny_fit_args(root, out), "--ckpt_path", str(best)])
    assert any("/group_acc/" in key for key in metrics)  # the benchmark's groups are logged
    for split in ("test_id", "test_shift", "test_random"):
        assert_logged_match(metrics, run / "logits" / f"{split}.npz", split)


def test_print_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(CONF), "--print_config"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "convnextv2_atto" in out and "SyntheticSpurious" in out and "test_after_fit" in out


def test_unknown_config_key_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONF.read_text().replace("lr: 0.001", "lr: 0.001\n    learning_rat: 0.1"))
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(bad)])
    assert exc.value.code != 0
    assert "learning_rat" in capsys.readouterr().err


def test_missing_pretrained_weights_fail_fast(root, tmp_path):
    from occam_l2r.models.backbones import create_classifier
    from occam_l2r.weights import WeightsNotFoundError

    start = time.perf_counter()
    with pytest.raises(
        WeightsNotFoundError, match=r"convnextv2_atto\.fcmae_ft_in1k.*--model\.init_args\.checkpoint_path"
    ):
        create_classifier("convnextv2_atto.fcmae_ft_in1k", 4, pretrained=True)
    assert time.perf_counter() - start < 10
    # through the CLI the same message reaches the user (jsonargparse wraps it in a ValueError)
    with pytest.raises(
        (WeightsNotFoundError, ValueError),
        match=r"convnextv2_atto\.fcmae_ft_in1k.*--model\.init_args\.checkpoint_path",
    ):
        main(
            [
                "fit",
                *tiny_fit_args(root, tmp_path / "o"),
                "--model.init_args.model_name",
                "convnextv2_atto.fcmae_ft_in1k",
                "--model.init_args.pretrained",
                "true",
            ]
        )


def test_local_checkpoint_path(tmp_path):
    import timm
    import torch

    from occam_l2r.models.backbones import create_classifier

    src = timm.create_model("convnextv2_atto", num_classes=1000)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    model = create_classifier("convnextv2_atto", 4, pretrained=True, checkpoint_path=str(path))
    assert torch.equal(model.stem[0].weight, src.stem[0].weight)
    assert model.get_classifier().out_features == 4
    from occam_l2r.weights import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_classifier(
            "convnextv2_atto", 4, pretrained=True, checkpoint_path=str(tmp_path / "nope.pth")
        )


@pytest.mark.slow
def test_per_candidate_predict_feeds_topk_fusion(root, tmp_path):
    """Top-k candidate views (L2R² appendix C.1): one view per (image, prompted class) -> predict
    writes one logits row per candidate -> eq. 5 fusion reads them."""
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.fusion.topk import topk_fusion
    from occam_l2r.store import Segmentation, StoreWriter
    from tests.conftest import TINY

    out = tmp_path / "runs"
    main(["fit", *tiny_fit_args(root, out), "--test_after_fit", "false"])
    run = out / "tiny" / "FG_C" / "version_0"
    ckpt = str(run / "checkpoints" / "last.ckpt")
    main(["predict", *tiny_fit_args(root, out), "--ckpt_path", ckpt, "--trainer.logger", "false"])

    ds = SyntheticSpurious(root=str(root), **TINY)
    store = tmp_path / "topk_store"
    writer = StoreWriter(store, "fake-topk", {"k": 4})
    segs = []
    for rec in ds.all_records():  # every class prompted once: 4 candidate detections per image
        (mask,) = ds.gt_masks(rec)
        segs.append(Segmentation.from_masks(rec.image_id, [mask] * 4, label_ids=[0, 1, 2, 3]))
    writer.write(segs)
    writer.close()
    cand_dir = tmp_path / "cand_logits"
    main(["predict", *tiny_fit_args(root, out), "--ckpt_path", ckpt, "--trainer.logger", "false",
          "--data.init_args.segmentation", str(store), "--data.init_args.per_candidate", "true",
          "--model.init_args.logits_dir", str(cand_dir), "--trainer.default_root_dir", str(tmp_path / "p2")])  # fmt: skip
    fg = LogitsFile.load(cand_dir / "test_shift.npz")
    assert len(fg.ids) == 4 * 8
    for sid in set(fg.ids):
        assert sorted(fg.candidates[fg.ids == sid].tolist()) == [0, 1, 2, 3]
    full = LogitsFile.load(run / "logits" / "test_shift.npz")
    result = topk_fusion(full, fg, k=2)
    assert result.candidates.shape == (8, 2) and set(result.preds) == {"FULL", "FG", "FULL+FG"}
    # with identical views per candidate, FG's pick among the 2 candidates follows its own logits
    plain = {i: z for i, z in zip(full.ids, full.logits, strict=True)}
    for r, sid in enumerate(result.ids):
        c = result.candidates[r]
        assert result.preds["FG"][r] == c[int(np.argmax(plain[sid][c]))]
