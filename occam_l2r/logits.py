"""Logits files: one per (model run, view, split), written by ``predict``, read by fusion code.

A logits file is a ``.npz`` archive (written atomically) with:

- ``ids``: sample ids (image path relative to the dataset root), shape ``(N,)``, str
- ``labels``: int64 class indices ``(N,)`` (-1 when unknown)
- ``groups``: group names ``(N,)``, str
- ``logits``: float32 ``(N, C)``
- ``candidates``: int64 ``(N,)``, the prompted candidate class for top-k views, -1 otherwise
- ``meta``: a JSON string with ``format_version``, ``split``, ``view``, ``class_names``,
  ``run`` (free-form name) and ``config`` (the run's resolved config).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LOGITS_FORMAT_VERSION = 1


@dataclass
class LogitsFile:
    """In-memory content of a logits file."""

    ids: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    groups: np.ndarray | None = None
    candidates: np.ndarray | None = None
    split: str = ""
    view: str = ""
    run: str = ""
    class_names: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids).astype(str)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.logits = np.asarray(self.logits, dtype=np.float32)
        n = len(self.ids)
        if self.logits.ndim != 2 or self.logits.shape[0] != n or len(self.labels) != n:
            raise ValueError(
                f"logits file {self.run}/{self.view}/{self.split}: {n} ids, {len(self.labels)} labels "
                f"and logits of shape {self.logits.shape}; they must agree (N ids, N labels, N x C)"
            )
        self.groups = (
            np.full(n, "", dtype=object).astype(str)
            if self.groups is None
            else np.asarray(self.groups).astype(str)
        )
        self.candidates = (
            np.full(n, -1, np.int64)
            if self.candidates is None
            else np.asarray(self.candidates, np.int64)
        )

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": LOGITS_FORMAT_VERSION,
            "split": self.split,
            "view": self.view,
            "run": self.run,
            "class_names": list(self.class_names),
            "config": self.config,
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez(
            tmp,
            ids=self.ids,
            labels=self.labels,
            groups=self.groups,
            logits=self.logits,
            candidates=self.candidates,
            meta=np.array(json.dumps(meta, default=str)),
        )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LogitsFile:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"logits file not found: {path}. Write it with `python -m occam_l2r predict`."
            )
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format_version") != LOGITS_FORMAT_VERSION:
                raise ValueError(
                    f"{path}: logits format {meta.get('format_version')}, expected {LOGITS_FORMAT_VERSION}"
                )
            return cls(
                ids=z["ids"],
                labels=z["labels"],
                logits=z["logits"],
                groups=z["groups"],
                candidates=z["candidates"],
                split=meta["split"],
                view=meta["view"],
                run=meta["run"],
                class_names=meta["class_names"],
                config=meta["config"],
            )
