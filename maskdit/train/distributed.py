"""Distributed set-up for runs launched by ``torchrun``: who am I, which device, which rows.

torchrun starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK; we only read them and
open the process group (NCCL on CUDA, gloo otherwise). A :class:`DistContext` is passed to
whatever needs to know the rank; nothing here keeps module-level state (the process group
itself is torch's). A run without those variables is a plain single process (world size 1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from maskdit.config.errors import InputError


class DistributedSetupError(InputError):
    """The launch does not fit the spec (e.g. the batch does not split over the ranks)."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise DistributedSetupError(f"bad ranks: rank {self.rank}, world size {self.world_size}, "
                                        f"local rank {self.local_rank}")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, metrics, checkpoints and images; the others stay quiet."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str) -> torch.device:
        """The spec's device for this rank: under torchrun each rank takes GPU ``LOCAL_RANK``."""
        device = torch.device(requested)
        if device.type == "cuda" and self.is_distributed:
            if device.index is not None:
                raise DistributedSetupError(f"train.device {requested!r} names one GPU; under torchrun use 'cuda' "
                                            "(each rank takes the GPU of its LOCAL_RANK)")
            return torch.device("cuda", self.local_rank)
        return device

    def rows(self, batch_size: int) -> slice:
        """This rank's contiguous slice of a global batch of ``batch_size`` rows (which must divide)."""
        if batch_size % self.world_size:
            raise DistributedSetupError(f"a batch of {batch_size} does not split over {self.world_size} ranks")
        per_rank = batch_size // self.world_size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


def context_from_env(env: Mapping[str, str] | None = None) -> DistContext:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (absent: a single process)."""
    env = os.environ if env is None else env
    try:
        return DistContext(rank=int(env.get("RANK", 0)), world_size=int(env.get("WORLD_SIZE", 1)),
                           local_rank=int(env.get("LOCAL_RANK", 0)))
    except ValueError as err:
        raise DistributedSetupError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers: {err}") from None


def check_device(device: str, *, field: str = "train.device") -> torch.device:
    """``device`` as a torch.device, or DistributedSetupError when this machine does not have it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DistributedSetupError(f"{field}: {device!r} is not a torch device ({err})") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DistributedSetupError(f"{field} is {device!r} but CUDA is not available on this machine "
                                        "(use 'cpu')")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise DistributedSetupError(f"{field} is {device!r} but this machine has {torch.cuda.device_count()} "
                                        "GPU(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise DistributedSetupError(f"{field} is {device!r} but MPS is not available on this machine")
    return parsed


def init_distributed(device: str, env: Mapping[str, str] | None = None, *, field: str = "train.device") -> DistContext:
    """Open the default process group when launched by torchrun with WORLD_SIZE > 1.

    NCCL for CUDA devices, gloo otherwise; the rendezvous (MASTER_ADDR / MASTER_PORT) is
    torchrun's. Sets the current CUDA device to LOCAL_RANK so collectives use the right GPU.
    """
    ctx = context_from_env(env)
    check_device(device, field=field)
    if not ctx.is_distributed:
        return ctx
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        torch.cuda.set_device(ctx.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo",
                                device_id=torch.device("cuda", ctx.local_rank) if on_cuda else None)
    if dist.get_world_size() != ctx.world_size or dist.get_rank() != ctx.rank:
        raise DistributedSetupError(f"the process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                                    f"disagrees with the environment (rank {ctx.rank} of {ctx.world_size})")
    return ctx


def shutdown(ctx: DistContext) -> None:
    """Close the process group opened by :func:`init_distributed` (no-op for a single process)."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def check_batch(batch_size: int, grad_accumulation: int, world_size: int) -> int:
    """The per-rank micro-batch; raises when the global batch does not split evenly."""
    parts = world_size * grad_accumulation
    if batch_size % parts:
        lower = batch_size // parts * parts
        nearest = [n for n in (lower, lower + parts) if n > 0]
        raise DistributedSetupError(
            f"train.batch_size {batch_size} must be divisible by world size x grad_accumulation = {world_size} x "
            f"{grad_accumulation} = {parts} (batch_size is the global batch per optimizer step); the nearest valid "
            f"sizes are {', '.join(str(n) for n in nearest)}, or change --nproc_per_node"
        )
    return batch_size // parts


def mean_over_ranks(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a tensor over the ranks (gloo has no AVG, so SUM / world size)."""
    if not ctx.is_distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / ctx.world_size


def gather_to_main(obj: Any, ctx: DistContext) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (None elsewhere); for small pickles only."""
    if not ctx.is_distributed:
        return [obj]
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()
