"""Trainable fusion heads as plain ``nn.Module`` s (no Lightning), their registry, a trainer.

Every head maps the logits of two models ``z1, z2`` (each ``(B, C)``) to fused logits
``(B, C)`` and defines its own training loss:

- :class:`TemperatureFusion`: one temperature per input, each fitted by its own NLL; the output
  is the log of the temperature-scaled average ``(σ(z1/T1) + σ(z2/T2)) / 2`` (with a single
  input it is plain temperature scaling ``z1 / T1``).
- :class:`WeightedLogits`: ``w1 * z1 + w2 * z2`` with per-class weights (B.3 method 9).
- :class:`ConcatFC`: a shallow fully connected network on ``[z1, z2]`` (B.3 method 8).

:data:`HEADS` is the one registry of heads by name (:data:`HeadName`); :func:`build_head`
creates one from it (the ablation's fusers and the Lightning task
:mod:`occam_l2r.tasks.fusion` both go through it). Training on in-memory logits (with the
epoch chosen on validation) lives in :mod:`occam_l2r.fusion.head_training`.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F


class Temperature(nn.Module):
    """Temperature scaling ``z -> z / T`` with ``T = exp(log_t) > 0``."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        if init <= 0:
            raise ValueError(f"temperature must be > 0, got {init}")
        self.log_t = nn.Parameter(torch.tensor(math.log(init)))

    @property
    def temperature(self) -> float:
        return float(self.log_t.exp())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.log_t.exp()


class FusionHead(nn.Module):
    """Base class of the heads: fused logits from ``z1, z2`` and the head's own training loss.

    Attributes:
        NUM_INPUTS: the numbers of inputs the head accepts (checked by :func:`build_head`).
    """

    NUM_INPUTS: ClassVar[tuple[int, ...]] = (2,)

    @classmethod
    def build(cls, num_classes: int, num_inputs: int = 2, hidden_dim: int = 64) -> FusionHead:
        """Create the head from the common settings (each head uses the ones it needs).

        Args:
            num_classes: number of classes ``C``.
            num_inputs: number of inputs (1 or 2).
            hidden_dim: hidden width of :class:`ConcatFC`.
        """
        raise NotImplementedError

    def loss(self, z1: torch.Tensor, z2: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """Training loss of the head on one batch."""
        raise NotImplementedError

    #: Whether :meth:`stacked_loss` is written for the class (heads without one are stacked
    #: through :func:`torch.func.vmap` of :meth:`loss`, which costs more per step).
    HAS_STACKED_LOSS: ClassVar[bool] = False

    @classmethod
    def stacked_loss(
        cls,
        params: dict[str, torch.Tensor],
        z1: torch.Tensor,
        z2: torch.Tensor | None,
        target: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`loss` of ``K`` heads of the class at once, each on its own batch.

        Args:
            params: every name of ``named_parameters()`` -> the ``K`` heads' tensors stacked on a
                new first axis.
            z1, z2: ``(K, B, C)``, head ``k``'s batch at ``[k]``.
            target: ``(K, B)``.

        Returns:
            ``(K,)``: head ``k``'s :meth:`loss` (the same mathematics; only the float rounding
            of the batched kernels differs).
        """
        raise NotImplementedError


def _stacked_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy`` (mean over the batch) of each of ``K`` stacked batches: ``(K,)``."""
    k, b, c = logits.shape
    return (
        F.cross_entropy(logits.reshape(k * b, c), target.reshape(-1), reduction="none")
        .view(k, b)
        .mean(1)
    )


class TemperatureFusion(FusionHead):
    """Temperature-scaled average of one or two inputs; each temperature fit by its own NLL.

    Args:
        num_inputs: 1 (calibration of one model) or 2 (fusion of two).
    """

    NUM_INPUTS = (1, 2)

    @classmethod
    def build(
        cls, num_classes: int, num_inputs: int = 2, hidden_dim: int = 64
    ) -> TemperatureFusion:
        return cls(num_inputs)

    def __init__(self, num_inputs: int = 2) -> None:
        super().__init__()
        if num_inputs not in (1, 2):
            raise ValueError(f"num_inputs must be 1 or 2, got {num_inputs}")
        self.scales = nn.ModuleList(Temperature() for _ in range(num_inputs))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor | None = None) -> torch.Tensor:
        if len(self.scales) == 1:
            return self.scales[0](z1)
        if z2 is None:
            raise ValueError("TemperatureFusion(num_inputs=2) needs two inputs")
        p = 0.5 * (self.scales[0](z1).softmax(1) + self.scales[1](z2).softmax(1))
        return p.clamp_min(1e-12).log()

    def loss(self, z1: torch.Tensor, z2: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """Sum of each input's own NLL (the temperatures are fitted independently)."""
        out = F.cross_entropy(self.scales[0](z1), target)
        if len(self.scales) == 2:
            out = out + F.cross_entropy(self.scales[1](z2), target)
        return out

    HAS_STACKED_LOSS = True

    @classmethod
    def stacked_loss(cls, params, z1, z2, target):  # noqa: D102 (see FusionHead)
        out = _stacked_cross_entropy(z1 / params["scales.0.log_t"].exp()[:, None, None], target)
        if "scales.1.log_t" in params:
            scaled = z2 / params["scales.1.log_t"].exp()[:, None, None]  # type: ignore[operator]
            out = out + _stacked_cross_entropy(scaled, target)
        return out


class WeightedLogits(FusionHead):
    """``w1 * z1 + w2 * z2`` with per-class weight vectors ``w1, w2`` (initialised to 1/2).

    Args:
        num_classes: ``C``, the length of ``w1`` and ``w2``.
    """

    @classmethod
    def build(cls, num_classes: int, num_inputs: int = 2, hidden_dim: int = 64) -> WeightedLogits:
        return cls(num_classes)

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.full((num_classes,), 0.5))
        self.w2 = nn.Parameter(torch.full((num_classes,), 0.5))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.w1 * z1 + self.w2 * z2

    def loss(self, z1: torch.Tensor, z2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(z1, z2), target)

    HAS_STACKED_LOSS = True

    @classmethod
    def stacked_loss(cls, params, z1, z2, target):  # noqa: D102 (see FusionHead)
        fused = params["w1"][:, None, :] * z1 + params["w2"][:, None, :] * z2
        return _stacked_cross_entropy(fused, target)


class ConcatFC(FusionHead):
    """Shallow fully connected network on the concatenated logits ``[z1, z2]`` (``2C`` inputs).

    Args:
        num_classes: ``C``.
        hidden_dim: width of the hidden layer; 0 gives a single linear layer.
        dropout: dropout before the last layer.
    """

    @classmethod
    def build(cls, num_classes: int, num_inputs: int = 2, hidden_dim: int = 64) -> ConcatFC:
        return cls(num_classes, hidden_dim)

    def __init__(self, num_classes: int, hidden_dim: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_dim > 0:
            self.net = nn.Sequential(
                nn.Linear(2 * num_classes, hidden_dim),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, num_classes),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * num_classes, num_classes))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z1, z2], dim=1))

    def loss(self, z1: torch.Tensor, z2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(z1, z2), target)

    HAS_STACKED_LOSS = True

    @classmethod
    def stacked_loss(cls, params, z1, z2, target):  # noqa: D102 (see FusionHead)
        # without dropout (a head with dropout > 0 is not stacked): the linear layers as batched
        # ``addmm`` s (``baddbmm``), ``net.0``/``net.3`` with a hidden layer, ``net.1`` without
        x = torch.cat([z1, z2], dim=2)
        if "net.0.weight" in params:
            x = torch.baddbmm(params["net.0.bias"][:, None, :], x, params["net.0.weight"].mT)
            x = torch.baddbmm(params["net.3.bias"][:, None, :], x.relu(), params["net.3.weight"].mT)
        else:
            x = torch.baddbmm(params["net.1.bias"][:, None, :], x, params["net.1.weight"].mT)
        return _stacked_cross_entropy(x, target)


#: The names of the heads (the keys of :data:`HEADS`), for typed configs.
HeadName = Literal["temperature", "weighted_logits", "concat_fc"]

#: The one registry of fusion heads: paper name -> head class.
HEADS: dict[str, type[FusionHead]] = {
    "temperature": TemperatureFusion,
    "weighted_logits": WeightedLogits,
    "concat_fc": ConcatFC,
}


def build_head(name: str, num_classes: int, num_inputs: int = 2, hidden_dim: int = 64) -> nn.Module:
    """Create a head of :data:`HEADS` by its paper name.

    Args:
        name: ``temperature``, ``weighted_logits`` or ``concat_fc``.
        num_classes: number of classes ``C``.
        num_inputs: 2 for fusion; 1 only for ``temperature`` (plain calibration).
        hidden_dim: hidden width of ``concat_fc`` (0: one linear layer).

    Raises:
        ValueError: for an unknown name (the message lists the choices), or a number of
            inputs the head does not take.
    """
    if name not in HEADS:
        raise ValueError(f"unknown fusion head {name!r}; choose one of {list(HEADS)}")
    cls = HEADS[name]
    if num_inputs not in cls.NUM_INPUTS:
        if cls.NUM_INPUTS == (2,):
            raise ValueError(
                f"head {name!r} fuses two inputs, got num_inputs={num_inputs}; "
                "set data.input2 and num_inputs: 2"
            )
        raise ValueError(
            f"head {name!r} takes {' or '.join(map(str, cls.NUM_INPUTS))} inputs, "
            f"got num_inputs={num_inputs}"
        )
    return cls.build(num_classes, num_inputs, hidden_dim)
