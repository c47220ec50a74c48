"""The report's matplotlib figures (plain ``Figure`` objects, no pyplot), each written as a PNG.

- :func:`plot_reliability`: reliability diagrams before / after temperature scaling (one view),
  the gap coloured by its sign (over- / under-confidence), samples per bin under each;
- :func:`plot_accuracy`: the metric of every row per split, mean ± std over seeds as error bars;
- :func:`plot_class_deltas`: per-class accuracy change against the baseline (L2R² Fig. 12);
- :func:`plot_rates`: grouped bars of rates per view and split (the fallback rates);
- :func:`plot_image_grid`: thumbnails with captions (images where fusion and FULL disagree),
  at least as wide as the title.

- :func:`plot_weights`: the weighted-logits weights per class (L2R² Fig. 8; ``fuse`` writes it
  too, under ``weights/``);
- :func:`plot_nonempty_histogram`: non-empty top-k candidates per image (Fig. 11; also ``fuse``'s
  ``topk/``).

Every plot of the toolkit lives here (matplotlib is imported on the first plot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occam_l2r.reporting.stats import Reliability


class _Figures:
    """pyplot's ``subplots`` / ``figure`` / ``close`` made of plain :class:`Figure` objects: no
    pyplot state and no backend switch (a notebook keeps showing its own figures)."""

    @staticmethod
    def subplots(*args: Any, figsize=None, dpi=None, layout=None, **kwargs: Any):
        from matplotlib.figure import Figure  # matplotlib only once a plot is drawn

        fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def figure(figsize=None, dpi=None):
        from matplotlib.figure import Figure

        return Figure(figsize=figsize, dpi=dpi)

    @staticmethod
    def close(fig: Any) -> None:
        """Nothing to release: no pyplot holds the figure."""


def _pyplot() -> _Figures:
    return _Figures()


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


#: the colours of a reliability diagram, each named in its legend
RELIABILITY_COLORS = {"accuracy": "#4c72b0", "over": "#dd8452", "under": "#55a868",
                      "count": "#8c8c8c"}  # fmt: skip


def reliability_figure(before: Reliability, after: Reliability, title: str) -> Any:
    """The :class:`~matplotlib.figure.Figure` of :func:`plot_reliability`."""
    plt = _pyplot()
    fig = plt.figure(figsize=(9.0, 5.4))
    axes = fig.subplots(2, 2, sharex=True, sharey="row", height_ratios=(3, 1))
    c = RELIABILITY_COLORS
    for col, (rel, name) in enumerate(((before, "before"), (after, "after"))):
        ax, ax_n = axes[0, col], axes[1, col]
        centers = (rel.edges[:-1] + rel.edges[1:]) / 2
        width = rel.edges[1] - rel.edges[0]
        full = rel.count > 0
        acc = np.where(full, np.nan_to_num(rel.accuracy), 0.0)
        conf = np.where(full, np.nan_to_num(rel.confidence), 0.0)
        over, under = full & (conf > acc), full & (acc > conf)
        ax.bar(centers[full], acc[full], width, color=c["accuracy"], edgecolor="k", lw=0.4,
               label="accuracy")  # fmt: skip
        ax.bar(centers[over], (conf - acc)[over], width, bottom=acc[over], color=c["over"],
               edgecolor="k", lw=0.4, hatch="//",
               label="over-confident: gap up to the mean confidence")  # fmt: skip
        ax.bar(centers[under], (acc - conf)[under], width, bottom=conf[under], color=c["under"],
               edgecolor="k", lw=0.4, hatch="\\\\",
               label="under-confident: gap down to the mean confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name} TS (T={rel.temperature:.2f}): ECE {100 * rel.ece:.2f}%", fontsize=9)
        bars = ax_n.bar(centers[full], rel.count[full], width, color=c["count"], edgecolor="k",
                        lw=0.4, label="samples per bin")  # fmt: skip
        ax_n.bar_label(bars, labels=[str(int(n)) for n in rel.count[full]], fontsize=6,
                       padding=1)  # fmt: skip
        top = int(max(before.count.max(initial=0), after.count.max(initial=0)))
        ax_n.set_ylim(0, max(1.0, 1.3 * top))
        ax_n.set_xlabel("confidence")
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("samples")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    for ax in (axes[0, 1], axes[1, 0]):  # a colour drawn only after TS still gets its entry
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    order = ["accuracy", "over-confident: gap up to the mean confidence",
             "under-confident: gap down to the mean confidence", "perfect calibration",
             "samples per bin"]  # fmt: skip
    from matplotlib.patches import Patch

    for key, lab in (("over", order[1]), ("under", order[2])):
        seen.setdefault(lab, Patch(facecolor=c[key], edgecolor="k", hatch="//"
                                   if key == "over" else "\\\\"))  # fmt: skip
    fig.legend([seen[k] for k in order if k in seen], [k for k in order if k in seen],
               loc="lower center", ncol=3, fontsize=7.5, frameon=False)  # fmt: skip
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.2, top=0.88, wspace=0.08, hspace=0.12)
    return fig


def plot_reliability(before: Reliability, after: Reliability, title: str, path: str | Path) -> Path:
    """Two reliability diagrams side by side: raw logits and temperature-scaled logits.

    Bars are the accuracy per confidence bin; the gap to the bin's mean confidence is drawn in
    one colour where the model is over-confident (confidence above accuracy) and in another
    where it is under-confident; the diagonal is perfect calibration. Under each diagram, the
    number of samples per bin (a one-sample bin is seen as such). Each panel names its
    temperature and ECE; the legend names every colour.
    """
    return _save(reliability_figure(before, after, title), path)


#: the legend of each kind of row in :func:`plot_accuracy`
KIND_LABELS = {"single": "single model", "pair": "fused pair", "metadata": "with metadata",
               "ensemble": "ensemble of one view", "topk": "top-k FG"}  # fmt: skip


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
    fig, axes = plt.subplots(1, len(splits), figsize=(3.4 * len(splits) + 2.8, height + 0.4),
                             sharey=True, squeeze=False, layout="constrained")  # fmt: skip
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
    from matplotlib.patches import Patch

    present = list(dict.fromkeys(kinds[lab] for lab in labels))
    fig.legend([Patch(color=colors.get(k, "tab:blue")) for k in present],
               [KIND_LABELS.get(k, k) for k in present], loc="outside lower center",
               ncol=len(present), fontsize=8, frameon=False)  # fmt: skip
    fig.suptitle(f"{metric} per split, mean ± std over seeds", fontsize=10)
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
    fig, ax = plt.subplots(figsize=(max(6.0, min(24.0, 0.3 * len(x) * len(series) + 3)),
                                    3.8 + 0.2 * len(series)), layout="constrained")  # fmt: skip
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
    # below the axes: a legend inside would hide bars
    fig.legend(fontsize=8, loc="outside lower center", ncol=min(2, len(series)), frameon=False)
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


def _text_width_px(text: str, fontsize: float, dpi: int) -> float:
    """The rendered width of one line of text, in pixels (measured with Agg)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(10, 10, dpi)
    width, _, _ = renderer.get_text_width_height_descent(
        text, FontProperties(size=fontsize), ismath=False
    )
    return float(width)


def _fit(line: str, width_px: float, fontsize: float, dpi: int) -> str:
    """``line`` cut (with an ellipsis) to fit ``width_px``."""
    if _text_width_px(line, fontsize, dpi) <= width_px:
        return line
    while len(line) > 1 and _text_width_px(line + "…", fontsize, dpi) > width_px:
        line = line[:-1]
    return line + "…"


def image_grid_figure(tiles: list[Tile], title: str, ncols: int = 6, size: int = 96) -> Any:
    """The :class:`~matplotlib.figure.Figure` of :func:`plot_image_grid`."""
    plt = _pyplot()
    ncols = max(1, min(ncols, len(tiles)))
    nrows = max(1, -(-len(tiles) // ncols))
    dpi, font, title_font = 100, 6.5, 10
    pad, text_h = 6, 14 * max([len(t.lines) for t in tiles] + [1])
    cell_w, cell_h = size + pad, size + text_h + pad
    canvas = np.full((nrows * cell_h, ncols * cell_w, 3), 255, np.uint8)
    # the figure is at least as wide as its title: a grid of two images keeps its whole title
    title_px = _text_width_px(title, title_font, dpi) + 24
    fig_w, head = max(canvas.shape[1], title_px), 40
    fig_h = canvas.shape[0] + head
    fig = plt.figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)
    ax = fig.add_axes(((fig_w - canvas.shape[1]) / 2 / fig_w, 0, canvas.shape[1] / fig_w,
                       canvas.shape[0] / fig_h))  # fmt: skip
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
        lines = [_fit(line, cell_w - pad, font, dpi) for line in tile.lines]
        ax.text(x0, y0 + size + 2, "\n".join(lines), va="top", fontsize=font,
                color="tab:green" if tile.good else "tab:red")  # fmt: skip
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title, fontsize=title_font, y=1 - 8 / fig_h, va="top")
    return fig


def plot_image_grid(
    tiles: list[Tile], title: str, path: str | Path, ncols: int = 6, size: int = 96
) -> Path:
    """Thumbnails on a ``size``-pixel raster, each with its caption under it (one axes, so it
    draws fast); an unreadable image is a grey square marked "no image". The figure is as wide
    as its title at least, and each caption line is cut to its tile's width."""
    return _save(image_grid_figure(tiles, title, ncols, size), path)


def plot_weights(
    table: pd.DataFrame, path: str | Path, name1: str = "FG", name2: str = "BG"
) -> Path:
    """Figure 8: the relative role of both inputs per class, classes sorted by input 1's share.

    Top: the raw per-class weights ``w1``, ``w2``; bottom: the shares ``|w1| / (|w1| + |w2|)``
    and ``|w2| / (|w1| + |w2|)`` stacked to 1, with the fraction of classes where input 2
    weighs more in the title.
    """
    from matplotlib.figure import Figure  # no pyplot: no backend switch, no global state

    t = table.sort_values("share1", ascending=False, kind="stable")
    x = np.arange(len(t))
    frac2 = float((t.share1 < 0.5).mean()) if len(t) else 0.0
    width = max(6.0, min(20.0, 0.05 * len(t) + 4))
    fig = Figure(figsize=(width, 5.5))
    ax_w, ax_s = fig.subplots(2, 1, sharex=True)
    ax_w.plot(x, t.w1, ".-", lw=0.8, label=f"w1 ({name1})")
    ax_w.plot(x, t.w2, ".-", lw=0.8, label=f"w2 ({name2})")
    ax_w.axhline(0, color="k", lw=0.5)
    ax_w.set_ylabel("weight")
    ax_w.legend(loc="best")
    ax_s.bar(x, t.share1, width=1.0, label=name1)
    ax_s.bar(x, 1 - t.share1, bottom=t.share1, width=1.0, label=name2)
    ax_s.axhline(0.5, color="k", lw=0.5, ls="--")
    ax_s.set_ylim(0, 1)
    ax_s.set_ylabel("relative weight")
    ax_s.set_xlabel(f"class (sorted by the share of {name1})")
    ax_s.legend(loc="lower left")
    if len(t) <= 40:
        ax_s.set_xticks(x, t["name"], rotation=90, fontsize=7)
    fig.suptitle(f"Weighted logits: {name2} weighs more for {100 * frac2:.1f}% of the classes")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_nonempty_histogram(counts: dict[str, np.ndarray], path: str | Path, title: str) -> Path:
    """Figure 11: the share of images per number ``s`` of non-empty candidates.

    Args:
        counts: label (e.g. split or detector) -> per-image counts of non-empty candidates.
        path: the PNG to write.
        title: the figure's title.
    """
    from matplotlib.figure import Figure  # no pyplot: no backend switch, no global state

    top = max([int(c.max()) for c in counts.values() if len(c)] + [1])
    s = np.arange(top + 1)
    width = 0.8 / max(1, len(counts))
    fig = Figure(figsize=(max(5.0, 0.5 * len(s) + 3), 3.5))
    ax = fig.subplots()
    for i, (label, c) in enumerate(counts.items()):
        share = np.bincount(c, minlength=top + 1)[: top + 1] / max(1, len(c))
        bars = ax.bar(s + (i - (len(counts) - 1) / 2) * width, 100 * share, width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(s)
    ax.set_xlabel("non-empty candidates per image (s)")
    ax.set_ylabel("images (%)")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
