"""Writes the report of one experiment: ``<output_dir>/report.html`` and ``figures/*.png``.

:func:`write_report` reads a finished ``fuse`` output folder (:mod:`occam_l2r.reporting.sources`)
into a :class:`~occam_l2r.reporting.builder.ReportBuilder` and adds, in order
(:data:`SECTIONS`), the model behind each view (a classifier, a probe on a frozen backbone, a
shared backbone), ``fuse``'s own tables (the same cells as its Markdown files), the metric per
split and method with error bars over seeds, reliability diagrams before/after temperature
scaling per view, the weighted-logits weights per class (L2R² Fig. 8), per-class accuracy changes
against FULL (Fig. 12), the fallback rates and the top-k detection histogram (Fig. 11), and the
test images where the fusion and FULL disagree. A section whose inputs are missing says so in the
page instead of failing the report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from occam_l2r.reporting import fused_sections, sections
from occam_l2r.reporting.builder import SECTION_ERRORS, ReportBuilder
from occam_l2r.reporting.config import ReportConfig

#: (title, function) of every section, in page order
SECTIONS: list[tuple[str, Callable[[ReportBuilder], None]]] = [
    ("Models of each view", sections.models),
    ("Tables of fuse", sections.fuse_tables),
    ("Accuracy per split and method", sections.accuracy),
    ("Calibration before and after temperature scaling", sections.calibration),
    ("Weighted-logits weights per class (Fig. 8)", fused_sections.weights),
    ("Per-class accuracy against the baseline (Fig. 12)", fused_sections.class_deltas),
    ("Fallback and detection statistics (Fig. 11)", sections.fallback_detection),
    ("Test images where the fusion and the baseline disagree", fused_sections.disagreements),
]


def write_report(config: ReportConfig) -> dict[str, Any]:
    """Write ``report.html`` (self-contained) and the PNG figures of one experiment.

    Args:
        config: the report's configuration.

    Returns:
        ``html`` (the page), ``figures`` (the PNG files), ``sections`` (their titles),
        ``skipped`` (sections without their inputs, with the reason) and ``checks`` (how many
        recomputed fused splits match ``fuse``'s accuracy, of how many).
    """
    t0 = time.perf_counter()
    b = ReportBuilder(config)
    skipped = []
    for title, fn in SECTIONS:
        b.page.heading(title)
        try:
            fn(b)
        except SECTION_ERRORS as err:
            skipped.append(f"{title}: {err}")
            b.page.paragraph(f"Not shown: {err}", note=True)
            print(f"report: section {title!r} not shown: {err}", file=sys.stderr)
    sections.notes(b)
    html = b.page.write(b.out / "report.html")
    ok = sum(m for _, _, m in b.checks)
    print(f"report: {len(b.page.figures)} figures, {html} ({time.perf_counter() - t0:.1f} s)")
    return {
        "html": str(html),
        "figures": [str(p) for p in b.page.figures],
        "sections": [t for _, t in b.page.sections],
        "skipped": skipped,
        "checks": (ok, len(b.checks)),
    }
