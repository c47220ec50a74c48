"""The ``classify`` run: load the fusion and models, classify the images, write the outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.engine import (
    Classified,
    ClassifyConfigError,
    classify_images,
    needed_views,
)
from occam_l2r.classify.inputs import list_images
from occam_l2r.classify.models import ViewModel
from occam_l2r.classify.preview import write_preview
from occam_l2r.classify.table import prediction_rows, write_table
from occam_l2r.fusion.pairs import Pair
from occam_l2r.fusion.saved import SavedFusion, load_fusion
from occam_l2r.store_files import atomic_write_text


def load(config: ClassifyConfig) -> tuple[SavedFusion, dict[str, ViewModel]]:
    """The fitted fusion and the models of the views it needs."""
    fusion = load_fusion(config.fusion_dir, Pair.parse(config.pair), config.method, config.seed)
    views = needed_views(config, fusion)
    models = {
        v: ViewModel(v, config.checkpoints[v], config.image_size, config.device) for v in views
    }
    return fusion, models


def summarize(result: Classified, fusion: SavedFusion, seconds: float) -> dict[str, Any]:
    """What ``summary.json`` holds: counts, the share that needed input 2, model calls, times."""
    n = len(result.items)
    return {
        "images": n + len(result.errors),
        "classified": n,
        "errors": len(result.errors),
        "fallbacks": int(result.flags.sum()),
        "pair": "+".join(fusion.views),
        "method": fusion.method,
        "params": fusion.params,
        "second_model_share": float(result.second.mean()) if n else float("nan"),
        "model_calls": {v: int(r.sum()) for v, r in result.ran.items()},
        "model_seconds": {v: round(s, 4) for v, s in result.seconds.items()},
        "seconds": round(seconds, 4),
    }


def classify(config: ClassifyConfig) -> dict[str, Any]:
    """Classify the images of ``config`` and write ``predictions.csv`` / ``.parquet``,
    ``summary.json`` and, with ``preview``, ``preview.html`` in ``output_dir``.

    Returns:
        The summary (:func:`summarize`) with ``table`` (the rows as a DataFrame) and
        ``files`` (the paths written).

    Raises:
        ClassifyConfigError: ``segment_config`` is set (the segmenter runs in the command layer:
            call :func:`occam_l2r.commands.classify.classify`, which then calls this with
            ``segmentation``).
    """
    if config.segment_config is not None:
        raise ClassifyConfigError(
            f"segment_config {config.segment_config} is run by "
            "occam_l2r.commands.classify.classify (python -m occam_l2r classify); "
            "occam_l2r.classify.run.classify reads a stored `segmentation:` only"
        )
    t0 = time.perf_counter()
    fusion, models = load(config)
    result = classify_images(config, fusion, models, list_images(config.images))
    table = prediction_rows(config, fusion, result)
    files = write_table(table, config.output_dir)
    if config.preview:
        files.append(write_preview(result, table, config.output_dir))
    summary = summarize(result, fusion, time.perf_counter() - t0)
    path = Path(config.output_dir) / "summary.json"
    text = json.dumps({**summary, "cascade": config.cascade}, indent=2, default=str)
    atomic_write_text(text, path)
    return {**summary, "table": table, "files": [*files, path], "result": result}
