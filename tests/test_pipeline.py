"""The embedded pipeline end to end (tiny settings): fit x views x seeds -> logits -> fuse; resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from occam_l2r.cli import main

CONF = Path(__file__).parent / "conf" / "tiny_fg.yaml"


@pytest.mark.slow
def test_pipeline_end_to_end_and_resume(tmp_path, tiny_synthetic_root, capsys):
    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic_root, root)
    views = {}
    for view in ("FULL", "FG_C", "BG_S"):
        cfg = tmp_path / f"{view}.yaml"
        cfg.write_text(CONF.read_text().replace("view: FG_C", f"view: {view}"))
        views[view] = str(cfg)
    exp = tmp_path / "exp"
    args = ["pipeline", "--experiment_dir", str(exp), "--seeds", "[0, 1]",
            "--fit_args", f"[--data.init_args.dataset.init_args.root, {root}]"]  # fmt: skip
    for view, cfg in views.items():
        args += [f"--views.{view}", cfg]
    main(args)
    for view in views:
        for seed in (0, 1):
            run = exp / view / f"seed{seed}"
            assert (run / "test_metrics.json").is_file() and (
                run / "logits" / "test_shift.npz"
            ).is_file()
    table = (exp / "fusion" / "fusion_table.md").read_text()
    assert "FG_C" in table and "BG_S" in table
    summary = (exp / "fusion" / "summary.md").read_text()
    assert "test_shift" in summary

    capsys.readouterr()
    main(args)  # resume: nothing retrained, every fusion cell cached
    out = capsys.readouterr().out
    assert out.count("is complete, skipped") == 6
    assert " 0 cells computed" in out
