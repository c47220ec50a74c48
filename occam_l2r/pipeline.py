"""The ``pipeline`` verb: segment → fit every view for every seed → predict → fuse → tables.

``python -m occam_l2r pipeline --config configs/synthetic/pipeline.yaml`` runs L2R² end to end on
the embedded benchmark (or any dataset whose per-view training configs are given):

1. ``segment``: the segmentation store (``segment_config``; for ``gt`` it is also built on
   demand by the first fit);
2. ``fit`` each view's config once per seed into ``<experiment_dir>/<view>/seed<k>/`` (then test);
3. ``predict`` with the best checkpoint: logits of train, val and every test split into
   ``<run>/logits/``;
4. ``fuse``: every fusion method on every pair, Table 9 / Table 1 style tables in
   ``<experiment_dir>/fusion/``.

Resumable: a run whose logits are all written is skipped; a run killed half-way is redone from
scratch; finished fusion cells are cached by ``fuse`` itself.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from occam_l2r.cli import main as cli_main

log = logging.getLogger(__name__)


def _best_checkpoint(run: Path) -> Path:
    ckpts = sorted((run / "checkpoints").glob("epoch=*.ckpt"))
    if not ckpts:
        last = run / "checkpoints" / "last.ckpt"
        if last.is_file():
            return last
        raise FileNotFoundError(
            f"no checkpoint in {run / 'checkpoints'}; the fit of this run did not finish"
        )
    return ckpts[-1]


def _done(run: Path, splits: list[str]) -> bool:
    return (
        all((run / "logits" / f"{s}.npz").is_file() for s in splits)
        and (run / "test_metrics.json").is_file()
    )


def pipeline(
    views: dict[str, str],
    seeds: list[int] | None = None,
    experiment_dir: str = "checkpoints/pipeline",
    segment_config: str | None = None,
    fit_args: list[str] | None = None,
    test_splits: list[str] | None = None,
    pairs: list[tuple[str, str]] | None = None,
    ensembles: list[str] | None = None,
    summary_metric: str = "acc",
) -> dict:
    """Run the whole L2R² pipeline.

    Args:
        views: view name -> its training config (``{FULL: configs/synthetic/full.yaml, ...}``).
        seeds: training seeds; each view is trained once per seed.
        experiment_dir: root of the runs and of the fusion tables.
        segment_config: config of ``python -m occam_l2r segment`` run first (optional).
        fit_args: extra command-line overrides for every fit/predict (``--trainer.max_epochs 4``).
        test_splits: the test splits of the dataset (for the completeness check and the tables).
        pairs: fusion pairs (input 1 is the robust one); default FG with BG and FG with FULL.
        ensembles: views fused with themselves across seeds (needs two seeds or more).
        summary_metric: ``acc`` or ``macro_acc`` in the Table 1 summary.
    """
    seeds = list(seeds) if seeds is not None else [0, 1]
    fit_args = list(fit_args or [])
    test_splits = list(test_splits or ["test_id", "test_shift", "test_random"])
    out = Path(experiment_dir)
    splits = ["train", "val", *test_splits]
    start = time.perf_counter()
    if segment_config:
        cli_main(["segment", "--config", segment_config])
    runs: dict[str, list[str]] = {}
    for view, config in views.items():
        for seed in seeds:
            run = out / view / f"seed{seed}"
            runs.setdefault(view, []).append(str(run))
            if _done(run, splits):
                print(f"pipeline: {run} is complete, skipped")
                continue
            if run.exists():
                print(f"pipeline: {run} is incomplete (interrupted run), redoing it")
                shutil.rmtree(run)
            t0 = time.perf_counter()
            common = ["--config", config, *fit_args]
            cli_main(
                ["fit", *common, "--seed_everything", str(seed),
                 "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", view,
                 "--trainer.logger.init_args.version", f"seed{seed}"]
            )  # fmt: skip
            cli_main(
                ["predict", *common, "--ckpt_path", str(_best_checkpoint(run)), "--trainer.logger", "false",
                 "--trainer.default_root_dir", str(run / "predict"), "--model.init_args.logits_dir", str(run / "logits")]
            )  # fmt: skip
            print(
                f"pipeline: {view} seed {seed} trained and exported in {time.perf_counter() - t0:.0f} s"
            )
    from occam_l2r.fusion.ablation import fuse

    default_pairs = None
    if pairs is None:
        fg = next((v for v in views if v.startswith("FG")), None)
        others = [v for v in views if v != fg and (v.startswith("BG") or v == "FULL")]
        default_pairs = [(fg, o) for o in others] if fg else None
    if ensembles is None:
        ensembles = (
            [v for v in views if v == "FULL" or v.startswith("FG")] if len(seeds) > 1 else []
        )
    result = fuse(
        runs=runs,
        output_dir=str(out / "fusion"),
        pairs=pairs or default_pairs,
        ensembles=ensembles,
        test_splits=test_splits,
        summary_metric=summary_metric,  # type: ignore[arg-type]
    )
    summary = Path(result["summary"]).with_suffix(".md")
    if summary.is_file():
        print(summary.read_text())
    print(f"pipeline finished in {time.perf_counter() - start:.0f} s; tables in {out / 'fusion'}")
    return result


def main(argv: list[str] | None = None) -> dict:
    """``python -m occam_l2r pipeline --config FILE`` (jsonargparse; ``--print_config`` works)."""
    from jsonargparse import CLI

    return CLI(pipeline, args=argv, as_positional=False, prog="python -m occam_l2r pipeline")
