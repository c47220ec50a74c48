"""occam_l2r: localize, then recognize robustly.

Two published methods on one data path: L2R² (zero-shot localization, FULL/FG/BG classifiers and
interpretable fusion heads) and OCCAM (class-agnostic masks, applied to the image, a foreground
score picks one, zero-shot CLIP classifies it). See the README and docs/ for the map.

``occam_l2r.load(path)`` (:func:`occam_l2r.api.load`) returns a trained L2R² system that
classifies images; it is imported on first use, so ``import occam_l2r`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``occam_l2r.load``: :func:`occam_l2r.api.load`, imported on first use."""
    if name == "load":
        from occam_l2r.api import load

        return load
    raise AttributeError(f"module 'occam_l2r' has no attribute {name!r}")
