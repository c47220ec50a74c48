"""The images of a ``classify`` run, with their ids: those of the
:class:`~occam_l2r.data.datasets.image_files.ImageFiles` dataset over ``images:``.

The listing (a folder searched recursively, or a list file) lives in the data layer, so a
``segment`` run over the same ``images`` (``ImageFiles``) stores its segmentations under exactly
the ids ``classify`` looks up.
"""

from __future__ import annotations

from pathlib import Path

from occam_l2r.data.datasets.image_files import IMAGE_SUFFIXES, SPLIT, ImageFiles, ImageFilesError

__all__ = ["IMAGE_SUFFIXES", "ClassifyInputError", "list_images"]

#: the images to classify cannot be listed (a :class:`FileNotFoundError`)
ClassifyInputError = ImageFilesError


def list_images(source: str | Path) -> list[tuple[str, Path]]:
    """The ``(image_id, path)`` of every image to classify: the records of
    ``ImageFiles(source)`` (a folder's sorted, a list file's in its order). Files listed but
    missing or unreadable are kept: they get an error row.

    Raises:
        ClassifyInputError: ``source`` does not exist, or lists no image.
    """
    dataset = ImageFiles(str(source))
    return [(r.image_id, dataset.image_path(r)) for r in dataset.records(SPLIT)]
