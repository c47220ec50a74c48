"""DataModule of a frozen backbone's features of one view: the data of the probes.

``data: class_path: occam_l2r.data.feature_datamodule.FeatureDataModule`` is a
:class:`~occam_l2r.data.datamodule.ViewDataModule` (the dataset, view, segmentation and
evaluation transform, configured as for a classifier: the view overlays of
``configs/synthetic/views/`` apply) with a :class:`~occam_l2r.models.frozen.FrozenBackbone`
(``backbone``). In ``setup`` the features of the
splits the stage needs are read from the feature store (:mod:`occam_l2r.data.feature_store`),
computed first where they are missing — on every rank of a distributed run, each sample once — so
a second run with the same backbone, view and transform computes nothing. The loaders then serve
``{"features": (D,), "label", "index", "group", "id", "group_name", "fallback"}`` samples: the
train loader shuffles with a seeded generator, the others are the in-order, DDP-exact loaders of
every DataModule. Split names, class and group names, the headline metric and the view are the
ViewDataModule's, so the probe's ``predict`` writes logits files like any run of that view.

The store lives in ``store`` (default ``<dataset root>/features``); the backbone's own resize
interpolation and crop fraction apply where the images' config names none, as for a classifier.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.feature_store import FeatureStore, samples_digest
from occam_l2r.data.loaders import world_of
from occam_l2r.data.records import RecordDataset
from occam_l2r.logits import LogitsFile
from occam_l2r.models.frozen import FrozenBackbone, FrozenFeatures, backbone_key, build_frozen

#: the images DataModule's settings that change the features (the rest, loaders only)
_IMAGE_KEYS = ("view", "segmentation", "score_threshold", "foreground", "fill", "on_missing",
               "on_unreadable", "image_size", "eval_resize", "seed", "val_fraction",
               "test_splits", "per_candidate", "crop_box", "fg_aspect")  # fmt: skip


class FeatureDataset(Dataset):
    """The stored features of one split (memory-mapped; a batch's rows are read as needed)."""

    def __init__(self, stored: LogitsFile, group_index: dict[str, int]) -> None:
        self.features = stored.logits
        self.labels = torch.as_tensor(stored.labels, dtype=torch.int64)
        self.ids, self.groups = stored.ids, stored.groups
        self.group_ids = torch.as_tensor([group_index.get(g, -1) for g in stored.groups])
        self.fallback = torch.as_tensor(stored.fallback, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "features": torch.from_numpy(np.array(self.features[i], dtype=np.float32)),
            "label": self.labels[i],
            "index": torch.tensor(i),
            "group": self.group_ids[i],
            "id": str(self.ids[i]),
            "group_name": str(self.groups[i]),
            "fallback": self.fallback[i],
        }


class FeatureDataModule(ViewDataModule):
    """Features of a frozen backbone on a view of a dataset, computed once per key.

    Every argument of :class:`~occam_l2r.data.datamodule.ViewDataModule` (dataset, view,
    segmentation, evaluation transform, ...; ``batch_size`` and ``num_workers`` of the image
    loaders that compute the features) plus:

    Args:
        backbone: the frozen backbone.
        store: the feature store's root; default ``<dataset root>/features``.
        feature_batch_size: samples per batch of the head's training and evaluation.
        feature_seed: seed of the train loader's shuffling; default: the run's
            ``seed_everything``.
    """

    def __init__(
        self,
        dataset: RecordDataset,
        backbone: FrozenBackbone = FrozenBackbone(),
        store: str | None = None,
        feature_batch_size: int = 256,
        feature_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        # plain values only (checkpoints load with torch.load(weights_only=True))
        self.hparams.update({
            "backbone": asdict(backbone), "store": store,
            "feature_batch_size": int(feature_batch_size), "feature_seed": feature_seed,
        })  # fmt: skip
        self.backbone = backbone
        self.feature_batch_size, self.feature_seed = int(feature_batch_size), feature_seed
        self.extractor: FrozenFeatures | None = None
        self.feature_store: FeatureStore | None = None
        self.features: dict[str, FeatureDataset] = {}

    @property
    def feature_dim(self) -> int:
        """The width of the features (builds the backbone)."""
        return self.require_extractor().feature_dim

    def require_extractor(self) -> FrozenFeatures:
        """The frozen backbone, built once (weights loaded; fails fast without them); its own
        resize interpolation and crop fraction apply where the config names none."""
        if self.extractor is None:
            self.extractor = build_frozen(self.backbone, self.hparams.image_size)
            self.use_model_preprocessing(self.extractor.interpolation, self.extractor.crop_pct)
        return self.extractor

    def preflight(self) -> None:
        """Before the Trainer: the checks of a ViewDataModule, and the backbone built (its
        weights missing or unfit is one message now, not after the data is prepared)."""
        super().preflight()
        self.require_extractor()

    def describe(self) -> str:
        """``frozen <backbone>`` (what the logits files and the report say of the model)."""
        return f"frozen {self.backbone.describe()}"

    def key(self) -> dict[str, Any]:
        """What the features depend on (see :mod:`occam_l2r.data.feature_store`)."""
        extractor = self.require_extractor()
        hp = self.hparams
        dataset = self.require_dataset()
        plain = (str, int, float, bool, type(None))
        return {
            "backbone": backbone_key(self.backbone, extractor),
            "dataset": type(dataset).__qualname__,
            "dataset_args": {
                k: v
                for k, v in sorted(vars(dataset).items())
                if isinstance(v, plain) and not k.startswith("_")
            },  # fmt: skip
            "images": {k: hp.get(k) for k in _IMAGE_KEYS},
            "store": str(self.store_path) if self.needs_store else None,
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }

    def setup(self, stage: str | None = None) -> None:
        extractor = self.require_extractor()
        super().setup(stage)
        splits = {
            "fit": ["train", *self.val_split_names],
            "validate": self.val_split_names,
            "test": self.test_split_names,
            "predict": self.predict_split_names,
        }[stage or "fit"]
        if self.feature_store is None:  # one per DataModule: fit, test and predict add splits
            root = self.hparams.store or str(Path(self.require_dataset().root) / "features")
            self.feature_store = FeatureStore(root, self.key())
        store = self.feature_store
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        extractor.to(device)
        _, rank = world_of(trainer)
        store.ensure(
            {s: samples_digest(r.image_id for r in self.splits.get(s, [])) for s in splits},
            self.eval_dataloader,
            extractor,
            self.class_names,
            self.view,
            rank=rank,
            barrier=trainer.strategy.barrier if trainer is not None else (lambda name: None),
            device=device,
        )
        index = {g: i for i, g in enumerate(self.group_names)}
        for split in splits:
            self.features[split] = FeatureDataset(store.load(split), index)

    # ------------------------------------------------------------------ loaders of features
    def train_dataloader(self) -> DataLoader:
        ds = self.features["train"]
        seed = self.feature_seed
        if seed is None:
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        labelled = torch.nonzero(ds.labels >= 0).flatten().tolist()
        train = ds if len(labelled) == len(ds) else Subset(ds, labelled)
        return DataLoader(
            train, batch_size=self.feature_batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip

    def _features_loader(self, split: str) -> DataLoader:
        return self.eval_loader(self.features[split], self.feature_batch_size, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return self._features_loader(self.val_split_names[0])

    def test_dataloader(self) -> list[DataLoader]:
        return [self._features_loader(s) for s in self.test_split_names]

    def predict_dataloader(self) -> list[DataLoader]:
        return [self._features_loader(s) for s in self.predict_split_names]
