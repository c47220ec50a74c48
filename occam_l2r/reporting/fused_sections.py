"""The report's sections about fused rows: Fig. 8 (weighted-logits weights per class), Fig. 12
(per-class accuracy change against the baseline) and the grid of test images where the fusion
and the baseline disagree.

The fused row shown is ⊕* of each pair (:meth:`~occam_l2r.reporting.builder.ReportBuilder.chosen_method`);
its per-sample predictions come from :mod:`occam_l2r.reporting.predictions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from occam_l2r.data.records import ImageReadError, read_image
from occam_l2r.errors import UserError
from occam_l2r.fusion.fusers import method_labels
from occam_l2r.fusion.pairs import Pair
from occam_l2r.fusion.report import weights_table
from occam_l2r.reporting.figures import Tile, plot_class_deltas, plot_image_grid, plot_weights
from occam_l2r.reporting.predictions import aligned_predictions
from occam_l2r.reporting.sources import dataset_root, read_weights
from occam_l2r.reporting.stats import per_class_accuracy

if TYPE_CHECKING:
    from occam_l2r.reporting.builder import ReportBuilder


class ReportInputError(UserError, ValueError):
    """The ``fuse`` outputs lack what a section needs (a view, a fused pair)."""


def _display(name: str) -> str:
    return Pair.parse(name).display()


def weights(b: ReportBuilder) -> None:
    """Fig. 8 from ``weights/<row>_seed<k>.csv``, or, without them, from the weights in
    ``results.jsonl`` (:func:`occam_l2r.fusion.report.weights_table`)."""
    found = read_weights(b.outputs.folder) or _weights_from_records(b)
    if not found:
        b.page.paragraph("No weighted-logits rows in this sweep (`weighted_logits` is not among "
                         "the fuse config's `methods`): no Fig. 8.", note=True)  # fmt: skip
        return
    table = []
    for name, by_seed in found.items():
        n1, n2 = Pair.parse(name).input_names
        seed = min(by_seed)
        png = plot_weights(by_seed[seed], b.figure_path(f"weights_{name}"), n1, n2)
        b.page.figure(png, f"Fig. 8 for {_display(name)} (seed {seed}): per-class weights of the "
                      f"weighted-logits combination, classes sorted by the share of {n1}.")  # fmt: skip
        for s, t in sorted(by_seed.items()):
            table.append([_display(name), s, len(t), f"{100 * float((t.share1 < 0.5).mean()):.1f}",
                          f"{t.w1.mean():.3f}", f"{t.w2.mean():.3f}"])  # fmt: skip
    b.page.table(["row", "seed", "classes", "input 2 weighs more (% of classes)", "mean w1",
                  "mean w2"], table, caption="Weighted-logits weights per seed")  # fmt: skip


def _weights_from_records(b: ReportBuilder) -> dict[str, dict[int, pd.DataFrame]]:
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for rec in b.outputs.cells(method="weighted_logits"):
        params = rec.get("params") or {}
        if "w1" in params:
            names = b.cache.get(rec["runs"][0], b.config.val_split).class_names
            table = weights_table(params["w1"], params["w2"], names)
            out.setdefault(rec["name"], {})[int(rec["seed"])] = table
    return out


def _pairs(b: ReportBuilder) -> list[str]:
    return b.outputs.fused_names(("pair",))


def class_deltas(b: ReportBuilder) -> None:
    """Fig. 12: per-class accuracy of each other view and of each pair's fusion minus the
    baseline's, mean over seeds, per test split."""
    base_runs = b.seeds_of(b.config.baseline)
    if not base_runs:
        raise ReportInputError(f"the baseline view {b.config.baseline!r} has no runs in fuse's "
                               f"results (views: {list(b.runs)}); set `baseline`")  # fmt: skip
    shown = {name: b.chosen_method(name) for name in _pairs(b)}
    summary = []
    for split in b.test_splits:
        base = [b.cache.get(r, split) for r in base_runs]
        k = base[0].num_classes
        names = base[0].class_names or [str(i) for i in range(k)]
        base_acc = [per_class_accuracy(lf.logits.argmax(1), lf.labels, k) for lf in base]
        series: dict[str, np.ndarray] = {}
        for view, runs in b.runs.items():
            if view != b.config.baseline:
                accs = [per_class_accuracy(lf.logits.argmax(1), lf.labels, k)
                        for lf in (b.cache.get(r, split) for r in runs)]  # fmt: skip
                series[view] = _mean_delta(accs, base_acc)
        for name, (method, _) in shown.items():
            accs = []
            for rec in b.outputs.cells(name=name, method=method):
                fs = b.fused(rec, split)
                if fs is not None:
                    accs.append(per_class_accuracy(fs.pred, fs.labels, k))
            if accs:
                label = method_labels().get(method, method)
                series[f"{_display(name)} ({label})"] = _mean_delta(accs, base_acc)
        if not series:
            raise ReportInputError("no view or fused row besides the baseline to compare")
        frame = pd.DataFrame({"class": names, **series})
        frame.to_csv(b.out / f"class_deltas_{split}.csv", index=False)
        png = plot_class_deltas(series, names, f"Per-class accuracy change vs "
                                        f"{b.config.baseline} on {split}",
                                        b.figure_path(f"class_deltas_{split}"))  # fmt: skip
        b.page.figure(png, f"Fig. 12 on {split}: per-class accuracy minus {b.config.baseline}'s "
                      "(percentage points, mean over seeds), classes sorted by the last series.")  # fmt: skip
        for label, d in series.items():
            summary.append([label, split, f"{100 * np.nanmean(d):+.2f}",
                            int(np.sum(d > 0)), int(np.sum(d < 0))])  # fmt: skip
    for name, (_, why) in shown.items():
        b.page.paragraph(f"{_display(name)}: {why}.")
    b.page.table(["model", "split", "mean change (pp)", "classes up", "classes down"], summary,
                 caption=f"Per-class change against {b.config.baseline}")  # fmt: skip


def _mean_delta(accs: list[np.ndarray], base: list[np.ndarray]) -> np.ndarray:
    """Mean over seeds of ``acc - base`` (seed ``s`` against the baseline's seed ``s``)."""
    d = [a - base[s % len(base)] for s, a in enumerate(accs)]
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.stack(d), axis=0) if np.isfinite(np.stack(d)).any() else d[0]


def _root(b: ReportBuilder, run: str) -> Path | None:
    if b.config.dataset_root:
        return Path(b.config.dataset_root)
    try:
        return dataset_root(run)
    except Exception as err:  # the dataset class of a foreign config: no thumbnails, say why
        b.notes.append(f"Dataset root not found from {run}/config.yaml ({type(err).__name__}: "
                       f"{err}); set `dataset_root` to show the images.")  # fmt: skip
        return None


def _thumbnail(root: Path | None, image_id: str, size: int) -> np.ndarray | None:
    if root is None:
        return None
    try:
        img = Image.fromarray(read_image(root / image_id))
    except (ImageReadError, OSError):
        return None
    img.thumbnail((size, size))
    return np.asarray(img)


def disagreements(b: ReportBuilder) -> None:
    """A grid per test split of the images where the fusion and the baseline disagree."""
    c = b.config
    pairs = _pairs(b)
    name = c.grid_pair or (pairs[0] if pairs else None)
    if name is None or name not in b.outputs.fused_names():
        raise ReportInputError(f"no fused pair {name!r} in fuse's results (pairs: {pairs}); set "
                               "`grid_pair`")  # fmt: skip
    method, why = b.chosen_method(name)
    rec = b.outputs.cells(name=name, method=method)[0]
    base_runs = b.seeds_of(c.baseline)
    if not base_runs:
        raise ReportInputError(f"the baseline view {c.baseline!r} has no runs; set `baseline`")
    base_run = base_runs[int(rec["seed"]) % len(base_runs)]
    root = _root(b, base_run)
    if root is None:
        b.page.paragraph("No dataset root: the grid shows captions without images (set "
                         "`dataset_root`).", note=True)  # fmt: skip
    b.page.paragraph(f"{_display(name)} fused with {why}, seed {rec['seed']}, against "
                     f"{c.baseline} of the same seed.")  # fmt: skip
    for split in b.test_splits:
        fs = b.fused(rec, split)
        if fs is None:
            continue
        lf = b.cache.get(base_run, split)
        names = lf.class_names or [str(i) for i in range(lf.num_classes)]
        full = aligned_predictions(lf, fs.ids)
        idx = np.flatnonzero(fs.pred != full)
        outcome = _outcome(fs.pred[idx], full[idx], fs.labels[idx])
        idx = idx[np.argsort(outcome, kind="stable")]  # fusion right first, then FULL right

        def name_of(k: int, names: list[str] = names) -> str:
            return names[k] if 0 <= k < len(names) else "?"

        rows = [[fs.ids[i], name_of(fs.labels[i]), name_of(full[i]), name_of(fs.pred[i])]
                for i in idx]  # fmt: skip
        pd.DataFrame(rows, columns=["id", "true", c.baseline, "fused"]).to_csv(
            b.out / f"disagreements_{split}.csv", index=False
        )
        right = int(np.sum(fs.pred[idx] == fs.labels[idx]))
        base_right = int(np.sum(full[idx] == fs.labels[idx]))
        b.page.paragraph(f"{split}: they disagree on {len(idx)} of {len(fs.ids)} images; the "
                         f"fusion is right on {right}, {c.baseline} on {base_right}.")  # fmt: skip
        shown = sample_across_classes(idx, fs.labels, _outcome(fs.pred, full, fs.labels),
                                      c.grid_images)  # fmt: skip
        if not len(shown):
            continue
        n_classes = len(set(fs.labels[shown].tolist()))
        tiles = [Tile(_thumbnail(root, fs.ids[i], c.thumbnail_size),
                              [Path(fs.ids[i]).name[:22], f"true: {name_of(fs.labels[i])}",
                               f"{c.baseline}: {name_of(full[i])}", f"fused: {name_of(fs.pred[i])}"],
                              bool(fs.pred[i] == fs.labels[i])) for i in shown]  # fmt: skip
        png = plot_image_grid(tiles, f"{_display(name)} vs {c.baseline} on {split}",
                                      b.figure_path(f"disagreements_{split}"),
                                      size=c.thumbnail_size)  # fmt: skip
        found = sum(t.image is not None for t in tiles)
        classes = f"{n_classes} true class" + ("es" if n_classes > 1 else "")
        b.page.figure(png, f"{split}: {len(shown)} of the {len(idx)} disagreements, sampled "
                      f"across {classes} (green: the fusion is right, red: it is wrong); "
                      f"{found} of {len(shown)} images read from {root}.")  # fmt: skip
        pos = {i: k for k, i in enumerate(idx)}
        b.page.table(["id", "true", c.baseline, "fused"], [rows[pos[i]] for i in shown],
                     caption=f"The disagreements shown on {split} (all in "
                     f"disagreements_{split}.csv)")  # fmt: skip


def _outcome(fused: np.ndarray, base: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0 where the fusion is right, 1 where the baseline is, 2 where both are wrong."""
    return np.where(fused == labels, 0, np.where(base == labels, 1, 2))


def sample_across_classes(
    idx: np.ndarray, labels: np.ndarray, outcome: np.ndarray, n: int
) -> np.ndarray:
    """Up to ``n`` of the samples ``idx``, spread over their true classes.

    Classes take turns (round robin, in class order), each giving its next sample: the fusion
    right first, then the baseline right, then both wrong, by position within each. The
    result is ordered by outcome, then class, then position, as the grid shows it. A split
    whose disagreements all lie in one class shows that class only.

    Args:
        idx: positions of the disagreements in the split.
        labels, outcome: per position of the split, the true class and
            :func:`_outcome` (0 fusion right, 1 baseline right, 2 both wrong).
        n: how many to pick.
    """
    idx = np.asarray(idx)
    queues: dict[int, list[int]] = {}
    for i in sorted(idx.tolist(), key=lambda i: (int(outcome[i]), i)):
        queues.setdefault(int(labels[i]), []).append(i)
    picked: list[int] = []
    turn = 0
    classes = sorted(queues)
    while len(picked) < min(n, len(idx)):
        q = queues[classes[turn % len(classes)]]
        if q:
            picked.append(q.pop(0))
        turn += 1
    picked.sort(key=lambda i: (int(outcome[i]), int(labels[i]), i))
    return np.asarray(picked, dtype=int)
