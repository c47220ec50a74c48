"""Predictable folders (issue 19): ``validate``/``test``/``predict --ckpt_path K`` write into K's
run folder and nowhere else; a failed start leaves nothing.

Before, ``test --ckpt_path K`` wrote ``test_metrics.json`` into a new ``version_1``, ``predict``
wrote its logits into K's run *and* created ``version_2``, ``validate`` made ``version_3``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from occam_l2r.cli import main
from tests.conftest import tiny_fit_args


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_synthetic_root) -> tuple[Path, Path, Path]:
    """One tiny fit: (dataset root, output folder, best checkpoint)."""
    out = tmp_path_factory.mktemp("runs")
    cli = main(["fit", *tiny_fit_args(tiny_synthetic_root, out), "--test_after_fit", "false"])
    return tiny_synthetic_root, out, Path(cli.trainer.checkpoint_callback.best_model_path)


@pytest.mark.slow
def test_evaluations_write_beside_the_checkpoint(fitted) -> None:
    root, out, best = fitted
    run = best.parent.parent
    before = _tree(out)
    assert run.name == "version_0" and (run / "config.yaml").is_file()
    fit_config = (run / "config.yaml").read_text()
    for verb in ("test", "validate", "predict"):
        main([verb, *tiny_fit_args(root, out), "--ckpt_path", str(best)])
    new = _tree(out) - before
    splits = {"train", "val", "test_id", "test_shift", "test_random"}
    rel = str(run.relative_to(out))
    assert new == {
        f"{rel}/{name}"
        for name in ("test_metrics.json", "validate_metrics.json", "config_test.yaml",
                     "config_validate.yaml", "config_predict.yaml", "logits",
                     *(f"logits/{s}.npz" for s in splits))
    }  # fmt: skip
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # no new version
    assert (run / "config.yaml").read_text() == fit_config  # the fit's config is kept


@pytest.mark.slow
def test_checkpoint_outside_a_run_and_failed_evaluation(fitted, tmp_path) -> None:
    """K in a folder of its own (downloaded weights): its folder gets the outputs, its own
    ``config.yaml`` is not overwritten; an evaluation that fails leaves nothing there."""
    root, out, best = fitted
    folder = tmp_path / "weights"
    folder.mkdir()
    ckpt = Path(shutil.copy(best, folder / "model.ckpt"))
    (folder / "config.yaml").write_text("mine: 1\n")
    main(["test", *tiny_fit_args(root, out), "--ckpt_path", str(ckpt)])
    assert _tree(folder) == {"model.ckpt", "config.yaml", "config_test.yaml", "test_metrics.json"}
    assert (folder / "config.yaml").read_text() == "mine: 1\n"
    (folder / "config_test.yaml").unlink()
    (folder / "test_metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="no segmentation store"):
        main(["test", *tiny_fit_args(root, out), "--ckpt_path", str(ckpt),
              "--data.init_args.segmentation", str(tmp_path / "no_store")])  # fmt: skip
    assert _tree(folder) == {"model.ckpt", "config.yaml"}


@pytest.mark.slow
def test_pinned_folder_is_kept(fitted, tmp_path) -> None:
    """A config that pins a folder (``--trainer.logger false --trainer.default_root_dir D``)
    writes there, as before."""
    root, out, best = fitted
    pinned = tmp_path / "pinned"
    main(["test", *tiny_fit_args(root, out), "--ckpt_path", str(best),
          "--trainer.logger", "false", "--trainer.default_root_dir", str(pinned)])  # fmt: skip
    assert (pinned / "test_metrics.json").is_file()
