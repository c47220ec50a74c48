"""The plan of a fusion sweep: its typed cells, in table order.

- :class:`Cell`: one unit of work, a (kind, views, method, seed) and the runs it reads.
- :func:`plan`: every cell of a :class:`~occam_l2r.fusion.config.SweepConfig`.
- :func:`head_batches`: the learnt-head cells that train together.

The configuration classes live in :mod:`occam_l2r.fusion.config`. The cells are run by :mod:`occam_l2r.fusion.runner` and tabulated by :mod:`occam_l2r.fusion.outputs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from occam_l2r.fusion.config import SweepConfig, image_views, topk_runs, topk_seeds
from occam_l2r.fusion.fusers import FitSettings, HeadConfig, method_class
from occam_l2r.fusion.pairs import Pair

CellKind = Literal["single", "pair", "ensemble", "metadata", "topk"]

#: the top-k rows (eq. 5): FG, FULL ⊕ FG; with a BG view also BG and FULL ⊕ FG ⊕ BG.
TOPK_VARIANTS = ("FG", "FULL+FG", "BG", "FULL+FG+BG")


@dataclass(frozen=True)
class Cell:
    """One unit of work: a (kind, views, method, seed) and the runs it reads.

    Attributes:
        kind: ``single`` (one model), ``pair`` (two views of the same seed index), ``ensemble``
            (one view, seeds ``s`` and ``s+1``), ``metadata`` (one model and a metadata prior)
            or ``topk`` (FULL and the candidate-prompted views, eq. 5).
        views: the input views: one for ``single`` and ``metadata``, two for pairs (the same
            view twice for an ensemble), FULL and the FG (and BG) views for ``topk``.
        method: a registered fusion method (:mod:`occam_l2r.fusion.fusers`) for fused cells, ``model`` for single ones,
            ``prior`` for metadata ones and a :data:`TOPK_VARIANTS` entry for top-k ones.
        seed: the seed index of the cell (of input 1 for an ensemble).
        runs: the run dirs read, one per input.
        settings: the settings that change the result (head training, metric, fallback mode,
            metadata field and options); part of the cell's fingerprint.
        fallback_run: the FULL run whose prediction replaces a flagged sample's (fallback
            ``full``), ``None`` otherwise.
    """

    kind: CellKind
    views: tuple[str, ...]
    method: str
    seed: int
    runs: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    fallback_run: str | None = None

    @property
    def name(self) -> str:
        """Display name, the ``name`` of the tables and ``results.jsonl``.

        ``FULL``, ``FG_C+BG_S`` (pair), ``FG_Cx2`` (ensemble), ``FG_C + habitat`` (metadata),
        ``FULL+FG_C_topk+BG_S_topk`` (top-k).
        """
        if self.kind in ("pair", "ensemble"):
            return self.pair.name
        if self.kind == "topk":
            return "+".join(self.views)
        if self.kind == "metadata":
            return f"{self.views[0]} + {self.settings['field']}"
        return self.views[0]

    @property
    def pair(self) -> Pair:
        """The fused inputs of a ``pair`` or ``ensemble`` cell."""
        if self.kind not in ("pair", "ensemble"):
            raise ValueError(f"a {self.kind} cell fuses no pair")
        return Pair(self.views[0], self.views[1], ensemble=self.kind == "ensemble")

    @property
    def cell_id(self) -> str:
        """The key of the cell in ``results.jsonl``."""
        return f"{self.kind}|{self.name}|{self.method}|seed{self.seed}"

    @property
    def group(self) -> tuple[str, str, int]:
        """Cells of one group share their inputs: fused methods of a (pair, seed) fit together."""
        return (self.kind, self.name, self.seed)

    @property
    def input_labels(self) -> tuple[str, str]:
        """Names of the two inputs in reports and messages (``X`` and ``X_b`` for an ensemble)."""
        if self.kind == "pair":
            return self.views[0], self.views[1]
        return self.name, f"{self.name}_b"

    @property
    def needs_train(self) -> bool:
        """Whether the cell reads the train split (learnt heads, metadata priors)."""
        if self.kind in ("pair", "ensemble"):
            return method_class(self.method).fit_split == "train"
        return self.kind == "metadata"


def _fallback_run(config: SweepConfig, seed: int) -> str | None:
    runs = config.runs.get(config.fallback_view, [])
    if config.fallback != "full" or not runs:
        return None
    return runs[seed % len(runs)]


def plan(config: SweepConfig) -> list[Cell]:
    """All cells of the sweep, in table order.

    Single views (every seed), metadata rows, then every method on every pair (runs of the same
    seed index) and ensemble (seed ``s`` with ``s+1``; only seed 0 with two seeds), then the
    top-k rows.
    """
    cells: list[Cell] = []
    for view in image_views(config):
        rs = config.runs[view]
        cells += [Cell("single", (view,), "model", s, (r,)) for s, r in enumerate(rs)]
    fb = {"fallback": config.fallback}
    if config.metadata is not None:
        md = asdict(config.metadata)
        for fld in config.metadata.fields:
            for view in config.metadata.views:
                cells += [
                    Cell(
                        "metadata",
                        (view,),
                        "prior",
                        s,
                        (r,),
                        {**md, **fb, "field": fld},
                        _fallback_run(config, s),
                    )  # fmt: skip
                    for s, r in enumerate(config.runs[view])
                ]
    fit = FitSettings(heads=config.heads or HeadConfig(), threshold_t=config.threshold_t)
    pairs = [Pair(a, b) for a, b in config.pairs or []]
    pairs += [Pair.of_ensemble(v) for v in config.ensembles or []]
    for pair in pairs:
        kind: CellKind = "ensemble" if pair.ensemble else "pair"
        a, b, shift = pair.first, pair.second, int(pair.ensemble)
        n = min(len(config.runs[a]), len(config.runs[b]))
        seeds = range(1) if (shift and n == 2) else range(n)
        for s in seeds:
            runs = (config.runs[a][s], config.runs[b][(s + shift) % n])
            for m in config.methods or []:
                settings: dict[str, Any] = {**fb, "metric": config.select_metric}
                settings.update(method_class(m).cell_settings(fit))
                cells.append(Cell(kind, (a, b), m, s, runs, settings, _fallback_run(config, s)))
    return cells + _topk_cells(config)


def head_batches(cells: list[Cell], together: bool = True) -> list[list[Cell]]:
    """The fused cells of ``cells`` whose method trains a head, in the batches that train
    together (:func:`occam_l2r.fusion.fusers.fit_learnt`): all of them with ``together`` (the
    heads are independent: each keeps its own seed and data), else one batch per group."""
    learnt = [c for c in cells if c.kind in ("pair", "ensemble") and method_class(c.method).learnt]
    if together:
        return [learnt] if learnt else []
    batches: dict[tuple[str, str, int], list[Cell]] = {}
    for cell in learnt:
        batches.setdefault(cell.group, []).append(cell)
    return list(batches.values())


def _topk_cells(config: SweepConfig) -> list[Cell]:
    k = config.topk
    if k is None:
        return []
    views = (k.full, k.fg) + ((k.bg,) if k.bg else ())
    variants = [v for v in TOPK_VARIANTS if k.bg or "BG" not in v]
    settings = {"ks": list(k.ks), "metric": config.select_metric, "fallback": config.fallback,
                "candidates_from": k.candidates_from}  # fmt: skip
    return [
        Cell("topk", views, variant, s, topk_runs(config, s), dict(settings))
        for s in range(topk_seeds(config))
        for variant in variants
    ]
