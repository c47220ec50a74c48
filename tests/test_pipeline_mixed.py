"""A pipeline that mixes model kinds (issue 18.4): a view from a probe on frozen features, two
views from one shared-backbone run; the runs' folders, the fusion of their logits and the
report's labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from occam_l2r.cli import main
from occam_l2r.commands.pipeline import SharedRunError, is_done, plan_runs
from occam_l2r.reporting.sections import model_label

CONF = Path(__file__).parent / "conf"


def test_shared_runs_are_planned_once_per_seed_and_give_their_views(tmp_path):
    runs = plan_runs({"BG_S": "probe.yaml"}, [0, 1], tmp_path, {"FULL+FG_C": ["shared.yaml"]})
    assert [r.name for r in runs] == ["BG_S/seed0", "BG_S/seed1", "FULL+FG_C/seed0",
                                      "FULL+FG_C/seed1"]  # fmt: skip
    shared = runs[2]
    assert shared.views == ("FULL", "FG_C") and shared.folder == tmp_path / "FULL+FG_C" / "seed0"
    assert shared.logits_dir("FG_C") == shared.folder / "logits" / "FG_C"
    assert runs[0].logits_dir("BG_S") == runs[0].folder / "logits"
    assert not is_done(shared, ["val"])
    with pytest.raises(SharedRunError, match="FULL is given by both"):
        plan_runs({"FULL": "a.yaml"}, [0], tmp_path, {"FULL+FG_C": "b.yaml"})
    with pytest.raises(SharedRunError, match="two or more different views"):
        plan_runs({}, [0], tmp_path, {"FULL": "b.yaml"})


def test_model_labels_of_the_report():
    assert model_label({"task": "ClassifierTask", "model": {"model_name": "convnextv2_atto"}}) == (
        "classifier convnextv2_atto"
    )
    probe = {"task": "ProbeTask", "model": {"hidden_dim": 0}, "backbone": "frozen timm:x"}
    assert model_label(probe) == "linear probe on frozen timm:x"
    shared = {"task": "SharedBackboneTask",
              "model": {"model_name": "convnextv2_atto", "views": ["FULL", "FG_C"]}}  # fmt: skip
    assert model_label(shared) == "shared backbone convnextv2_atto (FULL+FG_C)"


@pytest.mark.slow
def test_a_pipeline_of_a_probe_and_a_shared_backbone(tmp_path, synthetic_copy):
    exp = tmp_path / "exp"
    args = ["pipeline", "--experiment_dir", str(exp), "--seeds", "[0]",
            "--views.BG_S", f"[{CONF / 'tiny_probe.yaml'}]",
            "--shared.FULL+FG_C", f"[{CONF / 'tiny_shared.yaml'}]",
            "--fit_args", f"[--data.init_args.dataset.init_args.root, {synthetic_copy}]"]  # fmt: skip
    main(args)
    assert (exp / "BG_S" / "seed0" / "logits" / "test_shift.npz").is_file()
    for view in ("FULL", "FG_C"):
        assert (exp / "FULL+FG_C" / "seed0" / "logits" / view / "test_shift.npz").is_file()
    table = (exp / "fusion" / "fusion_table.md").read_text()
    assert "**FG_C ⊕ FULL**" in table and "**FG_C ⊕ BG_S**" in table
    html = (exp / "fusion" / "report" / "report.html").read_text()
    assert "Models of each view" in html
    assert "linear probe on frozen timm:convnextv2_atto" in html
    assert "shared backbone convnextv2_atto (FULL+FG_C)" in html
