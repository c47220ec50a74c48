"""Unlabeled images: a folder (searched recursively) or a list file, as one split ``images``.

The images of ``python -m occam_l2r classify`` and of a ``segment`` run over new images
(``data.dataset: {class_path: occam_l2r.data.datasets.ImageFiles, init_args: {images: ...}}``)::

    <images>/**/<name>.{jpg,jpeg,png,bmp,tif,tiff,webp}   a folder: every such file below it
                                                          (suffix case ignored); image id = the
                                                          path relative to the folder
    <list>.txt                                            a list file: one path per line, relative
                                                          to the file's folder (or absolute);
                                                          blank lines and ``#`` comments skipped;
                                                          image id = the line as written

A folder's ids are sorted; a list file's keep its order. Files a list names but that are missing
or unreadable are kept (``segment`` lists them in its store's failures, ``classify`` gives them an
error row); :func:`list_image_files` is the one listing both use.

**Unlabeled.** Every record has ``label = -1`` (no class): the images are what is to be
classified. ``class_names`` is empty unless given (the classifier's names, for a prompt that
needs them, e.g. ``TopKPrompt``); the GT-label prompt (``ClassNamePrompt``) refuses label -1.
There are no ground-truth masks and no train or val split.
"""

from __future__ import annotations

from pathlib import Path

from occam_l2r.data.datasets._layout import DatasetLayoutError, DatasetNotFoundError
from occam_l2r.data.records import Record, RecordDataset

#: file suffixes taken from a folder (lower case)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: the one split of :class:`ImageFiles`
SPLIT = "images"


class ImageFilesError(DatasetNotFoundError):
    """The images cannot be listed: the folder or list file is missing, or lists no image (a
    :class:`FileNotFoundError`)."""


def _list_file(source: Path) -> list[tuple[str, Path]]:
    items: list[tuple[str, Path]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(source.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line in seen:
            raise DatasetLayoutError(
                f"list file {source} names {line!r} twice (lines {seen[line]} and {number}); "
                "an image id must be unique: remove one of the lines"
            )
        seen[line] = number
        path = Path(line)
        items.append((line, path if path.is_absolute() else source.parent / path))
    return items


def list_image_files(source: str | Path) -> list[tuple[str, Path]]:
    """The ``(image_id, path)`` of every image of ``source`` (see the module docstring).

    Args:
        source: a folder (every file with an :data:`IMAGE_SUFFIXES` suffix below it, sorted; the
            id is the path relative to the folder) or a text file with one path per line (blank
            lines and ``#`` comments skipped; relative paths are relative to the file; the id is
            the line as written, in the file's order). Files listed but missing or unreadable
            are kept.

    Raises:
        ImageFilesError: ``source`` does not exist, or lists no image.
        DatasetLayoutError: a list file names the same line twice.
    """
    source = Path(source)
    if source.is_dir():
        found = sorted(
            p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        items = [(p.relative_to(source).as_posix(), p) for p in found]
    elif source.is_file():
        items = _list_file(source)
    else:
        raise ImageFilesError(
            f"images {source} not found: give a folder of images or a text file with one image "
            "path per line (`images:` of the classify config or of ImageFiles)"
        )
    if not items:
        raise ImageFilesError(
            f"no images in {source} (suffixes {', '.join(IMAGE_SUFFIXES)}, or paths listed one "
            "per line); check `images:`"
        )
    return items


class ImageFiles(RecordDataset):
    """A folder or list file of unlabeled images as one split, ``images`` (module docstring).

    Args:
        images: a folder of images (searched recursively) or a text file with one path per line.
        class_names: the names of the classes the images will be classified into (default none:
            the records carry no class either way, ``label = -1``).
    """

    train_split: str | None = None
    val_split: str | None = None

    def __init__(self, images: str, class_names: list[str] | None = None) -> None:
        super().__init__()
        self.images = Path(images)
        # a list file's relative lines are relative to its folder; ids of a folder to the folder
        self.root = self.images.parent if self.images.is_file() else self.images
        self.class_names = list(class_names or [])
        self.group_names = []
        self.test_splits = [SPLIT]
        self._paths: dict[str, Path] = {}

    def load_records(self) -> list[Record]:
        self._paths = dict(list_image_files(self.images))
        return [Record(image_id, -1, SPLIT) for image_id in self._paths]

    def image_path(self, record: Record) -> Path:
        if not self._paths:
            self._by_split()
        return self._paths.get(record.image_id, self.root / record.image_id)

    def has_gt_mask(self, record: Record) -> bool:
        """Never: new images come without ground-truth masks (use a detector segmenter)."""
        return False
