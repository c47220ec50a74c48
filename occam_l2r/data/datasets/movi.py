"""MOVi-C / MOVi-E (Kubric), frames and instance-id masks as the object-centric repos export them.

Source: google-research/kubric ``challenges/movi`` publishes MOVi as TFDS (``movi_c`` /
``movi_e`` at ``gs://kubric-public/tfds``, configs ``128x128`` and ``256x256``; 24 frames per
video; ``segmentations``: one instance id per pixel, 0 = background). The object-centric repos
dump it to image files; this reader follows the layout of SlotDiffusion's exporter
(Wuziyi616/SlotDiffusion ``scripts/data_utils/download_movi.py``, one of OCCAM Table 1's
baselines: ``masks[t, ..., 0]`` written as an 8-bit PNG next to each frame)::

    <root>/MOVi-C/<subset>/<video:08d>/<frame:06d>.jpg         the frame (RGB)
    <root>/MOVi-C/<subset>/<video:08d>/<frame:06d>_mask.png    uint8 instance ids, 0 = background

``subset`` is ``train``, ``validation`` or ``test`` (the TFDS split names); ``root`` may also be
the ``MOVi-C`` (``MOVi-E``) folder itself. Frames saved as ``.png`` are read too.

**Which split is the test set.** DINOSAUR / FT-DINOSAUR evaluate object discovery with
amazon-science/object-centric-learning-framework, whose ``movi_c_image`` / ``movi_e_image``
test set is the TFDS ``validation`` split (250 videos, every one of the 24 frames: 6000 images),
and OCCAM's object-discovery numbers (Table 1) were computed with the authors' fork of it
(AlexanderRubinstein/object-centric-learning-framework, see the OCCAM README). So ``subset``
defaults to ``validation``; its records form the split named ``test``. ``frames`` picks a subset
of the frame indices (all by default).

**Evaluation only.** MOVi has no image-level classes: every record has ``label = -1`` (no class;
the ``gt`` segmenter stores such detections with label id -1 and an empty name), ``class_names``
is empty and there is no train or val split. Metadata: ``video`` and ``frame``. Ground truth:
:meth:`MOVi.gt_masks` gives one boolean mask per instance id (background 0 excluded), at the
mask's own resolution; the ``discover`` verb (:mod:`occam_l2r.commands.discover`) scores
segmentation stores against them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from occam_l2r.data.datasets._layout import DatasetLayoutError, DatasetNotFoundError, require_dir
from occam_l2r.data.records import Record, RecordDataset

SUBSETS = ("train", "validation", "test")
#: video folders: 8 digits; frames: 6 digits (SlotDiffusion's exporter)
VIDEO = re.compile(r"^\d{8}$")
FRAME = re.compile(r"^(?P<frame>\d{6})\.(?:jpg|jpeg|png)$", re.IGNORECASE)
MASK_SUFFIX = "_mask.png"
DOWNLOAD_HINT = (
    "Export the TFDS release (gs://kubric-public/tfds, movi_{level}/128x128:1.0.0, see "
    "github.com/google-research/kubric challenges/movi) to frames and masks with "
    "scripts/data_utils/download_movi.py of github.com/Wuziyi616/SlotDiffusion "
    "(--level {level_lower}): it writes <out>/MOVi-{level}/<subset>/<video:08d>/<frame:06d>.jpg "
    "and <frame:06d>_mask.png; set root to <out> (or to <out>/MOVi-{level})."
)


class MOVi(RecordDataset):
    """MOVi-C or MOVi-E frames with instance-id masks, for object discovery (evaluation only).

    Args:
        root: the exporter's output folder holding ``MOVi-C/`` (``MOVi-E/``), or that folder.
        level: ``C`` (3-10 objects per scene) or ``E`` (11-23 objects, moving camera).
        subset: the exported TFDS split read as the ``test`` split (default ``validation``:
            the test set of DINOSAUR / FT-DINOSAUR and OCCAM Table 1).
        frames: frame indices to read from every video (default: all, 24 per video).
    """

    train_split: str | None = None
    val_split: str | None = None

    def __init__(
        self,
        root: str,
        level: Literal["C", "E"] = "C",
        subset: Literal["train", "validation", "test"] = "validation",
        frames: list[int] | None = None,
    ) -> None:
        super().__init__()
        if level not in ("C", "E"):
            raise ValueError(f"MOVi: level={level!r} must be 'C' or 'E'")
        if subset not in SUBSETS:
            raise ValueError(f"MOVi: subset={subset!r} must be one of {list(SUBSETS)}")
        self.root = Path(root)
        self.level = level
        self.subset = subset
        self.frames = None if frames is None else sorted({int(f) for f in frames})
        self.class_names = []
        self.group_names = []
        self.train_split = None
        self.val_split = None
        self.test_splits = ["test"]

    @property
    def name(self) -> str:
        return f"movi_{self.level.lower()}"

    @property
    def hint(self) -> str:
        return DOWNLOAD_HINT.format(level=self.level, level_lower=self.level.lower())

    def subset_dir(self) -> Path:
        """The folder of the exported subset: ``<root>[/MOVi-<level>]/<subset>``."""
        title = f"MOVi-{self.level}"
        require_dir(self.root, title, self.hint)
        base = self.root / title
        if not base.is_dir() and self.root.name.lower() == title.lower():
            base = self.root
        if not base.is_dir():
            found = sorted(p.name for p in self.root.iterdir() if p.name.lower().startswith("movi"))
            raise DatasetNotFoundError(
                f"{title}: folder not found: {base} (found in {self.root}: {found or 'nothing'}). "
                f"{self.hint}"
            )
        folder = base / self.subset
        if not folder.is_dir():
            present = [s for s in SUBSETS if (base / s).is_dir()]
            raise DatasetNotFoundError(
                f"{title}: subset folder not found: {folder} (subsets present: {present}); "
                f"export the {self.subset!r} split or set subset to one of them. {self.hint}"
            )
        return folder

    def load_records(self) -> list[Record]:
        title = f"MOVi-{self.level}"
        folder = self.subset_dir()
        videos = sorted(p.name for p in folder.iterdir() if p.is_dir() and VIDEO.match(p.name))
        if not videos:
            raise DatasetLayoutError(
                f"{title}: no video folders (8-digit names such as 00000000) in {folder}. "
                f"{self.hint}"
            )
        records: list[Record] = []
        missing: list[Path] = []
        for video in videos:
            records += self._video_records(folder / video, missing)
        if missing:
            named = ", ".join(str(p) for p in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetNotFoundError(
                f"{title}: {len(missing)} file(s) of the layout missing (every frame needs its "
                f"<frame>_mask.png and every mask its frame): {named}{more}. The export is "
                f"incomplete; rerun it. {self.hint}"
            )
        return records

    def _video_records(self, vdir: Path, missing: list[Path]) -> list[Record]:
        """The records of one video folder; missing frames or masks are appended to ``missing``."""
        names = {p.name for p in vdir.iterdir() if p.is_file()}
        frames: dict[int, str] = {}
        for name in names:
            m = FRAME.match(name)
            if m:
                frames[int(m["frame"])] = name
        masks = {int(n[:6]) for n in names if n.endswith(MASK_SUFFIX) and n[:6].isdigit()}
        if not frames and not masks:
            raise DatasetLayoutError(
                f"MOVi-{self.level}: video folder {vdir} holds no frames (<frame:06d>.jpg). "
                f"{self.hint}"
            )
        wanted = sorted(frames.keys() | masks) if self.frames is None else self.frames
        rel = vdir.relative_to(self.root).as_posix()
        records = []
        for t in wanted:
            if t not in frames:
                missing.append(vdir / f"{t:06d}.jpg")
            if t not in masks:
                missing.append(vdir / f"{t:06d}{MASK_SUFFIX}")
            if t in frames and t in masks:
                records.append(
                    Record(
                        image_id=f"{rel}/{frames[t]}",
                        label=-1,
                        split="test",
                        metadata={"video": vdir.name, "frame": t},
                        mask_path=f"{rel}/{t:06d}{MASK_SUFFIX}",
                    )
                )
        return records

    def has_gt_mask(self, record: Record) -> bool:
        """Every MOVi frame has its instance-id mask (checked when the records are read)."""
        return record.mask_path is not None

    def instance_ids(self, record: Record) -> np.ndarray:
        """The ``(H, W)`` instance-id map of ``record`` (0 = background)."""
        if record.mask_path is None:
            raise ValueError(f"MOVi-{self.level}: record {record.image_id} has no mask path")
        path = self.root / record.mask_path
        if not path.is_file():
            raise DatasetNotFoundError(
                f"MOVi-{self.level}: instance mask not found: {path}. {self.hint}"
            )
        with Image.open(path) as im:
            ids = np.asarray(im)
        if ids.ndim == 3:  # an RGB-saved mask: the id is in every channel
            ids = ids[..., 0]
        return ids

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        """One boolean ``(H, W)`` mask per instance id of the frame, in id order; the background
        (id 0) is excluded. A frame without objects gives an empty list."""
        ids = self.instance_ids(record)
        return [ids == v for v in np.unique(ids) if v != 0]
