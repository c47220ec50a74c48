"""Detector prompts (L2R² §3.1 and appendix): what each image is prompted with.

A prompt source turns an image (its id and label) into a list of :class:`Query` objects. A query
is one or several texts that the detector treats as *one* thing to find, plus the class index it
stands for (``-1`` for a meta-prompt):

- :class:`MetaPrompt` — one dataset-wide meta-prompt ("full dog", "mushroom"), or several whose
  text embeddings are averaged ("animal", "bird", "insect", "reptile" for CounterAnimal);
- :class:`ClassNamePrompt` — the GT-label oracle: each image prompted with its class name;
- :class:`TopKPrompt` — the no-GT setting: the top-k classes of a FULL classifier's logits file,
  one query per candidate class (its index is stored in the segmentation's ``label_ids``).

Every query's ``label_id`` is stored per image in the segmentation's ``prompt_ids`` (beside the
texts in ``prompts``), so the candidate list of an image is known even for a candidate the
detector found nothing for: that candidate still gets a (FULL fallback) view, as L2R² appendix
C.1 asks ("when the detector output is empty, FG and BG are replaced by the full image").
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occam_l2r.logits import LogitsFile


@dataclass(frozen=True)
class Query:
    """One thing to detect: ``texts`` (averaged when several) standing for class ``label_id``."""

    texts: tuple[str, ...]
    label_id: int = -1

    def __post_init__(self) -> None:
        if not self.texts or any(not t.strip() for t in self.texts):
            raise ValueError(f"a detector query needs non-empty texts, got {self.texts!r}")

    @property
    def name(self) -> str:
        """The query as stored in the ``prompts``/``labels`` columns (texts joined by ``+``)."""
        return "+".join(self.texts)


class PromptSource(abc.ABC):
    """Base of the prompt kinds; :meth:`bind` gives it the dataset's class names."""

    def __init__(self) -> None:
        self.class_names: list[str] = []

    def bind(self, class_names: Sequence[str]) -> None:
        """Remember the dataset's class names (called once before any :meth:`queries`)."""
        self.class_names = list(class_names)

    @abc.abstractmethod
    def queries(self, image_id: str, label: int) -> list[Query]:
        """The queries of one image."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able description, part of the segmenter's config hash."""


class MetaPrompt(PromptSource):
    """Dataset-wide meta-prompts.

    Args:
        prompts: the texts, e.g. ``["full dog"]`` or ``["animal", "bird", "insect", "reptile"]``.
        average: several prompts form one query whose text embeddings are averaged (OWLv2; for
            GroundingDINO, which has no text-embedding input, the phrases are joined into one
            caption, see :mod:`occam_l2r.segment.detectors`). ``False`` makes one query per
            prompt, each detected on its own (the union of their detections is kept).
    """

    def __init__(self, prompts: list[str], average: bool = True) -> None:
        super().__init__()
        if not prompts:
            raise ValueError("MetaPrompt needs at least one prompt, e.g. prompts: [full dog]")
        self.prompts = [p.strip() for p in prompts]
        self.average = average
        self._queries = (
            [Query(tuple(self.prompts))] if average else [Query((p,)) for p in self.prompts]
        )

    def queries(self, image_id: str, label: int) -> list[Query]:
        return list(self._queries)

    def config(self) -> dict[str, Any]:
        return {"kind": "meta", "prompts": self.prompts, "average": self.average}


def _class_texts(
    class_names: Sequence[str], template: str, override: list[str] | None
) -> list[str]:
    names = list(override) if override is not None else list(class_names)
    if "{}" not in template:
        raise ValueError(f"prompt template {template!r} must contain '{{}}' for the class name")
    return [template.format(n.replace("_", " ")) for n in names]


class ClassNamePrompt(PromptSource):
    """The GT-label oracle prompt: each image is prompted with its own class name.

    Args:
        template: text around the class name, ``"{}"`` by default (e.g. ``"a photo of a {}"``).
        class_names: names to prompt with instead of the dataset's (same order and length).
    """

    def __init__(self, template: str = "{}", class_names: list[str] | None = None) -> None:
        super().__init__()
        self.template = template
        self.override = class_names
        self.texts: list[str] = []

    def bind(self, class_names: Sequence[str]) -> None:
        super().bind(class_names)
        if self.override is not None and len(self.override) != len(class_names):
            raise ValueError(
                f"ClassNamePrompt.class_names has {len(self.override)} names but the dataset has "
                f"{len(class_names)} classes"
            )
        self.texts = _class_texts(class_names, self.template, self.override)

    def queries(self, image_id: str, label: int) -> list[Query]:
        if not 0 <= label < len(self.texts):
            raise ValueError(
                f"image {image_id} has label {label}, outside the {len(self.texts)} classes; the GT "
                "oracle prompt needs a labelled image"
            )
        return [Query((self.texts[label],), label)]

    def config(self) -> dict[str, Any]:
        return {"kind": "gt_label", "template": self.template, "class_names": self.override}


class TopKPrompt(PromptSource):
    """Top-k predictions of a FULL classifier: one query per candidate class (no GT used).

    Args:
        logits: logits file(s) written by ``python -m occam_l2r predict`` for the FULL view, one
            per split; every segmented image must be in one of them.
        k: number of candidate classes per image.
        template: text around the class name.
        class_names: names to prompt with instead of the dataset's.
    """

    def __init__(
        self,
        logits: str | list[str],
        k: int = 3,
        template: str = "{}",
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"TopKPrompt.k={k} must be at least 1")
        self.files = [logits] if isinstance(logits, str) else list(logits)
        self.k = k
        self.template = template
        self.override = class_names
        self.texts: list[str] = []
        self._topk: dict[str, np.ndarray] | None = None

    def bind(self, class_names: Sequence[str]) -> None:
        super().bind(class_names)
        self.texts = _class_texts(class_names, self.template, self.override)
        self._topk = None

    def _load(self) -> dict[str, np.ndarray]:
        topk: dict[str, np.ndarray] = {}
        for f in self.files:
            lf = LogitsFile.load(f)
            if lf.num_classes != len(self.texts):
                raise ValueError(
                    f"logits file {f} has {lf.num_classes} classes but the dataset has "
                    f"{len(self.texts)}; use the FULL model's logits for this dataset"
                )
            k = min(self.k, lf.num_classes)
            order = np.argsort(-lf.logits, axis=1, kind="stable")[:, :k]
            topk.update(zip(lf.ids.tolist(), order, strict=True))
        return topk

    def queries(self, image_id: str, label: int) -> list[Query]:
        if self._topk is None:
            self._topk = self._load()
        order = self._topk.get(image_id)
        if order is None:
            raise KeyError(
                f"image {image_id} is in none of the logits files {self.files}; predict the FULL "
                "model's logits for every split you segment"
            )
        return [Query((self.texts[int(c)],), int(c)) for c in order]

    def config(self) -> dict[str, Any]:
        return {
            "kind": "topk",
            "logits": [Path(f).name for f in self.files],
            "k": self.k,
            "template": self.template,
            "class_names": self.override,
        }
