"""``classify``: the L2R² decision on new images (L2R² Fig. 10, §3.1, §3.3, future work).

A folder of raw images (or a list file) is segmented from a stored segmentation, turned into the
views of the trained FG / FULL / BG checkpoints, and the views' logits are fused with the
parameters ``fuse`` fitted on val (:mod:`occam_l2r.fusion.saved`); images whose view fell back
take FULL's prediction (§3.1). The cascade runs the second model only for images whose
calibrated FG confidence is not above the fitted threshold (⊕R).

- :mod:`~occam_l2r.classify.config`: :class:`ClassifyConfig`, what the verb reads;
- :mod:`~occam_l2r.classify.inputs`: the images of a folder or a list file;
- :mod:`~occam_l2r.classify.models`: the view checkpoints and their logits;
- :mod:`~occam_l2r.classify.engine`: images -> views -> logits -> fused rows (and the cascade);
- :mod:`~occam_l2r.classify.table`: the CSV / Parquet table; :mod:`~occam_l2r.classify.preview`:
  the HTML page.

Lightning checkpoints are loaded here, so the package is layer 5 (beside ``tasks/``).
"""
