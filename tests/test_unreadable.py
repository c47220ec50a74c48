"""Unreadable images through the CLI: ``data.on_unreadable: error | skip`` and the ``check`` verb.

The tiny embedded benchmark is copied and damaged: a truncated PNG (train), a zero-byte file
(val), a text file named .png (test_id), a deleted file (test_shift) and a 3x3 image whose
ground-truth mask is 80x64 (test_random: readable, but unusable for FG_C); a 16-bit PNG (train)
and a JPEG with an EXIF orientation tag (test_random) must read as ordinary images.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import lightning.pytorch  # noqa: F401 - see below
import numpy as np
import pytest
from PIL import Image

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.data.records import ImageReadError
from tests.conftest import TINY, clean_copy, tiny_fit_args

CONF = Path(__file__).parent / "conf" / "tiny_fg.yaml"
# Lightning binds a logging.StreamHandler to the sys.stderr of the moment it is first imported.
# Imported first inside a test with ``capsys`` (the check verb imports it), that is capsys's
# stream, closed after the test: every later Lightning message printed "--- Logging error ---"
# and a traceback on stderr. Imported here, at collection, it binds pytest's session stream.


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCCAM_L2R_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def root(synthetic_copy: Path) -> Path:
    return synthetic_copy


def _first(root: Path, split: str, k: int = 0) -> str:
    return SyntheticSpurious(root=str(root), **TINY).records(split)[k].image_id


def damage(root: Path) -> dict[str, str]:
    """Damage five files (split -> image id) and store two readable odd formats."""
    ids = {s: _first(root, s) for s in ("train", "val", "test_id", "test_shift")}
    ids["test_random"] = _first(root, "test_random", 1)
    Image.fromarray(np.full((3, 3, 3), 128, np.uint8)).save(root / ids["test_random"])
    truncated = root / ids["train"]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (root / ids["val"]).write_bytes(b"")
    (root / ids["test_id"]).write_text("this is not an image\n")
    (root / ids["test_shift"]).unlink()
    # a 16-bit grayscale PNG and a JPEG stored upside down with EXIF orientation 3 (same size)
    wide = root / _first(root, "train", 1)
    gray = np.asarray(Image.open(wide).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(wide, "PNG")
    turned = root / _first(root, "test_random")
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.open(turned).convert("RGB").rotate(180).save(turned, "JPEG", exif=exif)
    return ids


def test_check_verb_lists_the_unreadable_files(
    root: Path, tmp_path: Path, tiny_synthetic_root: Path, capsys
) -> None:
    ids = damage(root)
    out = tmp_path / "bad.csv"
    args = ["check", "--config", str(CONF), "--data.init_args.dataset.init_args.root", str(root)]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--workers", "2", "--output", str(out)])
    assert exc.value.code == 1
    rows = list(csv.DictReader(out.open()))
    assert {(r["split"], r["image_id"]) for r in rows} == set(ids.items())
    reasons = {r["split"]: r["reason"] for r in rows}
    assert reasons["val"] == "empty file (0 bytes)" and reasons["test_shift"] == "file not found"
    assert reasons["test_random"] == "the image is 3x3 but its ground-truth mask is 80x64"
    printed = capsys.readouterr().out
    assert "| train | 24 | 1 |" in printed and "| test_random | 8 | 1 |" in printed
    assert all(str(root / i) in printed for i in ids.values())
    # the 16-bit PNG and the rotated JPEG read like any image
    ds = SyntheticSpurious(root=str(root), **TINY)
    turned = ds.read_image(ds.records("test_random")[0])
    assert turned.shape == (64, 80, 3)
    assert ds.read_image(ds.records("train")[1]).max() > 100  # not ~all white
    # a clean copy: exit status 0 and an empty list
    clean = tmp_path / "clean"
    clean_copy(tiny_synthetic_root, clean)
    result = main(["check", *args[1:-1], str(clean), "--output", str(out)])
    assert result["unreadable"] == [] and len(list(csv.DictReader(out.open()))) == 0


@pytest.mark.slow
def test_fit_skips_unreadable_images(root: Path, tmp_path: Path, caplog) -> None:
    ids = damage(root)
    out = tmp_path / "runs"
    with caplog.at_level(logging.WARNING, logger="occam_l2r"):
        main(["fit", *tiny_fit_args(root, out), "--data.init_args.on_unreadable", "skip"])
    run = out / "tiny" / "FG_C" / "version_0"
    metrics = json.loads((run / "test_metrics.json").read_text())
    for split in ("test_id", "test_shift", "test_random"):
        assert metrics[f"{split}/num_unreadable"] == 1 and metrics[f"{split}/num_samples"] == 7
    rows = list(csv.DictReader((run / "unreadable_images.csv").open()))
    assert {(r["split"], r["image_id"]) for r in rows} == set(ids.items())
    assert {r["split"]: r["reason"] for r in rows}["test_random"].startswith("the image is 3x3")
    reports = [r.getMessage() for r in caplog.records if "on_unreadable=skip" in r.getMessage()]
    assert len(reports) == 1 and all(i in reports[0] for i in ids.values())
    assert "left out 5 unreadable image(s)" in reports[0]


def test_error_names_the_file_and_the_option(
    root: Path, tmp_path: Path, tiny_synthetic_root: Path, monkeypatch, capsys
) -> None:
    ids = damage(root)
    # every image is decoded before anything is trained: all five are named in one message
    with pytest.raises(ImageReadError, match="on_unreadable: skip") as exc:
        main(["fit", *tiny_fit_args(root, tmp_path / "a")])
    assert all(str(root / i) in str(exc.value) for i in ids.values())
    assert "ground-truth mask" in str(exc.value) and "gt store folder" in str(exc.value)
    assert not list((tmp_path / "a").rglob("*.ckpt"))
    # on the command line: one message naming the files, exit status 3
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "fit", *tiny_fit_args(root, tmp_path / "c")])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 3 and all(str(root / i) in err for i in ids.values())
    assert "on_unreadable: skip" in err and "Traceback" not in err
    # FULL reads no store, yet a truncated *test* image stops it before training, not after
    clean = tmp_path / "clean"
    clean_copy(tiny_synthetic_root, clean)
    victim = clean / _first(clean, "test_shift")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    full = ["--data.init_args.view", "FULL", "--data.init_args.segmentation", "null"]
    with pytest.raises(ImageReadError, match="on_unreadable: skip") as exc:
        main(["fit", *tiny_fit_args(clean, tmp_path / "b"), *full])
    assert str(victim) in str(exc.value) and "truncated" in str(exc.value)
    assert not list((tmp_path / "b").rglob("*.ckpt"))
