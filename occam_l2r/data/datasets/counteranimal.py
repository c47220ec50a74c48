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

The dataset is for evaluation only: its two test splits are ``common`` and ``counter`` (L2R²'s
"rare"), the group is the same name and the background (``grass``, ``snow``, ...) is metadata.
There is no train split.
"""

from __future__ import annotations

from pathlib import Path

from occam_l2r.data.datasets._layout import (
    DatasetLayoutError,
    DatasetNotFoundError,
    list_images,
    require_dir,
)
from occam_l2r.data.records import Record, RecordDataset

SUBSETS = ("common", "counter")
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
        for folder in sorted(p.name for p in base.iterdir() if p.is_dir()):
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
        for label, folder in enumerate(self._folders):
            class_dir = self.root / "LAION-final" / folder
            for sub in sorted(p.name for p in class_dir.iterdir() if p.is_dir()):
                subset = next((s for s in SUBSETS if sub.lower().startswith(s)), None)
                if subset is None:
                    continue
                background = sub[len(subset) :].lstrip("-_ ")
                for fname in list_images(class_dir / sub):
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
        return records
