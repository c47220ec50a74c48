"""The ``fuse`` verb: every fusion method on every pair of views, over seeds, as tables.

``python -m occam_l2r fuse --config configs/<dataset>/fusion.yaml`` reads a
:class:`~occam_l2r.fusion.config.SweepConfig` (top-level keys ``runs:``, ``output_dir:``,
``pairs:``, ...), plans its cells (:mod:`occam_l2r.fusion.plan`), runs them resumably
(:mod:`occam_l2r.fusion.runner`) and writes the tables (:mod:`occam_l2r.fusion.outputs`).
Other code calls :func:`fuse` with a ``SweepConfig``; the command line goes through
:func:`main`.
"""

from __future__ import annotations

import time
from typing import Any

from occam_l2r.commands import run_function
from occam_l2r.fusion.config import SweepConfig
from occam_l2r.fusion.outputs import write_outputs
from occam_l2r.fusion.plan import plan
from occam_l2r.fusion.runner import Runner


def fuse(config: SweepConfig) -> dict[str, Any]:
    """Run the fusion ablation of ``config`` and write its tables.

    Prints ``fuse: N cells computed, M cached, S s; tables in ...``. Metrics left unset
    (``select_metric``, ``summary_metric``) follow the dataset's headline metric stored in the
    logits files.

    Args:
        config: the sweep (runs, pairs, methods, splits, tables).

    Returns:
        ``fusion_table`` and ``summary`` (paths of the Markdown tables, as strings; also
        ``metadata_table`` / ``datasets_table`` when written), the counts of ``computed`` and
        ``cached`` cells and the ``select_metric`` used.
    """
    t0 = time.perf_counter()
    runner = Runner(config)
    config = runner.config  # the metrics resolved
    result = runner.run(plan(config))
    paths = write_outputs(config, result)
    secs = time.perf_counter() - t0
    print(
        f"fuse: {result.computed} cells computed, {result.cached} cached, {secs:.1f} s; "
        f"tables in {paths['fusion_table']} and {paths['summary']}"
    )
    return {
        **{k: str(v) for k, v in paths.items()},
        "computed": result.computed,
        "cached": result.cached,
        "select_metric": config.select_metric,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m occam_l2r fuse --config FILE`` (``--print_config`` and ``--help`` work).

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    config = run_function(SweepConfig, argv, prog="python -m occam_l2r fuse")
    return fuse(config)
