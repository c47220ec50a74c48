"""CounterAnimal (counteranimal.github.io), read from the ``LAION-final`` folder layout.

The authors publish no loader; the layout below is the one third-party loaders read::

    <root>/LAION-final/<ImageNet index> <class name>/common-<background>/*.jpg
    <root>/LAION-final/<ImageNet index> <class name>/counter-<background>/*.jpg
    e.g. LAION-final/10 salamander/common-grass/, LAION-final/10 salamander/counter-snow/

``root`` is the folder holding ``LAION-final/`` (or that folder itself); image ids start with
``LAION-final/``. 45 ImageNet-1k animal classes; the label is the position of the class in
ascending ImageNet index order, the ImageNet index itself is in the metadata (for 1000-way
zero-shot evaluation, also as :attr:`CounterAnimal.imagenet_class_indices` and
:attr:`CounterAnimal.imagenet_to_class`: a 1000-way zero-shot prediction is right if it is the
class's ImageNet index). Subfolders are matched on the ``common``/``counter`` prefix.

What archives add is skipped and counted in one INFO line: hidden entries (``.DS_Store``,
AppleDouble ``._<name>`` files, ``.ipynb_checkpoints``...), ``__MACOSX`` folders and files that are
not images (``imagenet_names.txt``, ``Thumbs.db``...). A folder under ``LAION-final/`` that is none
of these and not named ``<ImageNet index> <name>`` is a wrong layout: one message names it.

The dataset is for evaluation only: its two test splits are ``common`` and ``counter`` (L2R²'s
"rare"), the group is the same name and the background (``grass``, ``snow``, ...) is metadata.
There is no train split.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from occam_l2r.data.datasets._layout import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    DatasetNotFoundError,
    require_dir,
)
from occam_l2r.data.records import Record, RecordDataset

log = logging.getLogger(__name__)

SUBSETS = ("common", "counter")
#: folders that archive tools add (macOS zip resource forks)
ARCHIVE_FOLDERS = frozenset({"__MACOSX"})


def _debris(name: str) -> bool:
    """Whether an entry is one an archive tool or an OS added (hidden, ``__MACOSX``)."""
    return name.startswith(".") or name in ARCHIVE_FOLDERS


def _entries(folder: Path) -> tuple[list[str], list[str], int]:
    """The subfolders and image files of ``folder`` (sorted), and how many other entries
    (archive debris, files that are not images) were skipped."""
    folders, images, skipped = [], [], 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if _debris(entry.name):
                skipped += 1
            elif entry.is_dir():
                folders.append(entry.name)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                images.append(entry.name)
            else:
                skipped += 1
    return sorted(folders), sorted(images), skipped


DOWNLOAD_HINT = (
    "Download CounterAnimal (counteranimal.github.io) and set root to the folder holding "
    "LAION-final/ (class folders named '<ImageNet index> <name>')."
)


class CounterAnimal(RecordDataset):
    """CounterAnimal: 45 animal classes, ``common`` vs ``counter`` backgrounds (test only).

    Args:
        root: folder holding ``LAION-final/`` (or ``LAION-final`` itself).
    """

    val_split = None
    train_split: str | None = None

    def __init__(self, root: str) -> None:
        super().__init__()
        path = Path(root)
        self.root = path.parent if path.name == "LAION-final" else path
        self.test_splits = list(SUBSETS)
        self.group_names = list(SUBSETS)
        base = require_dir(self.root, "CounterAnimal", DOWNLOAD_HINT)
        base = require_dir(base / "LAION-final", "CounterAnimal", DOWNLOAD_HINT)
        classes: list[tuple[int, str, str]] = []
        folders, _, self._skipped = _entries(base)
        for folder in folders:
            index, _, name = folder.partition(" ")
            if not index.isdigit() or not name:
                raise DatasetLayoutError(
                    f"CounterAnimal: class folder {base / folder} is not named '<ImageNet index> <name>'"
                )
            classes.append((int(index), name.strip(), folder))
        if not classes:
            raise DatasetNotFoundError(
                f"CounterAnimal: no class folders in {base}. {DOWNLOAD_HINT}"
            )
        classes.sort()
        self.imagenet_indices = [c[0] for c in classes]
        self.class_names = [c[1] for c in classes]
        self._folders = [c[2] for c in classes]

    @property
    def name(self) -> str:
        return "counteranimal"

    @property
    def imagenet_class_indices(self) -> list[int]:
        """The ImageNet-1k index of each class (the leading number of its folder)."""
        return list(self.imagenet_indices)

    def load_records(self) -> list[Record]:
        records = []
        skipped = self._skipped
        for label, folder in enumerate(self._folders):
            class_dir = self.root / "LAION-final" / folder
            subs, _, count = _entries(class_dir)
            skipped += count
            for sub in subs:
                subset = next((s for s in SUBSETS if sub.lower().startswith(s)), None)
                if subset is None:
                    skipped += 1
                    continue
                background = sub[len(subset) :].lstrip("-_ ")
                nested, images, count = _entries(class_dir / sub)
                skipped += count + len(nested)
                for fname in images:
                    records.append(
                        Record(
                            image_id=f"LAION-final/{folder}/{sub}/{fname}",
                            label=label,
                            split=subset,
                            group=subset,
                            metadata={
                                "imagenet_index": self.imagenet_indices[label],
                                "background": background,
                            },
                        )
                    )
        if skipped:
            log.info(
                "CounterAnimal: skipped %d entries under %s that are not part of the layout "
                "(hidden files, __MACOSX folders, non-image files, subfolders that are neither "
                "common-* nor counter-*)",
                skipped,
                self.root / "LAION-final",
            )
        return records
