"""The report of an experiment: L2R²'s figures from a finished ``fuse`` run, as one HTML page.

- :mod:`~occam_l2r.reporting.config`: :class:`ReportConfig`, the ``report`` verb's settings;
- :mod:`~occam_l2r.reporting.sources`: reading ``fuse``'s output folder (tables, results,
  weights) and a run's dataset root;
- :mod:`~occam_l2r.reporting.predictions`: per-sample fused predictions from ``fuse``'s fitted
  parameters or per-sample reports;
- :mod:`~occam_l2r.reporting.stats`: reliability bins and ECE, per-class accuracy;
- :mod:`~occam_l2r.reporting.figures`: the matplotlib figures;
- :mod:`~occam_l2r.reporting.html`: the self-contained HTML page;
- :mod:`~occam_l2r.reporting.sections`, :mod:`~occam_l2r.reporting.fused_sections`: what each
  section shows; :mod:`~occam_l2r.reporting.build`: :func:`write_report`.

Layer 4 (plain code, no Lightning); the verb is :mod:`occam_l2r.commands.report`.
"""

from occam_l2r.reporting.build import write_report
from occam_l2r.reporting.config import ReportConfig

__all__ = ["ReportConfig", "write_report"]
