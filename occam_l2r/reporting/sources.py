"""What a finished ``fuse`` run left in its ``output_dir``, read back for the report.

- :class:`FuseOutputs`: ``metrics_long.csv`` (mean, std and seed count of every row, split and
  metric) and the records of ``results.jsonl`` (runs, per-split metrics and fitted parameters of
  every cell), restricted to the cells of the tables; the runs of each view, the fused pairs,
  ⊕* per pair (:func:`occam_l2r.fusion.tables.best_methods`, as ``fuse`` selects it).
- :func:`read_markdown_table` / :func:`read_tables`: the Markdown tables exactly as ``fuse``
  wrote them (the report shows the same cells).
- :func:`read_weights`: the per-class weighted-logits weights (``weights/<pair>_seed<k>.csv``).
- :func:`dataset_root`: the folder the sample ids of a run are relative to.

Every optional part (weights, samples, top-k, extra tables) may be absent.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from occam_l2r.errors import UserError
from occam_l2r.fusion.runner import load_done
from occam_l2r.fusion.tables import best_methods

RESULTS = "results.jsonl"
METRICS = "metrics_long.csv"
#: the Markdown tables shown first, in this order; any other ``*.md`` table of the folder follows
TABLE_ORDER = ("summary", "fusion_table", "metadata_table", "datasets_table")


class FuseOutputMissingError(UserError, FileNotFoundError):
    """The folder given to ``report`` holds no finished ``fuse`` output."""


@dataclass
class MarkdownTable:
    """One Markdown table file of ``fuse``: its title line(s), header and cells (as written)."""

    stem: str
    title: str
    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") else inner
    return [c.strip() for c in inner.split("|")]


def read_markdown_table(path: str | Path) -> MarkdownTable:
    """Parse a table written by :func:`occam_l2r.fusion.tables.write_table`.

    The lines before the table (``# title``) become the title; the ``|---|`` line is skipped.
    """
    path = Path(path)
    title, table = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("|"):
            table.append(line)
        elif line.strip() and not table:
            title.append(line.strip().lstrip("#").strip())
    if not table:
        raise ValueError(f"{path} holds no Markdown table")
    header = _cells(table[0])
    rows = [_cells(x) for x in table[1:] if not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*", x)]
    return MarkdownTable(path.stem, " ".join(title), header, rows)


def read_tables(folder: str | Path) -> list[MarkdownTable]:
    """Every Markdown table of a ``fuse`` output folder: :data:`TABLE_ORDER` first."""
    folder = Path(folder)
    found = {p.stem: p for p in sorted(folder.glob("*.md"))}
    order = [s for s in TABLE_ORDER if s in found] + [s for s in found if s not in TABLE_ORDER]
    out = []
    for stem in order:
        try:
            out.append(read_markdown_table(found[stem]))
        except ValueError:
            continue  # a Markdown file without a table (notes) is not a table of the report
    return out


@dataclass
class FuseOutputs:
    """The results of one ``fuse`` run (see the module docstring).

    Attributes:
        folder: the ``output_dir`` of ``fuse``.
        metrics: ``metrics_long.csv``: kind, name, method, split, metric, mean, std, n_seeds.
        records: the ``results.jsonl`` records of the cells in ``metrics``, in file order.
    """

    folder: Path
    metrics: pd.DataFrame
    records: list[dict[str, Any]]

    @classmethod
    def load(cls, folder: str | Path) -> FuseOutputs:
        """Read ``metrics_long.csv`` and ``results.jsonl`` of ``folder``.

        Raises:
            FuseOutputMissingError: ``folder`` has no ``metrics_long.csv``.
        """
        folder = Path(folder)
        if not (folder / METRICS).is_file():
            raise FuseOutputMissingError(
                f"{folder} holds no {METRICS}: it is not the output_dir of a finished `fuse`. "
                "Run `python -m occam_l2r fuse --config ...` first and give its output_dir as "
                "`fusion_dir`."
            )
        metrics = pd.read_csv(folder / METRICS, dtype={"name": str, "method": str, "split": str})
        keys = set(zip(metrics.kind, metrics.name, metrics.method, strict=True))
        done = load_done(folder / RESULTS).values()
        records = [r for r in done if (r.get("kind"), r.get("name"), r.get("method")) in keys]
        return cls(folder, metrics, records)

    def cells(
        self, kind: str | None = None, name: str | None = None, method: str | None = None
    ) -> list[dict[str, Any]]:
        """The records matching the given kind, name and method, by seed."""
        out = [
            r for r in self.records
            if (kind is None or r["kind"] == kind) and (name is None or r["name"] == name)
            and (method is None or r["method"] == method)
        ]  # fmt: skip
        return sorted(out, key=lambda r: int(r["seed"]))

    def runs(self) -> dict[str, list[str]]:
        """View -> run dirs in seed order, from the single-model cells."""
        out: dict[str, list[str]] = {}
        for rec in self.cells("single"):
            out.setdefault(rec["name"], []).append(rec["runs"][0])
        return out

    def fused_names(self, kinds: tuple[str, ...] = ("pair", "ensemble")) -> list[str]:
        """The fused rows' names (``FG_C+BG_S``, ``FULLx2``) in table order."""
        rows = self.metrics[self.metrics.kind.isin(kinds)]
        return list(dict.fromkeys(rows.name))

    def splits(self) -> list[str]:
        """The evaluated splits, in the tables' order."""
        return list(dict.fromkeys(self.metrics.split))

    def best(self, val_split: str, metric: str) -> dict[str, tuple[str, ...]]:
        """⊕* per fused row: the methods tied at the best mean ``metric`` on ``val_split``."""
        return best_methods(self.metrics, val_split, metric)


def read_weights(folder: str | Path) -> dict[str, dict[int, pd.DataFrame]]:
    """Fused row name -> seed -> per-class weights (``class, name, w1, w2, share1``)."""
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for path in sorted(Path(folder, "weights").glob("*_seed*.csv")):
        match = re.fullmatch(r"(.+)_seed(\d+)", path.stem)
        if match:
            table = pd.read_csv(path, dtype={"name": str}, keep_default_na=False)
            out.setdefault(match[1], {})[int(match[2])] = table
    return out


def dataset_root(run: str | Path) -> Path | None:
    """The dataset root of a run: ``data.init_args.dataset`` of ``<run>/config.yaml``,
    instantiated (``class_path`` + ``init_args``) for its ``root``; ``None`` when the run has
    no such config."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        return None
    cfg = yaml.safe_load(path.read_text()) or {}
    spec = ((cfg.get("data") or {}).get("init_args") or {}).get("dataset")
    if not isinstance(spec, dict) or "class_path" not in spec:
        return None
    module, _, name = str(spec["class_path"]).rpartition(".")
    dataset = getattr(importlib.import_module(module), name)(**(spec.get("init_args") or {}))
    return Path(dataset.root)
