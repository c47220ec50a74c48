"""Fusion of two classifiers' logits (L2R² §3.3, appendix B.3) and the fusion ablation.

- :mod:`~occam_l2r.fusion.methods`: pure functions (max confidence, threshold ⊕R, averages,
  oracle, ⊕* selection, metrics).
- :mod:`~occam_l2r.fusion.calibration`: temperature and class-wise temperature scaling, ECE.
- :mod:`~occam_l2r.fusion.heads`: trainable heads as plain ``nn.Module`` s.
- :mod:`~occam_l2r.fusion.fusers`: every method behind one fit/predict interface.
- :mod:`~occam_l2r.fusion.metadata`, :mod:`~occam_l2r.fusion.topk`: metadata priors and
  top-k candidate fusion (eq. 5).
- :mod:`~occam_l2r.fusion.report`: per-sample reports and weighted-logits weights (Figure 8).
- the ablation (the ``fuse`` verb, :mod:`occam_l2r.commands.fuse`):
  :mod:`~occam_l2r.fusion.plan` (the typed sweep configuration and its cells),
  :mod:`~occam_l2r.fusion.runner` (runs the cells resumably into ``results.jsonl``),
  :mod:`~occam_l2r.fusion.tables` (Table 9 and Table 1) and :mod:`~occam_l2r.fusion.outputs`
  (writes the tables, weights and plots of a finished sweep).
- :mod:`~occam_l2r.fusion.inputs`: loading and aligning logits files;
  :mod:`~occam_l2r.fusion.synthetic`: random logits files for tests and the benchmark.
"""
