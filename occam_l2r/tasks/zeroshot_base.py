"""What every zero-shot task with several outputs per image shares (zero-shot views, OCCAM).

:class:`ZeroShotOutputsTask` sits between :class:`~occam_l2r.tasks.base.BaseTask` and the
zero-shot tasks (:class:`~occam_l2r.tasks.zeroshot.ZeroShotTask`,
:class:`~occam_l2r.tasks.occam.OccamTask`). It owns:

- the label space (:meth:`setup_label_space`): the prompt class names of the dataset or of
  ImageNet-1k, the class names written into the logits files, and the map from dataset labels to
  ImageNet indices applied to every batch (:meth:`on_after_batch_transfer`);
- one metric collection per (split, output) (:meth:`add_output_metrics`), logged as
  ``<split>/<output>/<metric>`` beside the base task's ``<split>/<metric>`` of the ``primary``
  output (:meth:`output_values`);
- building the class prototypes once before any evaluation or prediction (:meth:`_prepare`);
- refusing ``fit`` (there is nothing to train).

Subclasses provide ``outputs`` (names), ``primary`` and ``_prepare``.
"""

from __future__ import annotations

from typing import Any

import torch

from occam_l2r.data.base import BaseDataModule
from occam_l2r.errors import UserError, option_flag
from occam_l2r.models.prompts import prompt_classes
from occam_l2r.tasks.base import BaseTask, metric_key


class ZeroShotOutputsTask(BaseTask):
    """Base of the zero-shot tasks: label space, per-output metrics, prototypes, no training."""

    #: the message of ``fit`` (a subclass names its own command)
    no_fit_message = "a zero-shot task has nothing to train: run it with validate, test or predict"

    def __init__(self, num_classes: int, predictions_dir: str | None = None) -> None:
        super().__init__(num_classes, predictions_dir=predictions_dir)
        self.register_buffer("label_map", torch.empty(0, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------ what subclasses provide
    @property
    def outputs(self) -> list[str]:
        raise NotImplementedError

    @property
    def primary(self) -> str:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Build (or read from the cache) the class prototypes."""
        raise NotImplementedError

    # ------------------------------------------------------------------ setup
    def refuse_fit(self, stage: str) -> None:
        """Stop ``fit`` with :attr:`no_fit_message`."""
        if stage == "fit":
            raise UserError(self.no_fit_message)

    def setup_label_space(self, dm: BaseDataModule) -> Any:
        """Resolve the prompt classes of ``dm``'s dataset in the configured label space.

        Sets ``output_class_names``, ``num_classes`` and ``label_map`` (dataset label ->
        ImageNet index, for ``label_space: imagenet1k``) and returns the
        :func:`~occam_l2r.models.prompts.prompt_classes` result.
        """
        if self.primary not in self.outputs:
            raise UserError(
                f"{option_flag('model', 'primary')} {self.primary!r}: not one of {self.outputs}"
            )
        dataset = dm.dataset
        classes = prompt_classes(
            list(dm.class_names),
            self.hparams.label_space,
            self.hparams.class_names_file,
            dataset.imagenet_class_indices if dataset is not None else None,
            type(dataset).__name__ if dataset is not None else "the dataset",
            dataset=dataset,
        )
        # the columns of the logits files: the dataset's classes, or ImageNet's (imagenet1k);
        # a max-mapped space (cub200, ...) scores its members but outputs the dataset's classes
        self.output_class_names = list(classes.outputs or dm.class_names)
        self.num_classes = classes.num_outputs
        if classes.label_map is not None:
            self.label_map = torch.tensor(classes.label_map, dtype=torch.long)
        return classes

    def add_output_metrics(self, stage: str) -> list[str]:
        """One metric collection per (evaluated split, output); returns the keys it added."""
        evaluated = {"validate": self.split_names["val"], "test": self.split_names["test"]}
        added = []
        for split in evaluated.get(stage, []):
            for output in self.outputs:
                key = metric_key(f"{split}/{output}")
                if key not in self.eval_metrics:
                    self.eval_metrics[key] = self.make_metrics().to(self.device)
                    added.append(key)
        return added

    # ------------------------------------------------------------------ hooks
    def on_validation_start(self) -> None:
        self._prepare()

    def on_test_start(self) -> None:
        self._prepare()

    def on_predict_start(self) -> None:
        self._prepare()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        if self.label_map.numel():  # dataset labels -> ImageNet-1k indices (-1 stays -1)
            label = batch["label"]
            batch["label"] = torch.where(label >= 0, self.label_map[label.clamp(min=0)], label)
        return batch

    def output_values(self, stage: str) -> dict[str, torch.Tensor]:
        """``{<split>/<output>/<metric>: value}`` of every evaluated split and output (reset)."""
        values: dict[str, torch.Tensor] = {}
        for split in self.split_names[stage]:
            for output in self.outputs:
                values.update(self.split_values(f"{split}/{output}"))
        return values

    def configure_optimizers(self) -> None:
        return None
