"""``validate`` through the CLI: its metrics are those of ``predict``'s logits on the val split.

A tiny FG_C run is fitted (one epoch), then ``validate --ckpt_path <best>`` and ``predict`` with
the same checkpoint; every val metric ``validate`` logs (``acc``, ``macro_acc``,
``group_acc/<group>``, ``worst_group_acc``, ``fallback_rate``, ``num_samples``, the checkpoint
monitor ``val/headline``) equals the one recomputed with numpy from the logits
(tests/_metrics_ref.py), and the printed summary row shows them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from occam_l2r.cli import main
from occam_l2r.logits import LogitsFile
from tests._metrics_ref import assert_logged_match, reference_metrics
from tests.conftest import tiny_fit_args


@pytest.mark.slow
def test_validate_metrics_equal_predicts_logits(
    synthetic_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    args = tiny_fit_args(synthetic_copy, out)
    main(["fit", *args, "--test_after_fit", "false"])
    run = out / "tiny" / "FG_C" / "version_0"
    (best,) = (run / "checkpoints").glob("epoch=*.ckpt")
    capsys.readouterr()

    cli = main(["validate", *args, "--ckpt_path", str(best)])
    printed = capsys.readouterr().out
    logged = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    main(["predict", *args, "--ckpt_path", str(best)])
    (logits,) = out.rglob("logits/val.npz")

    assert any(k.startswith("val/group_acc/") for k in logged)
    assert_logged_match(logged, logits, "val")
    ref = reference_metrics(LogitsFile.load(logits), "val")
    assert logged["val/headline"] == logged["val/acc"]  # the benchmark's headline metric: acc
    row = (
        "| val | "
        + " | ".join(
            f"{100 * ref[f'val/{c}']:.2f}"
            for c in ("acc", "macro_acc", "worst_group_acc", "fallback_rate")
        )
        + " |"
    )
    assert row in printed, printed
