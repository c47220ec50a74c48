"""The ``check`` verb: decode every image a training config uses, once, in parallel; list failures.

``python -m occam_l2r check --config C [--config OVERLAY] [--workers N] [--output FILE]`` takes
the same config files as ``fit`` (only their ``data:`` section is read; ``trainer:``, ``model:``
and the rest are ignored) and the same overrides (``--data.init_args.dataset.init_args.root R``).
It decodes every image of the splits that ``fit`` would read (train, val and the test splits, as
``data.on_unreadable`` does) with ``workers`` processes, prints the number of images and of
unreadable ones per split, and writes the unreadable files to a CSV (``split``, ``image_id``,
``path``, ``reason``). The exit status is 1 when any image is unreadable, 0 otherwise.

For a :class:`~occam_l2r.data.datamodule.ViewDataModule` it applies the DataModule's own rule of
a usable image (:meth:`~occam_l2r.data.datamodule.ViewDataModule.unusable_images`, the rule of
``fit`` and ``data.on_unreadable: skip``): with a view that needs a segmentation an image must
also have the size of its ground-truth mask and of its stored segmentation, so the ``gt`` store
is built (completed, as ``fit`` would) for that check.

Results are cached per file (size and modification time,
:func:`occam_l2r.data.image_checks.check_cache_path`): a rerun, and a later ``fit`` with
``data.on_unreadable: skip``, decode only new or changed files (``--cache false`` decodes all).
"""

from __future__ import annotations

import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml
from jsonargparse.typing import PositiveInt

from occam_l2r.commands import run_function
from occam_l2r.data.base import BaseDataModule
from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.image_checks import check_cache_path, check_images
from occam_l2r.data.records import Record
from occam_l2r.data.view_dataset import unreadable_rows, write_unreadable_csv


def check(
    data: BaseDataModule,
    workers: PositiveInt = max(1, os.cpu_count() or 1),
    output: str = "unreadable_images.csv",
    cache: bool = True,
) -> dict[str, Any]:
    """Decode every image of ``data``'s splits once, in parallel, and list the unreadable ones.

    Args:
        data: the DataModule of a ``fit`` config (its ``dataset`` and split settings are used).
        workers: decoding processes (default: every CPU core).
        output: the CSV listing the unreadable images (written even when there is none).
        cache: reuse the results of unchanged files from earlier checks, and remember these.

    Returns:
        ``counts`` (split -> images, unreadable), ``unreadable`` (the CSV rows) and ``output``.
    """
    dataset = data.dataset
    if dataset is None:
        raise ValueError(f"check needs a DataModule with a dataset; {type(data).__name__} has none")
    dataset.prepare()
    splits = _splits(data)
    records = {r.image_id: r for recs in splits.values() for r in recs}
    t0 = time.perf_counter()
    if isinstance(data, ViewDataModule):  # the rule `fit` applies before training
        bad = data.unusable_images(splits, int(workers), cache, build=True)
    else:
        paths = {i: dataset.image_path(r) for i, r in records.items()}
        bad = check_images(paths, int(workers), check_cache_path(dataset) if cache else None)
    secs = time.perf_counter() - t0
    unreadable = {
        s: [(r, bad[r.image_id]) for r in recs if r.image_id in bad] for s, recs in splits.items()
    }
    rows = unreadable_rows(dataset, unreadable)
    out = Path(output)
    write_unreadable_csv(out, rows)
    counts = {s: (len(recs), len(unreadable[s])) for s, recs in splits.items()}
    print(
        f"check: {len(records)} images of {type(dataset).__name__} at {dataset.root}, "
        f"{int(workers)} worker(s), {secs:.1f} s"
    )
    print("| split | images | unreadable |\n|---|---|---|")
    for split, (n, n_bad) in counts.items():
        print(f"| {split} | {n} | {n_bad} |")
    for row in rows[:20]:
        print(f"unreadable ({row['split']}): {row['path']}: {row['reason']}")
    if len(rows) > 20:
        print(f"... and {len(rows) - 20} more")
    print(f"{len(bad)} unreadable image(s); list written to {out}")
    return {"counts": counts, "unreadable": rows, "output": str(out)}


def _splits(data: BaseDataModule) -> dict[str, list[Record]]:
    """The records per split that ``fit`` reads (a :class:`ViewDataModule`'s
    ``split_records``), else every split of the dataset."""
    if isinstance(data, ViewDataModule):
        return data.split_records()
    by_split: dict[str, list[Record]] = {}
    for rec in data.require_dataset().all_records():
        by_split.setdefault(rec.split, []).append(rec)
    return by_split


def _only_check_keys(argv: list[str]) -> list[str]:
    """Replace each ``--config FILE`` by the keys of FILE that ``check`` takes (a fit config's
    ``trainer:``, ``model:``, ... are dropped), so the files of ``fit`` work unchanged."""
    keys = set(inspect.signature(check).parameters)
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name != "--config":
            out.append(arg)
            continue
        value = value if eq else next(it, "")
        path = Path(value)
        content = yaml.safe_load(path.read_text()) if path.is_file() else None
        if isinstance(content, dict):
            value = json.dumps({k: v for k, v in content.items() if k in keys})
        out += ["--config", value]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m occam_l2r check --config FILE``; exits with status 1 if an image is unreadable.

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    import sys

    args = _only_check_keys(list(sys.argv[2:] if argv is None else argv))
    result = run_function(check, args, prog="python -m occam_l2r check")
    if isinstance(result, dict) and result["unreadable"]:
        raise SystemExit(1)
    return result
