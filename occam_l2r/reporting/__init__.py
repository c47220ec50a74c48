"""The report of an experiment: L2R²'s figures from a finished ``fuse`` run, as one HTML page.

- :mod:`~occam_l2r.reporting.config`: :class:`ReportConfig`, the ``report`` verb's settings;
- :mod:`~occam_l2r.reporting.sources`: reading ``fuse``'s output folder (tables, results,
  weights) and a run's dataset root;
- :mod:`~occam_l2r.reporting.predictions`: per-sample fused predictions from ``fuse``'s fitted
  parameters or per-sample reports;
- :mod:`~occam_l2r.reporting.stats`: reliability bins and ECE, per-class accuracy;
- :mod:`~occam_l2r.reporting.figures`: every matplotlib figure (the report's and ``fuse``'s);
- the self-contained HTML page: :mod:`occam_l2r.html_page` (shared with ``classify``'s preview);
- :mod:`~occam_l2r.reporting.builder`: :class:`ReportBuilder`, the state the sections share;
- :mod:`~occam_l2r.reporting.sections`, :mod:`~occam_l2r.reporting.fused_sections`: what each
  section shows; :mod:`~occam_l2r.reporting.build`: their order and
  :func:`~occam_l2r.reporting.build.write_report`.

Layer 4 (plain code, no Lightning); the verb is :mod:`occam_l2r.commands.report`.
"""
