"""A fitted fusion read back from a finished ``fuse`` run, to fuse the logits of new images.

``fuse`` appends one record per cell to ``<output_dir>/results.jsonl`` with the parameters it
fitted on the validation split (temperatures ``t1``/``t2``, the threshold ``t``, ``α``, the
weighted-logits weights ``w1``/``w2``; :meth:`occam_l2r.fusion.fusers.FusionMethod.params`).
:func:`load_fusion` finds the record of one fused pair, method and seed and returns it as a
:class:`SavedFusion`; nothing is refitted. The registered method rebuilds itself from them (:meth:`occam_l2r.fusion.fusers.FusionMethod.from_params`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occam_l2r.errors import UserError
from occam_l2r.fusion.pairs import Pair
from occam_l2r.fusion.runner import load_done


class SavedFusionError(UserError, LookupError):
    """No usable fitted fusion in a ``fuse`` output folder (a :class:`LookupError`)."""


@dataclass
class SavedFusion:
    """The fitted parameters of one fused cell.

    Attributes:
        views: the two input views, input 1 first (the robust one ⊕R trusts, e.g. FG_C).
        method: the fusion method (``threshold``, ``max_conf_ts``, ...).
        seed: the seed index of the cell.
        params: the fitted parameters as ``fuse`` saved them.
        runs: the run dirs of the two inputs.
        record: the whole ``results.jsonl`` record.
    """

    views: tuple[str, str]
    method: str
    seed: int
    params: dict[str, Any]
    runs: tuple[str, str]
    record: dict[str, Any]


def load_fusion(
    fusion_dir: str | Path, pair: Pair | str, method: str, seed: int = 0
) -> SavedFusion:
    """The fitted fusion of ``pair`` (``FG_C+FULL``), ``method`` and ``seed`` of a ``fuse`` run.

    Args:
        fusion_dir: the ``output_dir`` of a finished ``fuse`` run.
        pair: the fused pair, input 1 first: a :class:`~occam_l2r.fusion.pairs.Pair`, or its
            name as the tables write it (``FG_C+BG_S``), parsed once here.
        method: a fusion method of the sweep.
        seed: the seed index of the cell.

    Raises:
        SavedFusionError: no ``results.jsonl``, or no pair record with that name, method and
            seed (the message lists the ones there are).
    """
    if not isinstance(pair, Pair):
        try:
            pair = Pair.parse(pair)
        except ValueError as err:
            raise SavedFusionError(f"fusion pair {pair!r}: {err}") from None
    path = Path(fusion_dir) / "results.jsonl"
    if not path.is_file():
        raise SavedFusionError(
            f"no fitted fusion at {path}: run `python -m occam_l2r fuse --config <fusion config>` "
            "first, or point `fusion_dir` at its output_dir"
        )
    records = [r for r in load_done(path).values() if r.get("kind") == "pair"]
    for rec in records:
        if (rec["name"], rec["method"], int(rec["seed"])) == (pair.name, method, int(seed)):
            return SavedFusion(
                views=(pair.first, pair.second), method=rec["method"], seed=int(rec["seed"]),
                params=dict(rec.get("params") or {}), runs=(rec["runs"][0], rec["runs"][1]),
                record=rec,
            )  # fmt: skip
    have = sorted({f"{r['name']} {r['method']} seed{r['seed']}" for r in records})
    raise SavedFusionError(
        f"{path} has no fused pair {pair.name!r} with method {method!r} and seed {seed}; it has: "
        f"{have[:12]}{' ...' if len(have) > 12 else ''}. Fix `fusion.pair`/`method`/`seed`, or "
        "add the pair and method to the fuse config and rerun fuse."
    )
