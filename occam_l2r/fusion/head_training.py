"""Training fusion heads on in-memory logits, the epoch chosen on validation; many heads at once.

The loop is the one ``fit`` runs through Lightning (:class:`occam_l2r.tasks.fusion.FusionHeadTask`
on a :class:`occam_l2r.data.logits_datamodule.LogitsDataModule`), so that the ablation of the
``fuse`` verb and ``fit`` give the same head for the same settings and seed:

- the head is created right after ``torch.manual_seed(seed)`` (``seed_everything`` on the
  ``fit`` path, which instantiates the model next);
- every epoch walks the labelled train samples in the order of :class:`EpochOrder` (a
  permutation per epoch from a generator seeded with ``seed``; ``LogitsDataModule``'s train
  loader samples with the same class), in contiguous slices of ``batch_size``, one Adam step per
  batch with the head's own loss;
- after every epoch the validation ``metric`` is computed and the state of the best epoch is
  kept: a later epoch replaces it only when strictly better, as Lightning's ``ModelCheckpoint``
  (``mode: max``, ``save_top_k: 1``) does.

:func:`train_heads` trains independent heads (:class:`HeadJob`) together: the heads whose
training runs the same number of steps (same labelled count, ``batch_size`` and
``max_epochs``) step in lockstep, one backward and one Adam step for all of them (Adam's fused
kernel), and the heads of the same class and parameter shapes (and ``lr``, ``weight_decay``)
are stacked (:func:`torch.func.stack_module_state`): their losses come from the class's
:meth:`~occam_l2r.fusion.heads.FusionHead.stacked_loss` (batched kernels, e.g. ``baddbmm`` for
``concat_fc``), or, for a head class without one, from one :func:`torch.func.vmap` of
``loss``. Each head keeps its mathematics (its own ``loss``), its batch order and seed, its
Adam state (Adam is element-wise, so one Adam over stacked tensors is one Adam per head) and its
best-epoch choice; only the float rounding of the batched kernels differs. A head that trains
alone runs the plain module.

The logits are never copied whole: a chunk of a few batches of every head is gathered from the
arrays as given (float32, float16 or ``np.memmap``; :data:`GATHER_ELEMENTS`) straight into
stacked float32 buffers, and each step's batch is a view of them; with unlabelled samples
(label ``-1``) an index array of the labelled rows is used.

:func:`head_logits` applies a trained head to numpy logits.
"""

from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from occam_l2r.fusion.heads import FusionHead
from occam_l2r.fusion.methods import score

#: Torch threads of head training: the batched steps use two cores well (a FungiTastic-size
#: sweep: 36-44 s on 2 threads, 62-65 s on 1) and the heads are too small for more to pay; a fixed
#: number, so that a cell's numbers do not depend on the machine's core count.
DEFAULT_NUM_THREADS = 2


@dataclass
class HeadFit:
    """A trained head and how its epoch was chosen.

    Attributes:
        head: the head in eval mode, with the weights of the chosen epoch.
        best_epoch: the chosen epoch (0-based; the last one without validation).
        best_score: its validation metric (NaN without validation).
        val_scores: the validation metric after every epoch (empty without validation).
    """

    head: nn.Module
    best_epoch: int
    best_score: float = float("nan")
    val_scores: list[float] = field(default_factory=list)


class EpochOrder(Sampler[int]):
    """The order of the train samples of both paths: one permutation per epoch, from a generator
    seeded with ``seed`` (the order depends only on the seed and the number of samples, not on
    how much of torch's global random state the rest of the run consumed).

    Each epoch draws what torch's shuffling ``DataLoader`` with that generator drew (one int64
    base seed, the permutation, and the permutation of ``RandomSampler``'s empty remainder), so
    the heads see the batches they saw when both paths walked such a ``DataLoader``.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = int(n)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return self.n

    def next_epoch(self) -> torch.Tensor:
        """The permutation of the next epoch (``(n,)`` int64)."""
        g = self.generator
        torch.empty((), dtype=torch.int64).random_(generator=g)  # the DataLoader's base seed
        perm = torch.randperm(self.n, generator=g)
        torch.randperm(self.n, generator=g)  # RandomSampler's (empty) remainder
        return perm

    def __iter__(self) -> Iterator[int]:
        yield from self.next_epoch().tolist()


def shuffled_loader(
    dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0
) -> DataLoader:
    """The shuffling train loader of ``fit``: batches in the order of :class:`EpochOrder`."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochOrder(len(dataset), seed),  # type: ignore[arg-type]
        num_workers=num_workers,
        # its own generator, so that the loader draws nothing from torch's global state
        generator=torch.Generator().manual_seed(int(seed)),
    )


@dataclass
class HeadJob:
    """One head to train and its data and settings (see :func:`train_heads`).

    Attributes:
        head: a head of :data:`occam_l2r.fusion.heads.HEADS` (created after seeding).
        z1, z2: train logits of the two inputs ``(N, C)``: numpy arrays of any float dtype, or
            memory maps; only the rows of each batch are read and converted.
        labels: ``(N,)`` train labels; ``-1`` rows are left out.
        seed: seeds the order of the samples (:class:`EpochOrder`).
        lr, weight_decay: Adam's settings.
        val: ``(z1, z2, labels)`` of the validation split; ``None`` keeps the last epoch.
        metric: the validation metric that chooses the epoch (``acc`` or ``macro_acc``).
        max_epochs: passes over the train samples.
        batch_size: samples per step.
    """

    head: nn.Module
    z1: np.ndarray
    z2: np.ndarray
    labels: np.ndarray
    seed: int = 0
    lr: float = 1e-2
    weight_decay: float = 0.0
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    metric: str = "acc"
    max_epochs: int = 30
    batch_size: int = 256


def train_head(
    head: nn.Module,
    z1: np.ndarray,
    z2: np.ndarray,
    labels: np.ndarray,
    max_epochs: int = 30,
    lr: float = 1e-2,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
    num_threads: int = DEFAULT_NUM_THREADS,
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    metric: str = "acc",
) -> HeadFit:
    """Fit one ``head`` with Adam and its own loss; keep the epoch with the best validation
    metric. One :class:`HeadJob` of :func:`train_heads` (see there)."""
    job = HeadJob(head, z1, z2, labels, seed, lr, weight_decay, val, metric, max_epochs, batch_size)
    return train_heads([job], num_threads)[0]


def train_heads(jobs: list[HeadJob], num_threads: int = DEFAULT_NUM_THREADS) -> list[HeadFit]:
    """Train independent heads together; each gets what training it alone would give.

    Training runs with ``num_threads`` torch threads (0 keeps the current setting), restored
    afterwards: :data:`DEFAULT_NUM_THREADS` by default.

    Returns:
        one :class:`HeadFit` per job, in order.

    Raises:
        ValueError: a job without labelled samples, or ``max_epochs`` / ``batch_size`` < 1.
    """
    states = [_JobState(job) for job in jobs]
    lockstep: dict[tuple[int, int, int], list[_JobState]] = defaultdict(list)
    for st in states:
        lockstep[st.n, st.job.batch_size, st.job.max_epochs].append(st)
    previous = torch.get_num_threads()
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    try:
        for group in lockstep.values():
            _train_lockstep(group)
    finally:
        torch.set_num_threads(previous)
    return [st.result() for st in states]


class _JobState:
    """A job's labelled rows, sample order and best epoch so far."""

    def __init__(self, job: HeadJob) -> None:
        if job.max_epochs < 1 or job.batch_size < 1:
            raise ValueError(
                f"max_epochs and batch_size must be >= 1, got {job.max_epochs}, {job.batch_size}"
            )
        labels = np.asarray(job.labels)
        keep = labels >= 0
        if not keep.any():
            raise ValueError("no labelled samples to train the fusion head on (all labels are -1)")
        self.job = job
        #: the labelled rows (``None``: every row, no index array needed)
        self.rows = None if keep.all() else np.flatnonzero(keep)
        self.n = len(labels) if self.rows is None else len(self.rows)
        self.order = EpochOrder(self.n, job.seed)
        self.perm = np.zeros(0, np.int64)
        self.scores: list[float] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch, self.best = job.max_epochs - 1, float("nan")

    def next_epoch(self) -> None:
        perm = self.order.next_epoch().numpy()
        self.perm = perm if self.rows is None else self.rows[perm]

    def end_epoch(self, epoch: int) -> None:
        job = self.job
        if job.val is None:
            return
        pred = head_logits(job.head, job.val[0], job.val[1]).argmax(1)
        self.scores.append(score(pred, job.val[2], job.metric))
        if np.isfinite(self.scores[-1]) and not self.scores[-1] <= self.best:  # strictly better
            self.best, self.best_epoch = self.scores[-1], epoch
            self.best_state = copy.deepcopy(job.head.state_dict())

    def result(self) -> HeadFit:
        head = self.job.head
        if self.best_state is not None:
            head.load_state_dict(self.best_state)
        return HeadFit(head.eval(), self.best_epoch, self.best, self.scores)


def _gather_into(out: torch.Tensor, arr: np.ndarray, rows: np.ndarray) -> None:
    """``out[:] = arr[rows]`` (converted to ``out``'s dtype; only these rows are read).

    An aligned C-contiguous array (every logits file member since format 3, arrays in memory)
    is read in place by torch's ``index_select``, which uses the intra-op threads (~2x numpy's
    gather on 2 cores) and writes straight into ``out`` when no conversion is needed; anything
    else by numpy's fancy indexing (not ``np.take``, which falls to a path ~15x slower on an
    unaligned mapped matrix).
    """
    index = torch.from_numpy(rows)
    if arr.flags.aligned and arr.flags.c_contiguous and arr.dtype.isnative:
        with warnings.catch_warnings():  # a read-only memory map: only read here
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            whole = torch.from_numpy(arr)
        if whole.dtype == out.dtype:
            torch.index_select(whole, 0, index, out=out)
        else:
            out.copy_(whole.index_select(0, index))
        return
    out.copy_(torch.from_numpy(np.ascontiguousarray(arr[rows])))


class _Loss(nn.Module):
    """A head's own loss as ``forward`` (what :func:`torch.func.functional_call` calls)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head.loss(z1, z2, y)


def _stack_key(job: HeadJob) -> tuple[Any, ...] | None:
    """Heads with the same key are stacked; ``None``: the head trains as a plain module (it has
    buffers or random layers, whose state a stacked call would not keep per head)."""
    head = job.head
    if list(head.buffers()) or any(isinstance(m, nn.Dropout) and m.p > 0 for m in head.modules()):
        return None
    shapes = tuple((k, tuple(p.shape), p.dtype) for k, p in head.named_parameters())
    return (type(head), shapes, job.lr, job.weight_decay)


class _Stack:
    """Heads stepped together: their losses from stacked parameters (or one plain head).

    A :class:`~occam_l2r.fusion.heads.FusionHead` with a written
    :meth:`~occam_l2r.fusion.heads.FusionHead.stacked_loss` computes all of them with batched
    kernels; any other head through :func:`torch.func.vmap` of its own ``loss``.
    """

    def __init__(self, states: list[_JobState]) -> None:
        self.states = states
        self.plain = len(states) == 1
        if self.plain:
            self.params = list(states[0].job.head.parameters())
            return
        head0 = states[0].job.head
        stacked, _ = torch.func.stack_module_state([st.job.head for st in states])
        self.names = list(stacked)
        self.params = [stacked[k] for k in self.names]
        if isinstance(head0, FusionHead) and head0.HAS_STACKED_LOSS:
            self.loss_of = type(head0).stacked_loss
            return
        base = copy.deepcopy(_Loss(head0)).to("meta")

        def one(params: dict[str, torch.Tensor], z1, z2, y) -> torch.Tensor:
            return torch.func.functional_call(base, {f"head.{k}": v for k, v in params.items()},
                                              (z1, z2, y))  # fmt: skip

        self.loss_of = torch.func.vmap(one, randomness="different")

    def loss(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The summed losses of the heads; ``z1, z2``: ``(K, B, C)``, ``y``: ``(K, B)``."""
        if self.plain:
            return self.states[0].job.head.loss(z1[0], z2[0], y[0])
        params = dict(zip(self.names, self.params, strict=True))
        return self.loss_of(params, z1, z2, y).sum()

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the stacked parameters into each head module (for validation and the result)."""
        if self.plain:
            return
        for i, st in enumerate(self.states):
            named = dict(st.job.head.named_parameters())
            for k, p in zip(self.names, self.params, strict=True):
                named[k].copy_(p[i])


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

#: Rows gathered and converted at once, in elements: a few batches of every head, so that the
#: per-call cost of a gather is paid once per chunk, not once per batch (~16 MB of float32).
GATHER_ELEMENTS = 1 << 22


class _Gatherer:
    """The stacked ``(z1, z2, y)`` batches of the heads of each :class:`_Stack`.

    A chunk of batches of every head is gathered at once from the arrays straight into stacked
    buffers ``(K, rows, C)`` (head ``k``'s rows in the order of its epoch at ``[k]``; float16
    converted on the way); a step's batch is the view ``[:, part]``, so nothing is stacked per
    step. Stacks of the same heads' inputs and orders (``concat_fc`` and ``weighted_logits`` of
    one sweep) share their buffers.
    """

    def __init__(self, groups: list[_Stack], n: int, batch_size: int) -> None:
        self.keys = [tuple(self._slot(st) for st in g.states) for g in groups]
        self.members = {key: g.states for key, g in zip(self.keys, groups, strict=True)}
        elements = sum(
            st.job.z1.shape[1] + st.job.z2.shape[1] + 1 for sts in self.members.values()
            for st in sts
        )  # fmt: skip
        self.chunk = max(1, GATHER_ELEMENTS // (batch_size * elements)) * batch_size
        self.n, self.batch_size = n, batch_size
        self.buffers: dict[tuple, Batch] = {}
        self.start = -1

    @staticmethod
    def _slot(st: _JobState) -> tuple[int, ...]:
        job = st.job
        return (id(job.z1), id(job.z2), id(job.labels), job.seed, -1 if st.rows is None else id(st))

    def _fill(self, start: int) -> None:
        """Gather the chunk of every head's order that begins at ``start``."""
        whole = slice(start, min(start + self.chunk, self.n))
        m = whole.stop - whole.start
        for key, states in self.members.items():
            if key not in self.buffers:
                job = states[0].job
                k, c1, c2 = len(states), job.z1.shape[1], job.z2.shape[1]
                self.buffers[key] = (torch.empty(k, self.chunk, c1), torch.empty(k, self.chunk, c2),
                                     torch.empty(k, self.chunk, dtype=torch.int64))  # fmt: skip
            bufs = self.buffers[key]
            for i, st in enumerate(states):
                rows = st.perm[whole]
                for buf, arr in zip(bufs, (st.job.z1, st.job.z2, st.job.labels), strict=True):
                    _gather_into(buf[i, :m], arr, rows)
        self.start = start

    def batches(self, start: int) -> list[Batch]:
        """Every stack's batch at ``start`` of its heads' epoch orders (``start``: a multiple
        of the batch size, walked in increasing order within an epoch)."""
        chunk_start = start - start % self.chunk
        if chunk_start != self.start:
            self._fill(chunk_start)
        part = slice(start - chunk_start, min(start + self.batch_size, self.n) - chunk_start)
        return [
            (z1[:, part], z2[:, part], y[:, part])
            for z1, z2, y in (self.buffers[key] for key in self.keys)
        ]


def _train_lockstep(states: list[_JobState]) -> None:
    """Train heads with the same number of steps: one backward and one Adam step per batch."""
    stacks: dict[Any, list[_JobState]] = defaultdict(list)
    for i, st in enumerate(states):
        key = _stack_key(st.job)
        stacks[key if key is not None else ("alone", i)].append(st)
    groups = [_Stack(members) for members in stacks.values()]
    opt = torch.optim.Adam(
        [
            {"params": g.params, "lr": g.states[0].job.lr,
             "weight_decay": g.states[0].job.weight_decay}
            for g in groups
        ],
        fused=True,
    )  # fmt: skip
    job0 = states[0].job
    n, batch_size = states[0].n, job0.batch_size
    gather = _Gatherer(groups, n, batch_size)
    for epoch in range(job0.max_epochs):
        for st in states:
            st.next_epoch()
            st.job.head.train()
        gather.start = -1  # a new order
        for start in range(0, n, batch_size):
            opt.zero_grad(set_to_none=True)
            batches = gather.batches(start)
            loss = sum(g.loss(*b) for g, b in zip(groups, batches, strict=True))
            loss.backward()  # type: ignore[union-attr]
            opt.step()
        for g in groups:
            g.sync()
        for st in states:
            st.end_epoch(epoch)


@torch.no_grad()
def head_logits(head: nn.Module, z1: np.ndarray, z2: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Fused logits of a trained head on numpy inputs, computed in chunks (in eval mode)."""
    was_training = head.training
    head.eval()
    out = []
    for start in range(0, len(z1), chunk):
        a = _float32_rows(z1, slice(start, start + chunk))
        b = _float32_rows(z2, slice(start, start + chunk))
        out.append(head(a, b).numpy())
    head.train(was_training)
    if not out:
        return np.zeros((0, np.asarray(z1).shape[1]), np.float32)
    return np.concatenate(out)


def _float32_rows(arr: np.ndarray, rows: slice) -> torch.Tensor:
    """``arr[rows]`` as a float32 tensor: read in place when it is one (aligned, contiguous; a
    read-only memory map is only read), else a float32 copy of these rows alone (float16,
    unaligned)."""
    part = arr[rows]
    if part.dtype == np.float32 and part.flags.aligned and part.flags.c_contiguous:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            return torch.from_numpy(part)
    return torch.from_numpy(np.array(part, dtype=np.float32))
