"""Visual check of a segmentation store: ``python -m occam_l2r segment-preview --config ...``.

Takes the same config as ``segment`` (parsed by the same :class:`~occam_l2r.commands.segment.SegmentCLI`,
plus ``--preview.*`` options; ``model.store`` or the default store folder, ``data.splits`` and
``data.limit`` select the images; the ``trainer:`` section is ignored) and draws, for N images of the
store, one row of four panels: the image with its boxes and labels, the masks overlaid, and the
resulting FG_C and BG_S views (BG_B when the store holds boxes only), made by
:func:`occam_l2r.views.apply_view` with the FULL fallback marked. The grid goes to a PNG and to
TensorBoard (``add_image``). No model is loaded.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.cli import LightningArgumentParser
from PIL import Image, ImageDraw

from occam_l2r.commands.segment import SegmentCLI
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.data.segment_datamodule import SegmentDataModule
from occam_l2r.store import Segmentation, SegmentationStore
from occam_l2r.tasks.segment import SegmentTask
from occam_l2r.views import apply_view

log = logging.getLogger(__name__)

PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
    ],
    dtype=np.uint8,
)
HEADER = 14


@dataclass
class PreviewOptions:
    """What the preview draws.

    Args:
        num_images: rows of the grid (images picked at random from the store's images).
        split: draw images of this split only (default: any split of the run).
        seed: seed of the random pick.
        cell: side of each panel in pixels.
        score_threshold: the views' fallback threshold.
        out: PNG path (default ``<store>/preview.png``).
        tensorboard: TensorBoard log folder (default ``<store>/tensorboard``; ``""`` to skip).
    """

    num_images: int = 8
    split: str | None = None
    seed: int = 0
    cell: int = 160
    score_threshold: float = 0.0
    out: str | None = None
    tensorboard: str | None = None


def _fit(image: np.ndarray, cell: int) -> np.ndarray:
    """Resize to fit a ``cell`` square (aspect kept), centred on black."""
    im = Image.fromarray(image[..., :3])
    scale = cell / max(im.size)
    im = im.resize(
        (max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR
    )
    out = Image.new("RGB", (cell, cell))
    out.paste(im, ((cell - im.width) // 2, (cell - im.height) // 2))
    return np.asarray(out)


def _with_title(panel: np.ndarray, title: str) -> np.ndarray:
    im = Image.new("RGB", (panel.shape[1], panel.shape[0] + HEADER), (255, 255, 255))
    im.paste(Image.fromarray(panel), (0, HEADER))
    ImageDraw.Draw(im).text((2, 1), title[:40], fill=(0, 0, 0))
    return np.asarray(im)


def draw_boxes(image: np.ndarray, seg: Segmentation | None) -> np.ndarray:
    """The image with every box outlined and labelled (label and score)."""
    im = Image.fromarray(image[..., :3].copy())
    if seg is None:
        return np.asarray(im)
    draw = ImageDraw.Draw(im)
    for i, box in enumerate(seg.boxes):
        color = tuple(int(c) for c in PALETTE[i % len(PALETTE)])
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=1)
        draw.text((x0 + 1, y0 + 1), f"{seg.labels[i]} {seg.scores[i]:.2f}"[:24], fill=color)
    return np.asarray(im)


def overlay_masks(image: np.ndarray, seg: Segmentation | None, alpha: float = 0.5) -> np.ndarray:
    """The image with every mask tinted in its own colour (the image itself without masks)."""
    out = image[..., :3].astype(np.float32)
    if seg is None or not seg.has_masks:
        return image[..., :3].copy()
    for i in range(len(seg)):
        m = seg.mask(i)
        out[m] = (1 - alpha) * out[m] + alpha * PALETTE[i % len(PALETTE)]
    return out.clip(0, 255).astype(np.uint8)


def preview_row(
    image: np.ndarray, seg: Segmentation | None, cell: int, score_threshold: float
) -> np.ndarray:
    """One grid row: boxes | masks | FG_C | BG_S (or BG_B), each panel titled."""
    bg_view = "BG_S" if seg is not None and seg.has_masks else "BG_B"
    panels = [
        (draw_boxes(image, seg), f"{len(seg) if seg else 0} boxes"),
        (overlay_masks(image, seg), "masks" if seg is not None and seg.has_masks else "no masks"),
    ]
    for view in ("FG_C", bg_view):
        res = apply_view(view, image, seg, score_threshold=score_threshold)
        panels.append(
            (res.image, view if res.fallback is None else f"{view}=FULL ({res.fallback})")
        )
    return np.concatenate([_with_title(_fit(p, cell), t) for p, t in panels], axis=1)


def preview_grid(
    dataset: RecordDataset,
    store: SegmentationStore,
    records: list[Record],
    options: PreviewOptions,
) -> np.ndarray:
    """The grid image (HWC uint8) for ``options.num_images`` records held by the store."""
    held = [
        r
        for r in records
        if r.image_id in store and (options.split is None or r.split == options.split)
    ]
    if not held:
        raise ValueError(
            f"the store {store.path} holds none of the selected images (split={options.split}); "
            "run `python -m occam_l2r segment` with this config first"
        )
    rng = np.random.default_rng(options.seed)
    pick = sorted(
        rng.choice(len(held), size=min(options.num_images, len(held)), replace=False).tolist()
    )
    rows = [
        preview_row(
            dataset.read_image(held[i]),
            store.get(held[i].image_id),
            options.cell,
            options.score_threshold,
        )
        for i in pick
    ]
    return np.concatenate(rows, axis=0)


def run_preview(
    dataset: RecordDataset, store: Path, records: list[Record], options: PreviewOptions
) -> dict[str, Any]:
    """Write the grid PNG (and TensorBoard image); returns the paths written."""
    reader = SegmentationStore(store)
    grid = preview_grid(dataset, reader, records, options)
    out = Path(options.out) if options.out else store / "preview.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out)
    written: dict[str, Any] = {"png": str(out), "rows": grid.shape[0] // (options.cell + HEADER)}
    tb = (
        store / "tensorboard"
        if options.tensorboard is None
        else (Path(options.tensorboard) if options.tensorboard else None)
    )
    if tb is not None:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(tb)) as writer:
            writer.add_image(
                f"segment_preview/{reader.segmenter}", grid, global_step=0, dataformats="HWC"
            )
        written["tensorboard"] = str(tb)
    print(
        f"preview of {written['rows']} images of {store} written to {out}"
        + (f" and {tb}" if tb else ""),
        flush=True,
    )
    return written


class PreviewCLI(SegmentCLI):
    """The ``segment`` parser plus ``--preview.*``; instantiates the task (no model is loaded)
    and the DataModule, but no Trainer."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(
            args, prog="python -m occam_l2r segment-preview", description=__doc__.split("\n\n")[0]
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(PreviewOptions, "preview")

    def instantiate_trainer(self, **kwargs: Any) -> None:  # type: ignore[override]
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m occam_l2r segment-preview``.

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    cli = PreviewCLI(list(sys.argv[2:] if argv is None else argv))
    task: SegmentTask = cli.model
    data: SegmentDataModule = cli.datamodule
    data.prepare_data()
    store = task.bind(data.dataset, cli.config_name)
    options: PreviewOptions = cli.config_init.preview
    return run_preview(data.dataset, store, data.run_records(), options)
