"""Spawrious one-to-one (O2O) benchmarks, read from the layout of aengusl/spawrious (spawrious/torch.py).

Layout (the extracted ``spawrious224__*.tar.gz``)::

    <root>/spawrious224/{0,1,domain_adaptation_ds}/{beach,desert,dirt,jungle,mountain,snow}/
        {bulldog,corgi,dachshund,labrador}/*.png

``root`` is the folder that holds ``spawrious224/`` (the reference loader's ``root_dir``); the
``spawrious224`` folder itself is accepted too. Image ids start with ``spawrious224/``.

Split variants (``split_variant``):

- ``reference``: exactly the reference loader. Train env 1 takes from ``0/`` the first
  ``int(0.97*N)`` images of each class at its location and ``N - int(0.97*N)`` at the filler
  location; env 2 does the same from ``1/`` with 0.87. N = ``images_per_class`` (3168).
- ``env1_97``: env 1 only (``0/``, 97 % + 3 % filler): L2R²'s ResNet-50 comparison.
- ``env1_100``: env 1 only with a 100 % tie, N images of each class at its location: the
  variant of L2R²'s main tables (12,672 training images).

Test (every variant): each class at its test location, all images of ``0/`` and ``1/``. There is
no validation split: the DataModule holds out a fraction of train (L2R² holds out 10 %).
The reference loader takes the first N of ``os.listdir``, whose order is arbitrary; here names are
sorted, so the subset is deterministic but may differ from a particular run of the reference.
A folder holding fewer than the ``images_per_class`` the variant takes from it (an incomplete
extraction) gives one warning with the counts of every such folder; the split is then smaller.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from occam_l2r.data.datasets._layout import list_images, require_dir
from occam_l2r.data.records import Record, RecordDataset

log = logging.getLogger(__name__)

CLASS_NAMES = ["bulldog", "corgi", "dachshund", "labrador"]
LOCATIONS = ["beach", "desert", "dirt", "jungle", "mountain", "snow"]
#: benchmark -> (train location per class, test location per class, filler location), classes in
#: the reference order bulldog, dachshund, labrador, corgi
BENCHMARKS = {
    "o2o_easy": (
        ["desert", "jungle", "dirt", "snow"],
        ["dirt", "snow", "desert", "jungle"],
        "beach",
    ),
    "o2o_medium": (
        ["mountain", "beach", "dirt", "jungle"],
        ["jungle", "dirt", "beach", "snow"],
        "desert",
    ),
    "o2o_hard": (
        ["jungle", "mountain", "snow", "desert"],
        ["mountain", "snow", "desert", "jungle"],
        "beach",
    ),
}
REFERENCE_ORDER = ["bulldog", "dachshund", "labrador", "corgi"]
#: fraction of each class at its own location, per training environment folder
ENV_FRACTIONS = {"0": 0.97, "1": 0.87}
DOWNLOAD_HINT = (
    "Download the Spawrious tarball (spawrious224__o2o_easy.tar.gz or the entire dataset, see "
    "github.com/aengusl/spawrious) and extract it so that <root>/spawrious224/0/... exists."
)


class Spawrious(RecordDataset):
    """Spawrious O2O: four dog breeds, each tied to one background location in train.

    Args:
        root: folder holding ``spawrious224/`` (or that folder itself).
        benchmark: which O2O benchmark (location combinations of the reference loader).
        split_variant: ``reference``, ``env1_97`` or ``env1_100`` (see the module docstring).
        images_per_class: N, images per class and training environment (3168 in the reference).
    """

    val_split = None

    def __init__(
        self,
        root: str,
        benchmark: Literal["o2o_easy", "o2o_medium", "o2o_hard"] = "o2o_easy",
        split_variant: Literal["reference", "env1_97", "env1_100"] = "env1_100",
        images_per_class: int = 3168,
    ) -> None:
        super().__init__()
        if images_per_class < 1:
            raise ValueError(f"images_per_class={images_per_class} must be positive")
        path = Path(root)
        self.root = path.parent if path.name == "spawrious224" else path
        self.benchmark = benchmark
        self.split_variant = split_variant
        self.images_per_class = images_per_class
        self.class_names = list(CLASS_NAMES)
        self.group_names = list(LOCATIONS)
        self.train_split = "train"
        self.test_splits = ["test"]
        train_loc, test_loc, filler = BENCHMARKS[benchmark]
        self.train_location = dict(zip(REFERENCE_ORDER, train_loc, strict=True))
        self.test_location = dict(zip(REFERENCE_ORDER, test_loc, strict=True))
        self.filler_location = filler

    @property
    def name(self) -> str:
        return f"spawrious_{self.benchmark}_{self.split_variant}"

    def _folder(self, env: str, location: str, cls: str) -> Path:
        return require_dir(
            self.root / "spawrious224" / env / location / cls,
            "Spawrious",
            f"The {self.benchmark} benchmark needs it. {DOWNLOAD_HINT}",
        )

    def _take(
        self, split: str, env: str, location: str, cls: str, limit: int | None
    ) -> list[Record]:
        names = list_images(self._folder(env, location, cls))
        if limit is not None:
            if len(names) < limit:
                self._short.append((f"spawrious224/{env}/{location}/{cls}", len(names), limit))
            names = names[:limit]
        return [
            Record(
                image_id=f"spawrious224/{env}/{location}/{cls}/{name}",
                label=CLASS_NAMES.index(cls),
                split=split,
                group=location,
                metadata={"env": env, "location": location},
            )
            for name in names
        ]

    def load_records(self) -> list[Record]:
        require_dir(self.root / "spawrious224", "Spawrious", DOWNLOAD_HINT)
        n = self.images_per_class
        self._short: list[tuple[str, int, int]] = []
        records: list[Record] = []
        envs = ["0", "1"] if self.split_variant == "reference" else ["0"]
        for env in envs:
            own = n if self.split_variant == "env1_100" else int(ENV_FRACTIONS[env] * n)
            for cls in REFERENCE_ORDER:
                records += self._take("train", env, self.train_location[cls], cls, own)
            if own < n:
                for cls in REFERENCE_ORDER:
                    records += self._take("train", env, self.filler_location, cls, n - own)
        for env in ("0", "1"):
            for cls in REFERENCE_ORDER:
                records += self._take("test", env, self.test_location[cls], cls, None)
        if self._short:
            self._warn_short(sum(r.split == "train" for r in records))
        return records

    def _warn_short(self, num_train: int) -> None:
        """One warning: the folders holding fewer images than ``images_per_class`` asks for."""
        found, wanted = sum(f for _, f, _ in self._short), sum(w for _, _, w in self._short)
        folders = "; ".join(f"{folder}: {f} of {w}" for folder, f, w in self._short[:8])
        more = f"; and {len(self._short) - 8} more" if len(self._short) > 8 else ""
        log.warning(
            "Spawrious at %s: %d folder(s) hold fewer images than images_per_class=%d asks for "
            "(%s%s): %d of %d images taken, so the train split has %d images instead of %d. "
            "Check the extraction of the tarball, or lower images_per_class.",
            self.root, len(self._short), self.images_per_class, folders, more, found, wanted,
            num_train, num_train + wanted - found,
        )  # fmt: skip
