"""OCCAM (Object-Centric Classification with Applied Masks) as plain torch, no Lightning.

- :mod:`occam_l2r.occam.model` — the method: :class:`~occam_l2r.occam.model.Occam` applies every
  mask, scores it, chooses one per image and classifies it; ``Occam.predict`` on one image (a
  notebook), ``Occam.forward`` on a batch (the task);
- :mod:`occam_l2r.occam.scores` — the foreground scores (``max_prob``, ``oracle``,
  ``ens_entropy``, ``bbox_iou``) in a registry (``FOREGROUND_SCORES``, ``@foreground_score``)
  and the per-image choice of the highest-scoring mask;
- :mod:`occam_l2r.occam.apply` — the ways of applying a mask to an image (``crop_resize_gray``,
  ``crop_resize_original``, ``alpha``) and the square network input they share;
- :mod:`occam_l2r.occam.ground_truth` — an image's ground-truth box and object, and the IoU of a
  mask with the object;
- :mod:`occam_l2r.occam.table` — the results table of OCCAM's Table 8 (Markdown, CSV, JSON).

The Lightning wiring is :class:`occam_l2r.tasks.occam.OccamTask` with
:class:`occam_l2r.data.occam_datamodule.OccamDataModule`, run by ``python -m occam_l2r occam``.
"""
