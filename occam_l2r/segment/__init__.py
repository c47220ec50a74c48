"""Segmentation sources and the segmentation store (stage 1 of both papers)."""

from occam_l2r.segment.store import (
    STORE_FORMAT_VERSION,
    Segmentation,
    SegmentationStore,
    StoreWriter,
    config_hash,
)

__all__ = [
    "STORE_FORMAT_VERSION",
    "Segmentation",
    "SegmentationStore",
    "StoreWriter",
    "config_hash",
]
