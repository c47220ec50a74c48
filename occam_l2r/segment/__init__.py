"""Segmentation sources: detectors, SAM, prompts and segmenters (plain models, no Lightning).

The store they fill lives one layer below, in :mod:`occam_l2r.store`.
"""
