"""DataModule over the logits of one or two trained runs, for the fusion heads.

Each sample is ``{"z1": (C,), "z2": (C,), "label": int, "index": int, "group": int, "id": str,
"group_name": str, "fallback": bool}`` (``z2`` absent with one input), read from the logits
files that ``predict`` writes (``<run_dir>/logits/<split>.npz``). The two inputs are aligned on
their sample ids, and every check of :func:`occam_l2r.fusion.inputs.align_pair` applies (finite
logits, same ids, same class count); ``fallback`` is set when either input's view fell back.

The train loader walks the labelled samples in the order of
:class:`occam_l2r.fusion.head_training.EpochOrder` seeded by ``seed`` (default: the run's
``seed_everything``; :func:`~occam_l2r.fusion.head_training.shuffled_loader`), the order in
which the ``fuse`` verb's ablation trains the same head. ``headline_metric`` (the checkpoint
monitor's metric) is read from the logits files, where ``predict`` stores the dataset's.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from occam_l2r.data.base import BaseDataModule
from occam_l2r.fusion.head_training import shuffled_loader
from occam_l2r.fusion.inputs import (
    LogitsPair,
    align_pair,
    load_run_split,
    read_meta,
    resolve_logits_path,
)
from occam_l2r.logits import LogitsFile


class LogitsDataset(Dataset):
    """In-memory aligned logits of one split."""

    def __init__(self, pair: LogitsPair, two_inputs: bool, group_index: dict[str, int]) -> None:
        self.z1 = torch.as_tensor(pair.z1, dtype=torch.float32)
        self.z2 = torch.as_tensor(pair.z2, dtype=torch.float32) if two_inputs else None
        self.labels = torch.as_tensor(pair.labels, dtype=torch.int64)
        self.ids = pair.ids
        self.groups = pair.groups
        self.group_ids = torch.as_tensor([group_index[g] for g in pair.groups], dtype=torch.int64)
        self.fallback = torch.as_tensor(pair.fallback, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {
            "z1": self.z1[i],
            "label": self.labels[i],
            "index": torch.tensor(i),
            "group": self.group_ids[i],
            "id": str(self.ids[i]),
            "group_name": str(self.groups[i]),
            "fallback": self.fallback[i],
        }
        if self.z2 is not None:
            item["z2"] = self.z2[i]
        return item


class LogitsDataModule(BaseDataModule):
    """Logits of two runs (or one) per split, aligned on sample ids.

    Args:
        input1: run dir (``<dir>/logits/<split>.npz``), logits dir, of input 1 (e.g. FG_C).
        input2: the same for input 2 (e.g. BG_S or FULL); ``None`` for one-input heads
            (temperature scaling of one model).
        train_split: split the head is trained on (``val`` for temperature scaling, as in the
            paper; ``train`` for weighted logits and concat+FC).
        val_split: split monitored during training (checkpoint selection).
        test_splits: splits evaluated by ``test`` (and after ``fit``).
        predict_splits: splits whose fused logits ``predict`` writes; default all of the above.
        batch_size: batch size.
        num_workers: dataloader workers (0 is right for in-memory logits).
        seed: seed of the train loader's shuffling; default: the run's ``seed_everything``
            (``PL_GLOBAL_SEED``), else 0.
        headline_metric: the metric that chooses the checkpoint (``val/headline``); default:
            the ``headline_metric`` that ``predict`` stored in input 1's logits, else ``acc``.
    """

    def __init__(
        self,
        input1: str,
        input2: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_splits: list[str] | None = None,
        predict_splits: list[str] | None = None,
        batch_size: int = 1024,
        num_workers: int = 0,
        seed: int | None = None,
        headline_metric: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.input1, self.input2 = input1, input2
        self.train_split, self.val_split = train_split, val_split
        self.test_splits = list(test_splits if test_splits is not None else ["test"])
        order = [train_split, val_split, *self.test_splits]
        self.predict_splits = list(predict_splits or dict.fromkeys(order))
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        stored = read_meta(resolve_logits_path(input1, val_split)).get("config", {})
        self._headline_metric = headline_metric or stored.get("headline_metric") or "acc"
        head = load_run_split(input1, val_split)
        self._num_classes = head.num_classes
        self._class_names = list(head.class_names)
        self.view = head.view
        self.view2 = load_run_split(input2, val_split).view if input2 else ""
        self.datasets: dict[str, LogitsDataset] = {}
        #: group names in order of first appearance over the loaded splits (indices stay fixed)
        self._group_names: list[str] = []

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def group_names(self) -> list[str]:
        """The groups of the loaded splits, in order of first appearance."""
        return list(self._group_names)

    @property
    def headline_metric(self) -> str:
        return self._headline_metric

    @property
    def num_inputs(self) -> int:
        return 2 if self.input2 else 1

    @property
    def val_split_names(self) -> list[str]:
        return [self.val_split]

    @property
    def test_split_names(self) -> list[str]:
        return self.test_splits

    @property
    def predict_split_names(self) -> list[str]:
        return self.predict_splits

    def _load(self, split: str) -> LogitsDataset:
        if split not in self.datasets:
            a = load_run_split(self.input1, split)
            b = load_run_split(self.input2, split) if self.input2 else a
            pair = align_pair(a, b, f"input1 {self.input1}", f"input2 {self.input2 or self.input1}")
            if pair.num_classes != self.num_classes:
                raise ValueError(
                    f"split {split!r} of {self.input1} has {pair.num_classes} classes, its "
                    f"{self.val_split!r} split has {self.num_classes}; re-export the logits"
                )
            for g in sorted(set(pair.groups.tolist()) - set(self._group_names)):
                self._group_names.append(g)
            index = {g: i for i, g in enumerate(self._group_names)}
            self.datasets[split] = LogitsDataset(pair, self.input2 is not None, index)
        return self.datasets[split]

    def setup(self, stage: str) -> None:
        splits = {
            "fit": [self.train_split, self.val_split],
            "validate": [self.val_split],
            "test": self.test_splits,
            "predict": self.predict_splits,
        }[stage]
        for split in splits:
            self._load(split)

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        ds = self._load(split)
        if not shuffle:
            return self.eval_loader(ds, self.batch_size, num_workers=self.num_workers)
        labelled = torch.nonzero(ds.labels >= 0).flatten()
        if len(labelled) == 0:
            raise ValueError(f"split {split!r} has no labels (all -1); cannot train on it")
        train: Dataset = ds if len(labelled) == len(ds) else Subset(ds, labelled.tolist())
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        return shuffled_loader(train, self.batch_size, seed, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_split, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_split)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(s) for s in self.test_splits]

    def predict_dataloader(self) -> list[DataLoader]:
        return [self._loader(s) for s in self.predict_splits]

    def split_info(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ids, labels and groups of a loaded split (for writing fused logits files)."""
        ds = self._load(split)
        return ds.ids, ds.labels.numpy(), ds.groups

    def source(self, split: str) -> LogitsFile:
        """The input-1 logits file of ``split`` (its metadata describes the samples)."""
        return load_run_split(self.input1, split)
