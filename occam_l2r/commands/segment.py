"""``python -m occam_l2r segment --config configs/segment/<name>.yaml``: precompute segmentations.

A ``LightningCLI`` (:class:`SegmentCLI`) over :class:`~occam_l2r.tasks.segment.SegmentTask` and
:class:`~occam_l2r.data.segment_datamodule.SegmentDataModule`, so the config has the sections of
every Lightning job::

    model:    # SegmentTask
      segmenter: {class_path: occam_l2r.segment.segmenters.DetectAndSegment, init_args: ...}
      store: null          # default <dataset root>/segmentations/<config file name> (.../gt for gt)
    data:     # SegmentDataModule
      dataset: {class_path: occam_l2r.data.datasets..., init_args: ...}  # as in training configs
      splits: null         # all splits
      limit: null
      batch_size: 8
      num_workers: 2
    trainer:  # the full Lightning Trainer: accelerator, devices, strategy, precision, num_nodes...

``trainer.devices: 8`` + ``trainer.strategy: ddp`` runs one process per GPU, each writing its own
shard; ``trainer.precision: bf16-mixed`` (or ``16-mixed``) runs the models under autocast. A rerun
resumes: images already in the store are skipped. It also repairs the store: a data file that
cannot be read is moved aside (``<file>.damaged``) and the images it held are computed again;
a store computed on other image files (another dataset, or this one generated again) is refused. ``--print_config`` prints the full config.
A SIGTERM (a scheduler's notice before the kill) stops the run after the batch being written,
its rows stored, with one message and exit status 143; the rerun segments the rest.

Weights are checked before any model is loaded or any process spawned, so a missing checkpoint
fails within seconds with a message naming it and where to put it. At the end rank 0 writes
``<store>/summary.json`` and prints it: this run's images, and what the whole store holds per
split of the dataset, counted under the store lock after the merge (true also when other runs
write the same store at the same time).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from occam_l2r.commands.lightning import OneMessageInstantiation, OneMessageLightningParser
from occam_l2r.console import log_to_console, progress_bar, quiet_library_warnings
from occam_l2r.data.records import RecordDataset
from occam_l2r.data.segment_datamodule import SegmentDataModule
from occam_l2r.store import SegmentationStore, atomic_write_text, store_lock
from occam_l2r.tasks.checkpoints import EXIT_SIGTERM
from occam_l2r.tasks.segment import SegmentTask, StoreWriterCallback

PROG = "python -m occam_l2r segment"

#: the Trainer of a segmentation run: no logger, checkpoints or summary; each rank slices itself
TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_model_summary": False,
    "use_distributed_sampler": False,
}


class SegmentCLI(OneMessageInstantiation, LightningCLI):
    """The ``segment`` verb's LightningCLI (``run=False``): parses ``args`` and instantiates the
    task, the DataModule and the Trainer with the store writer and the images/s progress bar
    (:func:`occam_l2r.console.progress_bar`: Rich on a terminal, plain lines otherwise).

    Args:
        args: the arguments after the verb (``["--config", "c.yaml", ...]``), or a config
            object (a parsed ``Namespace`` or a dict of its sections; see :func:`run_segment`).
        prog: the name shown in ``--help``.
        description: the text shown in ``--help``.
    """

    def __init__(self, args: ArgsType, prog: str = PROG, description: str | None = None) -> None:
        quiet_library_warnings()  # the same console as the other Lightning verbs
        super().__init__(
            SegmentTask,
            SegmentDataModule,
            save_config_callback=None,
            trainer_defaults=TRAINER_DEFAULTS,
            seed_everything_default=False,
            parser_kwargs={
                "prog": prog,
                "description": description or __doc__.split("\n\n")[0],
            },
            args=args,
            run=False,
            auto_configure_optimizers=False,
            load_from_checkpoint_support=False,
            parser_class=OneMessageLightningParser,
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        callbacks: list[Callback] = list(trainer_cfg.get("callbacks") or [])
        callbacks.append(StoreWriterCallback())
        bar_wanted = trainer_cfg.get("enable_progress_bar") is not False
        if bar_wanted and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(progress_bar(images_per_second=True))
        return super().instantiate_trainer(callbacks=callbacks, **kwargs)

    @property
    def config_name(self) -> str | None:
        """Stem of the last ``--config`` file, which names the default store folder."""
        files = [f for f in (self.config.get("config") or []) if f is not None]
        return Path(str(files[-1])).stem if files else None

    @property
    def store_writer(self) -> StoreWriterCallback:
        return next(c for c in self.trainer.callbacks if isinstance(c, StoreWriterCallback))

    def segment(self) -> dict[str, Any] | None:
        """Check the weights, prepare the data, open the store, run the predict loop; returns the
        summary on rank 0 (also written to ``<store>/summary.json`` and printed), else ``None``."""
        task: SegmentTask = self.model
        data: SegmentDataModule = self.datamodule
        task.segmenter.check_weights()
        data.prepare_data()
        store = task.bind(data.dataset, self.config_name)
        # manifest, or refuse a store of another config or other files, and move damaged data
        # files aside (read whole), before any spawn
        task.writer(rank=0, verify=True)
        try:
            self.trainer.predict(task, datamodule=data, return_predictions=False)
        except SIGTERMException:  # the store writer stopped after a batch, its rows merged
            if self.trainer.global_rank == 0:
                print(
                    f"segment stopped by SIGTERM: the images done so far are stored in {store}; "
                    "run the same command again to segment the rest.",
                    file=sys.stderr,
                    flush=True,
                )
            raise SystemExit(EXIT_SIGTERM) from None
        counts = self.store_writer.finish(self.trainer, task)
        if counts is None:
            return None
        run_ids = [r.image_id for r in data.run_records()]
        with store_lock(store):  # the last summary written is the last counted
            summary = summarize(store, run_ids, splits=split_ids(data.dataset), **counts)
            atomic_write_text(json.dumps(summary, indent=2), store / "summary.json")
        print(format_summary(summary), flush=True)
        return summary


class _ParseOnly(SegmentCLI):
    def instantiate_classes(self) -> None:
        return None


def segment_config(argv: list[str]) -> Namespace:
    """Parse a ``segment`` command line (``["--config", ...]``) without instantiating anything
    (no dataset, segmenter or Trainer: a config for GPUs parses on a laptop)."""
    return _ParseOnly(argv).config


def parse_config(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> Namespace:
    """A ``segment`` config as one typed object: the ``configs`` files composed in order, then
    the dotted command-line ``overrides``; nothing instantiated. The last file's stem still
    names the default store folder when :func:`run_segment` runs it."""
    argv = [arg for c in configs for arg in ("--config", str(c))]
    return segment_config([*argv, *overrides])


def split_ids(dataset: RecordDataset) -> dict[str, list[str]]:
    """The image ids of every split of ``dataset``."""
    out: dict[str, list[str]] = {}
    for rec in dataset.all_records():
        out.setdefault(rec.split, []).append(rec.image_id)
    return out


def summarize(
    store: Path,
    run_ids: Sequence[str],
    computed: int,
    skipped: int,
    seconds: float,
    duplicates: int = 0,
    splits: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Summary of a run, counted from the store as it is now (every shard and part).

    Args:
        store: the store folder.
        run_ids: the images this run was asked for.
        computed: images this run segmented.
        skipped: images of the run already stored when it started.
        seconds: wall time of the run.
        duplicates: rows this run computed but did not keep (another run stored them first).
        splits: the image ids of every split of the dataset, for the whole-store counts.

    Returns:
        The run's images (``images``, ``stored``, ``failures``, ``missing``), the
        detections-per-image histogram and empties (FULL fallbacks) of its images, the whole
        store (``store_images``, ``store_failures``, ``splits``: images, stored, failed and
        missing per split of the dataset) and the run's counts and time.
    """
    reader = SegmentationStore(store)
    failed_all = {f["image_id"] for f in reader.failures()}
    wanted = set(run_ids)
    hist: Counter[str] = Counter()
    table = reader.table
    ids = table.column("image_id").to_pylist()
    n_boxes = pc.list_value_length(table.column("scores")).to_pylist()
    n_masks = pc.list_value_length(table.column("masks")).to_pylist()
    stored = 0
    with_masks = 0
    for image_id, n, m in zip(ids, n_boxes, n_masks, strict=True):
        if image_id in wanted:
            stored += 1
            hist[str(n) if n < 10 else ">=10"] += 1
            with_masks += m > 0
    failed = sorted(failed_all & wanted)
    order = sorted(hist, key=lambda k: (len(k), k))
    per_split = {}
    for split, members in (splits or {}).items():
        n_stored = sum(i in reader for i in members)
        n_failed = sum(i in failed_all for i in members)
        per_split[split] = {
            "images": len(members),
            "stored": n_stored,
            "failed": n_failed,
            "missing": len(members) - n_stored - n_failed,
        }
    return {
        "store": str(store),
        "segmenter": reader.segmenter,
        "config_hash": reader.config_hash,
        "images": len(wanted),
        "stored": stored,
        "computed": computed,
        "skipped": skipped,
        "duplicates_dropped": duplicates,
        "detections_per_image": {k: hist[k] for k in order},
        "empty": hist.get("0", 0),
        "with_masks": with_masks,
        "failures": len(failed),
        "failed_ids": failed[:100],
        "missing": len(wanted) - stored - len(failed),
        "store_images": len(reader),
        "store_failures": len(failed_all),
        "splits": per_split,
        "seconds": round(seconds, 3),
        "images_per_second": round(computed / seconds, 3) if seconds > 0 else 0.0,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable summary lines."""
    hist = ", ".join(f"{k}: {v}" for k, v in summary["detections_per_image"].items()) or "none"
    splits = ", ".join(
        f"{k} {v['stored']}/{v['images']}" + (f" (missing {v['missing']})" if v["missing"] else "")
        for k, v in summary["splits"].items()
    )
    lines = [
        f"segmentation store {summary['store']} ({summary['segmenter']}, config {summary['config_hash']})",
        f"  images {summary['images']}: stored {summary['stored']}, computed now {summary['computed']}, "
        f"skipped (already stored) {summary['skipped']}, failed {summary['failures']}, missing {summary['missing']}, "
        f"dropped (stored by another run) {summary['duplicates_dropped']}",
        f"  whole store: {summary['store_images']} images, {summary['store_failures']} failed; "
        f"per split stored/images: {splits}",
        f"  detections per image: {hist}",
        f"  empty (views fall back to FULL): {summary['empty']}",
        f"  time {summary['seconds']:.1f} s, {summary['images_per_second']:.2f} images/s",
    ]
    if summary["failures"]:
        lines.append(
            f"  failed images (first {len(summary['failed_ids'])}): {summary['failed_ids']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Entry point of ``python -m occam_l2r segment``.

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    log_to_console()
    return SegmentCLI(list(sys.argv[2:] if argv is None else argv)).segment()


def run_segment(config: Namespace | dict[str, Any]) -> dict[str, Any] | None:
    """The ``segment`` verb on a config object, for other verbs and Python callers: a parsed
    config (:func:`parse_config`) or a dict of its sections (``model``, ``data``, ``trainer``),
    checked by the same parser as a config file.

    Returns:
        The run's summary on rank 0 (see :meth:`SegmentCLI.segment`), else ``None``.
    """
    log_to_console()
    return SegmentCLI(config).segment()
