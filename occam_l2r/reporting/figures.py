"""The report's matplotlib figures (plain ``Figure`` objects, no pyplot), each written as a PNG.

- :func:`plot_reliability`: reliability diagrams before / after temperature scaling (one view);
- :func:`plot_accuracy`: the metric of every row per split, mean ± std over seeds as error bars;
- :func:`plot_class_deltas`: per-class accuracy change against the baseline (L2R² Fig. 12);
- :func:`plot_rates`: grouped bars of rates per view and split (the fallback rates);
- :func:`plot_image_grid`: thumbnails with captions (images where fusion and FULL disagree).

Figure 8 and Figure 11 come from :func:`occam_l2r.fusion.report.plot_weights` and
:func:`occam_l2r.fusion.topk.plot_nonempty_histogram`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from occam_l2r.reporting.stats import Reliability


class _Figures:
    """pyplot's ``subplots`` / ``figure`` / ``close`` made of plain :class:`Figure` objects: no
    pyplot state and no backend switch (a notebook keeps showing its own figures)."""

    @staticmethod
    def subplots(*args: Any, figsize=None, dpi=None, **kwargs: Any):
        fig = Figure(figsize=figsize, dpi=dpi)
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def figure(figsize=None, dpi=None) -> Figure:
        return Figure(figsize=figsize, dpi=dpi)

    @staticmethod
    def close(fig: Figure) -> None:
        """Nothing to release: no pyplot holds the figure."""


def _pyplot() -> _Figures:
    return _Figures()


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_reliability(before: Reliability, after: Reliability, title: str, path: str | Path) -> Path:
    """Two reliability diagrams side by side: raw logits and temperature-scaled logits.

    Bars are the accuracy per confidence bin, the red part the gap to the bin's mean
    confidence; the diagonal is perfect calibration. Each panel names its temperature and ECE.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.0), sharey=True)
    for ax, rel, name in zip(axes, (before, after), ("before", "after"), strict=True):
        centers = (rel.edges[:-1] + rel.edges[1:]) / 2
        width = rel.edges[1] - rel.edges[0]
        acc = np.nan_to_num(rel.accuracy)
        conf = np.where(rel.count > 0, rel.confidence, centers)
        ax.bar(centers, acc, width, edgecolor="k", lw=0.4, label="accuracy")
        gap = np.where(rel.count > 0, conf - acc, 0.0)
        ax.bar(centers, gap, width, bottom=acc, color="tab:red", alpha=0.35, label="gap")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{name} TS (T={rel.temperature:.2f}): ECE {100 * rel.ece:.2f}%", fontsize=9)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.83, wspace=0.08)
    return _save(fig, path)


def plot_accuracy(rows: pd.DataFrame, splits: Sequence[str], metric: str, path: str | Path) -> Path:
    """One panel per split: a horizontal bar per row, mean ± std over seeds (in %).

    Args:
        rows: columns ``label``, ``kind``, ``split``, ``mean``, ``std`` (rows in table order);
            bars are coloured by ``kind`` (single models grey, fused pairs blue).
        splits: the panels.
        metric: the metric's name, for the axis.
    """
    plt = _pyplot()
    labels = list(dict.fromkeys(rows.label))
    kinds = dict(zip(rows.label, rows.kind, strict=True))
    colors = {"single": "tab:gray", "metadata": "tab:olive", "ensemble": "tab:cyan",
              "topk": "tab:purple"}  # fmt: skip
    height = max(2.5, 0.26 * len(labels) + 1.2)
    fig, axes = plt.subplots(1, len(splits), figsize=(3.4 * len(splits) + 2.8, height),
                             sharey=True, squeeze=False)  # fmt: skip
    y = np.arange(len(labels))
    for ax, split in zip(axes[0], splits, strict=True):
        part = rows[rows.split == split].set_index("label").reindex(labels)
        mean, std = 100 * part["mean"].to_numpy(float), 100 * part["std"].to_numpy(float)
        ax.barh(y, np.nan_to_num(mean), xerr=np.nan_to_num(std), height=0.7, capsize=2,
                color=[colors.get(kinds[lab], "tab:blue") for lab in labels])  # fmt: skip
        ax.set_title(split, fontsize=9)
        ax.set_xlabel(f"{metric} (%)")
        ax.set_xlim(0, 100)
        ax.grid(axis="x", lw=0.3)
    axes[0][0].set_yticks(y, labels, fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"{metric} per split, mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_class_deltas(
    deltas: dict[str, np.ndarray], class_names: Sequence[str], title: str, path: str | Path
) -> Path:
    """Fig. 12: per-class accuracy change (percentage points) of each model vs the baseline.

    Classes are sorted by the last series' change (the fusion), largest first.
    """
    plt = _pyplot()
    series = list(deltas)
    order = np.argsort(-np.nan_to_num(deltas[series[-1]], nan=-np.inf), kind="stable")
    x = np.arange(len(order))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, min(24.0, 0.3 * len(x) * len(series) + 3)), 3.8))
    for i, name in enumerate(series):
        d = 100 * np.asarray(deltas[name], float)[order]
        mean = float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")
        ax.bar(x + (i - (len(series) - 1) / 2) * width, np.nan_to_num(d), width,
               label=f"{name} (mean {mean:+.1f})")  # fmt: skip
    ax.axhline(0, color="k", lw=0.6)
    if len(x) <= 60:
        ax.set_xticks(x, [str(class_names[i]) for i in order], rotation=90, fontsize=7)
    ax.set_ylabel("accuracy change (pp)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def plot_rates(table: pd.DataFrame, ylabel: str, title: str, path: str | Path) -> Path:
    """Grouped bars: one group per row of ``table`` (index), one bar per column, in %."""
    plt = _pyplot()
    x = np.arange(len(table.index))
    width = 0.8 / max(1, len(table.columns))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(x) * max(1, len(table.columns)) / 2 + 3),
                                    3.4))  # fmt: skip
    for i, col in enumerate(table.columns):
        vals = 100 * table[col].to_numpy(float)
        bars = ax.bar(x + (i - (len(table.columns) - 1) / 2) * width, np.nan_to_num(vals), width,
                      label=str(col))  # fmt: skip
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    top = float(np.nanmax(100 * table.to_numpy(float), initial=0.0))
    ax.set_ylim(0, max(1.0, 1.15 * top))
    ax.set_xticks(x, [str(i) for i in table.index])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)


@dataclass
class Tile:
    """One thumbnail of a grid: the image (``None`` when unreadable), caption lines, and
    whether the caption is drawn as correct (green) or wrong (red)."""

    image: np.ndarray | None
    lines: list[str]
    good: bool


def plot_image_grid(
    tiles: list[Tile], title: str, path: str | Path, ncols: int = 6, size: int = 96
) -> Path:
    """Thumbnails on a ``size``-pixel raster, each with its caption under it (one axes, so it
    draws fast); an unreadable image is a grey square marked "no image"."""
    plt = _pyplot()
    ncols = max(1, min(ncols, len(tiles)))
    nrows = max(1, -(-len(tiles) // ncols))
    pad, text_h = 6, 14 * max([len(t.lines) for t in tiles] + [1])
    cell_w, cell_h = size + pad, size + text_h + pad
    canvas = np.full((nrows * cell_h, ncols * cell_w, 3), 255, np.uint8)
    dpi = 100
    fig = plt.figure(figsize=(canvas.shape[1] / dpi, canvas.shape[0] / dpi + 0.4), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, canvas.shape[0] / (canvas.shape[0] + 40)))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        y0, x0 = r * cell_h, c * cell_w + pad // 2
        img = tile.image
        if img is None:
            canvas[y0 : y0 + size, x0 : x0 + size] = 200
        else:
            img = np.asarray(img)[:size, :size]
            img = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
            h, w = img.shape[:2]
            oy, ox = (size - h) // 2, (size - w) // 2
            canvas[y0 + oy : y0 + oy + h, x0 + ox : x0 + ox + w] = img[..., :3]
        if tile.image is None:
            ax.text(x0 + size / 2, y0 + size / 2, "no image", ha="center", va="center", fontsize=7)
        ax.text(x0, y0 + size + 2, "\n".join(tile.lines), va="top", fontsize=6.5,
                color="tab:green" if tile.good else "tab:red")  # fmt: skip
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title, fontsize=10, y=0.995)
    return _save(fig, path)
