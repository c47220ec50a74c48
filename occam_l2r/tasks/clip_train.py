"""The embedded CLIP: a tiny open_clip model trained contrastively on captioned images.

No pretrained VLM can be downloaded on our machines, so zero-shot results with random weights
would be chance. :class:`ClipTrainTask` trains an open_clip architecture (default
``occam-tiny-convnext``: a timm ``convnextv2_atto`` image tower at 64 px and a 2-layer text tower)
from scratch on the batches of :class:`~occam_l2r.data.caption_datamodule.CaptionDataModule`
(images with captions such as "a photo of the digit three on brick.") and exports it as a plain
open_clip state dict, loadable with ``open_clip.create_model(name, pretrained=<file>)`` after
:func:`occam_l2r.models.clip_registry.register_configs`.

Equal captions are positives, not negatives. Captions repeat: the embedded benchmark has
classes x backgrounds captions, and where the class-background tie is strong (``rho`` near 1) a
batch of 64 holds a handful of distinct captions. open_clip's :class:`~open_clip.loss.ClipLoss`
treats every other pair of a batch as a negative, so it would push an image away from a caption
that describes it exactly. :class:`MultiPositiveClipLoss` keeps open_clip's logits
(``ClipLoss.get_logits``) and replaces the one-hot targets by uniform targets over every caption
that describes the image (and, text to image, every image that the caption describes):
caption j describes image i when the object and background it names (a template may leave either
out) are image i's. With all captions distinct it is ``ClipLoss`` exactly. Sampling batches
without equal captions instead would cap a batch at the number of distinct captions (a few, at
``rho = 1``), far too small for a contrastive batch.

Validation (and ``test`` / ``predict``) is zero-shot classification, so ``val/headline`` and the
checkpoint monitor work as for every task: class prototypes are built once per evaluation epoch
with ``open_clip.build_zero_shot_classifier`` from ``prompt_templates`` ("a photo of the digit
{c}.") and the DataModule's class words, and :meth:`ClipTrainTask.logits_of` returns
``logit_scale * normalize(encode_image(x)) @ prototypes``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from occam_l2r.data.caption_datamodule import CaptionDataModule
from occam_l2r.errors import UserError
from occam_l2r.models.clip_registry import register_configs
from occam_l2r.tasks.base import BaseTask
from occam_l2r.tasks.checkpoints import load_checkpoint
from occam_l2r.tasks.optim import adamw, warmup_cosine

log = logging.getLogger(__name__)

#: where configs/synthetic/zeroshot.yaml and occam.yaml read the embedded CLIP from
DEFAULT_EXPORT = "checkpoints/synthetic/clip/open_clip.pt"
#: the name of the exported state dict in the run folder
RUN_EXPORT_NAME = "open_clip.pt"


def caption_positives(
    image_objects: torch.Tensor,
    image_backgrounds: torch.Tensor,
    caption_objects: torch.Tensor,
    caption_backgrounds: torch.Tensor,
) -> torch.Tensor:
    """``(B, B)`` bool: caption j describes image i (what it names, object and/or background,
    is image i's; -1 names nothing).

    Args:
        image_objects: ``(B,)`` class of each image.
        image_backgrounds: ``(B,)`` background (group) each image shows, -1 for none (a
            foreground view): then only captions naming no background describe it.
        caption_objects: ``(B,)`` class named by each caption, -1 when it names none.
        caption_backgrounds: ``(B,)`` background named by each caption, -1 when it names none.
    """
    obj = (caption_objects[None, :] < 0) | (caption_objects[None, :] == image_objects[:, None])
    bg = (caption_backgrounds[None, :] < 0) | (
        caption_backgrounds[None, :] == image_backgrounds[:, None]
    )
    return obj & bg


class MultiPositiveClipLoss(ClipLoss):
    """open_clip's contrastive loss with several positives per row (module docstring).

    The targets of row i (image to text) are uniform over the captions that describe image i; of
    row j (text to image), over the images that caption j describes. The loss is the mean of the
    two soft cross-entropies; with the identity as ``positives`` it equals ``ClipLoss``.
    One process only (``world_size`` 1).
    """

    def forward(  # type: ignore[override]
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        positives: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss of a batch.

        Args:
            image_features: ``(B, D)`` normalised image embeddings.
            text_features: ``(B, D)`` normalised text embeddings of the batch's captions.
            logit_scale: the (exponentiated) logit scale.
            positives: ``(B, B)`` bool, caption j describes image i (its diagonal must be true).
            logit_bias: optional logit bias (SigLIP-style models).
        """
        if self.world_size != 1:
            raise ValueError("MultiPositiveClipLoss runs in one process (world_size=1)")
        if not bool(positives.diagonal().all()):
            raise ValueError("positives: every image must be described by its own caption")
        per_image, per_text = self.get_logits(
            image_features, text_features, logit_scale, logit_bias
        )
        p = positives.to(per_image.dtype)
        image_targets = p / p.sum(1, keepdim=True)
        text_targets = p.T / p.T.sum(1, keepdim=True)
        return (
            F.cross_entropy(per_image, image_targets) + F.cross_entropy(per_text, text_targets)
        ) / 2


class ClipTrainTask(BaseTask):
    """Contrastive training of an open_clip model; zero-shot evaluation; open_clip export.

    Args:
        model_name: open_clip architecture (``occam-tiny-convnext``, shipped with occam_l2r).
        num_classes: number of classes (linked from the DataModule).
        config_path: an extra open_clip model config (``.json`` or folder) to register.
        prompt_templates: zero-shot prompt templates with ``{c}`` for the class word; the class
            prototype is the normalised mean of their text embeddings.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not on gains, biases, embeddings' scale).
        warmup_fraction: fraction of the training steps with a linear warm-up.
        min_lr_ratio: final learning rate as a fraction of ``lr`` (cosine schedule).
        max_logit_scale: the learned logit scale is clamped to ``[1, max_logit_scale]`` (100 in
            CLIP).
        export_path: after ``fit``, the weights are also written (atomically) to this file, read
            by the zero-shot and OCCAM configs; ``None``: only ``<run dir>/open_clip.pt``.
        export_weights: export the ``best`` checkpoint (by ``val/headline``) or the ``last`` weights.
        logits_dir: where ``predict`` writes logits; default ``<run dir>/logits``.
    """

    def __init__(
        self,
        model_name: str = "occam-tiny-convnext",
        num_classes: int = 4,
        config_path: str | None = None,
        prompt_templates: list[str] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.1,
        min_lr_ratio: float = 0.01,
        max_logit_scale: float = 100.0,
        export_path: str | None = DEFAULT_EXPORT,
        export_weights: Literal["best", "last"] = "best",
        logits_dir: str | None = None,
    ) -> None:
        super().__init__(num_classes, predictions_dir=logits_dir)
        self.save_hyperparameters(ignore=["logits_dir", "export_path"])
        self.export_path = export_path
        self.prompt_templates = list(prompt_templates or ["a photo of the digit {c}."])
        for t in self.prompt_templates:
            if "{c}" not in t:
                raise ValueError(f"prompt template {t!r} must contain {{c}} (the class word)")
        register_configs()
        if config_path:
            register_configs(config_path)
        if model_name not in open_clip.list_models():
            raise UserError(
                f"model.model_name={model_name!r} is not an open_clip architecture; the shipped "
                "ones are occam-tiny-convnext and occam-tiny-vit (or register a config with "
                "model.config_path)"
            )
        self.clip = open_clip.create_model(model_name, pretrained=None)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        cfg = open_clip.get_model_preprocess_cfg(self.clip)
        mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(cfg["std"]).view(1, 3, 1, 1) * 255.0
        #: the model's own resize interpolation (open_clip's preprocessing: bicubic), used for
        #: the training views as the zero-shot and OCCAM tasks use it for theirs
        self.interpolation = str(cfg.get("interpolation", "bicubic"))
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.loss = MultiPositiveClipLoss()
        self.prototypes: torch.Tensor | None = None
        self._tokens: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ text and images
    @property
    def datamodule(self) -> CaptionDataModule:
        """The trainer's DataModule: a :class:`CaptionDataModule` (training reads captions)."""
        return CaptionDataModule.of(self.trainer.datamodule, type(self).__name__)

    def class_words(self) -> list[str]:
        """The class words of the prompts: the DataModule's ``object_words`` (its class names
        unless ``data.object_words`` gives others)."""
        words = list(self.datamodule.object_words)
        if len(words) != self.num_classes:
            raise ValueError(f"{len(words)} class words {words} for {self.num_classes} classes")
        return words

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        """Token ids of captions (each distinct caption tokenised once per run)."""
        missing = [c for c in dict.fromkeys(captions) if c not in self._tokens]
        if missing:
            for caption, ids in zip(missing, self.tokenizer(missing), strict=True):
                self._tokens[caption] = ids
        return torch.stack([self._tokens[c] for c in captions]).to(self.device)

    def build_prototypes(self) -> torch.Tensor:
        """``(D, C)`` normalised class prototypes from the prompt templates (open_clip's own)."""
        templates = [lambda c, t=t: t.format(c=c) for t in self.prompt_templates]
        return open_clip.build_zero_shot_classifier(
            self.clip, self.tokenizer, self.class_words(), templates, None, self.device
        )

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        batch["image"] = (batch["image"].float() - self.mean) / self.std
        return batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings of normalised images."""
        return self.clip.encode_image(x, normalize=True)

    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.prototypes is None:
            self.prototypes = self.build_prototypes()
        return self.clip.logit_scale.exp() * self(batch["image"]) @ self.prototypes

    def _fresh_prototypes(self) -> None:
        self.prototypes = self.build_prototypes()

    on_validation_epoch_start = _fresh_prototypes
    on_test_epoch_start = _fresh_prototypes
    on_predict_epoch_start = _fresh_prototypes

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        super().setup(stage)
        # train and evaluate on views resized as the zero-shot and OCCAM tasks resize them
        # (the model's own interpolation; open_clip keeps the whole shorter side)
        self.datamodule.use_model_preprocessing(self.interpolation, 1.0)
        if stage == "fit" and self.trainer.world_size != 1:
            raise UserError(
                "the embedded CLIP trains in one process (its multi-positive loss does not gather "
                f"features across {self.trainer.world_size} processes); set trainer.devices: 1"
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.prototypes = None  # the text tower changes: prototypes are rebuilt when next needed
        image = self.clip.encode_image(batch["image"], normalize=True)
        text = self.clip.encode_text(self.tokenize(list(batch["caption"])), normalize=True)
        positives = caption_positives(
            batch["label"],
            batch["image_background"],
            batch["caption_object"],
            batch["caption_background"],
        )
        scale = self.clip.logit_scale.exp()
        loss = self.loss(image, text, scale, positives)
        n = len(image)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/logit_scale", scale.detach(), batch_size=n)
        self.log("train/positives_per_row", positives.float().sum(1).mean(), batch_size=n)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():  # as open_clip's training loop
            self.clip.logit_scale.clamp_(0, math.log(self.hparams.max_logit_scale))

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        opt = adamw(
            self.clip.named_parameters(),
            hp.lr,
            hp.weight_decay,
            no_decay=lambda name, p: p.ndim < 2 or "logit_scale" in name,
            betas=(0.9, 0.98),
            eps=1e-6,
        )
        total = self.trainer.estimated_stepping_batches
        sched = warmup_cosine(opt, total, hp.warmup_fraction, hp.min_lr_ratio)
        return {"optimizer": opt, "lr_scheduler": sched}

    # ------------------------------------------------------------------ export
    def clip_state_dict(self) -> dict[str, torch.Tensor]:
        """The open_clip state dict to export: of the best checkpoint or the current weights."""
        callback = self.trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if callback is not None else ""
        if self.hparams.export_weights == "best" and best:
            ckpt = load_checkpoint(best)
            state = ckpt["state_dict"]
            return {k[len("clip.") :]: v for k, v in state.items() if k.startswith("clip.")}
        return {k: v.detach().cpu() for k, v in self.clip.state_dict().items()}

    def on_fit_end(self) -> None:
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)  # all ranks
        if not self.trainer.is_global_zero:
            return
        state = self.clip_state_dict()
        targets = [run_dir / RUN_EXPORT_NAME]
        if self.export_path:
            targets.append(Path(self.export_path))
        for path in targets:
            save_state_dict(state, path)
        log.info(
            "embedded CLIP (%s, %s weights) exported to %s; load it with "
            "open_clip.create_model(%r, pretrained=<file>) after "
            "occam_l2r.models.clip_registry.register_configs()",
            self.hparams.model_name, self.hparams.export_weights,
            " and ".join(map(str, targets)), self.hparams.model_name,
        )  # fmt: skip


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> None:
    """``torch.save`` a state dict to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
