"""The fusion sweep's configuration and its plan of typed cells.

- :class:`SweepConfig`: what the ``fuse`` verb reads (top-level keys of
  ``configs/<dataset>/fusion.yaml``), validated and completed with its defaults on construction.
- :class:`MetadataConfig`: the optional metadata prior rows (L2R² Table 4).
- :class:`Cell`: one unit of work, a (kind, views, method, seed) and the runs it reads.
- :func:`plan`: every cell of a sweep, in table order; :func:`eval_splits`: its splits.

The cells are run by :mod:`occam_l2r.fusion.runner` and tabulated by
:mod:`occam_l2r.fusion.outputs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from occam_l2r.fusion.fusers import LEARNT_METHODS, METHOD_LABELS, HeadConfig

Metric = Literal["acc", "macro_acc"]
CellKind = Literal["single", "pair", "ensemble", "metadata"]

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
class SweepConfig:
    """The fusion ablation: which runs, which pairs and methods, which splits and tables.

    On construction the optional fields get their defaults (``pairs``, ``methods``,
    ``test_splits``, ``summary_methods``, ``heads``, ... are never ``None`` afterwards) and the
    configuration is checked; a ``ValueError`` names the offending key. The class has no public
    methods (the command line parses it as a whole: ``jsonargparse.CLI(SweepConfig)``); helpers
    such as :func:`eval_splits` are module functions.

    Attributes:
        runs: view name (FULL, FG_C, BG_S, ...) -> run dirs, one per seed, in seed order.
        output_dir: where results.jsonl, the tables and the weights go.
        pairs: ``(input 1, input 2)`` view pairs; input 1 is the robust one (⊕R trusts it).
            Default: the first FG view with every BG view and FULL.
        ensembles: views fused with themselves across seeds (``FULL`` -> FULL × 2).
        baseline: the view that Table 1 reports deltas against.
        methods: fusion methods (default: all, see ``METHOD_LABELS``).
        train_split: split the learnt heads are trained on (and metadata priors counted on).
        val_split: split temperatures, thresholds and α are fitted on; ⊕* selects on it.
        test_splits: evaluation splits (Table 1 has one column per split).
        select_metric: validation metric of the ⊕* selection.
        summary_metric: metric of the Table 1 summary (``macro_acc`` for imbalanced data).
        summary_methods: Table 1 rows per pair (``best`` is ⊕*).
        heads: training settings of concat_fc and weighted_logits.
        metadata: optional metadata prior fusion rows.
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
    select_metric: Metric = "acc"
    summary_metric: Metric = "acc"
    summary_methods: list[str] | None = None
    heads: HeadConfig | None = None
    metadata: MetadataConfig | None = None
    sample_reports: list[str] | None = None

    def __post_init__(self) -> None:
        self.runs = {str(v): [str(r) for r in rs] for v, rs in (self.runs or {}).items()}
        pairs = self.pairs if self.pairs is not None else self._default_pairs()
        self.pairs = [(str(a), str(b)) for a, b in pairs]
        self.ensembles = list(self.ensembles if self.ensembles is not None else [])
        self.methods = list(self.methods if self.methods is not None else METHOD_LABELS)
        self.test_splits = list(self.test_splits if self.test_splits is not None else ["test"])
        self.summary_methods = list(self.summary_methods or DEFAULT_SUMMARY_METHODS)
        self.heads = self.heads or HeadConfig()
        self.sample_reports = list(self.sample_reports or [])
        self._validate()

    def _default_pairs(self) -> list[tuple[str, str]]:
        fg = [v for v in self.runs if v.startswith("FG")]
        other = [v for v in self.runs if v.startswith("BG")] + [v for v in self.runs if v == "FULL"]
        return [(f, o) for f in fg[:1] for o in other]

    def _validate(self) -> None:
        if not self.runs:
            raise ValueError("`runs` is empty: give run dirs per view, e.g. {FULL: [dir_seed0]}")
        unknown = [m for m in self.methods or [] if m not in METHOD_LABELS]
        if unknown:
            raise ValueError(f"unknown fusion methods {unknown}; choose from {list(METHOD_LABELS)}")
        ensembles = self.ensembles or []
        for view in [v for p in self.pairs or [] for v in p] + ensembles + [self.baseline]:
            if view not in self.runs:
                raise ValueError(
                    f"view {view!r} is used in pairs/ensembles/baseline but has no runs; "
                    f"`runs` lists {list(self.runs)}"
                )
        for view in ensembles:
            if len(self.runs[view]) < 2:
                raise ValueError(
                    f"ensemble {view}x2 needs runs of at least 2 seeds, {view} has "
                    f"{len(self.runs[view])}; add seeds or remove it from `ensembles`"
                )
        for view in self.metadata.views if self.metadata is not None else []:
            if view not in self.runs:
                raise ValueError(f"metadata view {view!r} has no runs in `runs`")


def eval_splits(config: SweepConfig) -> list[str]:
    """The evaluated splits of a sweep: validation, then the test splits."""
    return [config.val_split, *(config.test_splits or [])]


@dataclass(frozen=True)
class Cell:
    """One unit of work: a (kind, views, method, seed) and the runs it reads.

    Attributes:
        kind: ``single`` (one model), ``pair`` (two views of the same seed index), ``ensemble``
            (one view, seeds ``s`` and ``s+1``) or ``metadata`` (one model and a metadata prior).
        views: the input views: one for ``single`` and ``metadata``, two otherwise (the same
            view twice for an ensemble).
        method: a key of ``METHOD_LABELS`` for fused cells, ``model`` for single ones and
            ``prior`` for metadata ones.
        seed: the seed index of the cell (of input 1 for an ensemble).
        runs: the run dirs read, one per input.
        settings: the settings that change the result (head training settings, metadata field
            and options); part of the cell's fingerprint.
    """

    kind: CellKind
    views: tuple[str, ...]
    method: str
    seed: int
    runs: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def name(self) -> str:
        """Display name, the ``name`` of the tables and ``results.jsonl``.

        ``FULL``, ``FG_C+BG_S`` (pair), ``FG_Cx2`` (ensemble), ``FG_C + habitat`` (metadata).
        """
        if self.kind == "pair":
            return "+".join(self.views)
        if self.kind == "ensemble":
            return f"{self.views[0]}x2"
        if self.kind == "metadata":
            return f"{self.views[0]} + {self.settings['field']}"
        return self.views[0]

    @property
    def cell_id(self) -> str:
        """The key of the cell in ``results.jsonl``."""
        return f"{self.kind}|{self.name}|{self.method}|seed{self.seed}"

    @property
    def group(self) -> tuple[str, str, int]:
        """Cells of one group share their inputs: fused methods of a (pair, seed) fit together."""
        return (self.kind, self.name, self.seed)

    @property
    def input_labels(self) -> tuple[str, str]:
        """Names of the two inputs in reports and messages (``X`` and ``X_b`` for an ensemble)."""
        if self.kind == "pair":
            return self.views[0], self.views[1]
        return self.name, f"{self.name}_b"

    @property
    def needs_train(self) -> bool:
        """Whether the cell reads the train split (learnt heads, metadata priors)."""
        return self.kind == "metadata" or self.method in LEARNT_METHODS


def plan(config: SweepConfig) -> list[Cell]:
    """All cells of the sweep, in table order.

    Single views (every seed), metadata rows, then every method on every pair (runs of the same
    seed index) and ensemble (seed ``s`` with ``s+1``; only seed 0 with two seeds).
    """
    cells: list[Cell] = []
    for view, rs in config.runs.items():
        cells += [Cell("single", (view,), "model", s, (r,)) for s, r in enumerate(rs)]
    if config.metadata is not None:
        md = asdict(config.metadata)
        for fld in config.metadata.fields:
            for view in config.metadata.views:
                cells += [
                    Cell("metadata", (view,), "prior", s, (r,), {**md, "field": fld})
                    for s, r in enumerate(config.runs[view])
                ]
    heads = asdict(config.heads or HeadConfig())
    groups: list[tuple[CellKind, str, str, int]] = [
        ("pair", a, b, 0) for a, b in config.pairs or []
    ]
    groups += [("ensemble", v, v, 1) for v in config.ensembles or []]
    for kind, a, b, shift in groups:
        n = min(len(config.runs[a]), len(config.runs[b]))
        seeds = range(1) if (shift and n == 2) else range(n)
        for s in seeds:
            runs = (config.runs[a][s], config.runs[b][(s + shift) % n])
            for m in config.methods or []:
                settings = heads if m in LEARNT_METHODS else {}
                cells.append(Cell(kind, (a, b), m, s, runs, dict(settings)))
    return cells
