"""One backbone for FULL and FG_C (issue 18, part 2): the FG branch sees only FG pixels, both
views of a sample travel together, ``predict`` writes one logits folder per view that ``fuse``
reads like separate runs, and two DDP processes write and count every sample once per view."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from occam_l2r.cli import main
from occam_l2r.errors import UserError
from occam_l2r.tasks.shared import SharedBackboneTask

CONF = Path(__file__).parent / "conf" / "tiny_shared.yaml"
VIEWS = ("FULL", "FG_C")
SPLITS = ("train", "val", "test_id", "test_shift", "test_random")
TESTS = ("test_id", "test_shift", "test_random")


def shared_args(root: Path, out: Path) -> list[str]:
    """The tiny shared config on a dataset ``root``, with logs and checkpoints under ``out``."""
    return [
        "--config", str(CONF),
        "--data.init_args.dataset.init_args.root", str(root),
        "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.default_root_dir", str(out),
    ]  # fmt: skip


def _views(n: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        v: torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8) for v in VIEWS
    }


def _logits(task: SharedBackboneTask, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    batch = task.on_after_batch_transfer({"views": dict(views)}, 0)
    return task(batch["views"])


@pytest.mark.parametrize(
    ("model_name", "head"),  # LayerNorm/GRN and BatchNorm backbones; both kinds of heads
    [
        ("convnextv2_atto", "per_view"),
        ("resnet10t", "per_view"),
        ("convnextv2_atto", "view_embedding"),
    ],
)
def test_fg_logits_depend_on_fg_pixels_only(model_name: str, head: str) -> None:
    torch.manual_seed(0)
    task = SharedBackboneTask(model_name=model_name, head=head)
    views = _views()
    full_changed = {**views, "FULL": _views(seed=1)["FULL"]}  # every FULL pixel changed
    fg_changed = {**views, "FG_C": _views(seed=2)["FG_C"]}
    for train in (False, True):  # training mode: BatchNorm statistics are per view's call
        task.train(train)
        with torch.no_grad():
            ref, other, moved = (_logits(task, v) for v in (views, full_changed, fg_changed))
        assert torch.equal(ref["FG_C"], other["FG_C"])  # FG's logits: blind to the FULL image
        assert not torch.equal(ref["FULL"], other["FULL"])
        assert not torch.equal(ref["FG_C"], moved["FG_C"])  # ... not to its own pixels

    # no gradient flows from the FG head's logits into the FULL image's pixels
    task.eval()
    inputs = {v: x.float().requires_grad_() for v, x in views.items()}
    logits = task({v: (x - task.mean) / task.std for v, x in inputs.items()})
    logits["FG_C"].sum().backward()
    assert inputs["FULL"].grad is None or not inputs["FULL"].grad.any()
    assert inputs["FG_C"].grad.abs().sum() > 0


def test_samples_hold_both_views_of_one_image(synthetic_copy: Path) -> None:
    """Each sample of every loader holds the FULL and FG_C views of the same record, the FG_C
    one pixel for pixel what a one-view FG_C DataModule gives (the FG branch's input)."""
    from occam_l2r.data.datamodule import ViewDataModule
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.data.multiview_datamodule import MultiViewDataModule
    from tests.conftest import TINY

    def dm(cls: type, **view: object) -> ViewDataModule:
        ds = SyntheticSpurious(root=str(synthetic_copy), **TINY)
        out = cls(ds, image_size=32, batch_size=5, num_workers=0, **view)
        out.prepare_data()
        out.setup("fit")
        return out

    multi, single = dm(MultiViewDataModule, views=list(VIEWS)), dm(ViewDataModule, view="FG_C")
    assert multi.view == "FULL" and multi.val_split_names == single.val_split_names
    for split, (a, b) in zip(multi.test_split_names, zip(multi.test_dataloader(), single.test_dataloader(), strict=True), strict=True):  # fmt: skip
        ids, ids_b = [], []
        for x, y in zip(a, b, strict=True):
            assert set(x["views"]) == set(VIEWS)
            assert torch.equal(x["views"]["FG_C"], y["image"])  # same FG pixels, same order
            assert not torch.equal(x["views"]["FULL"], x["views"]["FG_C"])
            ids += x["id"]
            ids_b += y["id"]
        assert ids == ids_b == [r.image_id for r in multi.splits[split]]
    batch = next(iter(multi.train_dataloader()))  # shuffled, views together
    assert set(batch["views"]) == set(VIEWS) and len(batch["id"]) == len(batch["views"]["FG_C"])

    with pytest.raises(UserError, match="two or more different views"):
        MultiViewDataModule(SyntheticSpurious(root=str(synthetic_copy)), views=["FG_C"])


def test_views_of_model_and_data_must_agree(
    synthetic_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from tests.test_config_errors import cli_in_process
    from tests.test_errors import assert_one_message

    args = ["fit", *shared_args(synthetic_copy, tmp_path / "runs"),
            "--model.init_args.views", "[FG_C, FULL]"]  # fmt: skip
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "fit", "--model.init_args.views", "--data.init_args.views", "differ")


@pytest.mark.slow
def test_predict_writes_each_view_and_fuses(synthetic_copy: Path, tmp_path: Path) -> None:
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.logits import LogitsFile
    from tests.conftest import TINY, tiny_fit_args

    out = tmp_path / "runs"
    main(["fit", *shared_args(synthetic_copy, out), "--predict_after_fit", "true"])
    run = out / "tiny" / "SHARED" / "version_0"
    ds = SyntheticSpurious(root=str(synthetic_copy), **TINY)
    scored = json.loads((run / "test_metrics.json").read_text())
    for view in VIEWS:
        for split in SPLITS:
            lf = LogitsFile.load(run / "logits" / view / f"{split}.npz")
            assert lf.view == view and lf.split == split
            assert len(set(lf.ids)) == len(lf.ids)  # every sample once
            if split in TESTS:  # in the dataset's order
                assert list(lf.ids) == [r.image_id for r in ds.records(split)]
                acc = float(np.mean(lf.logits.argmax(1) == lf.labels))
                assert scored[f"{split}/{view}/acc"] == pytest.approx(acc)
                assert scored[f"{split}/{view}/num_samples"] == len(lf.ids) == 8
        assert not (run / "logits" / view / ".parts").exists()
    assert scored["test_id/acc"] == scored["test_id/FULL/acc"]  # the primary view (first)

    # classify's view model of one view of the shared run gives predict's logits of that view
    from occam_l2r.classify.models import ViewModel

    model = ViewModel("FULL", run, image_size=32)
    assert not model.exportable
    records = ds.records("test_id")
    got = model.logits([ds.read_image(r) for r in records])
    want = LogitsFile.load(run / "logits" / "FULL" / "test_id.npz").logits
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="gives no BG_S"):
        ViewModel("BG_S", run, image_size=32)

    # a separate FULL model's logits (random weights suffice) to fuse with the shared FG_C's
    separate = tmp_path / "separate_FULL"
    main(["predict", *tiny_fit_args(synthetic_copy, tmp_path / "sep"), "--trainer.logger", "false",
          "--data.init_args.view", "FULL", "--model.init_args.logits_dir", str(separate)])  # fmt: skip
    for name, full in {"shared": run / "logits" / "FULL", "mixed": separate}.items():
        cfg = {
            "runs": {"FG_C": [str(run / "logits" / "FG_C")], "FULL": [str(full)]},
            "output_dir": str(tmp_path / f"fusion_{name}"), "pairs": [["FG_C", "FULL"]],
            "methods": ["max_conf"], "test_splits": list(TESTS), "baseline": "FULL",
            "summary_methods": ["max_conf"],
        }  # fmt: skip
        (tmp_path / f"fuse_{name}.yaml").write_text(yaml.safe_dump(cfg))
        main(["fuse", "--config", str(tmp_path / f"fuse_{name}.yaml")])
        rows = [json.loads(line) for line in (tmp_path / f"fusion_{name}" / "results.jsonl").open()]
        assert any(r.get("method") == "max_conf" for r in rows), rows[:2]


@pytest.mark.slow
def test_two_processes_write_every_sample_once_per_view(tmp_path: Path) -> None:
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.logits import LogitsFile
    from tests.test_ddp import DDP, ODD

    root = tmp_path / "data"
    ds = SyntheticSpurious(root=str(root), **ODD)
    ds.prepare()
    args = ["fit", "--config", str(CONF), *DDP, "--predict_after_fit", "true",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "ddp")]  # fmt: skip
    for key, value in {"root": str(root), **ODD}.items():
        args += [f"--data.init_args.dataset.init_args.{key}", str(value)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.run([sys.executable, "-m", "occam_l2r", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "ddp" / "tiny" / "SHARED" / "version_0"
    scored = json.loads((run / "test_metrics.json").read_text())
    for split in TESTS:
        assert len(ds.records(split)) == 9  # 2 processes: the sampler pads to 10
        assert scored[f"{split}/num_samples"] == 9
        for view in VIEWS:
            assert scored[f"{split}/{view}/num_samples"] == 9
            lf = LogitsFile.load(run / "logits" / view / f"{split}.npz")
            assert list(lf.ids) == [r.image_id for r in ds.records(split)]
    for view in VIEWS:
        train = LogitsFile.load(run / "logits" / view / "train.npz")
        assert len(train.ids) == len(set(train.ids)) == 15
