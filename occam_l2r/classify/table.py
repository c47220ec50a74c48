"""The table ``classify`` writes: one row per image (CSV, and Parquet when pyarrow is there).

Columns: ``image_id``, ``path``, ``status`` (``ok`` / ``error``), ``error``, ``pred`` (the fused
class; ``pred_name`` with ``class_names``), ``confidence`` (the fused confidence), ``decided_by``
(the view whose prediction was taken, ``FULL (fallback)`` after the §3.1 fallback, ``A+B`` for a
combination), ``fallback_reason`` (the first of the pair's views that fell back, as
:data:`occam_l2r.views.FALLBACK_REASONS`), ``second_model`` (input 2 ran for this image),
``box_x0 .. box_y1`` (the crop box of the chosen detection, empty after a fallback) and per view
``<view>_top<r>`` / ``<view>_top<r>_conf`` (its r-th class and softmax confidence; empty where
the view's model did not run).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.engine import Classified, decided_by, top_k
from occam_l2r.fusion.saved import SavedFusion
from occam_l2r.store_files import atomic_write


def prediction_rows(
    config: ClassifyConfig, fusion: SavedFusion, result: Classified
) -> pd.DataFrame:
    """The table of :func:`occam_l2r.classify.engine.classify_images`'s result, sorted by id."""
    names = config.class_names
    views = list(result.logits)
    tops = {v: top_k(np.nan_to_num(z), config.top_k) for v, z in result.logits.items()}
    rows: list[dict[str, Any]] = []
    for i, item in enumerate(result.items):
        pred = int(result.fused.pred[i])
        reasons = [item.views[v][1] for v in fusion.views if item.views[v][1] is not None]
        box = item.decomposition.box if item.decomposition is not None else (None,) * 4
        row: dict[str, Any] = {
            "image_id": item.image_id, "path": str(item.path), "status": "ok", "error": "",
            "pred": pred, "confidence": float(result.fused.conf[i]),
            "decided_by": decided_by(int(result.fused.chosen[i]), fusion.views,
                                     config.fallback_view),
            "fallback_reason": reasons[0] if reasons else "",
            "second_model": bool(result.second[i]),
            **{f"box_{k}": v for k, v in zip(("x0", "y0", "x1", "y1"), box, strict=True)},
        }  # fmt: skip
        if names:
            row["pred_name"] = names[pred] if pred < len(names) else ""
        for v in views:
            ran = bool(result.ran[v][i])
            for r in range(min(config.top_k, tops[v][0].shape[1])):
                row[f"{v}_top{r + 1}"] = int(tops[v][0][i, r]) if ran else None
                row[f"{v}_top{r + 1}_conf"] = float(tops[v][1][i, r]) if ran else None
        rows.append(row)
    for item in result.errors:
        rows.append({"image_id": item.image_id, "path": str(item.path), "status": "error",
                     "error": item.error, "pred": None})  # fmt: skip
    df = pd.DataFrame(rows).sort_values("image_id", kind="stable").reset_index(drop=True)
    int_cols = ["pred", *[c for c in df.columns if c.startswith("box_")]]
    int_cols += [c for c in df.columns if c.rsplit("_", 1)[-1].startswith("top")]
    for col in int_cols:
        df[col] = df[col].astype("Int64")
    return df


def write_table(df: pd.DataFrame, output_dir: str | Path) -> list[Path]:
    """Write ``predictions.csv`` (and ``predictions.parquet`` with pyarrow) atomically."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [atomic_write(out / "predictions.csv", lambda p: df.to_csv(p, index=False))]
    if importlib.util.find_spec("pyarrow") is not None:
        written.append(atomic_write(out / "predictions.parquet", lambda p: df.to_parquet(p)))
    return written
