"""Segmentation sources as plain models (no Lightning): detectors, SAM, prompts, segmenters,
the ``gt`` store builder and tiny random-initialised models for tests.

The store they fill lives one layer below, in :mod:`occam_l2r.store`; the ``segment`` verb runs a
segmenter through :class:`occam_l2r.tasks.segment.SegmentTask` and
:class:`occam_l2r.data.segment_datamodule.SegmentDataModule`.
"""
