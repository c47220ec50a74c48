"""occam_l2r: localize, then recognize robustly.

Two published methods on one data path: L2R² (zero-shot localization, FULL/FG/BG classifiers and
interpretable fusion heads) and OCCAM (class-agnostic masks, applied to the image, a foreground
score picks one, zero-shot CLIP classifies it). See the README and docs/ for the map.
"""

__version__ = "0.1.0"
