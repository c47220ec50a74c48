"""Prompts of the zero-shot classifier: templates, class names and label spaces.

- Templates (:func:`resolve_templates`): one template (``"a photo of a {c}."``, L2R²'s), a list,
  a named set shipped by open_clip (``openai_imagenet``: OpenAI's 80 ImageNet templates,
  ``simple_imagenet``: their 2-template subset) or a text file with one template per line.
- Class names (:func:`prompt_classes`): the dataset's official names by default, or a
  class-name file per dataset (:func:`read_class_names_file`; one that does not match the
  dataset's classes raises :class:`ClassNamesError` naming the file and the mismatch).
- Label spaces (:data:`LABEL_SPACES`, one registry; ``model.label_space`` of the zero-shot and
  OCCAM tasks). A label space is the list of names the model scores plus how they reach the
  dataset's classes, in one of three ways:

  - *the dataset's own classes*: ``dataset`` (K outputs, identity);
  - *labels moved into a bigger space*: ``imagenet1k`` (open_clip's names of the 1000 ImageNet
    classes) and ``imagenet1k_synonyms`` (the OCCAM authors' names, the WordNet synonyms
    "tench, Tinca tinca"): 1000 outputs, the dataset's labels become ImageNet indices through
    ``dataset.imagenet_class_indices`` and a prediction outside the dataset's classes is wrong
    (:attr:`PromptClasses.label_map`);
  - *fine-grained members max-mapped to the dataset's classes* (:attr:`PromptClasses.class_of`,
    :func:`max_map`): the model scores every member and each dataset class takes the highest
    logit of its members, so the outputs are the dataset's K classes (the softmax, ``max_prob``
    and ``oracle`` are over those K). ``cub200`` (Waterbirds: the 200 CUB species ->
    landbird / waterbird), ``stanford_cars196`` (UrbanCars: the 196 Stanford Cars models ->
    urban / country car) and ``imagenet1k_max`` (the 1000 ImageNet classes -> the dataset's
    classes through ``dataset.imagenet_to_class``, e.g. ImageNet-9's ``in_to_in9.json``;
    unmapped ImageNet classes take no part). This is the OCCAM authors' mapping
    (AlexanderRubinstein/OCCAM ``occam/datasets/utils.py``: ``ToClassesMapping`` with
    ``torch_max_func``, applied to the CLIP logits by ``ModelClassesWrapper`` before the
    softmax of ``compute_foreground_score``). :func:`label_space_classifier` wraps a zero-shot
    classifier accordingly.

  The fine-grained name lists are facts shipped as data files beside this module
  (``label_spaces/*.json``, each naming its source).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from occam_l2r.errors import UserError, option_flag

LabelSpace = Literal[
    "dataset", "imagenet1k", "imagenet1k_synonyms", "imagenet1k_max", "cub200", "stanford_cars196"
]
#: the folder of the shipped name lists (package data)
LABEL_SPACE_FILES = Path(__file__).parent / "label_spaces"
IMAGENET_CLASSES = 1000
PLACEHOLDER = "{c}"


class ClassNamesError(UserError, ValueError):
    """A class-name or template file does not fit: missing, unreadable or not matching."""


class LabelSpaceError(UserError, ValueError):
    """The label space cannot be used with the dataset (e.g. no ImageNet class indices)."""


def template_sets() -> dict[str, list[str]]:
    """open_clip's ImageNet template sets as ``{c}`` strings: ``openai_imagenet`` (80) and
    ``simple_imagenet`` (2)."""
    from open_clip import zero_shot_metadata as meta

    return {
        "openai_imagenet": [t(PLACEHOLDER) for t in meta.OPENAI_IMAGENET_TEMPLATES],
        "simple_imagenet": [t(PLACEHOLDER) for t in meta.SIMPLE_IMAGENET_TEMPLATES],
    }


def imagenet_class_names() -> list[str]:
    """open_clip's names of the 1000 ImageNet-1k classes, in class-index order."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return list(IMAGENET_CLASSNAMES)


def resolve_templates(templates: str | list[str]) -> list[str]:
    """The template strings of ``templates``.

    Args:
        templates: a template with ``{c}``, a list of them, a named set of :func:`template_sets`,
            or the path of a text file with one template per line (``#`` starts a comment).

    Raises:
        ClassNamesError: a template file without templates; a template without ``{c}``.
    """
    if isinstance(templates, str):
        sets = template_sets()
        if templates in sets:
            return sets[templates]
        if PLACEHOLDER not in templates and Path(templates).expanduser().is_file():
            path = Path(templates).expanduser()
            found = _lines(path)
            if not found:
                raise ClassNamesError(f"template file {path} holds no template")
            return _checked(found, str(path))
        templates = [templates]
    return _checked(list(templates), option_flag("model", "templates"))


def _checked(templates: list[str], source: str) -> list[str]:
    bad = [t for t in templates if PLACEHOLDER not in t]
    if bad or not templates:
        raise ClassNamesError(
            f"{source}: every template needs {PLACEHOLDER} where the class name goes "
            f"(e.g. 'a photo of a {{c}}.'), got {bad[:3] or templates}; named sets are "
            f"{list(template_sets())}"
        )
    return templates


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ClassNamesError(f"cannot read {path}: {err}") from err
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def read_class_names_file(path: str | Path, classes: list[str]) -> list[str]:
    """The prompt name of each class of ``classes``, read from a class-name file.

    Formats: ``.json`` holding a list (one name per class, in class order) or an object
    ``{class name: prompt name}`` with every class of ``classes`` as a key; any other file: one
    name per line, in class order (``#`` comment lines are skipped).

    Args:
        path: the file.
        classes: the classes it must describe (the dataset's official names, or ImageNet's).

    Raises:
        ClassNamesError: the file is missing or unreadable, or does not match ``classes``
            (another number of names, missing or unknown keys, empty names); the message names
            the file and the mismatch.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClassNamesError(
            f"class-name file {path} not found ({option_flag('model', 'class_names_file')})"
        )
    k = len(classes)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ClassNamesError(f"class-name file {path} is not readable JSON: {err}") from err
        if isinstance(data, dict):
            missing = [c for c in classes if c not in data]
            unknown = [c for c in data if c not in set(classes)]
            if missing or unknown:
                raise ClassNamesError(
                    f"class-name file {path} does not match the dataset's {k} classes: "
                    f"{len(missing)} missing (first: {missing[:3]}), {len(unknown)} unknown "
                    f"(first: {unknown[:3]}); its keys must be the class names {classes[:3]}..."
                )
            names = [str(data[c]) for c in classes]
        elif isinstance(data, list):
            names = [str(n) for n in data]
        else:
            raise ClassNamesError(
                f"class-name file {path} holds a {type(data).__name__}; write a list of names "
                "in class order or an object {class name: prompt name}"
            )
    else:
        names = _lines(path)
    if len(names) != k:
        raise ClassNamesError(
            f"class-name file {path} has {len(names)} names but the dataset has {k} classes "
            f"({classes[:3]}...); give one name per class, in class order"
        )
    empty = [classes[i] for i, n in enumerate(names) if not n.strip()]
    if empty:
        raise ClassNamesError(f"class-name file {path} gives empty names for {empty[:3]}")
    return names


@dataclass
class PromptClasses:
    """The classes a zero-shot model scores, and where the dataset's labels land among them.

    Attributes:
        names: the prompt name of each class the model scores.
        label_map: the output index of each dataset class (``None``: the identity); set by the
            spaces that move the labels into a bigger space (``imagenet1k``).
        class_of: for a max-mapped space, the dataset class of each name (``-1``: none); the
            logits over ``names`` become logits over the dataset's classes by :func:`max_map`.
        outputs: the names of the output columns (the dataset's classes, or ImageNet's).
    """

    names: list[str]
    label_map: list[int] | None = None
    class_of: list[int] | None = None
    outputs: list[str] | None = None

    @property
    def num_outputs(self) -> int:
        """The width of the logits after the label space's mapping."""
        return len(self.outputs) if self.outputs is not None else len(self.names)


@dataclass(frozen=True)
class LabelSpaceRequest:
    """What a label space is built from (:func:`prompt_classes`)."""

    dataset_classes: list[str]
    class_names_file: str | None
    imagenet_indices: list[int] | None
    dataset: Any
    dataset_name: str


#: a label space: the request -> the classes the model scores and their mapping
LabelSpaceBuilder = Callable[[LabelSpaceRequest], PromptClasses]
#: every label space by name (``model.label_space``), in the order of registration
LABEL_SPACES: dict[str, LabelSpaceBuilder] = {}


def label_space(name: str) -> Callable[[LabelSpaceBuilder], LabelSpaceBuilder]:
    """Register the decorated builder as the label space ``name``."""

    def register(build: LabelSpaceBuilder) -> LabelSpaceBuilder:
        if name in LABEL_SPACES:
            raise ValueError(f"the label space {name!r} is registered already")
        LABEL_SPACES[name] = build
        return build

    return register


@functools.cache
def _label_space_file(name: str) -> dict[str, Any]:
    with (LABEL_SPACE_FILES / name).open(encoding="utf-8") as f:
        return json.load(f)


def imagenet_synonym_names() -> list[str]:
    """The OCCAM authors' names of the 1000 ImageNet-1k classes (the WordNet synonyms, e.g.
    ``tench, Tinca tinca``), in class-index order (``label_spaces/imagenet1k_synonyms.json``)."""
    return list(_label_space_file("imagenet1k_synonyms.json")["names"])


def prompt_classes(
    dataset_classes: list[str],
    label_space: LabelSpace | str = "dataset",
    class_names_file: str | None = None,
    imagenet_indices: list[int] | None = None,
    dataset_name: str = "the dataset",
    dataset: Any = None,
) -> PromptClasses:
    """The output classes of a zero-shot run on a dataset.

    Args:
        dataset_classes: the dataset's official class names, in label order.
        label_space: a name of :data:`LABEL_SPACES`.
        class_names_file: prompt names instead of the label space's own (the dataset's names,
            open_clip's ImageNet names, the members' names), see :func:`read_class_names_file`.
        imagenet_indices: the ImageNet-1k index of each dataset class
            (``dataset.imagenet_class_indices``); needed by ``imagenet1k``.
        dataset_name: for messages.
        dataset: the dataset (``imagenet1k_max`` reads its ``imagenet_to_class``).

    Raises:
        LabelSpaceError: an unknown label space, or one that does not fit the dataset.
        ClassNamesError: a class-name file that does not match.
    """
    build = LABEL_SPACES.get(label_space)
    if build is None:
        raise LabelSpaceError(
            f"label_space={label_space!r}: choose one of {', '.join(LABEL_SPACES)}"
        )
    request = LabelSpaceRequest(
        list(dataset_classes), class_names_file, imagenet_indices, dataset, dataset_name
    )
    return build(request)


@label_space("dataset")
def _dataset_space(r: LabelSpaceRequest) -> PromptClasses:
    names = list(r.dataset_classes)
    if r.class_names_file:
        names = read_class_names_file(r.class_names_file, names)
    return PromptClasses(names, outputs=list(r.dataset_classes))


def _imagenet_space(r: LabelSpaceRequest, space: str, names: list[str]) -> PromptClasses:
    if r.imagenet_indices is None:
        raise LabelSpaceError(
            f"label_space: {space} needs the ImageNet-1k index of each class, but "
            f"{r.dataset_name} does not give them (its imagenet_class_indices is None: its "
            "classes are not ImageNet classes). Use label_space: dataset."
        )
    indices = [int(i) for i in r.imagenet_indices]
    bad = [i for i in indices if not 0 <= i < IMAGENET_CLASSES]
    if len(indices) != len(r.dataset_classes) or bad or len(set(indices)) != len(indices):
        raise LabelSpaceError(
            f"{r.dataset_name}: imagenet_class_indices must give one distinct index in [0, 1000) "
            f"per class ({len(r.dataset_classes)} classes), got {len(indices)} "
            f"(out of range: {bad[:3]})"
        )
    if r.class_names_file:
        names = read_class_names_file(r.class_names_file, names)
    return PromptClasses(names, indices, outputs=list(names))


@label_space("imagenet1k")
def _imagenet1k(r: LabelSpaceRequest) -> PromptClasses:
    return _imagenet_space(r, "imagenet1k", imagenet_class_names())


@label_space("imagenet1k_synonyms")
def _imagenet1k_synonyms(r: LabelSpaceRequest) -> PromptClasses:
    return _imagenet_space(r, "imagenet1k_synonyms", imagenet_synonym_names())


def _max_mapped(
    r: LabelSpaceRequest, names: list[str], class_of: list[int], space: str
) -> PromptClasses:
    if r.class_names_file:
        names = read_class_names_file(r.class_names_file, names)
    k = len(r.dataset_classes)
    empty = [r.dataset_classes[c] for c in range(k) if c not in set(class_of)]
    if empty:
        raise LabelSpaceError(
            f"label_space: {space} maps no class name to {empty[:3]} of {r.dataset_name}"
        )
    return PromptClasses(names, class_of=list(class_of), outputs=list(r.dataset_classes))


def _from_file(r: LabelSpaceRequest, space: str, file: str, dataset: str) -> PromptClasses:
    data = _label_space_file(file)
    if list(r.dataset_classes) != list(data["classes"]):
        raise LabelSpaceError(
            f"label_space: {space} maps {len(data['names'])} names onto {dataset}'s classes "
            f"{data['classes']}, but {r.dataset_name} has {r.dataset_classes[:5]}. Use "
            "label_space: dataset (or the label space of this dataset)."
        )
    return _max_mapped(r, list(data["names"]), [int(c) for c in data["class_of"]], space)


@label_space("cub200")
def _cub200(r: LabelSpaceRequest) -> PromptClasses:
    return _from_file(r, "cub200", "cub200_waterbirds.json", "Waterbirds")


@label_space("stanford_cars196")
def _stanford_cars196(r: LabelSpaceRequest) -> PromptClasses:
    return _from_file(r, "stanford_cars196", "stanford_cars196_urbancars.json", "UrbanCars")


@label_space("imagenet1k_max")
def _imagenet1k_max(r: LabelSpaceRequest) -> PromptClasses:
    mapping = getattr(r.dataset, "imagenet_to_class", None) if r.dataset is not None else None
    if not mapping:
        raise LabelSpaceError(
            f"label_space: imagenet1k_max maps the 1000 ImageNet classes onto the dataset's "
            f"classes through dataset.imagenet_to_class, but {r.dataset_name} gives none. Use "
            "label_space: dataset."
        )
    class_of = [-1] * IMAGENET_CLASSES
    for index, cls in dict(mapping).items():
        if 0 <= int(index) < IMAGENET_CLASSES and 0 <= int(cls) < len(r.dataset_classes):
            class_of[int(index)] = int(cls)
    return _max_mapped(r, imagenet_synonym_names(), class_of, "imagenet1k_max")


def max_map(logits: torch.Tensor, class_of: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits over member names -> logits over classes: each class takes its members' maximum.

    Args:
        logits: ``(..., M)`` logits of the M member names.
        class_of: ``(M,)`` long, the class of each member; ``-1``: no class (left out).
        num_classes: K, the number of classes (a class without members gets ``-inf``).

    Returns:
        ``(..., K)`` logits.
    """
    class_of = class_of.to(device=logits.device, dtype=torch.long)
    inside = class_of >= 0
    values = logits.masked_fill(~inside, -torch.inf)
    index = class_of.clamp(min=0).expand_as(values)
    out = logits.new_full((*logits.shape[:-1], num_classes), -torch.inf)
    return out.scatter_reduce(-1, index, values, reduce="amax", include_self=True)


class MaxMappedClassifier(nn.Module):
    """A zero-shot classifier over member names whose logits are max-mapped to the classes.

    Everything but the logits (the prototypes, the cache, ``encode_images``, ``clip``) is the
    wrapped classifier's; :meth:`forward` and :meth:`logits` return ``(B, K)`` class logits,
    :meth:`member_logits` the ``(B, M)`` logits over the members.
    """

    def __init__(self, classifier: nn.Module, class_of: list[int], num_classes: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_classes = int(num_classes)
        self.register_buffer("class_of", torch.tensor(class_of, dtype=torch.long), persistent=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("classifier"), name)

    def member_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images)

    def map(self, member_logits: torch.Tensor) -> torch.Tensor:
        """``(..., M)`` member logits -> ``(..., K)`` class logits (:func:`max_map`)."""
        return max_map(member_logits, self.class_of, self.num_classes)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.map(self.classifier.logits(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.map(self.classifier(images))


def label_space_classifier(classifier: nn.Module, classes: PromptClasses) -> nn.Module:
    """``classifier`` (scoring ``classes.names``) as the label space's classifier: wrapped in a
    :class:`MaxMappedClassifier` for a max-mapped space, itself otherwise."""
    if classes.class_of is None:
        return classifier
    return MaxMappedClassifier(classifier, classes.class_of, classes.num_outputs)
