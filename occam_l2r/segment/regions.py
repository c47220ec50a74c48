"""A class-agnostic mask source that needs no weights: scikit-image regions plus the object.

OCCAM picks one mask among every mask of an image (§3.2.2); to exercise that choice where no
segmentation model can be downloaded, :class:`RegionMasks` proposes several real candidates per
image: the regions of a graph-based (``felzenszwalb``, Felzenszwalb & Huttenlocher 2004) or
superpixel (``slic``, Achanta et al. 2012) segmentation of the image, from which the object's
pixels are cut out, plus the object itself (the union of the dataset's ground-truth masks). One
candidate is the object, the others are pieces of background of the image, so a foreground score
has to find the object among them (the embedded benchmark's object is pasted on a real texture).

Candidates are ordered by area, largest first (so the object has no privileged position: ties go
to the first mask), at most ``max_masks`` of them, the object always kept; every score is 1.0,
labels are empty (class-agnostic). Registered for the ``segment`` verb by ``class_path``::

    model:
      segmenter:
        class_path: occam_l2r.segment.regions.RegionMasks
        init_args: {method: felzenszwalb, max_masks: 8}

(``configs/segment/synthetic_regions.yaml``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from occam_l2r.segment.segmenters import Item, Segmenter
from occam_l2r.segmentation import Segmentation


def region_labels(
    image: np.ndarray,
    method: Literal["felzenszwalb", "slic"],
    scale: float,
    sigma: float,
    min_size: int,
    n_segments: int,
    compactness: float,
) -> np.ndarray:
    """An integer region id per pixel of an ``(H, W, 3)`` uint8 image (scikit-image)."""
    from skimage.segmentation import felzenszwalb, slic

    if method == "felzenszwalb":
        return felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
    if method == "slic":
        return slic(image, n_segments=n_segments, compactness=compactness, start_label=0)
    raise ValueError(f"unknown region method {method!r}; choose felzenszwalb or slic")


def candidate_masks(
    labels: np.ndarray, obj: np.ndarray | None, min_area: int, max_masks: int
) -> list[np.ndarray]:
    """The regions of ``labels`` minus the object's pixels (at least ``min_area`` pixels), plus
    the object; largest first, at most ``max_masks`` with the object always among them."""
    regions = []
    for value in np.unique(labels):
        region = labels == value
        if obj is not None:
            region &= ~obj
        if int(region.sum()) >= min_area:
            regions.append(region)
    regions.sort(key=lambda m: -int(m.sum()))
    if obj is None or not obj.any():
        return regions[:max_masks]
    kept = [obj, *regions[: max(0, max_masks - 1)]]
    order = np.argsort([-int(m.sum()) for m in kept], kind="stable")
    return [kept[i] for i in order]


class RegionMasks(Segmenter):
    """scikit-image regions of the image and the ground-truth object, as candidate masks.

    Args:
        method: ``felzenszwalb`` (graph-based regions) or ``slic`` (superpixels).
        scale: felzenszwalb's scale (larger: larger regions).
        sigma: felzenszwalb's Gaussian pre-smoothing.
        min_size: felzenszwalb's smallest region, in pixels.
        n_segments: slic's approximate number of superpixels.
        compactness: slic's balance of colour and space (larger: squarer superpixels).
        with_object: add the object (the union of the dataset's ground-truth masks) and cut it
            out of the regions; ``False`` stores the regions alone (no ground truth needed).
        min_area: regions smaller than this (after the object is cut out) are dropped.
        max_masks: at most this many candidates per image (the largest; the object is kept).
    """

    name = "regions"

    def __init__(
        self,
        method: Literal["felzenszwalb", "slic"] = "felzenszwalb",
        scale: float = 200.0,
        sigma: float = 0.8,
        min_size: int = 50,
        n_segments: int = 8,
        compactness: float = 10.0,
        with_object: bool = True,
        min_area: int = 16,
        max_masks: int = 8,
    ) -> None:
        if max_masks < 1 or min_area < 1:
            raise ValueError(f"max_masks={max_masks} and min_area={min_area} must be >= 1")
        self.method = method
        self.scale = scale
        self.sigma = sigma
        self.min_size = min_size
        self.n_segments = n_segments
        self.compactness = compactness
        self.with_object = with_object
        self.min_area = min_area
        self.max_masks = max_masks

    def config(self) -> dict[str, Any]:
        params: dict[str, Any] = (
            {"scale": self.scale, "sigma": self.sigma, "min_size": self.min_size}
            if self.method == "felzenszwalb"
            else {"n_segments": self.n_segments, "compactness": self.compactness}
        )
        return {
            "segmenter": self.name,
            "method": self.method,
            **params,
            "with_object": self.with_object,
            "min_area": self.min_area,
            "max_masks": self.max_masks,
            "dataset": type(self.dataset).__name__ if self.with_object else None,
        }

    def segment(self, items: list[Item]) -> list[Segmentation | str]:
        out: list[Segmentation | str] = []
        for it in items:
            image = it["image"]
            h, w = image.shape[:2]
            obj = None
            if self.with_object:
                try:
                    gt = [m for m in self.dataset.gt_masks(it["record"]) if m.any()]
                except (OSError, ValueError) as err:
                    out.append(f"ground-truth object of {it['image_id']}: {err}")
                    continue
                if any(m.shape != (h, w) for m in gt):
                    out.append(f"ground-truth mask of {it['image_id']} is not {w}x{h}")
                    continue
                obj = np.logical_or.reduce(gt) if gt else None
            labels = region_labels(
                image, self.method, self.scale, self.sigma, self.min_size,
                self.n_segments, self.compactness,
            )  # fmt: skip
            masks = candidate_masks(labels, obj, self.min_area, self.max_masks)
            out.append(
                Segmentation.from_masks(it["image_id"], masks, height=h, width=w, prompts=[])
            )
        return out
