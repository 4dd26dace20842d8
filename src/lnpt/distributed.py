"""Data-parallel runs with ``torch.distributed``: the process group and the few collectives
lnpt needs, passed around as an explicit :class:`Distributed` context (no global "am I rank 0").

``torchrun --nproc_per_node N -m lnpt run ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in their environment; :func:`process_group`
reads them and joins the group (gloo on the CPU, NCCL on CUDA, one GPU per local rank). Without
that environment every function here is a no-op on a one-process context, so single-process
code runs the same path and computes exactly what it did before.

What the layers above rely on:

* every rank draws the same global batch order from ``(seed, epoch)`` and keeps its own
  strided share of each global batch (:func:`shard_batch`); the share's weight makes DDP's
  gradient average equal the mean over the whole global batch;
* decisions made once (masks, channel cuts) are made on rank 0 and broadcast
  (:func:`run_on_main`, :func:`broadcast_tensors`), so all ranks hold identical students;
* only rank 0 writes files (:func:`main_writes`), and the others wait for it;
* epoch metrics are summed over ranks (:func:`all_reduce_sums`) before anyone logs them.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .device import resolve_device
from .errors import ConfigError, LnptError

T = TypeVar("T")
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel run; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and makes one-off decisions."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether collectives really communicate (more than one process in a group)."""
        return self.backend is not None and self.world_size > 1


SINGLE = Distributed()


def launched(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by torchrun (or another launcher setting its variables)."""
    env = os.environ if environ is None else environ
    return all(k in env for k in _ENV)


def read_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the launcher's variables; ``(0, 1, 0)`` without them."""
    env = os.environ if environ is None else environ
    if not launched(env):
        return 0, 1, 0
    try:
        rank, world, local = (int(env[k]) for k in _ENV)
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (start the run with torchrun)") from None
    if not (0 <= rank < world and 0 <= local):
        raise ConfigError(f"inconsistent launcher variables RANK={rank} WORLD_SIZE={world}; start with torchrun")
    return rank, world, local


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """The device this rank computes on: its own GPU (``cuda:LOCAL_RANK``) for a CUDA run, else
    ``device``. An explicit ``cuda:N`` is honoured only in a one-process run."""
    if device.type != "cuda":
        return device
    return resolve_device(f"cuda:{local_rank}")


@contextlib.contextmanager
def process_group(device: torch.device, environ: Mapping[str, str] | None = None,
                  timeout_s: float = 1800.0) -> Iterator[Distributed]:
    """Join the launcher's process group for the duration of the block (and leave it after).

    Without launcher variables, or with a world of one, yields a one-process context on
    ``device`` and touches nothing global. NCCL needs one CUDA device per process; gloo runs
    on the CPU.
    """
    rank, world, local = read_env(environ)
    if world == 1 or dist.is_initialized():
        yield Distributed(rank, world, local, rank_device(device, local) if world > 1 else device,
                          dist.get_backend() if dist.is_initialized() else None)
        return
    here = rank_device(device, local)
    backend = "nccl" if here.type == "cuda" else "gloo"
    if here.type == "cuda":
        torch.cuda.set_device(here)
    dist.init_process_group(backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield Distributed(rank, world, local, here, backend)
    finally:
        dist.destroy_process_group()


def _comm_device(ctx: Distributed) -> torch.device:
    """Where tensors must sit for a collective: the rank's GPU under NCCL, the CPU under gloo."""
    return ctx.device if ctx.backend == "nccl" else torch.device("cpu")


def barrier(ctx: Distributed) -> None:
    """Wait until every rank arrives (nothing to wait for in one process)."""
    if ctx.active:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def broadcast_object(ctx: Distributed, obj: T) -> T:
    """Rank 0's ``obj`` on every rank (picklable values: reports, channel-cut histories)."""
    if not ctx.active:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0, device=_comm_device(ctx))
    return box[0]  # type: ignore[return-value]


def broadcast_tensors(ctx: Distributed, tensors: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Overwrite every rank's ``tensors`` in place with rank 0's (e.g. the pruning masks).

    Every rank must hold the same names and shapes (they built the same student); a mismatch
    fails on all ranks with the first differing name rather than hanging.
    """
    if not ctx.active:
        return tensors
    layout = {k: (tuple(v.shape), str(v.dtype)) for k, v in sorted(tensors.items())}
    reference = broadcast_object(ctx, layout)
    if reference != layout:
        bad = next(k for k in sorted(set(reference) | set(layout)) if reference.get(k) != layout.get(k))
        raise LnptError(f"rank {ctx.rank} holds a different tensor {bad!r} than rank 0 "
                        f"({layout.get(bad)} vs {reference.get(bad)}); every rank must build the same student")
    comm = _comm_device(ctx)
    for name in sorted(tensors):
        tensor = tensors[name]
        buffer = tensor.detach().to(comm).contiguous()
        dist.broadcast(buffer, src=0)
        with torch.no_grad():
            tensor.copy_(buffer)
    return tensors


def all_reduce_sums(ctx: Distributed, sums: Mapping[str, float]) -> dict[str, float]:
    """The sum over ranks of each value (sample-weighted metric sums, counts), in float64 so a
    one-process run reads back exactly the numbers it put in."""
    if not ctx.active:
        return dict(sums)
    names = sorted(sums)
    total = torch.tensor([float(sums[k]) for k in names], dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return dict(zip(names, total.tolist()))


def average_gradients(ctx: Distributed, params: Sequence[torch.Tensor]) -> None:
    """Replace each parameter's gradient by its mean over the ranks (in place), for parameters
    that train outside the data-parallel wrapper (a loss's adapter)."""
    if not ctx.active:
        return
    comm = _comm_device(ctx)
    for p in params:
        if p.grad is None:
            continue
        grad = p.grad.to(comm)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        p.grad.copy_(grad.div_(ctx.world_size))


def shard_batch(index: torch.Tensor, ctx: Distributed | None) -> torch.Tensor:
    """This rank's share of a global batch of sample indices: ``index[rank::world]``.

    Every rank draws the same global order from the same ``(seed, epoch)`` generator, so the
    shares are disjoint and cover the batch. A rank left without samples (a last batch shorter
    than the world) gets the first sample again, with weight 0 (:func:`share_weight`), so every
    rank takes the same number of steps: DDP would otherwise wait for it forever.
    """
    if ctx is None or not ctx.active:
        return index
    share = index[ctx.rank::ctx.world_size]
    return share if share.numel() else index[:1]


def share_weight(global_size: int, ctx: Distributed) -> float:
    """The factor on this rank's mean loss for a global batch of ``global_size`` samples:
    ``len(share) * world / global_size``. DDP averages the ranks' gradients, so with it the
    update is the gradient of the mean loss over the whole global batch even when the shares
    differ in size; 1.0 whenever they are equal (and in one process)."""
    if not ctx.active:
        return 1.0
    count = len(range(ctx.rank, global_size, ctx.world_size))
    return count * ctx.world_size / global_size


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of an epoch's batch order (and augmentation): the same on every rank, and
    the same after a resume, so a run's order depends only on ``(seed, epoch)``."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def run_on_main(ctx: Distributed, fn: Callable[[], T]) -> T:
    """Call ``fn`` on rank 0 only and return its result on every rank.

    For decisions that must be made once (scoring and pruning). An lnpt error raised on rank 0
    is re-raised on every rank, so the others fail with the same one-line message instead of
    waiting at the next collective.
    """
    if not ctx.active:
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    if ctx.is_main:
        try:
            outcome = ("ok", fn())
        except LnptError as exc:
            outcome = ("error", exc)
            broadcast_object(ctx, outcome)
            raise
    outcome = broadcast_object(ctx, outcome)
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1]


@contextlib.contextmanager
def main_writes(ctx: Distributed) -> Iterator[bool]:
    """``with main_writes(ctx) as writer: if writer: ...``: only rank 0 writes; after the block
    every rank waits for it, so none reads a file before it exists. (On an error the barrier is
    skipped: the launcher then stops the other ranks.)"""
    yield ctx.is_main
    barrier(ctx)


def wrap(model: nn.Module, ctx: Distributed, sync_batchnorm: bool = False) -> nn.Module:
    """``model`` wrapped for data-parallel training (itself in one process).

    The wrapper is only for the forward/backward pass: code that saves, evaluates or prunes
    takes :func:`unwrap` of it, so checkpoints never carry a ``module.`` prefix. With
    ``sync_batchnorm`` BatchNorm statistics are computed over the global batch; torch's
    SyncBatchNorm runs on CUDA only, so asking for it on another device is refused (without
    it each rank normalises by its own share of the batch).
    """
    if not ctx.active:
        return model
    if sync_batchnorm:
        if ctx.device.type != "cuda":
            raise ConfigError("--sync-batchnorm needs CUDA (torch's SyncBatchNorm runs on GPUs only); "
                              "leave it off on the CPU, where each rank normalises by its own share")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ctx.device.index if ids else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The trained network inside a data-parallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
