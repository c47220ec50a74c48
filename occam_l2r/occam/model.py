"""OCCAM as a plain torch module (OCCAM §3): apply every mask, score it, choose one per image,
classify the chosen one. No Lightning: it runs in a notebook on one image as in the ``occam`` verb.

:class:`Occam` holds the zero-shot classifier
(:class:`~occam_l2r.models.zeroshot.ZeroShotClassifier`), the extra classifiers of the
``ens_entropy`` ensemble, the α-channel encoder of the ``alpha`` mode
(:class:`~occam_l2r.models.alpha_clip.AlphaClipEncoder`) and the names of its foreground scores
(registered in :data:`~occam_l2r.occam.scores.FOREGROUND_SCORES`). Two entry points:

- :meth:`Occam.predict` — one image (PIL or array) and its masks (boolean arrays or a
  :class:`~occam_l2r.segmentation.Segmentation`) -> :class:`Prediction`: the chosen mask, every
  mask's score, the class probabilities and the predicted class::

      clip = load_clip("ViT-L-14", "openai")
      occam = Occam(ZeroShotClassifier(clip, class_names), scores=["max_prob"])
      p = occam.predict(Image.open("dog.jpg"), SegmentationStore(folder)["dog.jpg"])
      p.index, p.prediction, p.probs

- :meth:`Occam.forward` — a batch (:class:`OccamBatch`: the whole images, every mask source's
  applied masks and masks, the ground truth) -> every row of OCCAM's table, one :class:`Output`
  per :attr:`~occam_l2r.occam.table.Variant.key`; what
  :class:`~occam_l2r.tasks.occam.OccamTask` logs.

Per (mask source, apply mode), the masks of a batch are encoded together in chunks of
``mask_batch_size`` and classified (the ``alpha`` mode: the α-channel encoder's features,
classified by the same prototypes), every score is computed, and each image takes the logits of
its highest-scoring mask (:func:`~occam_l2r.occam.scores.choose`). An image without masks takes
the whole image's logits of that mode (plain RGB for the crop modes, a full α-channel for
``alpha``) and is flagged (``fallback``). The ensemble is computed only for scores registered with
``uses_ensemble`` (``ens_entropy``): the classifier plus ``ensemble`` on the crop modes' inputs,
the classifier alone for ``alpha`` (only the α-channel encoder reads the α channel).

**Label spaces.** The classifier's logits are the dataset's classes: with a max-mapped label
space (:mod:`occam_l2r.models.prompts`: ``cub200``, ``stanford_cars196``, ``imagenet1k_max``) the
classifier scores the fine-grained names and each class takes its members' highest logit, so
``max_prob`` and ``oracle`` are the softmax over the dataset's classes of those mapped logits, as
in the authors' code (``ModelClassesWrapper`` before ``compute_foreground_score``); with
``imagenet1k_synonyms`` (CounterAnimal) they are over the 1000 ImageNet classes and the labels
are ImageNet indices. ``ens_entropy`` reads the ensemble's logits over the fine-grained names
(the authors leave their ``ClipEnsemble`` unmapped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from occam_l2r.occam.apply import applied_inputs, whole_input
from occam_l2r.occam.ground_truth import mask_iou
from occam_l2r.occam.scores import FOREGROUND_SCORES, Candidates, check_scores, choose
from occam_l2r.occam.table import WHOLE_IMAGE, Variant
from occam_l2r.segmentation import Segmentation


class Output(NamedTuple):
    """One row of the table for a batch: logits ``(B, C)``, no-mask flags ``(B,)`` and the IoU
    of the chosen mask with the ground-truth object ``(B,)`` (NaN: whole image, or no ground
    truth)."""

    logits: torch.Tensor
    fallback: torch.Tensor
    object_iou: torch.Tensor


@dataclass(frozen=True)
class SourceMasks:
    """One mask source's masks of a batch of B images.

    Attributes:
        applied: apply mode -> ``(N, C, S, S)`` uint8 applied masks, grouped by image in batch
            order (:func:`~occam_l2r.occam.apply.applied_inputs` of each image, concatenated).
        owner: ``(N,)`` batch position of each mask's image.
        masks: per image, its boolean ``(K_i, H_i, W_i)`` masks (the K_i sum to N).
    """

    applied: Mapping[str, torch.Tensor]
    owner: torch.Tensor
    masks: Sequence[np.ndarray]


@dataclass(frozen=True)
class OccamBatch:
    """A batch of B images as OCCAM reads it.

    Attributes:
        whole: ``FULL`` -> ``(B, 3, S, S)`` uint8 whole images, and with an ``alpha`` mode
            ``alpha`` -> ``(B, 4, S, S)`` (the whole image with a full α-channel).
        labels: ``(B,)`` labels (-1: unlabelled; the ``oracle`` score reads them).
        sources: mask source name -> its :class:`SourceMasks`.
        boxes: per image, its ground-truth xyxy box, or ``None`` (the ``bbox_iou`` score).
        objects: per image, its boolean ground-truth object mask, or ``None`` (``object_iou``).
    """

    whole: Mapping[str, torch.Tensor]
    labels: torch.Tensor
    sources: Mapping[str, SourceMasks]
    boxes: Sequence[np.ndarray | None]
    objects: Sequence[np.ndarray | None]


@dataclass(frozen=True)
class Choice:
    """One score's choice for a batch of one (source, mode).

    Attributes:
        index: ``(B,)`` position of each image's chosen mask among the N masks, -1: none.
        scores: ``(N,)`` the score of every mask.
        logits: ``(B, C)`` the chosen masks' logits (the whole image's where there is none).
        mask_logits: ``(N, C)`` the logits of every applied mask.
    """

    index: torch.Tensor
    scores: torch.Tensor
    logits: torch.Tensor
    mask_logits: torch.Tensor


@dataclass(frozen=True)
class Prediction:
    """OCCAM on one image (:meth:`Occam.predict`).

    Attributes:
        index: the chosen mask (its position in the masks given), -1 when there were none (the
            whole image was classified).
        scores: ``(K,)`` the foreground score of every mask.
        mask_logits: ``(K, C)`` the logits of every applied mask.
        logits: ``(C,)`` the logits of the chosen applied mask (the whole image's without masks).
        probs: ``(C,)`` their softmax.
        prediction: the predicted class, ``argmax(logits)``.
    """

    index: int
    scores: torch.Tensor
    mask_logits: torch.Tensor
    logits: torch.Tensor
    probs: torch.Tensor
    prediction: int


def _rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"OCCAM reads uint8 images; this one is {array.dtype}")
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"an image is (H, W, 3) uint8; this one is {array.shape}")
    return np.ascontiguousarray(array[..., :3])


def _masks(masks: Segmentation | Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Masks (a segmentation, or boolean arrays) as a ``(K, H, W)`` boolean array."""
    if isinstance(masks, Segmentation):
        masks = [masks.mask(i) for i in range(len(masks))] if masks.has_masks else []
    out = np.zeros((len(masks), *size), bool)
    for i, m in enumerate(masks):
        m = np.asarray(m, dtype=bool)
        if m.shape != size:
            raise ValueError(f"mask {i} is {m.shape[::-1]} (W, H), the image {size[::-1]}")
        if not m.any():
            raise ValueError(f"mask {i} is empty: give OCCAM non-empty masks")
        out[i] = m
    return out


def _member_and_class_logits(
    classifier: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits over the names the classifier scores and over the classes: the same tensor,
    except for a max-mapped label space (:class:`~occam_l2r.models.prompts.MaxMappedClassifier`),
    whose members' logits the ensemble entropy reads, as the OCCAM authors' unwrapped
    ``ClipEnsemble`` does."""
    member_logits = getattr(classifier, "member_logits", None)
    if member_logits is None:
        z = classifier(images)
        return z, z
    fine = member_logits(images)
    return fine, classifier.map(fine)


class Occam(nn.Module):
    """OCCAM: every mask applied and scored, each image's best mask classified zero-shot.

    Args:
        classifier: the zero-shot classifier, images ``(B, 3, H, W)`` -> logits ``(B, C)``
            (a :class:`~occam_l2r.models.zeroshot.ZeroShotClassifier`; the ``alpha`` mode needs
            its ``logits(features)``).
        scores: registered foreground scores (:data:`~occam_l2r.occam.scores.FOREGROUND_SCORES`).
        ensemble: extra classifiers of the scores that use an ensemble (``ens_entropy``).
        alpha: the α-channel encoder of the ``alpha`` mode (``(B, 4, H, W)`` -> features).
        mask_batch_size: applied masks encoded per forward pass.
        image_size: side of the square network input of :meth:`predict`; default the
            classifier's model's (``classifier.clip.image_size``).
    """

    def __init__(
        self,
        classifier: nn.Module,
        scores: Sequence[str] = ("max_prob",),
        ensemble: Sequence[nn.Module] = (),
        alpha: nn.Module | None = None,
        mask_batch_size: int = 256,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        self.classifier = classifier
        self.ensemble = nn.ModuleList(ensemble)
        self.alpha = alpha
        self.scores = check_scores(scores)
        self.mask_batch_size = max(1, int(mask_batch_size))
        clip = getattr(classifier, "clip", None)
        self.image_size = image_size or getattr(clip, "image_size", None)

    def prepare(self) -> None:
        """Build (or read from the cache) the class prototypes of every classifier once."""
        for classifier in [self.classifier, *self.ensemble]:
            prototypes = getattr(classifier, "_prototypes", None)
            if prototypes is not None and prototypes.numel() == 0:
                classifier.build_prototypes()

    # ------------------------------------------------------------------ the steps
    def encode(
        self, mode: str, images: torch.Tensor, ensemble: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Classify network inputs of ``mode`` in chunks of ``mask_batch_size``.

        Args:
            mode: ``FULL`` (whole images), ``crop_resize_gray``, ``crop_resize_original`` or
                ``alpha`` (4 channels, through the α-channel encoder).
            images: ``(N, C, S, S)`` uint8, N >= 1.
            ensemble: also return the ensemble's logits (with an ensemble, not for ``alpha``).

        Returns:
            ``(N, C)`` logits, and ``(N, M, C)`` logits of the classifier and the ensemble (or
            ``None``).
        """
        members_wanted = ensemble and len(self.ensemble) > 0 and mode != "alpha"
        logits, members = [], []
        for chunk in images.split(self.mask_batch_size):
            if mode == "alpha":
                if self.alpha is None:
                    raise ValueError("the alpha mode needs an α-channel encoder: Occam(alpha=...)")
                z = self.classifier.logits(self.alpha(chunk))
            elif members_wanted:
                fine, z = _member_and_class_logits(self.classifier, chunk)
                rest = [_member_and_class_logits(c, chunk)[0] for c in self.ensemble]
                members.append(torch.stack([fine, *rest], dim=1))
            else:
                z = self.classifier(chunk)
            logits.append(z)
        return torch.cat(logits), torch.cat(members) if members else None

    def choose_masks(
        self,
        mode: str,
        source: SourceMasks,
        labels: torch.Tensor,
        boxes: Sequence[np.ndarray | None],
        whole: torch.Tensor,
        scores: Sequence[str] | None = None,
    ) -> dict[str, Choice]:
        """Apply (already done: ``source.applied``), classify, score and choose, for one mode.

        Args:
            mode: the apply mode.
            source: the batch's masks of one source.
            labels: ``(B,)`` labels of the images.
            boxes: per image, its ground-truth box or ``None``.
            whole: ``(B, C)`` logits of the whole images (taken where an image has no masks).
            scores: the scores to compute; default every score of the module.

        Returns:
            score name -> :class:`Choice`.
        """
        names = list(scores) if scores is not None else self.scores
        n = len(labels)
        applied = source.applied[mode]
        if len(applied) == 0:  # no image of the batch has masks: every image takes its whole
            none = torch.full((n,), -1, dtype=torch.long, device=whole.device)
            empty = whole.new_zeros((0, whole.shape[-1]))
            return {s: Choice(none, empty[:, 0], whole, empty) for s in names}
        ensemble = any(FOREGROUND_SCORES[s].uses_ensemble for s in names)
        logits, members = self.encode(mode, applied, ensemble)
        owner = source.owner
        candidates = Candidates(logits, labels[owner], owner, source.masks, boxes, members)
        out = {}
        for name in names:
            s = FOREGROUND_SCORES[name].compute(candidates)
            index = choose(s, owner, n)
            chosen = torch.where((index >= 0)[:, None], logits[index.clamp(min=0)], whole)
            out[name] = Choice(index, s, chosen, logits)
        return out

    # ------------------------------------------------------------------ a batch
    def forward(self, batch: OccamBatch) -> dict[str, Output]:
        """Every row of the table for a batch, keyed by :attr:`Variant.key`, in table order."""
        n = len(batch.labels)
        device = batch.labels.device
        zero = torch.zeros(n, device=device)
        nan = torch.full((n,), torch.nan, device=device)
        whole = {"FULL": self.encode("FULL", batch.whole["FULL"])[0]}
        out = {Variant().key: Output(whole["FULL"], zero, nan)}
        if "alpha" in batch.whole:
            whole["alpha"] = self.encode("alpha", batch.whole["alpha"])[0]
            out[Variant(score=WHOLE_IMAGE, mode="alpha").key] = Output(whole["alpha"], zero, nan)
        for name, source in batch.sources.items():
            no_masks = torch.tensor([len(m) == 0 for m in source.masks], device=device).float()
            ious = [mask_iou(m, o) for m, o in zip(source.masks, batch.objects, strict=True)]
            iou = torch.from_numpy(np.concatenate([np.zeros(0, np.float32), *ious])).to(device)
            for mode in source.applied:
                base = whole["alpha" if mode == "alpha" else "FULL"]
                choices = self.choose_masks(mode, source, batch.labels, batch.boxes, base)
                for score, choice in choices.items():
                    chosen_iou = nan
                    if len(iou):  # some image of the batch has masks
                        taken = iou[choice.index.clamp(min=0)]
                        chosen_iou = torch.where(choice.index >= 0, taken, nan)
                    out[Variant(name, score, mode).key] = Output(
                        choice.logits, no_masks, chosen_iou
                    )
        return out

    # ------------------------------------------------------------------ one image
    @torch.no_grad()
    def predict(
        self,
        image: Image.Image | np.ndarray,
        masks: Segmentation | Sequence[np.ndarray],
        mode: str = "crop_resize_gray",
        score: str | None = None,
        label: int = -1,
        box: Sequence[float] | None = None,
        image_size: int | None = None,
    ) -> Prediction:
        """OCCAM on one image: the chosen mask, every mask's score and the class probabilities.

        Args:
            image: a PIL image or an ``(H, W, 3)`` uint8 array.
            masks: its masks: a :class:`~occam_l2r.segmentation.Segmentation` (e.g. a store's
                ``store[image_id]``) or boolean ``(H, W)`` arrays, none empty.
            mode: the apply mode (``crop_resize_gray``, ``crop_resize_original``, ``alpha``).
            score: the foreground score; default the module's first.
            label: the image's label (the ``oracle`` score), -1 if unknown.
            box: the image's ground-truth xyxy box (the ``bbox_iou`` score).
            image_size: side of the square network input; default :attr:`image_size`.
        """
        score = score or self.scores[0]
        check_scores([score])
        size = image_size or self.image_size
        if not size:
            raise ValueError("give image_size (the classifier has no clip.image_size)")
        rgb = _rgb(image)
        stacked = _masks(masks, rgb.shape[:2])
        device = next(iter([*self.parameters(), *self.buffers()]), torch.empty(0)).device
        whole_mode = "alpha" if mode == "alpha" else "FULL"
        whole = self.encode(whole_mode, whole_input(whole_mode, rgb, size)[None].to(device))[0]
        source = SourceMasks(
            {mode: applied_inputs(mode, rgb, list(stacked), size).to(device)},
            torch.zeros(len(stacked), dtype=torch.long, device=device),
            [stacked],
        )
        labels = torch.tensor([label], dtype=torch.long, device=device)
        boxes = [None if box is None else np.asarray(box, np.float32)]
        choice = self.choose_masks(mode, source, labels, boxes, whole, [score])[score]
        logits = choice.logits[0].float()
        return Prediction(
            index=int(choice.index[0]),
            scores=choice.scores,
            mask_logits=choice.mask_logits,
            logits=logits,
            probs=torch.softmax(logits, dim=-1),
            prediction=int(logits.argmax()),
        )
