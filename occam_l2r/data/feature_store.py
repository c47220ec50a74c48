"""The feature store: a frozen backbone's features of every split, computed once and kept.

Features depend on the backbone and its weights, the view and how it is made (segmentation,
crop settings), the split's samples and the evaluation transform (size, interpolation, resize
mode). All of that is the store entry's **key**; the entry is the folder
``<root>/<digest of the key>/`` holding

- ``key.json``: the key, readable (written first, atomically);
- ``<split>.npz``: one file per split in the logits-file format (:mod:`occam_l2r.logits`), whose
  matrix holds the features ``(N, D)`` instead of logits; its ``config`` records
  ``kind: features``, the key (with :data:`FEATURES_FORMAT`) and a digest of the split's sample
  ids, so a file of another key or of other samples, or a logits file put there, is recomputed,
  not read.

A split is computed only when its file is missing or its key differs (:meth:`FeatureStore.ensure`):
rerunning a probe, or training another head on the same backbone and view, reads the stored
files (memory-mapped) and touches no image. Writing goes the way ``predict``'s logits go: each
rank writes part files of its rows (an in-order loader with the padding of a distributed sampler
marked, :func:`occam_l2r.data.loaders.eval_loader`), all ranks meet at a barrier, rank 0 merges
them into the split's file in the dataset's order, each sample once (:func:`merge_parts`,
atomic), and the ranks meet again. A run killed while computing leaves complete files of the
splits done before and nothing else (the part files of a split are removed before it starts
again): the next run resumes with the missing splits.

Features are always of the **evaluation** transform (no train-time augmentation: an augmented
epoch would need its own features, which is what a fine-tuned classifier is for); the train
split's features are what the head trains on, every epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occam_l2r.logits import LogitsFile, LogitsFileError, LogitsPart, merge_parts, read_meta
from occam_l2r.store_files import atomic_write_text

log = logging.getLogger(__name__)

#: the version of the stored feature files (a different one is recomputed).
FEATURES_FORMAT = 1
#: the ``config.kind`` of a feature file (logits files have none).
FEATURES_KIND = "features"


def samples_digest(ids: Iterable[str]) -> str:
    """A digest of a split's sample ids, in order (a changed split is computed again)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def key_digest(key: dict[str, Any]) -> str:
    """The folder name of a key: a hash of its canonical JSON."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class FeatureStore:
    """The features of one key (backbone, weights, view, transform, dataset) under ``root``.

    Attributes:
        computed: the splits this object computed (empty when every split was stored).
        batches_computed: backbone forward passes this object ran (0 on a reuse).
    """

    def __init__(self, root: str | Path, key: dict[str, Any]) -> None:
        self.key = {"format": FEATURES_FORMAT, **key}
        self.folder = Path(root) / key_digest(self.key)
        self.computed: list[str] = []
        self.batches_computed = 0

    def path(self, split: str) -> Path:
        return self.folder / f"{split}.npz"

    def has(self, split: str, samples: str = "") -> bool:
        """Whether ``split``'s file is there, complete, of this key and of the samples whose
        digest is ``samples`` (:func:`samples_digest`)."""
        path = self.path(split)
        if not path.is_file():
            return False
        try:
            config = read_meta(path).get("config", {})
        except LogitsFileError:
            return False
        return (
            config.get("kind") == FEATURES_KIND
            and config.get("key") == self.key
            and config.get("samples", "") == samples
        )

    def load(self, split: str) -> LogitsFile:
        """The stored features of ``split`` (the matrix memory-mapped)."""
        return LogitsFile.load(self.path(split), mmap=True)

    def ensure(
        self,
        splits: dict[str, str],
        loader_of: Callable[[str], Iterable[dict[str, Any]]],
        extract: Callable[[torch.Tensor], torch.Tensor],
        class_names: list[str],
        view: str,
        rank: int = 0,
        barrier: Callable[[str], None] = lambda name: None,
        device: torch.device | str = "cpu",
    ) -> list[str]:
        """Compute the splits whose features are not stored; returns them.

        Every rank calls this with the same splits (the decision to compute is taken from the
        files, which every rank sees alike, and each rank computes its part of a split's loader).

        Args:
            splits: the splits needed -> the digest of their samples (:func:`samples_digest`;
                a split whose samples changed is computed again).
            loader_of: ``split`` -> this rank's in-order loader of it (batches with ``image``,
                ``index``, ``id``, ``label``, ``group_name``, optional ``padding`` and
                ``fallback``).
            extract: uint8 image batch -> features ``(B, D)``.
            class_names, view: the metadata of the files.
            rank: this process's global rank (rank 0 merges).
            barrier: the strategy's barrier (a no-op in one process).
            device: where the batches go.
        """
        todo = [s for s, samples in splits.items() if not self.has(s, samples)]
        if not todo:
            return []
        if rank == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(json.dumps(self.key, indent=2, default=str), self.folder / "key.json")
            for split in todo:
                shutil.rmtree(self._parts(split), ignore_errors=True)  # a killed run's parts
        barrier("feature_store_start")
        for split in todo:
            self._write_parts(split, loader_of(split), extract, rank, device)
            barrier(f"feature_store_parts_{split}")
            if rank == 0:
                merge_parts(
                    sorted(self._parts(split).glob("rank*.npz")), self.path(split), split=split,
                    view=view, run=str(self.folder), class_names=list(class_names),
                    config={"kind": FEATURES_KIND, "key": self.key, "samples": splits[split]},
                )  # fmt: skip
                shutil.rmtree(self._parts(split), ignore_errors=True)
            barrier(f"feature_store_merged_{split}")
            log.info("features of split %r written to %s", split, self.path(split))
        if rank == 0:
            shutil.rmtree(self.folder / ".parts", ignore_errors=True)
        self.computed += todo
        return todo

    def _parts(self, split: str) -> Path:
        return self.folder / ".parts" / split

    @torch.no_grad()
    def _write_parts(
        self,
        split: str,
        loader: Iterable[dict[str, Any]],
        extract: Callable[[torch.Tensor], torch.Tensor],
        rank: int,
        device: torch.device | str,
        rows_per_part: int = 8192,
    ) -> None:
        buffer: list[dict[str, np.ndarray]] = []
        rows, k = 0, 0

        def flush() -> None:
            nonlocal buffer, rows, k
            if not buffer:
                return
            part = LogitsPart(
                **{name: np.concatenate([b[name] for b in buffer]) for name in buffer[0]}
            )
            part.save(self._parts(split) / f"rank{rank:03d}-{k:06d}.npz")
            buffer, rows, k = [], 0, k + 1

        for batch in loader:
            feats = extract(batch["image"].to(device)).float().cpu()
            self.batches_computed += 1
            n = len(feats)
            real = (
                ~batch["padding"].bool() if "padding" in batch else torch.ones(n, dtype=torch.bool)
            )
            keep = real.nonzero().flatten().tolist()
            fallback = batch.get("fallback", torch.zeros(n, dtype=torch.bool))
            candidate = batch.get("candidate", torch.full((n,), -1))
            buffer.append({
                "index": batch["index"][real].numpy().astype(np.int64),
                "ids": np.asarray([batch["id"][i] for i in keep]).astype(str),
                "labels": batch["label"][real].numpy().astype(np.int64),
                "groups": np.asarray([batch["group_name"][i] for i in keep]).astype(str)
                if "group_name" in batch else np.full(len(keep), ""),
                "candidates": candidate[real].numpy().astype(np.int64),
                "fallback": fallback[real].numpy().astype(bool),
                "logits": feats[real].numpy().astype(np.float32),
            })  # fmt: skip
            rows += len(keep)
            if rows >= rows_per_part:
                flush()
        flush()
