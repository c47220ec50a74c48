"""The streaming logits writer: ``predict`` of every task → one logits file per split.

A Lightning ``BasePredictionWriter``. Each batch's prediction (sample ids, dataset positions,
labels, groups, candidates, fallback flags, logits — see
:meth:`occam_l2r.tasks.base.BaseTask.prediction`) is buffered per split and flushed as a part
file ``<out>/.parts/<split>/rank<r>-<k>.npz`` whenever the buffer holds ``rows_per_part`` rows,
so memory does not grow with the split. At the end of the epoch all ranks meet at a barrier and
rank 0 merges the parts of each split into ``<out>/<split>.npz`` (:mod:`occam_l2r.logits`,
streamed in windows of dataset positions, in the dataset's order; a position seen twice — a
distributed sampler's padding — is kept once), then deletes the parts.

The task is a :class:`~occam_l2r.tasks.base.BaseTask` (which adds this writer to every run), and
the writer reads what it declares. A task with several outputs per sample (the zero-shot task:
one per view and per fused pair) names them in ``prediction_outputs()`` and puts ``outputs`` /
``fallbacks`` dicts (output name -> logits / fallback flags) in its predictions; each output then
gets its own folder of logits files, ``<out>/<output>/<split>.npz`` with ``view`` = the output's
name, so that every output is a run of its own for ``fuse``. A task's ``output_class_names``
(when not empty) names the logits' columns instead of its DataModule's ``class_names``.

Ranks must share the output folder (a shared file system on multi-node runs), as they share
the segmentation store.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from occam_l2r.logits import LogitsPart, merge_parts
from occam_l2r.tasks.checkpoints import checkpoint_run_dir


class LogitsWriter(BasePredictionWriter):
    """Writes the logits of ``predict`` as part files, merged into one file per split.

    Args:
        output_dir: the folder of the logits files; default ``<run dir>/<subdir>``, the run dir
            being the folder of the checkpoint given to ``predict`` (or the trainer's log dir).
        subdir: the folder name under the run dir (``logits``, ``fused_logits``).
        rows_per_part: rows buffered per split before a part file is written.
        dtype: the stored dtype of the logits, ``float32`` (format 2) or ``float16`` (format 3).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        subdir: str = "logits",
        rows_per_part: int = 8192,
        dtype: str = "float32",
    ) -> None:
        super().__init__(write_interval="batch")
        self.dtype = np.dtype(dtype)
        self.output_dir = output_dir
        self.subdir = subdir
        self.rows_per_part = rows_per_part
        self._buffers: dict[int, list[dict[str, Any]]] = {}
        self._rows: dict[int, int] = {}
        self._parts: dict[int, int] = {}
        self.out: Path | None = None

    # ------------------------------------------------------------------ where
    def resolve_dir(self, trainer: L.Trainer) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        ckpt = trainer.ckpt_path
        if ckpt:
            return checkpoint_run_dir(ckpt) / self.subdir
        return Path(trainer.log_dir or trainer.default_root_dir) / self.subdir

    def _part_dir(self, split: str, output: str | None = None) -> Path:
        assert self.out is not None
        return self.out / ".parts" / (f"{output}/{split}" if output else split)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.out = self.resolve_dir(trainer)  # log_dir is a collective: every rank calls it
        self._buffers, self._rows, self._parts = {}, {}, {}
        if trainer.global_rank == 0:
            shutil.rmtree(self.out / ".parts", ignore_errors=True)  # leftovers of a killed run
        trainer.strategy.barrier("logits_writer_start")

    # ------------------------------------------------------------------ per batch
    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if prediction is None:
            return
        self._buffers.setdefault(dataloader_idx, []).append(prediction)
        self._rows[dataloader_idx] = self._rows.get(dataloader_idx, 0) + len(prediction["index"])
        if self._rows[dataloader_idx] >= self.rows_per_part:
            self._flush(trainer, pl_module, dataloader_idx)

    def _split(self, pl_module: L.LightningModule, dataloader_idx: int) -> str:
        return pl_module.split_names["predict"][dataloader_idx]

    def _flush(self, trainer: L.Trainer, pl_module: L.LightningModule, idx: int) -> None:
        batches = self._buffers.pop(idx, [])
        self._rows[idx] = 0
        if not batches:
            return
        n = [len(b["index"]) for b in batches]

        def cat(key: str, default: Any) -> np.ndarray:
            if all(key in b for b in batches):
                values = [b[key] for b in batches]
                if isinstance(values[0], torch.Tensor):
                    return torch.cat(values).numpy()
                return np.asarray([v for part in values for v in part])
            return np.concatenate([np.full(k, default) for k in n])

        common = {
            "index": cat("index", -1).astype(np.int64),
            "ids": cat("id", "").astype(str),
            "labels": cat("label", -1).astype(np.int64),
            "groups": cat("group", "").astype(str),
            "candidates": cat("candidate", -1).astype(np.int64),
        }
        k = self._parts.get(idx, 0)
        self._parts[idx] = k + 1
        split = self._split(pl_module, idx)
        name = f"rank{trainer.global_rank:03d}-{k:06d}.npz"
        outputs = pl_module.prediction_outputs()
        if not outputs:
            part = LogitsPart(
                **common,
                fallback=cat("fallback", 0).astype(bool),
                logits=cat("logits", np.nan).astype(np.float32),
            )
            part.save(self._part_dir(split) / name)
            return
        for output in outputs:
            part = LogitsPart(
                **common,
                fallback=torch.cat([b["fallbacks"][output] for b in batches]).numpy().astype(bool),
                logits=torch.cat([b["outputs"][output] for b in batches])
                .numpy()
                .astype(np.float32),
            )
            part.save(self._part_dir(split, output) / name)

    # ------------------------------------------------------------------ merge
    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for idx in list(self._buffers):
            self._flush(trainer, pl_module, idx)
        trainer.strategy.barrier("logits_writer_parts_written")
        if trainer.global_rank == 0:
            assert self.out is not None
            meta = pl_module.prediction_metadata()
            names = pl_module.output_class_names or pl_module.datamodule.class_names
            for output in pl_module.prediction_outputs() or [None]:
                folder = self.out / output if output else self.out
                for split in pl_module.split_names["predict"]:
                    merge_parts(
                        sorted(self._part_dir(split, output).glob("rank*.npz")),
                        folder / f"{split}.npz",
                        split=split,
                        view=output or meta.get("view", ""),
                        run=str(self.out.parent),
                        class_names=list(names),
                        config=meta.get("config", {}),
                        dtype=self.dtype,
                    )
            shutil.rmtree(self.out / ".parts", ignore_errors=True)
            print(f"logits of {len(pl_module.split_names['predict'])} splits written to {self.out}")
        trainer.strategy.barrier("logits_writer_merged")
