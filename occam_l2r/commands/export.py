"""The ``export`` verb: a trained L2R² system as a portable folder (Hugging Face hub layout).

``python -m occam_l2r export --run checkpoints/pipeline/synthetic_rho097 --output_dir DIR``
(optionally ``--pair FG_C+BG_S --method threshold --seed 1``) loads the system that
``classify`` would run (:meth:`occam_l2r.classify.system.System.from_run`: the fused pair's runs
that ``fuse`` recorded, their best checkpoints, the fitted parameters, the FG run's view
settings, class names and segmenter) and writes ``config.json`` and one
``<view>.safetensors`` per view model (inference weights only) into ``output_dir``
(:mod:`occam_l2r.classify.portable`). ``occam_l2r.load(DIR)`` reads it back with no Lightning,
offline; a hub repository holding the folder loads by its id.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from occam_l2r.commands import run_function

__all__ = ["export", "main"]


def export(
    run: str,
    output_dir: str,
    pair: str = "FG_C+FULL",
    method: str = "threshold",
    seed: int = 0,
    fallback_view: str = "FULL",
) -> dict[str, Any]:
    """Export a trained L2R² system: view models as safetensors, the fitted fusion as JSON.

    Args:
        run: a ``pipeline`` experiment folder (``<experiment_dir>``, holding ``fusion/``) or a
            ``fuse`` output folder.
        output_dir: the export folder (``config.json`` + ``<view>.safetensors``).
        pair: the fused pair, input 1 first (``FG_C+FULL``, ``FG_C+BG_S``).
        method: the fusion method whose fitted parameters are exported (``threshold``: ⊕R).
        seed: the seed index of the fused cell.
        fallback_view: the view whose model classifies images whose view fell back (§3.1).

    Returns:
        ``{"output_dir", "files", "views", "params"}``.
    """
    from occam_l2r.classify.system import System

    system = System.from_run(run, pair, method, seed, fallback_view=fallback_view)
    files = system.export(output_dir)
    return {
        "output_dir": str(Path(output_dir)),
        "files": [str(f) for f in files],
        "views": sorted(system.models),
        "params": system.fusion.params,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m occam_l2r export --run RUN --output_dir DIR`` (``--help`` lists the options).

    Prints ``export: <views> and <method> <params> to <output_dir> (<size> MB)``.
    """
    args = list(sys.argv[2:] if argv is None else argv)
    out = run_function(export, args, prog="python -m occam_l2r export")
    size = sum(Path(f).stat().st_size for f in out["files"]) / 2**20
    print(
        f"export: {'+'.join(out['views'])} and the fitted fusion {out['params']} to "
        f"{out['output_dir']} ({size:.1f} MB)",
        flush=True,
    )
    return out
