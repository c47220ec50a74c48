"""The ``classify`` verb: the L2R² decision on new images (issue 11, parts 1 and 2).

``python -m occam_l2r classify --config configs/synthetic/classify.yaml [--preview] [--cascade]``
(the two switches alone mean ``true``) reads a :class:`~occam_l2r.classify.config.ClassifyConfig` (top-level keys
``images:``, ``output_dir:``, ``checkpoints:``, ``fusion_dir:``, ...) and writes one row per image
to ``<output_dir>/predictions.csv`` (and ``.parquet``), with ``summary.json`` (docs/classify.md).
Other code calls :func:`classify` with a ``ClassifyConfig``.
"""

from __future__ import annotations

import sys
from typing import Any

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.run import classify
from occam_l2r.commands import run_function

__all__ = ["ClassifyConfig", "classify", "main"]

#: options that may be given alone on the command line (``--preview`` = ``--preview true``)
SWITCHES = ("--preview", "--cascade")


def with_switch_values(argv: list[str]) -> list[str]:
    """``argv`` with a bare :data:`SWITCHES` option followed by ``true``."""
    out: list[str] = []
    for k, arg in enumerate(argv):
        out.append(arg)
        nxt = argv[k + 1] if k + 1 < len(argv) else None
        if arg in SWITCHES and (nxt is None or nxt.startswith("--")):
            out.append("true")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m occam_l2r classify --config FILE`` (``--print_config`` and ``--help`` work).

    Prints ``classify: N images (E errors), second model on S%, <csv> (T s)``.

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    args = with_switch_values(list(sys.argv[2:] if argv is None else argv))
    config = run_function(ClassifyConfig, args, prog="python -m occam_l2r classify")
    out = classify(config)
    print(
        f"classify: {out['images']} images ({out['errors']} errors, {out['fallbacks']} fell back "
        f"to {config.fallback_view}), second model on {100 * out['second_model_share']:.1f}% "
        f"{'(cascade)' if config.cascade else '(full fusion)'}, {out['files'][0]} "
        f"({out['seconds']:.1f} s)",
        flush=True,
    )
    return out
