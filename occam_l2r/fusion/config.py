"""The typed configuration of the ``fuse`` verb (the top-level keys of ``configs/*/fusion.yaml``).

- :class:`SweepConfig`: runs, pairs, methods, splits, selection metric, fallback, tables;
  validated and completed with its defaults on construction.
- :class:`MetadataConfig`: the optional metadata prior rows (L2R² Table 4).
- :class:`TopKConfig`: the optional top-k candidate rows (L2R² appendix C.1, Tables 7 and 8);
  :func:`topk_runs` gives each seed's runs (the FULL run that prompted its candidates first).
- :class:`AcrossDatasets`: the optional Table 1 across datasets (other sweeps' outputs).

:func:`with_metrics` fills the metrics left to the dataset's headline metric. A configuration
that cannot run (a pair naming a view without runs, an unknown method, ...) raises
:class:`SweepConfigError`: one message naming the key, exit status 3 on the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from occam_l2r.errors import UserError
from occam_l2r.fusion.fallback import FallbackMode
from occam_l2r.fusion.fusers import HeadConfig, method_names, paper_method_names
from occam_l2r.fusion.methods import METRICS
from occam_l2r.fusion.pairs import default_pairs

Metric = Literal["acc", "macro_acc"]


class SweepConfigError(UserError, ValueError):
    """A ``fuse`` configuration that cannot run; the message names the key and the fix."""


#: Table 1 rows per pair when ``summary_methods`` is not given (``best`` is ⊕*).
DEFAULT_SUMMARY_METHODS = ("best", "max_conf", "weighted_logits", "threshold")


@dataclass
class MetadataConfig:
    """Metadata prior fusion rows (L2R² Table 4).

    Attributes:
        table: CSV or parquet file with one row per sample: an id column and metadata columns.
        fields: metadata columns to use (e.g. ``[habitat, substrate, month]``).
        id_column: the column holding the sample ids of the logits files.
        views: the image models to combine with the prior.
        smoothing: additive smoothing of the train counts.
    """

    table: str
    fields: list[str]
    id_column: str = "image_id"
    views: list[str] = field(default_factory=lambda: ["FULL", "FG_C"])
    smoothing: float = 1.0


@dataclass
class TopKConfig:
    """Top-k candidate fusion rows (L2R² appendix C.1, eq. 5; the bottom of Table 7, Table 8).

    Attributes:
        fg: the view of ``runs`` whose logits files hold one FG row per (sample, candidate),
            the prompted class in ``candidates`` (``predict`` with ``per_candidate``).
        bg: the same for BG (optional; without it only the FG and FULL ⊕ FG rows).
        full: the FULL view whose top-k predictions are the candidates.
        ks: the numbers of candidates tried; ``k`` is chosen on val for each row and seed (the
            caption of Figure 11). Values above the exported candidates are skipped.
        candidates_from: which FULL run's top-k are the candidates (and ``z_Full``) of each
            seed; it must be the run whose logits prompted the candidate store that the FG/BG
            runs were predicted on. An index into ``runs[full]`` (default 0: the paper's "the
            FULL model", one store prompted from FULL seed 0, as
            ``configs/segment/hard_imagenet_topk_*.yaml`` do; every seed's FG/BG runs are
            fused with that one FULL run), or ``each``: seed ``s`` uses FULL seed ``s`` (one
            candidate store per FULL seed, each seed's FG/BG runs predicted on its own store).
    """

    fg: str
    bg: str | None = None
    full: str = "FULL"
    ks: list[int] = field(default_factory=lambda: [1, 2, 3, 5])
    candidates_from: int | Literal["each"] = 0


@dataclass
class AcrossDatasets:
    """Table 1 across datasets: this sweep's summary beside other datasets' finished sweeps.

    Attributes:
        name: this dataset's name (its columns' header, e.g. ``Dogs``).
        others: dataset name -> ``output_dir`` of its finished ``fuse`` run (in column order).
    """

    name: str
    others: dict[str, str] = field(default_factory=dict)


@dataclass
class SweepConfig:
    """The fusion ablation: which runs, which pairs and methods, which splits and tables.

    On construction the optional fields get their defaults (``pairs``, ``methods``,
    ``test_splits``, ``summary_methods``, ``heads``, ... are never ``None`` afterwards) and the
    configuration is checked; a :class:`SweepConfigError` (a ``ValueError``) names the offending
    key. The class has no public
    methods (the command line parses it as a whole: ``jsonargparse.CLI(SweepConfig)``); helpers
    such as :func:`eval_splits` are module functions.

    Attributes:
        runs: view name (FULL, FG_C, BG_S, ...) -> run dirs, one per seed, in seed order.
        output_dir: where results.jsonl, the tables and the weights go.
        pairs: ``(input 1, input 2)`` view pairs; input 1 is the robust one (⊕R trusts it).
            Default: :func:`~occam_l2r.fusion.pairs.default_pairs` (the first FG view with FULL,
            then with every BG view).
        ensembles: views fused with themselves across seeds (``FULL`` -> FULL × 2).
        baseline: the view that Table 1 reports deltas against.
        methods: fusion methods; ⊕* selects among them. Default: the paper's methods, the rows
            of L2R²'s tables (:func:`~occam_l2r.fusion.fusers.paper_method_names`); a method
            outside the paper (``max_conf_cts``) runs, and joins ⊕*, only when named here.
        train_split: split the learnt heads are trained on (and metadata priors counted on).
        val_split: split temperatures, thresholds and α are fitted on; ⊕* selects on it.
        test_splits: evaluation splits (Table 1 has one column per split).
        select_metric: validation metric of the ⊕* selection, of the fitted ``t`` and ``α`` and
            of the learnt heads' epoch; default: the dataset's headline metric stored in the
            logits files by ``predict`` (``macro_acc`` for FungiTastic), else ``acc``.
        summary_metric: metric of the Table 1 summaries; default: as ``select_metric``.
        summary_methods: Table 1 rows per pair (``best`` is ⊕*).
        fallback: ``full``: every fused row takes the FULL model's prediction for the samples
            whose view fell back (the logits files' ``fallback`` flags; L2R² §3.1); ``none``:
            the fused prediction is kept for them.
        fallback_view: the view whose runs (same seed index) give that prediction.
        threshold_t: a manual ⊕R threshold ``t`` (§3.3); default: ``t`` fitted on val.
        report_train: also evaluate every row on ``train_split`` (Tables 12 and 14).
        heads: training settings of concat_fc and weighted_logits.
        metadata: optional metadata prior fusion rows.
        topk: optional top-k candidate fusion rows.
        across_datasets: optional Table 1 with a column per dataset and the mean.
        sample_reports: methods whose per-sample reports are written (samples/...csv).
    """

    runs: dict[str, list[str]]
    output_dir: str = "results/fusion"
    pairs: list[tuple[str, str]] | None = None
    ensembles: list[str] | None = None
    baseline: str = "FULL"
    methods: list[str] | None = None
    train_split: str = "train"
    val_split: str = "val"
    test_splits: list[str] | None = None
    select_metric: Metric | None = None
    summary_metric: Metric | None = None
    summary_methods: list[str] | None = None
    fallback: FallbackMode = "full"
    fallback_view: str = "FULL"
    threshold_t: float | None = None
    report_train: bool = False
    heads: HeadConfig | None = None
    metadata: MetadataConfig | None = None
    topk: TopKConfig | None = None
    across_datasets: AcrossDatasets | None = None
    sample_reports: list[str] | None = None

    def __post_init__(self) -> None:
        self.runs = {str(v): [str(r) for r in rs] for v, rs in (self.runs or {}).items()}
        pairs = self.pairs if self.pairs is not None else self._default_pairs()
        self.pairs = [(str(a), str(b)) for a, b in pairs]
        self.ensembles = list(self.ensembles if self.ensembles is not None else [])
        self.methods = list(self.methods if self.methods is not None else paper_method_names())
        self.test_splits = list(self.test_splits if self.test_splits is not None else ["test"])
        self.summary_methods = list(self.summary_methods or DEFAULT_SUMMARY_METHODS)
        self.heads = self.heads or HeadConfig()
        self.sample_reports = list(self.sample_reports or [])
        self._validate()

    def _default_pairs(self) -> list[tuple[str, str]]:
        return [(p.first, p.second) for p in default_pairs(image_views(self))]

    def _validate(self) -> None:
        if not self.runs:
            raise SweepConfigError(
                "`runs` is empty: give run dirs per view, e.g. {FULL: [dir_seed0]}"
            )
        known = method_names()
        unknown = [m for m in self.methods or [] if m not in known]
        if unknown:
            raise SweepConfigError(f"unknown fusion methods {unknown}; choose from {known}")
        ensembles = self.ensembles or []
        for view in [v for p in self.pairs or [] for v in p] + ensembles + [self.baseline]:
            if view not in self.runs:
                raise SweepConfigError(
                    f"view {view!r} is used in pairs/ensembles/baseline but has no runs; "
                    f"`runs` lists {list(self.runs)}: fix the name, or add its run dirs under "
                    f"`runs: {{{view}: [...]}}`"
                )
        for view in ensembles:
            if len(self.runs[view]) < 2:
                raise SweepConfigError(
                    f"ensemble {view}x2 needs runs of at least 2 seeds, {view} has "
                    f"{len(self.runs[view])}; add seeds or remove it from `ensembles`"
                )
        for view in self.metadata.views if self.metadata is not None else []:
            if view not in self.runs:
                raise SweepConfigError(
                    f"metadata view {view!r} has no runs; `runs` lists {list(self.runs)}: fix "
                    "the name in `metadata.views` or add its run dirs to `runs`"
                )
        if self.threshold_t is not None and not 0.0 <= self.threshold_t <= 1.0:
            raise SweepConfigError(
                f"threshold_t must lie in [0, 1] (a confidence), got {self.threshold_t}"
            )
        self._validate_topk()

    def _validate_topk(self) -> None:
        if self.topk is None:
            return
        k = self.topk
        for role, view in (("fg", k.fg), ("bg", k.bg), ("full", k.full)):
            if view is not None and view not in self.runs:
                raise SweepConfigError(f"topk.{role} view {view!r} has no runs; `runs` lists "
                                 f"{list(self.runs)}")  # fmt: skip
        if not k.ks or min(k.ks) < 1:
            raise SweepConfigError(f"topk.ks must list candidate counts >= 1, got {k.ks}")
        n_full = len(self.runs[k.full])
        if k.candidates_from != "each" and not 0 <= k.candidates_from < n_full:
            raise SweepConfigError(
                f"topk.candidates_from is {k.candidates_from}, but {k.full} has {n_full} runs: "
                f"give the index (0..{n_full - 1}) of the FULL run whose logits prompted the "
                "candidate store, or `each` (one store per FULL seed)"
            )
        used = {v for p in self.pairs or [] for v in p} | set(self.ensembles or [])
        clash = sorted(used & set(candidate_views(self)))
        if clash:
            raise SweepConfigError(
                f"views {clash} hold top-k candidate rows (topk.fg/bg); they cannot be fused "
                "pairwise or as ensembles: remove them from `pairs`/`ensembles`"
            )


def candidate_views(config: SweepConfig) -> list[str]:
    """The views of ``runs`` that hold top-k candidate rows (no single-model rows)."""
    if config.topk is None:
        return []
    return [v for v in (config.topk.fg, config.topk.bg) if v]


def topk_seeds(config: SweepConfig) -> int:
    """The number of top-k seeds: the FG (and BG) runs, and with ``candidates_from: each`` the
    FULL runs too (0 without ``topk``)."""
    k = config.topk
    if k is None:
        return 0
    views = [k.fg, *([k.bg] if k.bg else []), *([k.full] if k.candidates_from == "each" else [])]
    return min(len(config.runs[v]) for v in views)


def topk_runs(config: SweepConfig, seed: int) -> tuple[str, ...]:
    """The runs of top-k seed ``seed``: the FULL run whose top-k are its candidates
    (``topk.candidates_from``), then its FG (and BG) run."""
    k = config.topk
    assert k is not None
    full = seed if k.candidates_from == "each" else k.candidates_from
    return (config.runs[k.full][full], config.runs[k.fg][seed],
            *([config.runs[k.bg][seed]] if k.bg else []))  # fmt: skip


def topk_candidates_note(config: SweepConfig) -> str:
    """Which FULL run gave the candidates, as the top-k rows of the tables state it."""
    k = config.topk
    if k is None:
        return ""
    if k.candidates_from == "each":
        return f"candidates: each seed's own {k.full} top-k"
    return f"candidates: {k.full} seed {k.candidates_from}'s top-k for every seed"


def image_views(config: SweepConfig) -> list[str]:
    """The views of ``runs`` with one row per sample (single-model rows)."""
    return [v for v in config.runs if v not in candidate_views(config)]


def eval_splits(config: SweepConfig) -> list[str]:
    """The evaluated splits of a sweep: train (with ``report_train``), val, the test splits."""
    head = [config.train_split] if config.report_train else []
    return [*head, config.val_split, *(config.test_splits or [])]


def topk_splits(config: SweepConfig) -> list[str]:
    """The splits of the top-k rows: val and the test splits (no train column, as Table 7)."""
    return [config.val_split, *(config.test_splits or [])]


def with_metrics(config: SweepConfig, headline: str | None) -> SweepConfig:
    """``config`` with ``select_metric`` / ``summary_metric`` left ``None`` filled in.

    Args:
        config: the sweep.
        headline: the dataset's headline metric (from the logits files), ``None`` if unknown:
            then ``acc``.
    """
    if headline not in METRICS:
        headline = None  # e.g. worst-group accuracy: not a metric of the fusion tables
    select = config.select_metric or headline or "acc"
    summary = config.summary_metric or select
    if select == config.select_metric and summary == config.summary_metric:
        return config
    return dataclasses.replace(config, select_metric=select, summary_metric=summary)
