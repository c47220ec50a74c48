"""The images of a ``classify`` run: a folder (recursively) or a list file, with their ids."""

from __future__ import annotations

from pathlib import Path

from occam_l2r.errors import UserError

#: file suffixes taken from a folder (lower case)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ClassifyInputError(UserError, FileNotFoundError):
    """The images to classify cannot be listed (a :class:`FileNotFoundError`)."""


def list_images(source: str | Path) -> list[tuple[str, Path]]:
    """The ``(image_id, path)`` of every image to classify, sorted by id.

    Args:
        source: a folder (every file with an :data:`IMAGE_SUFFIXES` suffix below it; the id is
            the path relative to the folder) or a text file with one path per line (blank lines
            and ``#`` comments skipped; relative paths are relative to the file; the id is the
            line as written). Files listed but missing or unreadable are kept: they get an
            error row.

    Raises:
        ClassifyInputError: ``source`` does not exist, or lists no image.
    """
    source = Path(source)
    if source.is_dir():
        found = sorted(
            p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        items = [(p.relative_to(source).as_posix(), p) for p in found]
    elif source.is_file():
        items = []
        for line in source.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                path = Path(line)
                items.append((line, path if path.is_absolute() else source.parent / path))
    else:
        raise ClassifyInputError(
            f"images {source} not found: give a folder of images or a text file with one image "
            "path per line (`images:` in the classify config)"
        )
    if not items:
        raise ClassifyInputError(
            f"no images in {source} (suffixes {', '.join(IMAGE_SUFFIXES)}); check `images:`"
        )
    return items
