"""The ``report`` verb: one self-contained HTML page with L2R²'s figures for a ``fuse`` run.

``python -m occam_l2r report --config configs/synthetic/report.yaml`` reads a
:class:`~occam_l2r.reporting.config.ReportConfig` (top-level keys ``fusion_dir:``,
``output_dir:``, ...) and writes ``<output_dir>/report.html`` with every figure embedded, the
figures as PNG files in ``<output_dir>/figures/`` and the numbers behind them as CSV
(:func:`occam_l2r.reporting.build.write_report`; docs/report.md). Other code calls
:func:`report` with a ``ReportConfig``; the command line goes through :func:`main`.
"""

from __future__ import annotations

from typing import Any

from occam_l2r.commands import run_function
from occam_l2r.reporting.build import write_report
from occam_l2r.reporting.config import ReportConfig

__all__ = ["ReportConfig", "main", "report"]


def report(config: ReportConfig) -> dict[str, Any]:
    """Write the report of one ``fuse`` output folder.

    Prints ``report: N figures, <html> (S s)``.

    Args:
        config: the fuse folder and the report's choices.

    Returns:
        ``html``, ``figures``, ``sections``, ``skipped`` (sections without their inputs, and
        why) and ``checks`` (recomputed fused splits matching ``fuse``'s accuracy, of how many).
    """
    return write_report(config)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m occam_l2r report --config FILE`` (``--print_config`` and ``--help`` work).

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    config = run_function(ReportConfig, argv, prog="python -m occam_l2r report")
    return report(config)
