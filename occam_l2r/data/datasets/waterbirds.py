"""Waterbirds, read from the layout of kohpangwei/group_DRO (``waterbird_complete95_forest2water2``).

Layout under ``root`` (the extracted ``waterbird_complete95_forest2water2`` folder)::

    metadata.csv      img_id, img_filename, y, split, place, place_filename
    <img_filename>    e.g. 001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg

``y`` is 1 for waterbirds, ``place`` 1 for water backgrounds, ``split`` 0/1/2 = train/val/test.
Group ``2*y + place``, named ``landbird_on_land``, ``landbird_on_water``, ``waterbird_on_land``,
``waterbird_on_water``; the minority groups are the birds on the other kind of place.

The dataset ships no masks. The birds are CUB-200-2011 images, so the CUB segmentations
(``segmentations.tgz``: ``<class folder>/<image name>.png``, soft masks) can serve as ground truth:
pass their folder as ``segmentations_root`` (pixels at or above 128 are the bird).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from occam_l2r.data.datasets._layout import require_dir, require_file, resize_mask
from occam_l2r.data.records import Record, RecordDataset

CLASS_NAMES = ["landbird", "waterbird"]
PLACES = ["land", "water"]
GROUP_NAMES = [f"{bird}_on_{place}" for bird in CLASS_NAMES for place in PLACES]
SPLITS = {"0": "train", "1": "val", "2": "test"}
DOWNLOAD_HINT = (
    "Download waterbird_complete95_forest2water2.tar.gz (github.com/kohpangwei/group_DRO) and "
    "set root to the extracted folder that holds metadata.csv."
)


class Waterbirds(RecordDataset):
    """Waterbirds: land/water birds on land/water backgrounds, splits train/val/test.

    Args:
        root: the ``waterbird_complete95_forest2water2`` folder (holds ``metadata.csv``).
        segmentations_root: optional CUB-200-2011 ``segmentations`` folder for :meth:`gt_masks`.
    """

    val_split = "val"

    def __init__(self, root: str, segmentations_root: str | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.segmentations_root = Path(segmentations_root) if segmentations_root else None
        self.class_names = list(CLASS_NAMES)
        self.group_names = list(GROUP_NAMES)
        self.train_split = "train"
        self.test_splits = ["test"]

    def load_records(self) -> list[Record]:
        require_dir(self.root, "Waterbirds", DOWNLOAD_HINT)
        index = require_file(self.root / "metadata.csv", "Waterbirds", DOWNLOAD_HINT)
        records = []
        with open(index, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"img_id", "img_filename", "y", "split", "place"} - set(
                reader.fieldnames or []
            )
            if missing:
                raise ValueError(
                    f"{index} lacks the columns {sorted(missing)}; is it Waterbirds' metadata.csv?"
                )
            for row in reader:
                y, place = int(row["y"]), int(row["place"])
                if row["split"] not in SPLITS:
                    raise ValueError(
                        f"{index}: split {row['split']!r} of {row['img_filename']} is not 0, 1 or 2"
                    )
                metadata: dict[str, object] = {"img_id": int(row["img_id"]), "place": place}
                if row.get("place_filename"):
                    metadata["place_filename"] = row["place_filename"]
                records.append(
                    Record(
                        image_id=row["img_filename"],
                        label=y,
                        split=SPLITS[row["split"]],
                        group=GROUP_NAMES[2 * y + place],
                        metadata=metadata,
                    )
                )
        return records

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        """The CUB segmentation of the bird (one mask, at the image's size)."""
        if self.segmentations_root is None:
            raise ValueError(
                "Waterbirds ships no masks; set segmentations_root to the CUB-200-2011 "
                "'segmentations' folder, or use a detector segmenter."
            )
        path = self.segmentations_root / Path(record.image_id).with_suffix(".png")
        if not path.is_file():
            raise FileNotFoundError(
                f"Waterbirds: CUB segmentation not found: {path}. Extract segmentations.tgz "
                "(CUB-200-2011) and point segmentations_root at its 'segmentations' folder."
            )
        soft = np.asarray(Image.open(path).convert("L"))
        with Image.open(self.image_path(record)) as im:
            width, height = im.size
        return [resize_mask(soft >= 128, height, width)]
