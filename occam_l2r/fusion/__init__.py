"""Fusion of two classifiers' logits (L2R² §3.1, §3.3, appendix B.3, C.1) and the fusion ablation.

- :mod:`~occam_l2r.fusion.methods`: pure functions (max confidence, threshold ⊕R, averages,
  oracle, ⊕* selection and its ties, metrics).
- :mod:`~occam_l2r.fusion.calibration`: temperature and class-wise temperature scaling, ECE.
- :mod:`~occam_l2r.fusion.heads`: trainable heads as plain ``nn.Module`` s;
  :mod:`~occam_l2r.fusion.head_training`: their training, the epoch chosen on validation (the
  loop ``fit`` runs too).
- :mod:`~occam_l2r.fusion.fusers`: the registry of methods, each one :class:`FusionMethod` class
  (label, symbol, fit/apply, parameters and their round trip);
  :mod:`~occam_l2r.fusion.pairs`: a fused pair as a typed value, the default pairs.
- :mod:`~occam_l2r.fusion.fallback`: the FULL fallback at the output (§3.1).
- :mod:`~occam_l2r.fusion.metadata`, :mod:`~occam_l2r.fusion.topk`: metadata priors and
  top-k candidate fusion (eq. 5, Figure 11).
- :mod:`~occam_l2r.fusion.report`: per-sample reports and weighted-logits weights (Figure 8's
  data; the plots are in :mod:`occam_l2r.reporting.figures`).
- the ablation (the ``fuse`` verb, :mod:`occam_l2r.commands.fuse`):
  :mod:`~occam_l2r.fusion.config` (the typed sweep configuration),
  :mod:`~occam_l2r.fusion.plan` (its cells), :mod:`~occam_l2r.fusion.runner` (runs the cells
  resumably into ``results.jsonl``) and :mod:`~occam_l2r.fusion.compute` (the metrics of a group
  of cells, from the :class:`~occam_l2r.fusion.compute.SweepContext` they share), :mod:`~occam_l2r.fusion.tables` (Table 9 and Table 1),
  :mod:`~occam_l2r.fusion.crosstables` (Table 4, Table 1 across datasets) and
  :mod:`~occam_l2r.fusion.outputs` (writes the tables, weights and plots of a finished sweep).
- :mod:`~occam_l2r.fusion.inputs`: loading, caching, checking and aligning logits files;
  :mod:`~occam_l2r.fusion.synthetic`: random logits files for tests and the benchmark.
"""
