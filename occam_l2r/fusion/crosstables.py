"""Tables that compare across rows or sweeps: Table 4 (metadata) and Table 1 across datasets.

- :func:`metadata_table`: L2R² Table 4, one row per image model, the image-only value and, per
  metadata field, the value with the prior and its increment over the same model without
  metadata.
- :func:`across_datasets_table`: L2R² Table 1, one column per (dataset, test split) and a mean
  column, from the ``summary_long.csv`` that every ``fuse`` run writes
  (:func:`occam_l2r.fusion.tables.summary_long`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from occam_l2r.fusion.tables import delta_cell, markdown

#: the file of a finished sweep that :func:`across_datasets_table` reads.
SUMMARY_LONG = "summary_long.csv"


def metadata_table(
    agg: pd.DataFrame, views: list[str], fields: list[str], splits: list[str], metric: str
) -> tuple[pd.DataFrame, str]:
    """Table 4: per view ``img`` and ``+field`` columns (``value +increment``) per split.

    Args:
        agg: the aggregated long table (:func:`occam_l2r.fusion.tables.aggregate`).
        views: the image models (rows).
        fields: the metadata fields (columns).
        splits: the test splits.
        metric: the reported metric (mean over seeds).
    """
    sel = agg[agg.metric == metric].set_index(["kind", "name", "split"])["mean"]
    rows = []
    for view in views:
        line = [view]
        for s in splits:
            img = sel.get(("single", view, s), np.nan)
            line.append("–" if not np.isfinite(img) else f"{100 * img:.2f}")
            for fld in fields:
                v = sel.get(("metadata", f"{view} + {fld}", s), np.nan)
                if not np.isfinite(v):
                    line.append("–")
                elif not np.isfinite(img):
                    line.append(f"{100 * v:.2f}")
                else:
                    line.append(f"{100 * v:.2f} {100 * (v - img):+.2f}")
        rows.append(line)
    prefix = len(splits) > 1
    cols = ["model"] + [
        f"{s} {c}" if prefix else c for s in splits for c in ["img"] + [f"+{f}" for f in fields]
    ]
    wide = pd.DataFrame(rows, columns=cols)
    return wide, markdown(wide)


def read_summary_long(output_dir: str | Path) -> pd.DataFrame:
    """The ``summary_long.csv`` of a finished sweep.

    Raises:
        FileNotFoundError: the folder holds no finished sweep (run ``fuse`` there first).
    """
    path = Path(output_dir) / SUMMARY_LONG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run `python -m occam_l2r fuse` for that dataset first (its "
            "output_dir is the folder named in `across_datasets.others`)"
        )
    return pd.read_csv(path)


def across_datasets_table(
    longs: dict[str, pd.DataFrame], baseline: str
) -> tuple[pd.DataFrame, str]:
    """Table 1 across datasets: ``+delta value`` per (dataset, split) column and the mean.

    Rows are matched on their key (the row label without ⊕*'s chosen method); a row missing
    from a dataset shows ``–`` there and has no mean. The mean column averages every column's
    value; its delta is against the baseline row's mean, as in the paper.

    Args:
        longs: dataset name -> its ``summary_long.csv`` (columns key, label, split, metric, lo,
            hi, fallback), in column order.
        baseline: the key of the baseline row (``FULL``).
    """
    columns = [(d, s, str(df[df.split == s].metric.iloc[0]))
               for d, df in longs.items() for s in df.split.drop_duplicates()]  # fmt: skip
    keys = list(dict.fromkeys(k for df in longs.values() for k in df.key))
    if baseline in keys:
        keys.remove(baseline)
    keys.insert(0, baseline)
    cell = {(d, r.key, r.split): (r.lo, r.hi) for d, df in longs.items()
            for r in df.itertuples(index=False)}  # fmt: skip
    missing = (np.nan, np.nan)

    def means(key: str) -> tuple[float, float]:
        vals = [cell.get((d, key, s), missing) for d, s, _ in columns]
        lo, hi = np.array([v[0] for v in vals], float), np.array([v[1] for v in vals], float)
        return (float(lo.mean()), float(hi.mean())) if np.isfinite(lo).all() else missing

    base_mean = means(baseline)[0]
    rows = []
    for i, key in enumerate(keys):
        line = [key]
        for d, s, _ in columns:
            lo, hi = cell.get((d, key, s), missing)
            line.append(delta_cell(lo, hi, cell.get((d, baseline, s), missing)[0], i == 0))
        line.append(delta_cell(*means(key), base_mean, i == 0))
        rows.append(line)
    header = ["model"] + [f"{d} {s} ({m})" for d, s, m in columns] + ["mean"]
    wide = pd.DataFrame(rows, columns=header)
    return wide, markdown(wide)
