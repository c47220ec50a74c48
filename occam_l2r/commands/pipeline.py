"""The ``pipeline`` verb: segment → fit every view for every seed → predict → fuse → tables.

``python -m occam_l2r pipeline --config configs/synthetic/pipeline.yaml`` runs L2R² end to end on
the embedded benchmark (or any dataset whose per-view training configs are given):

1. ``segment``: the segmentation store (``segment_config``, parsed by the ``segment`` verb's
   parser and run with :func:`~occam_l2r.commands.segment.run_segment`; for ``gt`` it is also
   built on demand by the first fit);
2. ``fit`` each view's config(s) once per seed into ``<experiment_dir>/<view>/seed<k>/``: each
   :class:`Run` parses its files and ``fit_args`` once into a config object
   (:func:`~occam_l2r.commands.lightning.parse_config`), sets its seed, its logger and
   ``predict_after_fit`` on it (:meth:`Run.fit_config`) and runs it
   (:func:`~occam_l2r.commands.lightning.run`);
3. in that same ``fit``, ``predict`` with its best checkpoint: logits of train, val and every test
   split into ``<run>/logits/``, the test splits scored on the way (``test_metrics.json``, the
   metrics a test of the best checkpoint writes): one pass over each split;
4. ``fuse``: every fusion method on every pair, Table 9 / Table 1 style tables in
   ``<experiment_dir>/fusion/`` (:func:`occam_l2r.commands.fuse.fuse`), and the HTML report of
   those tables (:func:`occam_l2r.commands.report.report`).

Resumable: a run whose logits are all written is skipped; a run killed half-way is redone from
scratch; finished fusion cells are cached by ``fuse`` itself.

On a cluster, the (view, seed) runs are independent: ``--only FG_C/seed1`` (or ``--only FG_C``
for every seed of a view) runs some of them, ``--shard i/n`` runs every n-th run starting at
``i`` (a SLURM job array: ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``). A partial
run neither segments nor fuses; once every shard is done, the plain command finds every run
complete, skips them and fuses.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from occam_l2r.commands import run_function
from occam_l2r.errors import UserError
from occam_l2r.views import View, check_views, role_of

if TYPE_CHECKING:
    from jsonargparse import Namespace

#: the training seeds of the papers' tables (L2R² §4.2: "an average of five models with
#: different seeds"); the embedded pipeline config trains three.
PAPER_SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Run:
    """One (view, seed) training run: its config files and its folder.

    Attributes:
        view: the view the run trains on (a registered view, :data:`occam_l2r.views.VIEWS`).
        seed: the training seed.
        configs: the files that compose its training config (a base and a view overlay).
        folder: ``<experiment_dir>/<view>/seed<seed>``.
    """

    view: View
    seed: int
    configs: tuple[str, ...]
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.view}/seed{self.seed}"

    def fit_config(self, config: Namespace) -> Namespace:
        """A copy of the parsed ``config`` for this run's ``fit``: seeded with :attr:`seed`, its
        logger writing into :attr:`folder` (``save_dir``/``name``/``version``), then predicting
        every split with its best checkpoint into ``<folder>/logits`` (``predict_after_fit``;
        the test splits scored in that pass: ``test_metrics.json``)."""
        out = config.clone()
        out.seed_everything = self.seed
        out.predict_after_fit = True
        logger = out.trainer.get("logger")
        if not hasattr(logger, "init_args"):
            raise UserError(
                f"pipeline run {self.name}: its config's trainer.logger is {logger!r}; the "
                "pipeline writes each run into <experiment_dir>/<view>/seed<k> through the "
                "logger's save_dir/name/version, so give one logger class (the default "
                "TensorBoardLogger, or e.g. lightning.pytorch.loggers.CSVLogger)"
            )
        logger.init_args.save_dir = str(self.folder.parent.parent)
        logger.init_args.name = self.view
        logger.init_args.version = f"seed{self.seed}"
        return out


def plan_runs(views: dict[View, str | list[str]], seeds: list[int], out: Path) -> list[Run]:
    """Every (view, seed) run in a stable order: views as given, then seeds.

    Raises:
        UnknownViewError: a key of ``views`` is not a registered view
            (:func:`occam_l2r.views.check_views`).
    """
    check_views(views, setting="views")
    runs = []
    for view, configs in views.items():
        files = (configs,) if isinstance(configs, str) else tuple(configs)
        runs.extend(Run(view, s, files, out / view / f"seed{s}") for s in seeds)
    return runs


def select_runs(runs: list[Run], only: list[str] | None, shard: str | None) -> list[Run]:
    """The runs named by ``only`` (``VIEW`` or ``VIEW/seedK``), then slice ``i/n`` of them."""
    selected = runs
    if only:
        names = {r.name for r in runs} | {r.view for r in runs}
        unknown = [o for o in only if o not in names]
        if unknown:
            raise ValueError(
                f"--only {unknown}: no such run; runs are {[r.name for r in runs]} "
                "(a view name selects all its seeds)"
            )
        selected = [r for r in runs if r.name in only or r.view in only]
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard {shard!r}: write it as i/n, e.g. 0/4") from None
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {shard!r}: needs 0 <= i < n")
        selected = selected[i::n]
    return selected


def is_done(run: Path, splits: list[str]) -> bool:
    """A run is complete when its test metrics and the logits of every split are written."""
    return (
        all((run / "logits" / f"{s}.npz").is_file() for s in splits)
        and (run / "test_metrics.json").is_file()
    )


def train_and_export(run: Run, fit_args: list[str]) -> None:
    """``fit`` one run from the config object parsed from its files and ``fit_args``; the fit
    ends with one pass over every split with its best checkpoint (logits into ``<run>/logits``,
    the test splits scored into ``test_metrics.json``)."""
    from occam_l2r.commands import lightning

    config = lightning.parse_config(run.configs, fit_args)
    cli = lightning.run("fit", run.fit_config(config))
    callback = cli.trainer.checkpoint_callback
    best = callback.best_model_path or callback.last_model_path if callback else ""
    if not best:
        (run.folder / "test_metrics.json").unlink(missing_ok=True)  # the run is not complete
        raise RuntimeError(f"the fit of {run.name} saved no checkpoint; see its log above")


def pipeline(
    views: dict[View, str | list[str]],
    seeds: list[int] | None = None,
    experiment_dir: str = "checkpoints/pipeline",
    segment_config: str | None = None,
    fit_args: list[str] | None = None,
    test_splits: list[str] | None = None,
    pairs: list[tuple[str, str]] | None = None,
    ensembles: list[str] | None = None,
    summary_metric: Literal["acc", "macro_acc"] | None = None,
    only: list[str] | None = None,
    shard: str | None = None,
) -> dict | None:
    """Run the whole L2R² pipeline (or some of its runs).

    Args:
        views: view name -> its training config, or a list of configs that compose (a base and
            a view overlay: ``[configs/synthetic/base.yaml, configs/synthetic/views/fg.yaml]``).
        seeds: training seeds; each view is trained once per seed (default: the papers' five,
            :data:`PAPER_SEEDS`).
        experiment_dir: root of the runs and of the fusion tables.
        segment_config: config of ``python -m occam_l2r segment`` run first (optional).
        fit_args: extra command-line overrides for every fit/predict (``--trainer.max_epochs 4``).
        test_splits: the test splits of the dataset (for the completeness check and the tables).
        pairs: fusion pairs (input 1 is the robust one); default
            :func:`occam_l2r.fusion.pairs.default_pairs`: the FG view with FULL, then with BG.
        ensembles: views fused with themselves across seeds (needs two seeds or more).
        summary_metric: ``acc`` or ``macro_acc`` in the Table 1 summary (default: the dataset's
            headline metric, which ``fuse`` reads from the logits files; it also selects ⊕*).
        only: run only these runs: ``VIEW/seedK`` or ``VIEW`` (all its seeds); no fusion.
        shard: run only slice ``i/n`` of the (selected) runs, in a stable order; no fusion.

    Returns:
        ``fuse``'s result (paths of the tables, cell counts), or ``None`` for a partial run.
    """
    seeds = list(seeds) if seeds is not None else list(PAPER_SEEDS)
    test_splits = list(test_splits or ["test_id", "test_shift", "test_random"])
    out = Path(experiment_dir)
    splits = ["train", "val", *test_splits]
    start = time.perf_counter()
    runs = plan_runs(views, seeds, out)
    partial = bool(only or shard)
    selected = select_runs(runs, only, shard)
    if segment_config and not partial:
        from occam_l2r.commands import segment

        segment.run_segment(segment.parse_config([segment_config]))
    for run in selected:
        if is_done(run.folder, splits):
            print(f"pipeline: {run.folder} is complete, skipped")
            continue
        if run.folder.exists():
            print(f"pipeline: {run.folder} is incomplete (interrupted run), redoing it")
            shutil.rmtree(run.folder)
        t0 = time.perf_counter()
        train_and_export(run, list(fit_args or []))
        print(f"pipeline: {run.name} trained and exported in {time.perf_counter() - t0:.0f} s")
    if partial:
        left = [r.name for r in runs if not is_done(r.folder, splits)]
        print(
            f"pipeline: {len(selected)} of {len(runs)} runs handled in "
            f"{time.perf_counter() - start:.0f} s; {len(left)} not complete yet"
            + (f" ({', '.join(left)})" if left else "")
            + ". Once all are, run the pipeline without --only/--shard to fuse."
        )
        return None
    return _fuse(views, runs, seeds, out, test_splits, pairs, ensembles, summary_metric, start)


def _fuse(
    views: dict[View, str | list[str]],
    runs: list[Run],
    seeds: list[int],
    out: Path,
    test_splits: list[str],
    pairs: list[tuple[str, str]] | None,
    ensembles: list[str] | None,
    summary_metric: Literal["acc", "macro_acc"] | None,
    start: float,
) -> dict:
    from occam_l2r.commands.fuse import fuse
    from occam_l2r.fusion.config import SweepConfig
    from occam_l2r.fusion.pairs import default_pairs

    if pairs is None:
        pairs = [(p.first, p.second) for p in default_pairs(views)]
    if ensembles is None:
        ensembles = (
            [v for v in views if role_of(v) in ("full", "foreground")] if len(seeds) > 1 else []
        )
    run_dirs: dict[str, list[str]] = {}
    for run in runs:
        run_dirs.setdefault(run.view, []).append(str(run.folder))
    result = fuse(
        SweepConfig(
            runs=run_dirs,
            output_dir=str(out / "fusion"),
            pairs=pairs,
            ensembles=ensembles,
            test_splits=test_splits,
            summary_metric=summary_metric,
        )
    )
    summary = Path(result["summary"]).with_suffix(".md")
    if summary.is_file():
        print(summary.read_text())
    from occam_l2r.commands.report import ReportConfig, report

    result["report"] = report(ReportConfig(fusion_dir=str(out / "fusion")))["html"]
    print(
        f"pipeline finished in {time.perf_counter() - start:.0f} s; tables in {out / 'fusion'}, "
        f"report {result['report']}"
    )
    return result


def main(argv: list[str] | None = None) -> dict | None:
    """``python -m occam_l2r pipeline --config FILE`` (``--print_config`` and ``--help`` work)."""
    return run_function(pipeline, argv, prog="python -m occam_l2r pipeline")
