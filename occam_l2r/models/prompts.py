"""Prompts of the zero-shot classifier: templates, class names and label spaces.

- Templates (:func:`resolve_templates`): one template (``"a photo of a {c}."``, L2R²'s), a list,
  a named set shipped by open_clip (``openai_imagenet``: OpenAI's 80 ImageNet templates,
  ``simple_imagenet``: their 2-template subset) or a text file with one template per line.
- Class names (:func:`prompt_classes`): the dataset's official names by default, or a
  class-name file per dataset (:func:`read_class_names_file`; one that does not match the
  dataset's classes raises :class:`ClassNamesError` naming the file and the mismatch).
- Label spaces: ``dataset`` (the dataset's own K classes) or ``imagenet1k`` (the 1000 ImageNet
  classes, open_clip's names, for a dataset whose classes are ImageNet classes: its labels map to
  ImageNet indices through ``dataset.imagenet_class_indices``; a prediction outside the dataset's
  classes is wrong).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from occam_l2r.errors import UserError

LabelSpace = Literal["dataset", "imagenet1k"]
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
    return _checked(list(templates), "model.init_args.templates")


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
            f"class-name file {path} not found (model.init_args.class_names_file)"
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
        names: the prompt name of each output class.
        label_map: the output index of each dataset class (``None``: the identity).
    """

    names: list[str]
    label_map: list[int] | None = None


def prompt_classes(
    dataset_classes: list[str],
    label_space: LabelSpace = "dataset",
    class_names_file: str | None = None,
    imagenet_indices: list[int] | None = None,
    dataset_name: str = "the dataset",
) -> PromptClasses:
    """The output classes of a zero-shot run on a dataset.

    Args:
        dataset_classes: the dataset's official class names, in label order.
        label_space: ``dataset`` or ``imagenet1k``.
        class_names_file: prompt names instead of the defaults (the dataset's names, or
            open_clip's ImageNet names in the ``imagenet1k`` space), see
            :func:`read_class_names_file`.
        imagenet_indices: the ImageNet-1k index of each dataset class
            (``dataset.imagenet_class_indices``); needed by ``imagenet1k``.
        dataset_name: for messages.

    Raises:
        LabelSpaceError: ``imagenet1k`` without valid ImageNet indices.
        ClassNamesError: a class-name file that does not match.
    """
    if label_space == "dataset":
        names = list(dataset_classes)
        if class_names_file:
            names = read_class_names_file(class_names_file, names)
        return PromptClasses(names)
    if label_space != "imagenet1k":
        raise LabelSpaceError(f"label_space={label_space!r}: choose dataset or imagenet1k")
    if imagenet_indices is None:
        raise LabelSpaceError(
            f"label_space: imagenet1k needs the ImageNet-1k index of each class, but "
            f"{dataset_name} does not give them (its imagenet_class_indices is None: its classes "
            "are not ImageNet classes). Use label_space: dataset."
        )
    indices = [int(i) for i in imagenet_indices]
    bad = [i for i in indices if not 0 <= i < IMAGENET_CLASSES]
    if len(indices) != len(dataset_classes) or bad or len(set(indices)) != len(indices):
        raise LabelSpaceError(
            f"{dataset_name}: imagenet_class_indices must give one distinct index in [0, 1000) "
            f"per class ({len(dataset_classes)} classes), got {len(indices)} (out of range: {bad[:3]})"
        )
    names = imagenet_class_names()
    if class_names_file:
        names = read_class_names_file(class_names_file, names)
    return PromptClasses(names, indices)
