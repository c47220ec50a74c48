"""``classify`` reads checkpoints through the one loader, and its preview keeps every picture.

Issue 17 items 1 and 7. A run folder's ``last.ckpt`` (or a checkpoint file) whose pickle carries
a payload (``os.mkdir`` of a marker folder) is refused by ``torch.load(weights_only=True)``:
``python -m occam_l2r classify`` exits with status 3 and one message naming the file, and the
marker was never made; a truncated checkpoint is named the same way. No module of the package
asks ``torch.load`` for ``weights_only=False``. The preview names its pictures by position and
sanitised name, so ``猫.png``, ``犬.png``, ``a b.png`` and ``a_b.png`` get four files.

Fast: two seeded random ``convnextv2_atto`` checkpoints (``tests/test_classify.py``'s helper), a
hand-written ``results.jsonl`` of a fitted threshold fusion, 16×16 images, no segmentation.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from occam_l2r.cli import main
from occam_l2r.errors import EXIT_USER_ERROR
from occam_l2r.tasks.checkpoints import CheckpointFileError, load_checkpoint
from tests.conftest import TINY_FG, tiny_fit_args
from tests.test_classify import _checkpoint

PACKAGE = Path(__file__).parents[1] / "occam_l2r"


class Payload:
    """Unpickling it calls ``os.mkdir(marker)``: what a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.marker,))


def _malicious(path: Path, marker: Path) -> Path:
    """A checkpoint-shaped file (``torch.save``) whose ``callbacks`` carry :class:`Payload`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "callbacks": {"x": {"best_model_path": Payload(marker)}}}, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny checkpoints, a fitted threshold fusion and a folder of four images."""
    tmp = tmp_path_factory.mktemp("classify_ckpt")
    fusion = tmp / "fusion"
    fusion.mkdir()
    record = {"cell": "pair|FG_C+FULL|threshold|seed0", "kind": "pair", "name": "FG_C+FULL",
              "method": "threshold", "seed": 0, "runs": ["r1", "r2"], "params": {"t": 0.5}}  # fmt: skip
    (fusion / "results.jsonl").write_text(json.dumps(record) + "\n")
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("猫.png", "犬.png", "a b.png", "a_b.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images / name)
    return {"FG_C": _checkpoint(tmp / "fg.ckpt", 1), "FULL": _checkpoint(tmp / "full.ckpt", 2),
            "fusion": fusion, "images": images}  # fmt: skip


def _config(models: dict[str, Path], tmp: Path, **checkpoints: Path) -> Path:
    cfg = {
        "images": str(models["images"]), "output_dir": str(tmp / "out"),
        "checkpoints": {"FG_C": str(models["FG_C"]), "FULL": str(models["FULL"])},
        "fusion_dir": str(models["fusion"]), "pair": "FG_C+FULL", "method": "threshold",
        "image_size": 32, "batch_size": 4,
    }  # fmt: skip
    cfg["checkpoints"].update({k: str(v) for k, v in checkpoints.items()})
    path = tmp / "classify.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def _exit_3(config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """Run ``python -m occam_l2r classify --config CONFIG`` in-process; its one error line."""
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "classify", "--config", str(config)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if x.startswith("occam_l2r classify: error:")]
    return line


@pytest.mark.parametrize("given", ["run folder", "file"])
def test_malicious_checkpoint_is_refused_and_never_run(
    given: str,
    models: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    marker = tmp_path / "payload_ran"
    run = tmp_path / "runs" / "FG_C" / "version_0"
    last = _malicious(run / "checkpoints" / "last.ckpt", marker)
    line = _exit_3(_config(models, tmp_path, FG_C=run if given == "run folder" else last),
                   monkeypatch, capsys)  # fmt: skip
    assert not marker.exists(), "the checkpoint's payload ran"
    assert str(last) in line and "refused" in line and "weights_only=True" in line
    assert "weights_only=False" not in line and "checkpoints` of the classify config" in line
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_raw_pickle_payload_is_refused(tmp_path: Path) -> None:
    """A plain pickle (torch's legacy format) with a payload: refused, named, not run."""
    import pickle

    marker = tmp_path / "payload_ran"
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"p{protocol}.ckpt"
        path.write_bytes(pickle.dumps({"callbacks": Payload(marker)}, protocol=protocol))
        with pytest.raises(CheckpointFileError, match=re.escape(str(path))):
            load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("given", ["run folder", "file"])
def test_truncated_checkpoint_is_named(
    given: str,
    models: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    data = models["FULL"].read_bytes()
    last.write_bytes(data[: len(data) // 2])
    line = _exit_3(_config(models, tmp_path, FULL=run if given == "run folder" else last),
                   monkeypatch, capsys)  # fmt: skip
    assert str(last) in line and "truncated" in line


def test_run_folder_loads_its_best_checkpoint_like_lightning(models: dict, tmp_path: Path) -> None:
    """A run folder resolves to the best checkpoint ``last.ckpt`` records; the model built from
    the one loader's dict equals ``load_from_checkpoint``'s (weights_only=True)."""
    from occam_l2r.classify.models import ViewModel
    from occam_l2r.tasks.classifier import ClassifierTask

    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    best = shutil.copy(models["FG_C"], ckpts / "epoch=1-step=2.ckpt")
    cb = {"RunCheckpoint{'monitor': 'val/acc'}": {"best_model_path": f"/moved/{Path(best).name}"}}
    torch.save({"callbacks": cb, "state_dict": {}}, ckpts / "last.ckpt")
    model = ViewModel("FG_C", tmp_path / "run", image_size=32)
    assert model.checkpoint == Path(best) and not model.task.hparams.pretrained
    ref = ClassifierTask.load_from_checkpoint(best, pretrained=False, weights_only=True).eval()
    images = [np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)]
    x = torch.stack([model.tensor(im) for im in images])
    with torch.inference_mode():
        expected = ref(ref.on_after_batch_transfer({"image": x}, 0)["image"]).numpy()
    assert np.array_equal(model.logits(images), expected)


def test_preview_pictures_are_unique(models: dict, tmp_path: Path) -> None:
    config = _config(models, tmp_path)
    out = main(["classify", "--config", str(config), "--preview"])
    html = (tmp_path / "out" / "preview.html").read_text(encoding="utf-8")
    pictures = sorted((tmp_path / "out" / "preview").iterdir())
    assert len(pictures) == 4 == len(out["result"].items)
    assert len({p.read_bytes() for p in pictures}) == 4  # four images, four different pictures
    for picture in pictures:
        assert html.count(f'href="preview/{picture.name}"') == 1, picture.name
    for item, picture in zip(out["result"].items, pictures, strict=True):
        assert item.image_id in html  # the caption names the image
        assert picture.name.endswith(".png")


def _lightning_exit_3(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture) -> str:  # fmt: skip
    """Run ``python -m occam_l2r ARGV`` in-process (a Lightning verb); its one error line."""
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", *argv])
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):  # Lightning's, left on a closed capture
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", 0):
                monkeypatch.setattr(handler, "stream", sys.stderr)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    (line,) = [x for x in err.splitlines() if x.startswith(f"occam_l2r {argv[0]}: error:")]
    return line


def test_malicious_checkpoint_given_to_predict_and_fit_resume(
    tiny_synthetic_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """The same loader serves the Lightning verbs: ``predict --ckpt_path`` (the CLI reads its
    hyperparameters) and ``fit --resume`` (the trainer restores it) refuse the payload."""
    marker = tmp_path / "payload_ran"
    args = tiny_fit_args(tiny_synthetic_root, tmp_path / "runs")
    evil = _malicious(tmp_path / "evil.ckpt", marker)
    line = _lightning_exit_3(["predict", *args, "--ckpt_path", str(evil)], monkeypatch, capsys)
    assert str(evil) in line and "refused" in line and "weights_only=False" not in line

    run = tmp_path / "runs" / "tiny" / "FG_C" / "version_0"
    last = _malicious(run / "checkpoints" / "last.ckpt", marker)
    config = yaml.safe_load(TINY_FG.read_text())
    config["data"]["init_args"]["dataset"]["init_args"]["root"] = str(tiny_synthetic_root)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    line = _lightning_exit_3(["fit", "--resume", str(run)], monkeypatch, capsys)
    assert str(last) in line and "refused" in line
    assert not marker.exists(), "the checkpoint's payload ran"


def test_no_weights_only_false_in_the_package() -> None:
    pattern = re.compile(r"weights_only\s*=\s*False")
    found = [f"{p.relative_to(PACKAGE)}:{n}" for p in sorted(PACKAGE.rglob("*.py"))
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]  # fmt: skip
    assert found == []
