"""Known errors: one message naming the file, exit status 3, the traceback only with ``--debug``.

The acceptance cases run the real command line (``python -m occam_l2r`` in a subprocess): a
missing dataset root (``fit``), zero-byte and foreign logits files (``fuse``), a missing SAM
checkpoint (``segment``). The rest checks the pieces in-process: ``main(argv)`` from Python
propagates, every unreadable logits file names its path, SAM checkpoints are read with
``torch.load(weights_only=True)`` and a malicious one never runs.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from occam_l2r.cli import KNOWN_ERRORS, main
from occam_l2r.data.datasets._layout import DatasetLayoutError, DatasetNotFoundError
from occam_l2r.errors import (
    EXIT_USER_ERROR,
    UserError,
    debug_enabled,
    format_user_error,
    known_cause,
    pop_debug_flag,
)
from occam_l2r.fusion.inputs import LogitsInputError, LogitsNotFoundError, load_logits
from occam_l2r.fusion.synthetic import write_synthetic_runs
from occam_l2r.logits import LogitsFile, LogitsFileError, LogitsFileNotFoundError
from occam_l2r.segment import sam as sam_module
from occam_l2r.segment.tiny import TINY_SAM, tiny_sam
from occam_l2r.weights import WeightsError, WeightsFileError, WeightsNotFoundError

REPO = Path(__file__).parents[1]
TINY_FIT = REPO / "tests" / "conf" / "tiny_fg.yaml"
SAM_AUTO = REPO / "configs" / "segment" / "waterbirds_sam_auto.yaml"
SIZES = {"train": 24, "val": 24, "test_id": 24}


def run_cli(args: list[str], cwd: Path, debug_env: bool = False) -> subprocess.CompletedProcess:
    """``python -m occam_l2r ARGS`` offline, with ``OCCAM_L2R_DEBUG`` set only if asked."""
    env = {k: v for k, v in os.environ.items() if k != "OCCAM_L2R_DEBUG"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if debug_env:
        env["OCCAM_L2R_DEBUG"] = "1"
    cmd = [sys.executable, "-m", "occam_l2r", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_one_message(proc: subprocess.CompletedProcess, verb: str, *needles: str) -> str:
    """Exit status 3, no traceback, one ``occam_l2r VERB: error:`` line holding ``needles``."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_USER_ERROR, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"occam_l2r {verb}:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "--debug" in proc.stderr and "OCCAM_L2R_DEBUG=1" in proc.stderr
    return lines[0]


def assert_traceback(proc: subprocess.CompletedProcess, error: str) -> None:
    """A non-zero exit with Python's full traceback ending in ``error``."""
    assert proc.returncode not in (0, EXIT_USER_ERROR), proc.stderr[-3000:]
    assert "Traceback (most recent call last)" in proc.stderr and error in proc.stderr


# --- the command line ----------------------------------------------------------------------


@pytest.mark.slow
def test_missing_dataset_root_is_one_message(tmp_path: Path) -> None:
    cfg = yaml.safe_load(TINY_FIT.read_text())
    root = tmp_path / "no_waterbirds"
    cfg["data"]["init_args"].update(
        dataset={"class_path": "occam_l2r.data.datasets.waterbirds.Waterbirds",
                 "init_args": {"root": str(root)}},
        view="FULL", segmentation=None,
    )  # fmt: skip
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    conf = tmp_path / "fit.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    proc = run_cli(["fit", "--config", conf], tmp_path)
    assert_one_message(proc, "fit", f"folder not found: {root}", "group_DRO", "metadata.csv")
    assert_traceback(
        run_cli(["fit", "--debug", "--config", conf], tmp_path), "DatasetNotFoundError"
    )


def test_missing_segmentation_store_is_one_message(tmp_path: Path, tiny_synthetic_root) -> None:
    store = tmp_path / "no_store"
    args = ["fit", "--config", TINY_FIT, "--data.init_args.segmentation", store,
            "--data.init_args.dataset.init_args.root", tiny_synthetic_root,
            "--trainer.logger.init_args.save_dir", tmp_path / "runs"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert_one_message(proc, "fit", f"no segmentation store at '{store}'", "occam_l2r segment")
    # the failed start gave its claimed folder back: no empty version_<k> is left
    assert not list((tmp_path / "runs").rglob("version_*"))


@pytest.fixture
def fuse_config(tmp_path: Path) -> tuple[Path, Path]:
    """A fuse config over synthetic runs; returns it and FG_C seed 0's logits folder."""
    runs = write_synthetic_runs(tmp_path / "runs", num_classes=3, seeds=1, sizes=SIZES)
    cfg = {
        "runs": runs,
        "output_dir": str(tmp_path / "fusion"),
        "pairs": [["FG_C", "BG_S"]],
        "methods": ["max_conf"],
        "test_splits": ["test_id"],
    }
    conf = tmp_path / "fuse.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    return conf, Path(runs["FG_C"][0]) / "logits"


def test_zero_byte_logits_given_to_fuse(
    fuse_config: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    conf, logits = fuse_config
    for path in logits.glob("*.npz"):
        path.write_bytes(b"")
    line = assert_one_message(run_cli(["fuse", "--config", conf], tmp_path), "fuse", "0 bytes")
    assert f"{logits}{os.sep}" in line and "predict" in line
    # the same entry in-process: main() reads sys.argv like `python -m occam_l2r`
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "fuse", "--config", str(conf)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err.startswith("occam_l2r fuse: error: cannot read logits file")
    monkeypatch.setenv("OCCAM_L2R_DEBUG", "1")  # the environment variable: the exception itself
    with pytest.raises(LogitsFileError, match="0 bytes"):
        main()
    monkeypatch.delenv("OCCAM_L2R_DEBUG")
    with pytest.raises(LogitsFileError):  # main(argv) from Python propagates, --debug or not
        main(["fuse", "--config", str(conf)])


def test_foreign_npz_given_to_fuse(fuse_config: tuple[Path, Path], tmp_path: Path) -> None:
    conf, logits = fuse_config
    for path in logits.glob("*.npz"):
        np.savez(path, features=np.zeros((3, 4)))
    line = assert_one_message(run_cli(["fuse", "--config", conf], tmp_path), "fuse")
    assert f"{logits}{os.sep}" in line and "is not a logits file" in line and "features" in line


def test_missing_sam_checkpoint_is_one_message(tmp_path: Path) -> None:
    ckpt = tmp_path / "weights" / "sam_vit_h_4b8939.pth"
    args = ["segment", "--config", SAM_AUTO, "--model.segmenter.init_args.sam.checkpoint", ckpt,
            "--data.dataset.init_args.root", tmp_path / "waterbirds", "--data.num_workers", "0",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1"]  # fmt: skip
    proc = run_cli(args, tmp_path)
    assert_one_message(proc, "segment", str(ckpt), "sam_vit_h_4b8939.pth", "wget")


# --- the pieces ----------------------------------------------------------------------------


def test_known_error_types() -> None:
    for err in (DatasetNotFoundError, DatasetLayoutError, LogitsInputError, LogitsNotFoundError):
        assert issubclass(err, UserError)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)
    assert issubclass(LogitsInputError, ValueError) and issubclass(LogitsFileError, ValueError)
    assert issubclass(LogitsFileNotFoundError, FileNotFoundError)
    assert issubclass(WeightsNotFoundError, WeightsError) and issubclass(
        WeightsFileError, WeightsError
    )
    assert set(KNOWN_ERRORS) == {UserError, LogitsFileError, WeightsError}


def test_debug_switches_and_message() -> None:
    assert pop_debug_flag(["fit", "--debug", "--config", "c.yaml"]) == (
        ["fit", "--config", "c.yaml"],
        True,
    )
    assert pop_debug_flag(["fuse"]) == (["fuse"], False)
    assert debug_enabled({"OCCAM_L2R_DEBUG": "1"}) and not debug_enabled({})
    assert not debug_enabled({"OCCAM_L2R_DEBUG": "0"})
    try:  # a known error inside another one (jsonargparse wraps errors of __init__)
        try:
            raise LogitsNotFoundError("no logits")
        except LogitsNotFoundError as inner:
            raise ValueError("Problem with given class_path") from inner
    except ValueError as outer:
        assert known_cause(outer, KNOWN_ERRORS) is outer.__cause__
    assert known_cause(ValueError("plain"), KNOWN_ERRORS) is None
    # an error re-raised from a DataLoader worker keeps only the original message
    worker = DatasetNotFoundError(
        "Caught DatasetNotFoundError in DataLoader worker process 0.\n"
        'Original Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "occam_l2r.data.datasets._layout.DatasetNotFoundError: W: folder not found: /d. Hint."
    )
    text = format_user_error(worker, "fit", rank=1)
    assert text.startswith("occam_l2r fit [rank 1]: error: W: folder not found: /d. Hint.")
    assert "worker process 0" in text and "Original Traceback" not in text


def test_every_unreadable_logits_file_names_its_path(tmp_path: Path) -> None:
    good = LogitsFile(ids=["a", "b"], labels=[0, 1], logits=np.eye(2), split="val").save(
        tmp_path / "good.npz"
    )
    data = good.read_bytes()
    cases = {
        "missing.npz": None,
        "empty.npz": b"",
        "text.npz": b"id,logit\na,0.1\n",
        "truncated.npz": data[: len(data) // 2],
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    np.save(tmp_path / "single.npy", np.zeros(3))
    np.savez(tmp_path / "foreign.npz", logits=np.zeros((2, 2)))
    bad_meta = {k: v for k, v in np.load(good).items()}
    bad_meta["meta"] = np.array("{not json")
    np.savez(tmp_path / "bad_meta.npz", **bad_meta)
    names = [*cases, "single.npy", "foreign.npz", "bad_meta.npz"]
    for name in names:
        path = tmp_path / name
        with pytest.raises(LogitsFileError) as err:
            LogitsFile.load(path)
        assert str(path) in str(err.value), name
        assert isinstance(err.value, FileNotFoundError) is (name == "missing.npz")
    nan = LogitsFile(ids=["a"], labels=[0], logits=[[np.nan, 0.0]]).save(tmp_path / "nan.npz")
    with pytest.raises(LogitsInputError, match="nan.npz: 1 of 1 samples have NaN"):
        load_logits(nan)


class _Exploit:
    """Pickles as a call of ``os.system`` that would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_sam_loads_with_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tiny_sam(tmp_path / "sam_tiny.pth")
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    built: list[object] = []

    def builder(checkpoint=None):  # stands for segment-anything's build_sam_vit_b
        built.append(checkpoint)
        return sam_module.build_sam(TINY_SAM)

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setitem(sam_module.sam_model_registry, "vit_b", builder)
    for model_type in ("custom", "vit_b"):
        sam = sam_module.load_sam(str(ckpt), model_type, TINY_SAM)
        assert not sam.training
    assert built == [None], "segment-anything's builder never gets (and never loads) the file"
    assert len(calls) == 2 and all(c.get("weights_only") is True for c in calls)

    marker = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(1), "payload": _Exploit(marker)}, tmp_path / "evil.pth")
    with pytest.raises(WeightsFileError, match=r"evil\.pth was refused by torch\.load"):
        sam_module.load_sam(str(tmp_path / "evil.pth"), "custom", TINY_SAM)
    assert not marker.exists()
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsFileError, match=r"empty\.pth \(0 bytes\) is not a readable"):
        sam_module.load_sam(str(tmp_path / "empty.pth"), "custom", TINY_SAM)
    other = dataclasses.replace(TINY_SAM, encoder_depth=3, encoder_global_attn_indexes=[2])
    with pytest.raises(WeightsFileError, match=r"sam_tiny\.pth does not fit model_type 'custom'"):
        sam_module.load_sam(str(ckpt), "custom", other)


def test_a_full_disk_is_one_message(tmp_path: Path, fuse_config: tuple[Path, Path]) -> None:
    """A write that runs out of space (here a file-size limit: EFBIG, as ENOSPC on a full disk)
    is one message naming the file and the fix, not an OSError traceback."""
    import resource

    conf, _ = fuse_config

    def limit() -> None:  # in the child only: 256 bytes per file written
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (256, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
        )

    env = {k: v for k, v in os.environ.items() if k != "OCCAM_L2R_DEBUG"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "occam_l2r", "fuse", "--config", str(conf)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)  # fmt: skip
    line = assert_one_message(proc, "fuse", "the disk is full writing", "run the command again")
    assert str(tmp_path / "fusion") in line
