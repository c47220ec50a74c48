"""OCCAM's results table (Table 8 of the paper): one row per (mask source, foreground score,
apply mode), one column per evaluated split, and the whole-image baselines beside them.

Markdown (``occam_table.md``: the chosen metric in %, as the paper prints it), CSV
(``occam_table.csv``: one line per row and split, every metric) and JSON (``occam_table.json``:
the same records), written atomically (:func:`occam_l2r.store_files.atomic_write_text`).
Besides the accuracies, ``no_masks`` counts the images classified on the whole image for want of
masks, and ``object_iou`` is the mean IoU of the chosen mask with the ground-truth object (where
the dataset has one): how well a score finds the object. ``mean_class_acc`` is the OCCAM
authors' CounterAnimal metric (the mean per-class accuracy over the classes with at least one
correct prediction; a column appended after ``object_iou``). Rows, as in Table 8:

==============  ===========  =============  ========  ===========================================
Masks source    FG det       Apply Mask     BG        what it is
==============  ===========  =============  ========  ===========================================
``-``           ``-``        ``-``          original  the zero-shot CLIP on the whole image
``-``           whole image  α-channel      original  AlphaCLIP with a mask covering the image
<source>        <score>      crop + resize  gray      ``crop_resize_gray`` of the chosen mask
<source>        <score>      crop + resize  original  ``crop_resize_original`` of the chosen mask
<source>        <score>      α-channel      original  ``alpha`` with the chosen mask
==============  ===========  =============  ========  ===========================================
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from occam_l2r.occam.apply import TABLE_COLUMNS
from occam_l2r.store_files import atomic_write_text

#: the metrics of every row and split (fractions, except the counts)
METRICS: tuple[str, ...] = (
    "acc", "macro_acc", "worst_group_acc", "num_samples", "no_masks", "object_iou",
    "mean_class_acc",
)  # fmt: skip
CSV_COLUMNS: tuple[str, ...] = ("source", "fg_det", "apply_mask", "bg", "split", *METRICS)
#: FG det of the AlphaCLIP whole-image baseline (OCCAM §E.1)
WHOLE_IMAGE = "whole image"


@dataclass(frozen=True)
class Variant:
    """One row of the table.

    Attributes:
        source: the mask source (store name); ``""`` for a whole-image baseline.
        score: the foreground score; ``"whole image"`` for the AlphaCLIP baseline, ``""`` for the
            plain whole-image CLIP.
        mode: the apply mode; ``""`` for the plain whole-image CLIP.
    """

    source: str = ""
    score: str = ""
    mode: str = ""

    @property
    def key(self) -> str:
        """A name for metric keys: ``FULL``, ``whole_image/alpha``, ``<source>/<mode>/<score>``."""
        if not self.mode:
            return "FULL"
        if not self.source:
            return f"whole_image/{self.mode}"
        return f"{self.source}/{self.mode}/{self.score}"

    def columns(self) -> tuple[str, str, str, str]:
        """Table 8's Masks source, FG det, Apply Mask and BG cells."""
        if not self.mode:
            return ("-", "-", "-", "original")
        apply, bg = TABLE_COLUMNS[self.mode]
        return (self.source or "-", self.score or "-", apply, bg)


def variants(sources: Sequence[str], modes: Sequence[str], scores: Sequence[str]) -> list[Variant]:
    """Every row of a run, in table order: the plain whole image, the AlphaCLIP whole image
    (when ``alpha`` is a mode), then each source, mode and score."""
    out = [Variant()]
    if "alpha" in modes:
        out.append(Variant(score=WHOLE_IMAGE, mode="alpha"))
    out += [Variant(src, score, mode) for src in sources for mode in modes for score in scores]
    return out


def _number(value: object) -> float:
    return float(value)  # type: ignore[arg-type]  # a float or a 0-d tensor


def results_from_values(
    values: Mapping[str, object], rows: Sequence[Variant], splits: Sequence[str]
) -> dict[Variant, dict[str, dict[str, float]]]:
    """Row -> split -> metric from logged values named ``<split>/<row key>/<metric>``;
    ``no_masks`` is the row's ``fallback_rate`` times its ``num_samples``."""
    results: dict[Variant, dict[str, dict[str, float]]] = {}
    for variant in rows:
        per_split = {}
        for split in splits:
            prefix = f"{split}/{variant.key}/"
            row = {m: _number(values[prefix + m]) for m in METRICS if prefix + m in values}
            rate = values.get(prefix + "fallback_rate")
            if rate is not None and "num_samples" in row:
                row["no_masks"] = float(round(_number(rate) * row["num_samples"]))
            per_split[split] = row
        results[variant] = per_split
    return results


def records(
    results: Mapping[Variant, Mapping[str, Mapping[str, float]]], splits: Sequence[str]
) -> list[dict[str, object]]:
    """One record per (row, split): the four table cells, the split and every metric."""
    out: list[dict[str, object]] = []
    for variant, per_split in results.items():
        source, fg_det, apply, bg = variant.columns()
        for split in splits:
            values = per_split.get(split, {})
            row: dict[str, object] = {
                "source": source,
                "fg_det": fg_det,
                "apply_mask": apply,
                "bg": bg,
                "split": split,
            }
            for name in METRICS:
                v = values.get(name)
                row[name] = None if v is None or v != v else float(v)  # NaN: none
            out.append(row)
    return out


def to_markdown(
    results: Mapping[Variant, Mapping[str, Mapping[str, float]]],
    splits: Sequence[str],
    metric: str = "acc",
) -> str:
    """The table in Markdown: ``metric`` in % per split, and the images without masks."""
    head = ["Masks source", "FG det", "Apply Mask", "BG", *splits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, per_split in results.items():
        cells = list(variant.columns())
        for split in splits:
            v = per_split.get(split, {}).get(metric)
            cells.append("-" if v is None or v != v else f"{100 * float(v):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{metric} in %.")
    counts = _no_mask_counts(results, splits)
    if counts:
        lines.append(
            "Images without masks (classified on the whole image, counted in every row): "
            + ", ".join(f"{s} {n}/{t}" for s, (n, t) in counts.items())
            + "."
        )
    return "\n".join(lines) + "\n"


def _no_mask_counts(
    results: Mapping[Variant, Mapping[str, Mapping[str, float]]], splits: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Per split, (images without masks, images) of the first masked row of each source."""
    out: dict[str, tuple[int, int]] = {}
    for variant, per_split in results.items():
        if not variant.source:
            continue
        for split in splits:
            values = per_split.get(split, {})
            if "no_masks" in values and split not in out:
                out[split] = (int(values["no_masks"]), int(values.get("num_samples", 0)))
    return out


def write_table(
    results: Mapping[Variant, Mapping[str, Mapping[str, float]]],
    splits: Sequence[str],
    out_dir: str | Path,
    metric: str = "acc",
    meta: Mapping[str, object] | None = None,
) -> dict[str, Path]:
    """Write ``occam_table.md``, ``.csv`` and ``.json`` into ``out_dir`` (atomically).

    Args:
        results: row -> split -> metric -> value.
        splits: the split columns, in order.
        out_dir: the folder (created).
        metric: the metric of the Markdown table.
        meta: extra fields of the JSON file (model, dataset, ...).

    Returns:
        ``{"markdown": ..., "csv": ..., "json": ...}`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = records(results, splits)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    paths = {
        "markdown": out / "occam_table.md",
        "csv": out / "occam_table.csv",
        "json": out / "occam_table.json",
    }
    atomic_write_text(to_markdown(results, splits, metric), paths["markdown"])
    atomic_write_text(buf.getvalue(), paths["csv"])
    body = {"metric": metric, "splits": list(splits), "rows": rows, **dict(meta or {})}
    atomic_write_text(json.dumps(body, indent=2, default=str), paths["json"])
    return paths
