"""The embedded pipeline end to end (tiny settings): fit x views x seeds -> logits -> fuse; resume;
sharded runs (``--shard i/n``, ``--only``) that fuse once all are done."""

from __future__ import annotations

from pathlib import Path

import pytest

from occam_l2r.cli import main
from occam_l2r.commands.pipeline import PAPER_SEEDS, plan_runs, select_runs

CONF = Path(__file__).parent / "conf" / "tiny_fg.yaml"


def test_select_runs_only_and_shard(tmp_path):
    runs = plan_runs({"FULL": "a.yaml", "FG_C": ["b.yaml", "c.yaml"]}, [0, 1, 2], tmp_path)
    assert [r.name for r in runs][:4] == ["FULL/seed0", "FULL/seed1", "FULL/seed2", "FG_C/seed0"]
    assert runs[3].configs == ("b.yaml", "c.yaml")
    assert [r.name for r in select_runs(runs, ["FG_C/seed1"], None)] == ["FG_C/seed1"]
    assert len(select_runs(runs, ["FG_C"], None)) == 3
    shards = [select_runs(runs, None, f"{i}/4") for i in range(4)]
    assert sorted(r.name for s in shards for r in s) == sorted(r.name for r in runs)
    assert [r.name for r in select_runs(runs, ["FULL"], "1/2")] == ["FULL/seed1"]
    with pytest.raises(ValueError, match="no such run"):
        select_runs(runs, ["BG_S/seed0"], None)
    with pytest.raises(ValueError, match="i/n"):
        select_runs(runs, None, "2")
    with pytest.raises(ValueError, match="0 <= i < n"):
        select_runs(runs, None, "4/4")


def test_default_seeds_are_the_papers_five_and_the_embedded_config_keeps_three(
    tmp_path, monkeypatch
):
    import yaml

    from occam_l2r.commands import pipeline as P

    assert PAPER_SEEDS == (0, 1, 2, 3, 4)  # L2R² §4.2
    started = []
    monkeypatch.setattr(P, "train_and_export", lambda run, args: started.append(run.name))
    monkeypatch.setattr(P, "_fuse", lambda *a: {})
    main(["pipeline", "--views.FULL", "full.yaml", "--experiment_dir", str(tmp_path)])
    assert started == [f"FULL/seed{s}" for s in PAPER_SEEDS]
    conf = Path(__file__).parents[1] / "configs" / "synthetic" / "pipeline.yaml"
    assert yaml.safe_load(conf.read_text())["seeds"] == [0, 1, 2]


@pytest.mark.slow
def test_pipeline_end_to_end_shards_and_resume(tmp_path, synthetic_copy, capsys, monkeypatch):
    from collections import Counter

    from occam_l2r.tasks.classifier import ClassifierTask

    seen: Counter[str] = Counter()  # every forward pass outside training, by image id
    logits_of = ClassifierTask.logits_of
    monkeypatch.setattr(
        ClassifierTask, "logits_of", lambda self, b: seen.update(b["id"]) or logits_of(self, b)
    )
    root = synthetic_copy
    views = {}
    for view in ("FULL", "FG_C", "BG_S"):
        overlay = tmp_path / f"{view}.yaml"  # a view overlay composed over the base config
        overlay.write_text(f"data:\n  init_args:\n    view: {view}\n")
        views[view] = f"[{CONF}, {overlay}]"
    exp = tmp_path / "exp"
    args = ["pipeline", "--experiment_dir", str(exp), "--seeds", "[0, 1]",
            "--fit_args", f"[--data.init_args.dataset.init_args.root, {root}]"]  # fmt: skip
    for view, cfg in views.items():
        args += [f"--views.{view}", cfg]

    # two shards of a job array: each trains its half, neither fuses
    capsys.readouterr()
    assert main([*args, "--shard", "0/2"]) is None
    out = capsys.readouterr().out
    assert "3 of 6 runs handled" in out and "3 not complete yet" in out
    assert not (exp / "fusion").exists()
    assert main([*args, "--shard", "1/2", "--only", "[FG_C, BG_S]"]) is None
    out = capsys.readouterr().out
    assert "2 of 6 runs handled" in out and "FULL/seed1" in out  # FULL/seed1 is left
    assert main([*args, "--only", "[FULL/seed1]"]) is None
    assert "0 not complete yet" in capsys.readouterr().out

    for view in views:
        for seed in (0, 1):
            run = exp / view / f"seed{seed}"
            assert (run / "test_metrics.json").is_file()
            assert (run / "logits" / "test_shift.npz").is_file()
            assert not (run / "predict").exists()  # no second verb's folder
    # each of the 6 runs read each test image once: its logits and its metrics in one pass
    tested = {i: n for i, n in seen.items() if i.split("/")[1].startswith("test_")}
    assert len(tested) == 3 * 8 and set(tested.values()) == {6}, tested
    # the plain command finds every run complete and fuses
    main(args)
    out = capsys.readouterr().out
    assert out.count("is complete, skipped") == 6
    table = (exp / "fusion" / "fusion_table.md").read_text()
    assert "FG_C" in table and "BG_S" in table
    summary = (exp / "fusion" / "summary.md").read_text()
    assert "test_shift" in summary
    html = (exp / "fusion" / "report" / "report.html").read_text()
    assert "<img" in html and "report.html" in out  # the pipeline ends with the HTML report

    main(args)  # resume: nothing retrained, every fusion cell cached
    out = capsys.readouterr().out
    assert out.count("is complete, skipped") == 6
    assert " 0 cells computed" in out
