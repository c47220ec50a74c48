"""Captions for contrastive image-text training: a :class:`ViewDataModule` whose training
batches also carry a caption per image ("a photo of the digit three on brick.").

A caption is made from a template naming the object (``{object}``: the class's word) and/or the
background (``{background}``: the record's group, the background kind of the embedded benchmark,
``hubble_deep_field`` read as "hubble deep field"). Each training sample draws one template
uniformly from ``caption_templates`` (a template may be listed twice to weigh it more). Besides
the ``caption`` string, a sample holds what the caption says as indices, for the multi-positive
contrastive loss of :mod:`occam_l2r.tasks.clip_train`: ``caption_object`` (the class, or -1 when
the template does not name the object) and ``caption_background`` (the group index, or -1),
and what the image shows: ``image_background``, the group index, or -1 for a foreground view
(a view whose role is ``foreground`` in :data:`occam_l2r.views.VIEWS`, FG_C and FG_M: the object
cut out of its background, so no caption naming a background describes it).

With several views (``view: [FULL, FG_C]`` and ``view_captions``), each training sample is one
view of its image, drawn uniformly, captioned with that view's own templates.

Evaluation batches are the plain view batches of :class:`ViewDataModule` (zero-shot evaluation
uses class prompts, not captions).
"""

from __future__ import annotations

from string import Formatter
from typing import Any

import torch
from torch.utils.data import Dataset

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.records import RecordDataset
from occam_l2r.data.view_dataset import ViewDataset
from occam_l2r.views import role_of

#: the caption templates of the embedded CLIP: object and background, object only, background only
DEFAULT_TEMPLATES = (
    "a photo of the digit {object} on {background}.",
    "a photo of the digit {object}.",
    "a photo of {background}.",
)
_FIELDS = {"object", "background"}


def template_fields(template: str) -> set[str]:
    """The fields a caption template names (a subset of ``{"object", "background"}``).

    Raises:
        ValueError: the template names another field, or neither ``{object}`` nor ``{background}``.
    """
    fields = {name for _, name, _, _ in Formatter().parse(template) if name is not None}
    if fields - _FIELDS or not fields:
        raise ValueError(
            f"caption template {template!r} must name {{object}} and/or {{background}} and no "
            f"other field (it names {sorted(fields) or 'none'})"
        )
    return fields


def background_word(group: str) -> str:
    """The words of a background kind in a caption: ``hubble_deep_field`` -> ``hubble deep field``."""
    return group.replace("_", " ").strip()


def make_caption(template: str, object_word: str, background: str) -> str:
    """Fill a caption template: ``make_caption("a photo of the digit {object} on {background}.",
    "three", "brick")`` -> ``"a photo of the digit three on brick."``."""
    return template.format(object=object_word, background=background)


def _draw(n: int) -> int:
    """A uniform draw from ``range(n)`` with torch's generator (no draw when ``n`` is 1)."""
    return int(torch.randint(n, ())) if n > 1 else 0


class CaptionDataset(Dataset):
    """A :class:`ViewDataset` whose samples also carry a caption (see the module docstring).

    Args:
        views: the view dataset of a split.
        object_words: the word of each class.
        background_words: group name -> its words in a caption.
        templates: the caption templates; each sample draws one uniformly (torch's generator, so
            it follows ``seed_everything`` and the loader workers' seeds). A dict gives each
            view of a several-view dataset its own templates: each sample first draws one of
            the views uniformly (its ``image`` is that view), then one of that view's templates.
    """

    def __init__(
        self,
        views: ViewDataset,
        object_words: list[str],
        background_words: dict[str, str],
        templates: list[str] | dict[str, list[str]],
    ) -> None:
        by_view = templates if isinstance(templates, dict) else {views.view: list(templates)}
        if not by_view or not all(by_view.values()):
            raise ValueError("caption_templates: give at least one template")
        if set(by_view) != set(views.views):
            raise ValueError(
                f"caption templates are given for views {sorted(by_view)} but the images are "
                f"the views {views.views}: give templates for each view (data.view_captions)"
            )
        self.views = views
        self.object_words = object_words
        self.background_words = background_words
        self.view_names = list(views.views)
        self.templates = {v: list(by_view[v]) for v in self.view_names}
        self.fields = {v: [template_fields(t) for t in ts] for v, ts in self.templates.items()}

    @property
    def transform(self) -> Any:
        """The augmentation of the wrapped views (the training loader seeds it)."""
        return self.views.transform

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.views[index]
        record = self.views.records[self.views.items[index][0]]
        view = self.view_names[_draw(len(self.view_names))]
        if "views" in sample:  # several views of the image: this sample is the drawn one
            sample["image"] = sample.pop("views")[view]
            sample["fallback"] = sample.pop("fallbacks")[view]
        t = _draw(len(self.templates[view]))
        fields = self.fields[view][t]
        sample["caption"] = make_caption(
            self.templates[view][t],
            self.object_words[record.label],
            self.background_words.get(record.group, background_word(record.group)),
        )
        names_object, names_background = "object" in fields, "background" in fields
        sample["caption_object"] = torch.tensor(record.label if names_object else -1)
        sample["caption_background"] = (
            sample["group"].clone() if names_background else torch.tensor(-1)
        )
        shown = role_of(view) != "foreground"  # a foreground view shows no background
        sample["image_background"] = sample["group"].clone() if shown else torch.tensor(-1)
        return sample


class CaptionDataModule(ViewDataModule):
    """:class:`ViewDataModule` whose training batches carry captions naming object and background.

    Takes every argument of :class:`ViewDataModule` (``view``, ``image_size``, ...) and:

    Args:
        dataset: the dataset (``class_path`` + ``init_args`` in configs).
        caption_templates: templates with ``{object}`` and/or ``{background}``; one is drawn per
            training sample.
        object_words: the word of each class in captions and prompts; default the dataset's class
            names (``zero`` ... ``nine`` for the embedded benchmark).
        background_words: group name -> its words; default the group name with ``_`` read as a
            space.
        view_captions: with several views (``view: [FULL, FG_C]``), the caption templates of
            each view after the first (the first view uses ``caption_templates``): each training
            sample is one view of its image drawn uniformly, captioned with that view's
            templates, e.g. ``{FG_C: ["a photo of the digit {object}."]}`` so that the
            foreground crop is described by the object alone. Evaluation uses the first view.
        **kwargs: the arguments of :class:`ViewDataModule`.
    """

    def __init__(
        self,
        dataset: RecordDataset,
        caption_templates: list[str] | None = None,
        object_words: list[str] | None = None,
        background_words: dict[str, str] | None = None,
        view_captions: dict[str, list[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)  # its hyperparameters include the caption arguments
        self.caption_templates = list(caption_templates or DEFAULT_TEMPLATES)
        self.view_captions = {self.view: self.caption_templates, **(view_captions or {})}
        if set(self.view_captions) != set(self.views):
            raise ValueError(
                f"data.view_captions names the views {sorted(view_captions or {})}; give caption "
                f"templates for each view after the first of data.view={self.views} and no other"
            )
        for template in (t for ts in self.view_captions.values() for t in ts):
            template_fields(template)
        if object_words is not None and len(object_words) != self.dataset.num_classes:
            raise ValueError(
                f"data.object_words has {len(object_words)} words for the "
                f"{self.dataset.num_classes} classes {self.dataset.class_names}; give one per class"
            )
        self._object_words = list(object_words) if object_words is not None else None
        self._background_words = dict(background_words or {})
        named = any(
            "background" in template_fields(t) for ts in self.view_captions.values() for t in ts
        )
        if named and not self.dataset.group_names:
            raise ValueError(
                f"{type(self.dataset).__name__} has no groups (background kinds): caption templates "
                "naming {background} cannot be filled; use templates with {object} only"
            )

    @property
    def object_words(self) -> list[str]:
        """The word of each class (captions and zero-shot prompts use the same words)."""
        return self._object_words or self.class_names

    @property
    def background_words(self) -> dict[str, str]:
        """Group name -> its words in a caption."""
        return {g: self._background_words.get(g, background_word(g)) for g in self.group_names}

    def _dataset(self, split: str, train: bool) -> ViewDataset | CaptionDataset:
        views = super()._dataset(split, train)
        if not train:
            return views
        return CaptionDataset(views, self.object_words, self.background_words, self.view_captions)
