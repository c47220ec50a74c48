"""The ``classify`` verb: the L2R² decision on new images (issue 11, parts 1 and 2).

``python -m occam_l2r classify --config configs/synthetic/classify.yaml [--preview true]
[--cascade true]`` reads a :class:`~occam_l2r.classify.config.ClassifyConfig` (top-level keys
``images:``, ``output_dir:``, ``checkpoints:``, ``fusion_dir:``, ...) and writes one row per image
to ``<output_dir>/predictions.csv`` (and ``.parquet``), with ``summary.json`` (docs/classify.md).
Other code calls :func:`classify` with a ``ClassifyConfig``.
"""

from __future__ import annotations

from typing import Any

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.run import classify
from occam_l2r.commands import run_function

__all__ = ["ClassifyConfig", "classify", "main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m occam_l2r classify --config FILE`` (``--print_config`` and ``--help`` work).

    Prints ``classify: N images (E errors), second model on S%, <csv> (T s)``.

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    config = run_function(ClassifyConfig, argv, prog="python -m occam_l2r classify")
    out = classify(config)
    print(
        f"classify: {out['images']} images ({out['errors']} errors, {out['fallbacks']} fell back "
        f"to {config.fallback_view}), second model on {100 * out['second_model_share']:.1f}% "
        f"{'(cascade)' if config.cascade else '(full fusion)'}, {out['files'][0]} "
        f"({out['seconds']:.1f} s)",
        flush=True,
    )
    return out
