"""``python -m occam_l2r segment --config configs/segment/<name>.yaml``: precompute segmentations.

The config has the same conventions as ``fit``: a ``dataset:`` section (``class_path`` +
``init_args``, identical to ``data.init_args.dataset`` of the training configs), a
``segmenter:`` section (``class_path`` of :mod:`occam_l2r.segment.segmenters`), a ``store:``
folder (default ``<dataset root>/segmentations/<config file name>``; ``.../gt`` for the ``gt``
source, where training configs look for it) and a ``trainer:`` section
handed to Lightning's ``Trainer`` (``accelerator``, ``devices``, ``strategy``, ``precision``,
``num_nodes``): ``devices: 8`` + ``strategy: ddp`` runs one process per GPU, each writing its own
shard; ``precision: bf16-mixed`` (or ``16-mixed``) runs the models under autocast. A rerun
resumes: images already in the store are skipped. ``--print_config`` prints the full config.

Weights are checked before any model is loaded or any process spawned, so a missing checkpoint
fails within seconds with a message naming it and where to put it.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.segment.segmenters import Segmenter
from occam_l2r.store import StoreWriter, config_hash

log = logging.getLogger("occam_l2r.segment")


@dataclass
class TrainerOptions:
    """The Lightning ``Trainer`` arguments of a segmentation run.

    Args:
        accelerator: ``auto``, ``gpu``, ``cpu``, ...
        devices: number of devices, their indices, or ``auto``.
        strategy: ``auto``, ``ddp`` (one process per device, one shard per rank), ...
        precision: ``32-true``; ``bf16-mixed`` or ``16-mixed`` for autocast on GPU.
        num_nodes: machines of a multi-node run.
    """

    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = 1


def select_records(
    dataset: RecordDataset, splits: list[str] | None, limit: int | None
) -> list[Record]:
    """The run's records in a stable order: ``splits`` (all when ``None``), first ``limit`` of each."""
    if splits is None:
        records = dataset.all_records()
        if limit is not None:
            records = records[:limit]
        return records
    out: list[Record] = []
    for split in splits:
        out.extend(dataset.records(split)[:limit])
    return out


def default_store(dataset: RecordDataset, segmenter: Segmenter, config_name: str | None) -> Path:
    """``<dataset root>/segmentations/<config name>`` (``<segmenter>-<config hash>`` without a
    config file); the ``gt`` source always goes to ``<dataset root>/segmentations/gt``, where
    training configs with ``data.segmentation: gt`` read it."""
    if segmenter.name == "gt":
        return Path(dataset.root) / "segmentations" / "gt"
    name = config_name or f"{segmenter.name.replace('+', '_')}-{config_hash(segmenter.config())}"
    return Path(dataset.root) / "segmentations" / name


def run_segment(
    dataset: RecordDataset,
    segmenter: Segmenter,
    store: str | None = None,
    splits: list[str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    num_workers: int = 2,
    trainer: TrainerOptions = TrainerOptions(),
    progress_bar: bool = True,
    config_name: str | None = None,
) -> dict[str, Any] | None:
    """Segment the images of ``dataset`` into a store (resumable; one shard per rank).

    Args:
        dataset: the dataset (same section as in training configs).
        segmenter: ``DetectAndSegment``, ``AutomaticMasks`` or ``GroundTruth``.
        store: output folder; default ``<dataset root>/segmentations/<config name>``.
        splits: splits to segment (all splits when omitted).
        limit: segment at most this many images per split (all splits: in total).
        batch_size: images per forward pass on each device.
        num_workers: DataLoader workers per device (image reading and preprocessing).
        trainer: Lightning Trainer options (devices, strategy, precision).
        progress_bar: show the progress bar (images/s).
        config_name: name of the default store folder (the config file's name).

    Returns:
        The run's summary on rank 0 (also written to ``<store>/summary.json``), else ``None``.
    """
    import lightning.pytorch as pl

    from occam_l2r.segment.task import (
        ImagesPerSecondBar,
        SegmentTask,
        StoreWriterCallback,
        format_summary,
    )

    if isinstance(trainer, dict):
        trainer = TrainerOptions(**trainer)
    segmenter.check_weights()
    dataset.prepare()
    segmenter.bind(dataset)
    records = select_records(dataset, splits, limit)
    path = Path(store) if store else default_store(dataset, segmenter, config_name)
    StoreWriter(path, segmenter.name, segmenter.config(), rank=0, dataset=dataset.name)
    task = SegmentTask(segmenter, dataset, records, path, batch_size, num_workers)
    writer = StoreWriterCallback(path, segmenter, dataset.name, [r.image_id for r in records])
    callbacks: list[pl.Callback] = [writer]
    if progress_bar:
        callbacks.append(ImagesPerSecondBar())
    pl_trainer = pl.Trainer(
        accelerator=trainer.accelerator,
        devices=trainer.devices,
        strategy=trainer.strategy,
        precision=trainer.precision,  # type: ignore[arg-type]
        num_nodes=trainer.num_nodes,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        use_distributed_sampler=False,
        callbacks=callbacks,
    )
    pl_trainer.predict(task, return_predictions=False)
    summary = writer.finish(pl_trainer, task)
    if summary is not None:
        print(format_summary(summary), flush=True)
    return summary


def build_parser(prog: str = "python -m occam_l2r segment") -> ArgumentParser:
    """The ``segment`` parser: ``--config``, ``--print_config`` and :func:`run_segment`'s arguments."""
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file")
    parser.add_function_arguments(run_segment, skip={"config_name"})
    return parser


def config_name_of(cfg: Namespace) -> str | None:
    """Stem of the last ``--config`` file, which names the default store folder."""
    files = cfg.get("config") or []
    files = [f for f in files if f is not None]
    return Path(str(files[-1])).stem if files else None


def parse(parser: ArgumentParser, argv: list[str]) -> tuple[Namespace, Namespace]:
    cfg = parser.parse_args(argv)
    return cfg, parser.instantiate(cfg)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Entry point of ``python -m occam_l2r segment``."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    cfg, init = parse(parser, list(sys.argv[1:] if argv is None else argv))
    args = {
        k: init[k]
        for k in (
            "dataset",
            "segmenter",
            "store",
            "splits",
            "limit",
            "batch_size",
            "num_workers",
            "progress_bar",
        )
    }
    return run_segment(**args, trainer=init.trainer, config_name=config_name_of(cfg))
