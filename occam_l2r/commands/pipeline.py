"""The ``pipeline`` verb: segment → fit every view for every seed → predict → fuse → tables.

``python -m occam_l2r pipeline --config configs/synthetic/pipeline.yaml`` runs L2R² end to end on
the embedded benchmark (or any dataset whose per-view training configs are given):

1. ``segment``: the segmentation store (``segment_config``, parsed by the ``segment`` verb's
   parser and run with :func:`~occam_l2r.commands.segment.run_segment`; for ``gt`` it is also
   built on demand by the first fit);
2. ``fit`` each view's config(s) once per seed into ``<experiment_dir>/<view>/seed<k>/`` (a
   shared-backbone run of ``shared:``, one model giving several views, into
   ``<experiment_dir>/<VIEW+VIEW>/seed<k>/``, its logits in ``logits/<view>/``; a view's config
   may be a probe's, a head on frozen features: docs/cheaper.md): each
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
    """One training run of one seed: its config files, its folder and the views it gives.

    A separate model gives one view; a shared-backbone model (``shared:`` of the pipeline,
    :class:`~occam_l2r.tasks.shared.SharedBackboneTask`) gives several from one run.

    Attributes:
        views: the views the run's logits are of (registered views,
            :data:`occam_l2r.views.VIEWS`); one for a separate model.
        seed: the training seed.
        configs: the files that compose its training config (a base and a view overlay).
        folder: ``<experiment_dir>/<label>/seed<seed>``.
    """

    views: tuple[View, ...]
    seed: int
    configs: tuple[str, ...]
    folder: Path

    @property
    def label(self) -> str:
        """``FULL``, or ``FULL+FG_C`` for a shared run: its folder and ``--only`` name."""
        return "+".join(self.views)

    @property
    def name(self) -> str:
        return f"{self.label}/seed{self.seed}"

    def logits_dir(self, view: View) -> Path:
        """Where ``predict`` writes the logits of ``view``: ``<folder>/logits`` for a separate
        model, ``<folder>/logits/<view>`` for a shared one."""
        if view not in self.views:
            raise KeyError(f"run {self.name} gives no view {view!r}")
        logits = self.folder / "logits"
        return logits if len(self.views) == 1 else logits / view

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
        logger.init_args.name = self.label
        logger.init_args.version = f"seed{self.seed}"
        return out


def shared_views(label: str) -> tuple[View, ...]:
    """The views of a ``shared:`` key (``FULL+FG_C``), checked once.

    Raises:
        UnknownViewError: a part is not a registered view.
        UserError: fewer than two views.
    """
    views = tuple(check_views([v.strip() for v in label.split("+")], setting="shared"))
    if len(views) < 2 or len(set(views)) != len(views):
        raise SharedRunError(
            f"shared: {label!r}: a shared-backbone run gives two or more different views, "
            "written VIEW+VIEW (FULL+FG_C)"
        )
    return views


class SharedRunError(UserError, ValueError):
    """A ``shared:`` entry that is not two or more views, or a view given twice."""


def plan_runs(
    views: dict[View, str | list[str]],
    seeds: list[int],
    out: Path,
    shared: dict[str, str | list[str]] | None = None,
) -> list[Run]:
    """Every run in a stable order: the separate views as given, then the shared runs, each
    for every seed.

    Raises:
        UnknownViewError: a key of ``views`` (or a part of a ``shared`` key) is not a
            registered view (:func:`occam_l2r.views.check_views`).
        SharedRunError: a view given by two runs (in ``views`` and a shared run, or two
            shared runs), or a ``shared`` key of fewer than two views.
    """
    check_views(views, setting="views")
    plans = [((view,), configs) for view, configs in views.items()]
    plans += [(shared_views(label), configs) for label, configs in (shared or {}).items()]
    given: dict[str, str] = {}
    runs = []
    for run_views, configs in plans:
        label = "+".join(run_views)
        for view in run_views:
            if view in given:
                raise SharedRunError(
                    f"view {view} is given by both {given[view]!r} and {label!r} of the "
                    "pipeline; each view comes from one run (a separate model in views:, or a "
                    "shared one in shared:)"
                )
            given[view] = label
        files = (configs,) if isinstance(configs, str) else tuple(configs)
        runs.extend(Run(run_views, s, files, out / label / f"seed{s}") for s in seeds)
    return runs


def select_runs(runs: list[Run], only: list[str] | None, shard: str | None) -> list[Run]:
    """The runs named by ``only`` (``VIEW`` or ``VIEW/seedK``), then slice ``i/n`` of them."""
    selected = runs
    if only:
        names = {r.name for r in runs} | {r.label for r in runs}
        unknown = [o for o in only if o not in names]
        if unknown:
            raise ValueError(
                f"--only {unknown}: no such run; runs are {[r.name for r in runs]} "
                "(a view name selects all its seeds)"
            )
        selected = [r for r in runs if r.name in only or r.label in only]
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard {shard!r}: write it as i/n, e.g. 0/4") from None
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"--shard {shard!r}: needs 0 <= i < n")
        selected = selected[i::n]
    return selected


def is_done(run: Run, splits: list[str]) -> bool:
    """A run is complete when its test metrics and the logits of every split (of every view it
    gives) are written."""
    return (
        all((run.logits_dir(v) / f"{s}.npz").is_file() for v in run.views for s in splits)
        and (run.folder / "test_metrics.json").is_file()
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
    shared: dict[str, str | list[str]] | None = None,
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
        shared: shared-backbone runs, ``VIEW+VIEW`` (``FULL+FG_C``) -> the training config(s) of
            one model giving both views (:class:`~occam_l2r.tasks.shared.SharedBackboneTask`;
            ``configs/synthetic/shared_full_fg.yaml``); a view comes either from ``views`` or
            from one shared run. Their logits are fused as the views' (FULL and FG_C of the
            tables). ``views`` may also name probe configs (a head on frozen features,
            ``configs/synthetic/probe/clip.yaml`` + a view overlay): any ``fit`` config that
            writes the view's logits is a run of the view.

    Returns:
        ``fuse``'s result (paths of the tables, cell counts), or ``None`` for a partial run.
    """
    seeds = list(seeds) if seeds is not None else list(PAPER_SEEDS)
    test_splits = list(test_splits or ["test_id", "test_shift", "test_random"])
    out = Path(experiment_dir)
    splits = ["train", "val", *test_splits]
    start = time.perf_counter()
    runs = plan_runs(views, seeds, out, shared)
    partial = bool(only or shard)
    selected = select_runs(runs, only, shard)
    if segment_config and not partial:
        from occam_l2r.commands import segment

        segment.run_segment(segment.parse_config([segment_config]))
    for run in selected:
        if is_done(run, splits):
            print(f"pipeline: {run.folder} is complete, skipped")
            continue
        if run.folder.exists():
            print(f"pipeline: {run.folder} is incomplete (interrupted run), redoing it")
            shutil.rmtree(run.folder)
        t0 = time.perf_counter()
        train_and_export(run, list(fit_args or []))
        print(f"pipeline: {run.name} trained and exported in {time.perf_counter() - t0:.0f} s")
    if partial:
        left = [r.name for r in runs if not is_done(r, splits)]
        print(
            f"pipeline: {len(selected)} of {len(runs)} runs handled in "
            f"{time.perf_counter() - start:.0f} s; {len(left)} not complete yet"
            + (f" ({', '.join(left)})" if left else "")
            + ". Once all are, run the pipeline without --only/--shard to fuse."
        )
        return None
    every = [v for r in runs if r.seed == runs[0].seed for v in r.views]  # in run order
    return _fuse(every, runs, seeds, out, test_splits, pairs, ensembles, summary_metric, start)


def _fuse(
    views: list[View],
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
        for view in run.views:
            # a separate run by its folder (as fuse and the report were always given it), a
            # shared run's view by its logits folder
            where = run.folder if len(run.views) == 1 else run.logits_dir(view)
            run_dirs.setdefault(view, []).append(str(where))
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
