"""The console of the verbs (issue 19, item 4): what matters is printed, the noise is not.

- ``fit`` on the tiny synthetic benchmark, as a user runs it (a subprocess whose output is a
  file, not a terminal): INFO lines for the data root, the store, the images per split and
  their FULL fallbacks, the run folder; no Lightning advert, no FLOPs column or total, no
  ``_pytree`` deprecation, no ``v_num`` (``seed0`` cut to ``eed0``), no carriage returns;
- the ``_pytree`` deprecation and the litlogger tip are filtered at their source, by message;
- ``segment`` writes plain progress lines with images/s to a non-terminal (no tqdm line of
  carriage returns);
- ``python -m occam_l2r`` lists every registered verb with one line each; ``--version``;
  ``fit --model.help ClassifierTask`` takes the short class name.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import tiny_fit_args

from occam_l2r import __version__
from occam_l2r.cli import DESCRIPTIONS, VERBS, main

REPO = Path(__file__).parents[1]


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``python -m occam_l2r ARGS`` with stdout and stderr into one pipe (not a terminal)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "occam_l2r", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_fit_console_says_what_matters_and_no_noise(tmp_path: Path, synthetic_copy: Path) -> None:
    out = tmp_path / "runs"
    args = [
        "fit", *tiny_fit_args(synthetic_copy, out),
        "--trainer.enable_model_summary", "true",
        "--trainer.enable_progress_bar", "true",
        "--trainer.logger.init_args.version", "seed0",
        "--test_after_fit", "false",
    ]  # fmt: skip
    proc = _run(args)
    text = proc.stdout
    assert proc.returncode == 0, text
    run = out / "tiny" / "FG_C" / "seed0"
    assert f"data: {synthetic_copy} (SyntheticSpurious), view FG_C" in text
    assert f"segmentation store: {synthetic_copy / 'segmentations' / 'gt'}" in text
    assert "images per split: train 24, val 8, test_id 8" in text
    assert "FULL fallback (data.on_missing=error): train 0, val 0" in text
    assert f"outputs of this run: {run} (checkpoints in {run / 'checkpoints'})" in text
    assert "Epoch 0: 3/3 batches, train/loss" in text  # plain progress lines
    for noise in ("litlogger", "Tip:", "FLOPs", "LeafSpec", "FutureWarning", "v_num"):
        assert noise not in text, noise
    assert not re.search(r"\beed0", text)  # the version cut to four characters
    assert "\r" not in text
    assert "Total params" in text  # the summary itself stays


def test_pytree_deprecation_and_litlogger_tip_filtered_at_source() -> None:
    from lightning.pytorch.utilities._pytree import _tree_flatten
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from occam_l2r.console import quiet_library_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        _tree_flatten(1)  # Lightning builds a LeafSpec: torch >= 2.10 warns
        raised = [w for w in seen if "LeafSpec" in str(w.message)]
        seen.clear()
        quiet_library_warnings()
        _tree_flatten(1)
        warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
    if not raised:
        pytest.skip("this torch does not deprecate LeafSpec")
    assert [str(w.message) for w in seen] == ["an unrelated warning"]  # precise, not blanket

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler = Keep()
    logger.addHandler(handler)
    try:
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
        rank_zero_info("GPU available: False, used: False")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["GPU available: False, used: False"]


def test_segment_progress_is_plain_lines_in_a_log_file(tmp_path: Path, synthetic_copy: Path):
    proc = _run([
        "segment", "--config", "configs/segment/synthetic_regions.yaml",
        "--data.dataset.init_args.root", str(synthetic_copy),
        "--data.dataset.init_args.train_per_class", "6",
        "--data.dataset.init_args.val_per_class", "2",
        "--data.dataset.init_args.test_per_class", "2",
        "--data.num_workers", "0", "--data.batch_size", "4",
    ])  # fmt: skip
    text = proc.stdout
    assert proc.returncode == 0, text
    assert "\r" not in text  # tqdm wrote one giant line of carriage returns
    lines = [line for line in text.splitlines() if line.startswith("Predicting")]
    assert lines and lines[-1].endswith("img/s)"), text
    assert "6/6 batches" in lines[-1]
    assert "INFO occam_l2r" in text  # the segmenters' INFO lines as before


def test_no_verb_lists_every_verb_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(DESCRIPTIONS) == set(VERBS)
    main([])
    text = capsys.readouterr().out
    for verb, description in DESCRIPTIONS.items():
        assert f"  {verb} " in text and description in text, verb
    assert "--version" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--version"])
    assert capsys.readouterr().out == f"occam_l2r {__version__}\n"
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert declared and __version__ == declared.group(1)


def test_model_help_takes_the_short_class_name() -> None:
    proc = _run(["fit", "--model.help", "ClassifierTask"])
    assert proc.returncode == 0, proc.stdout
    assert "--model.model_name" in proc.stdout and "--model.checkpoint_path" in proc.stdout
