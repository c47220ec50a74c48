"""The typed configuration of the ``report`` verb (the top-level keys of ``configs/*/report.yaml``).

:class:`ReportConfig` names a finished ``fuse`` output folder and the few choices the figures
need; everything else (the runs of each view, the fused pairs, the fitted parameters, the
tables) is read from that folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: ``full``: fused predictions of flagged samples are FULL's (as ``fuse``'s default); ``none``.
FallbackMode = Literal["full", "none"]
Metric = Literal["acc", "macro_acc"]


@dataclass
class ReportConfig:
    """A report of one experiment: the figures of L2R² for one ``fuse`` output folder.

    The class has no public methods or properties (the command line parses it as a whole:
    ``jsonargparse.CLI(ReportConfig)`` would take them for subcommands); see :func:`report_dir`.

    Attributes:
        fusion_dir: the ``output_dir`` of a finished ``fuse`` run (``results.jsonl``,
            ``metrics_long.csv``, the Markdown tables, ``weights/``, ``samples/``, ``topk/``).
        output_dir: where ``report.html`` and ``figures/*.png`` go; default
            ``<fusion_dir>/report``.
        title: the page title; default ``L2R² report: <fusion_dir>``.
        baseline: the single view that deltas are taken against (Fig. 12, the image grid).
        train_split: the split the learnt heads were trained on (left out of the figures).
        val_split: the split temperatures are fitted on and ⊕* is selected on.
        test_splits: the splits shown; default: every split of ``metrics_long.csv`` other than
            ``train_split`` and ``val_split``.
        select_metric: the validation metric of ⊕* (and of the accuracy figure); default: the
            dataset's headline metric stored in the logits files, else ``acc`` (as ``fuse``).
        fallback: as ``fuse``'s ``fallback``: recomputed fused predictions take FULL's
            prediction for flagged samples (``full``) or keep the fused one (``none``).
        fallback_view: the view whose runs give that prediction.
        reliability_split: the split of the reliability diagrams; default the first test split.
        n_bins: confidence bins of the reliability diagrams and of the ECE.
        grid_pair: the fused pair of the disagreement grid (``FG_C+BG_S``); default the first.
        grid_images: at most this many images per test split in the grid, sampled across the
            true classes.
        thumbnail_size: side of a grid thumbnail in pixels.
        dataset_root: the folder the logits' sample ids are relative to; default: the root of
            the dataset in the baseline run's ``config.yaml``.
        topk_runs: label -> run dir with top-k candidate rows, for Fig. 11's histogram (e.g.
            ``{OWL+SAM: ..., GDINO+SAM: ...}``); default: the FG run of ``fuse``'s top-k rows.
    """

    fusion_dir: str
    output_dir: str | None = None
    title: str | None = None
    baseline: str = "FULL"
    train_split: str = "train"
    val_split: str = "val"
    test_splits: list[str] | None = None
    select_metric: Metric | None = None
    fallback: FallbackMode = "full"
    fallback_view: str = "FULL"
    reliability_split: str | None = None
    n_bins: int = 15
    grid_pair: str | None = None
    grid_images: int = 16
    thumbnail_size: int = 96
    dataset_root: str | None = None
    topk_runs: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {self.n_bins}")
        if self.grid_images < 0 or self.thumbnail_size < 16:
            raise ValueError(
                f"grid_images must be >= 0 and thumbnail_size >= 16, got {self.grid_images} "
                f"and {self.thumbnail_size}"
            )


def report_dir(config: ReportConfig) -> Path:
    """The report folder: ``output_dir``, by default ``<fusion_dir>/report``."""
    return Path(config.output_dir) if config.output_dir else Path(config.fusion_dir) / "report"
