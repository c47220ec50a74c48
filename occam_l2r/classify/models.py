"""The trained view models of ``classify``: ``ClassifierTask`` checkpoints and their logits.

A view image (an ``(H, W, 3)`` uint8 array from :func:`occam_l2r.views.apply_view`) goes through
what ``predict`` does to it: the evaluation transform of the DataModule
(:func:`occam_l2r.data.view_dataset.eval_transform`), then the task's normalisation with the
model's own mean/std (``ClassifierTask.on_after_batch_transfer``) and the forward pass.

Checkpoints (the file given, a run folder's ``last.ckpt`` and the best checkpoint it records)
are read by the toolkit's one checkpoint loader, :func:`occam_l2r.tasks.checkpoints.load_checkpoint`
(``torch.load(weights_only=True)``): a file carrying a pickled payload is refused before anything
of it runs, and a missing, truncated or refused file is one message naming it.

An exported system (``python -m occam_l2r export``, :mod:`occam_l2r.classify.portable`) gives each
view's plain network as a safetensors file and its :class:`NetSpec`: :meth:`ViewModel.from_weights`
builds the same network with :func:`occam_l2r.models.backbones.create_classifier` and loads them,
with no Lightning import (the task classes are imported only for checkpoints). Both kinds run
through the same :meth:`ViewModel.logits`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occam_l2r.data.view_dataset import eval_transform, resolve_interpolation
from occam_l2r.errors import UserError
from occam_l2r.models.backbones import (
    create_classifier,
    data_config,
    normalize_uint8,
    uint8_normalization,
)
from occam_l2r.models.frozen import FrozenBackbone, build_frozen
from occam_l2r.views import View

#: what to do about a view's checkpoint that cannot be read
CHECKPOINT_HINT = (
    "Point `checkpoints` of the classify config at a checkpoint (or run folder) written by "
    "`python -m occam_l2r fit`, or train it again"
)


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """A view's checkpoint file is missing (a :class:`FileNotFoundError`)."""


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a ``fit`` run folder's best checkpoint.

    A run folder (``<save_dir>/<name>/<version>``, as ``pipeline`` lays them out) resolves to the
    best checkpoint that ``checkpoints/last.ckpt`` records (the one ``predict`` used), or to
    ``last.ckpt`` itself when it records none.

    Raises:
        CheckpointNotFoundError: neither a file nor a run folder with ``checkpoints/last.ckpt``.
        CheckpointFileError: ``last.ckpt`` is truncated, not a checkpoint or refused (it holds
            Python objects); the message names it.
    """
    from occam_l2r.tasks.checkpoints import load_checkpoint

    path = Path(path)
    if path.is_file():
        return path
    last = path / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint {path} not found (neither a file nor a run folder with "
            "checkpoints/last.ckpt). Train it with `python -m occam_l2r fit --config ...` or fix "
            "`checkpoints` in the classify config."
        )
    state = load_checkpoint(last, "cpu", CHECKPOINT_HINT)
    for cb in (state.get("callbacks") or {}).values():
        best = cb.get("best_model_path") if isinstance(cb, dict) else None
        if best:
            for cand in (Path(best), last.parent / Path(best).name):
                if cand.is_file():
                    return cand
    return last


def _checkpoint_kind(state: dict[str, Any]) -> tuple[str, FrozenBackbone | None]:
    """What a checkpoint (as :func:`~occam_l2r.tasks.checkpoints.load_checkpoint` read it)
    holds: ``("probe", its frozen backbone)`` for a ``ProbeTask``, ``("shared", None)`` for a
    ``SharedBackboneTask``, ``("classifier", None)`` otherwise."""
    hparams = state.get("hyper_parameters") or {}
    data = state.get("datamodule_hyper_parameters") or {}
    if "feature_dim" in hparams and isinstance(data.get("backbone"), dict):
        return "probe", FrozenBackbone(**data["backbone"])
    if {"views", "head", "model_name"} <= set(hparams):
        return "shared", None
    return "classifier", None


class _OneView(nn.Module):
    """One view's logits of a shared-backbone task: its backbone, then that view's head."""

    def __init__(self, task: nn.Module, view: str) -> None:
        super().__init__()
        self.task, self.view = task, view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.head_logits(self.view, self.task.features(x))


@dataclass(frozen=True)
class NetSpec:
    """What builds a view's plain network: the ``ClassifierTask`` hyperparameters that shape it.

    Attributes:
        model_name: the timm (or ``torchvision:``) name.
        num_classes: classes of its head.
    """

    model_name: str
    num_classes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build(self) -> nn.Module:
        """The network with random weights (nothing fetched: ``pretrained=False``)."""
        return create_classifier(self.model_name, self.num_classes, pretrained=False)


class ViewModel:
    """One view's trained classifier, ready for inference.

    Args:
        view: the view it was trained on (``FG_C``, ``FULL``, ``BG_S``, ...).
        checkpoint: a ``ClassifierTask`` checkpoint (written by ``fit``), or its run folder
            (:func:`resolve_checkpoint`).
        image_size: the side the view images are resized to.
        device: torch device.

    Attributes:
        net: the plain network (the task's ``model``); :attr:`spec` builds it again.
        task: the ``ClassifierTask`` of a checkpoint (``None`` for :meth:`from_weights`).
    """

    def __init__(self, view: View, checkpoint: str | Path, image_size: int, device: str = "cpu"):
        from occam_l2r.tasks.checkpoints import load_checkpoint, module_from_checkpoint
        from occam_l2r.tasks.classifier import ClassifierTask

        path = resolve_checkpoint(checkpoint)
        state = load_checkpoint(path, device, CHECKPOINT_HINT)  # read once, then built from
        kind, probe = _checkpoint_kind(state)
        if kind == "probe":  # a head on a frozen backbone (ProbeTask, docs/cheaper.md)
            self._setup_probe(view, path, state, probe, image_size, device)
            return
        if kind == "shared":  # one view of a shared-backbone model (SharedBackboneTask)
            self._setup_shared(view, path, state, image_size, device)
            return
        # the weights come from the checkpoint: never fetch pretrained ones
        task = module_from_checkpoint(
            ClassifierTask, path, device, CHECKPOINT_HINT, loaded=state, pretrained=False
        )
        spec = NetSpec(str(task.hparams.model_name), int(task.hparams.num_classes))
        self._setup(view, path, task.model, spec, image_size, device)
        self.task = task

    def _setup_probe(
        self, view: View, path: Path, state: dict[str, Any], backbone: FrozenBackbone,
        image_size: int, device: str,
    ) -> None:  # fmt: skip
        """A probe run: its frozen backbone (built as its fit built it: the weights it names,
        set to ``image_size``) and its trained head, one network on uint8 pixels (the
        backbone normalises them itself)."""
        from occam_l2r.tasks.checkpoints import module_from_checkpoint
        from occam_l2r.tasks.probe import ProbeTask

        task = module_from_checkpoint(ProbeTask, path, device, CHECKPOINT_HINT, loaded=state)
        extractor = build_frozen(backbone, image_size)
        net = nn.Sequential(extractor, task.head)
        spec = NetSpec(f"probe:{backbone.describe()}", int(task.hparams.num_classes))
        identity = (torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
        self._setup(view, path, net, spec, image_size, device, identity, extractor.interpolation)
        self.task = task

    @classmethod
    def from_weights(
        cls,
        view: View,
        spec: NetSpec,
        state: dict[str, torch.Tensor],
        image_size: int,
        device: str = "cpu",
        source: str | Path = "",
    ) -> ViewModel:
        """The view model of an exported network: ``spec`` built, ``state`` loaded (strict).

        Args:
            source: where the weights came from (:attr:`checkpoint`, for messages).
        """
        net = spec.build()
        net.load_state_dict(state, strict=True)
        model = cls.__new__(cls)
        model._setup(view, Path(source), net, spec, image_size, device)
        model.task = None
        return model

    def _setup_shared(
        self, view: View, path: Path, state: dict[str, Any], image_size: int, device: str
    ) -> None:
        """``view``'s network of a shared-backbone run: the shared backbone and that view's
        head (each view through the backbone on its own, as in training)."""
        from occam_l2r.tasks.checkpoints import module_from_checkpoint
        from occam_l2r.tasks.shared import SharedBackboneTask

        task = module_from_checkpoint(
            SharedBackboneTask, path, device, CHECKPOINT_HINT, loaded=state, pretrained=False
        )
        if view not in task.views:
            raise UserError(
                f"checkpoint {path} is a shared-backbone model of the views {task.views}: it "
                f"gives no {view}; point `checkpoints.{view}` at a run of {view}"
            )
        spec = NetSpec(f"shared:{task.hparams.model_name}", int(task.hparams.num_classes))
        own = data_config(task.backbone).get("interpolation")
        self._setup(view, path, _OneView(task, view), spec, image_size, device,
                    uint8_normalization(task.backbone), own)  # fmt: skip
        self.task = task

    def _setup(
        self, view: View, source: Path, net: nn.Module, spec: NetSpec, image_size: int,
        device: str, normalization: tuple[torch.Tensor, torch.Tensor] | None = None,
        interpolation: str | None = None,
    ) -> None:  # fmt: skip
        self.view, self.checkpoint, self.spec, self.image_size = view, source, spec, image_size
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        # the normalisation of ClassifierTask.on_after_batch_transfer: the model's own mean/std
        # on uint8 pixels (a probe's backbone normalises itself: identity here)
        norm = normalization if normalization is not None else uint8_normalization(net)
        self.mean, self.std = (t.to(self.device) for t in norm)
        # the resize of training and `predict` with the default data.interpolation (the model's)
        own = interpolation if interpolation is not None else data_config(net).get("interpolation")
        self.transform = eval_transform(image_size, resolve_interpolation(None, own))

    @property
    def exportable(self) -> bool:
        """Whether :meth:`weights` and :attr:`spec` rebuild the network (a classifier); a probe
        on a frozen backbone or a view of a shared backbone is not (``probe:`` / ``shared:``)."""
        return not self.spec.model_name.startswith(("probe:", "shared:"))

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def weights(self) -> dict[str, torch.Tensor]:
        """The network's inference weights (its ``state_dict``, on the CPU, contiguous)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}

    def tensor(self, image: np.ndarray) -> torch.Tensor:
        """One view image as the uint8 ``(3, S, S)`` tensor the DataLoader would give."""
        image = self.transform(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)

    @torch.inference_mode()
    def logits(self, images: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """The logits ``(N, C)`` (float32) of view images, in batches of ``batch_size``."""
        out = [np.zeros((0, self.num_classes), np.float32)]
        for start in range(0, len(images), batch_size):
            x = torch.stack([self.tensor(im) for im in images[start : start + batch_size]])
            x = normalize_uint8(x.to(self.device), self.mean, self.std)
            out.append(self.net(x).float().cpu().numpy())
        return np.concatenate(out)
