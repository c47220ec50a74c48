"""The state the report's sections share: :class:`ReportBuilder` (the config, ``fuse``'s outputs,
the loaded logits, the page, the fused predictions it recomputed and checked).

The sections (:mod:`occam_l2r.reporting.sections`, :mod:`occam_l2r.reporting.fused_sections`)
take one; :func:`occam_l2r.reporting.build.write_report` makes it and runs them in order.

:func:`write_report` reads a finished ``fuse`` output folder (:mod:`occam_l2r.reporting.sources`)
and adds, in order, the sections of :mod:`occam_l2r.reporting.sections`: ``fuse``'s own tables
(the same cells as its Markdown files), the metric per split and method with error bars over
seeds, reliability diagrams before/after temperature scaling per view, the weighted-logits
weights per class (L2R² Fig. 8), per-class accuracy changes against FULL (Fig. 12), the
fallback rates and the top-k detection histogram (Fig. 11), and the test images where the fusion
and FULL disagree. A section whose inputs are missing (no weighted-logits rows, no top-k rows,
moved run folders, no dataset images) says so in the page instead of failing the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from occam_l2r.errors import UserError
from occam_l2r.fusion.fusers import REGISTRY, method_labels
from occam_l2r.fusion.inputs import LogitsCache, headline_metric
from occam_l2r.fusion.methods import METRICS
from occam_l2r.html_page import Page
from occam_l2r.logits import LogitsFileError
from occam_l2r.reporting.config import ReportConfig, report_dir
from occam_l2r.reporting.predictions import FusedSplit, fused_split, reproducible
from occam_l2r.reporting.sources import FuseOutputs

#: what a section may meet and report in the page: missing or unreadable files
SECTION_ERRORS: tuple[type[Exception], ...] = (UserError, LogitsFileError, OSError)


class ReportBuilder:
    """The state the sections share: the config, ``fuse``'s outputs, loaded logits, the page.

    Args:
        config: the report's configuration.
    """

    def __init__(self, config: ReportConfig) -> None:
        self.config = config
        self.outputs = FuseOutputs.load(config.fusion_dir)
        self.out = report_dir(config)
        self.figures = self.out / "figures"
        self.out.mkdir(parents=True, exist_ok=True)
        self.cache = LogitsCache(size=None)
        self.page = Page(config.title or f"L2R² report: {config.fusion_dir}", self.out)
        self.runs = self.outputs.runs()
        skip = {config.train_split, config.val_split}
        self.test_splits = list(
            config.test_splits or [s for s in self.outputs.splits() if s not in skip]
        )
        self.metric = config.select_metric or self._headline() or "acc"
        self.best = self.outputs.best(config.val_split, self.metric)
        self.notes: list[str] = []
        self.checks: list[tuple[str, str, bool]] = []
        self._fused: dict[tuple[str, str], FusedSplit | None] = {}

    def _headline(self) -> str | None:
        runs = [r for rs in self.runs.values() for r in rs]
        try:
            found = headline_metric(runs, self.config.val_split) if runs else None
        except SECTION_ERRORS:
            return None
        return found if found in METRICS else None

    def require_runs(self) -> dict[str, list[str]]:
        """The runs of every view; raises when ``results.jsonl`` names none."""
        if not self.runs:
            raise FusedUnavailableError(
                f"{self.outputs.folder / 'results.jsonl'} names no single-model runs (missing "
                "or from another sweep); run `fuse` again to rewrite it"
            )
        return self.runs

    def seeds_of(self, view: str) -> list[str]:
        """The run dirs of a view (empty when ``fuse`` had none)."""
        return self.runs.get(view, [])

    def fallback_run(self, seed: int) -> str | None:
        """The FULL run of a seed index whose predictions flagged samples take."""
        runs = self.seeds_of(self.config.fallback_view)
        if self.config.fallback != "full" or not runs:
            return None
        return runs[seed % len(runs)]

    def chosen_method(self, name: str) -> tuple[str, str]:
        """The method shown for a fused row and why: ⊕* when its predictions can be had,
        otherwise the best method on validation that can (``concat_fc`` without sample reports
        cannot)."""
        m = self.outputs.metrics
        val = m[(m.name == name) & (m.split == self.config.val_split) & (m.metric == self.metric)]
        order = {x: i for i, x in enumerate(REGISTRY)}
        labels = method_labels()
        ranked = sorted(
            (x for x in val.method if x != "oracle"),
            key=lambda x: (-float(val[val.method == x]["mean"].iloc[0]), order.get(x, 99)),
        )
        star = list(self.best.get(name, ()))
        for method in [*star, *ranked]:
            recs = self.outputs.cells(name=name, method=method)
            if recs and all(reproducible(r, self.outputs.folder) for r in recs):
                label = labels.get(method, method)
                names = ", ".join(labels.get(x, x) for x in star)
                if method not in star:
                    why = (
                        f"the best on {self.config.val_split} with saved parameters; ⊕* is {names}"
                    )
                else:
                    why = "⊕*" + (f", tied with {names}" if len(star) > 1 else "")
                return method, f"{label} ({why})"
        raise FusedUnavailableError(
            f"no method of {name} can be reproduced from {self.outputs.folder} (⊕* {star}); "
            "list it under `sample_reports` in the fuse config and run fuse again"
        )

    def fused(self, record: dict[str, Any], split: str) -> FusedSplit | None:
        """A fused cell's predictions on ``split`` (memoised; checked against ``fuse``)."""
        key = (record["cell"], split)
        if key not in self._fused:
            res = fused_split(self.cache, self.outputs.folder, record, split,
                              self.fallback_run(int(record["seed"])))  # fmt: skip
            self._fused[key] = res
            if res is not None and res.matches is not None:
                self.checks.append((record["cell"], split, res.matches))
        return self._fused[key]

    def figure_path(self, name: str) -> Path:
        return self.figures / f"{name}.png"


class FusedUnavailableError(UserError, ValueError):
    """The ``fuse`` outputs lack the runs or the per-sample predictions a section needs."""
