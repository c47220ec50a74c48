"""Several views of every image in one sample: the DataModule of the shared-backbone task.

:class:`MultiViewDataModule` is :class:`~occam_l2r.data.datamodule.ViewDataModule` with a list
of at least two views (``views: [FULL, FG_C]``): each image is read once and rendered as every
view (:class:`~occam_l2r.data.view_dataset.ViewDataset` with several views), so a sample holds
all its views and they travel together through every loader:

- a sample is ``{"views": {view: uint8 (3, S, S)}, "fallbacks": {view: 0/1}, "label", "group",
  "group_name", "id", "index", "candidate", "fallback", "image"}`` (``image`` / ``fallback``
  are the first view's, as for any ViewDataModule);
- the training loader shuffles samples (both views of a sample stay in the same batch, each
  with its own random resized crop and flip, as separate models of each view would get);
- evaluation and predict loaders are in order, and under DDP count every sample exactly once
  (:meth:`~occam_l2r.data.base.BaseDataModule.eval_loader`, padding marked);
- the splits, group names, headline metric, stores, image checks and ``on_unreadable`` /
  ``on_missing`` policies are the ViewDataModule's.

Every other argument is a :class:`~occam_l2r.data.datamodule.ViewDataModule` argument, except
``per_candidate`` (one item per candidate class applies to a single FG view).
"""

from __future__ import annotations

from typing import Any

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.records import RecordDataset
from occam_l2r.errors import UserError, option_flag
from occam_l2r.views import View


class MultiViewDataModule(ViewDataModule):
    """Every image as each of ``views``, in one sample (see the module docstring).

    Args:
        dataset: the dataset (``class_path`` + ``init_args`` in configs).
        views: two or more different registered views (``[FULL, FG_C]``); the first is the
            DataModule's ``view`` (the sample's ``image``).
        **kwargs: the other :class:`~occam_l2r.data.datamodule.ViewDataModule` arguments
            (``segmentation``, ``image_size``, ``batch_size``, ...).
    """

    def __init__(
        self, dataset: RecordDataset, views: list[View] | None = None, **kwargs: Any
    ) -> None:
        views = list(views) if views is not None else ["FULL", "FG_C"]
        if len(views) < 2 or len(set(views)) != len(views):
            raise UserError(
                f"{option_flag('data', 'views')} {views}: give two or more different views "
                "(e.g. [FULL, FG_C]); one view is a ViewDataModule's"
            )
        if kwargs.pop("per_candidate", False):
            raise UserError(
                f"{option_flag('data', 'per_candidate')} is not supported with several views "
                "per sample; use a ViewDataModule with the FG view alone"
            )
        super().__init__(dataset, view=views, **kwargs)
