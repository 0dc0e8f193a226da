"""Data parallelism for the trainer: wrap the network (DDP or FSDP2) and move its state in and
out as full, unsharded tensors, so a checkpoint written by N ranks loads on M ranks (or on one).

The caller keeps the unwrapped network: DDP's wrapper is only used for the forward pass, and
FSDP2 (``fully_shard``) shards the same module in place. Every state dict here is keyed by the
unwrapped network's names; nothing reaches into ``.module``. With a single process every
function is the plain PyTorch call, so single-process runs are unchanged bit for bit.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from maskdit.io import checkpoint as ckpt
from maskdit.losses.heads import HEADS_PREFIX
from maskdit.train.distributed import DistContext, DistributedSetupError

Parallel = Literal["ddp", "fsdp"]


def is_sharded(kind: Parallel, ctx: DistContext) -> bool:
    return kind == "fsdp" and ctx.is_distributed


def wrap_model(model: nn.Module, kind: Parallel, ctx: DistContext, device: torch.device) -> nn.Module:
    """The module to run forward passes through: ``model`` itself for one process or FSDP2, a DDP
    wrapper otherwise. DDP broadcasts rank 0's weights; FSDP2 shards each rank's own copy, so
    every rank must build the same initial weights (``build_denoiser`` takes a seeded generator)."""
    if not ctx.is_distributed:
        return model
    if kind == "ddp":
        heads = head_parameters(model)
        if heads:
            # a training head (REPA's projector) runs in the loss, after the forward pass DDP traces: DDP
            # would call its parameters unused, then see their gradients arrive. It leaves them alone;
            # they start as rank 0's, like the rest, and sync_head_gradients averages their gradients
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, list(heads))
            for param in heads.values():
                dist.broadcast(param.data, src=0)
        # find_unused_parameters: the mask token is unused in unmasked phases (mask=None)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       find_unused_parameters=True)
    if kind == "fsdp":
        # deferred: DTensor / FSDP2 take ~0.5 s to import
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):  # one FSDP unit per transformer block, then the root
            if isinstance(module, nn.ModuleList):
                for block in module:
                    fully_shard(block)
        fully_shard(model)
        return model
    raise DistributedSetupError(f"unknown train.parallel {kind!r}; expected 'ddp' or 'fsdp'")


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable parameters of the training heads on ``model`` (``heads.*``), by name."""
    return {name: param for name, param in model.named_parameters()
            if name.startswith(HEADS_PREFIX) and param.requires_grad}


def sync_head_gradients(model: nn.Module, kind: Parallel, ctx: DistContext) -> None:
    """Average the training heads' gradients over the ranks after a step's backward passes, as DDP
    does for the network's (DDP ignores the heads: :func:`wrap_model`). A head with no gradient on
    any rank (its term off) stays without one, as on one process."""
    if kind != "ddp" or not ctx.is_distributed:
        return
    params = list(head_parameters(model).values())
    if not params:
        return
    # one all-reduce for the step: every gradient flattened (zeros where a rank has none), then one
    # flag per parameter counting the ranks that had a gradient
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
                     + [torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)])
    dist.all_reduce(flat)
    grads, ranks_with_grad = flat[:-len(params)].div_(ctx.world_size), flat[-len(params):].tolist()
    offset = 0
    for param, count in zip(params, ranks_with_grad):
        if count:
            param.grad = grads[offset:offset + param.numel()].view_as(param).clone()
        offset += param.numel()


def no_sync(wrapped: nn.Module, kind: Parallel, ctx: DistContext, sync: bool):
    """Skip the gradient all-reduce on accumulation micro-batches that are not the last."""
    if not ctx.is_distributed or sync:
        if is_sharded(kind, ctx):
            wrapped.set_requires_gradient_sync(True)
        return nullcontext()
    if kind == "ddp":
        return wrapped.no_sync()
    wrapped.set_requires_gradient_sync(False)
    return nullcontext()


def to_float(value: torch.Tensor) -> float:
    """A scalar that may be a DTensor (FSDP2's clipped gradient norm)."""
    return float(value.full_tensor() if _is_dtensor(value) else value)


# ---- full state out ------------------------------------------------------------------------
def full_model_state(model: nn.Module, kind: Parallel, ctx: DistContext) -> dict[str, torch.Tensor]:
    """The unwrapped network's state dict; with FSDP2 gathered (all ranks call; rank 0 gets it)."""
    if not is_sharded(kind, ctx):
        return model.state_dict()
    # deferred: DCP, for sharded runs only
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sharded DTensors (e.g. the EMA under FSDP2) gathered to full tensors; all ranks call."""
    return {name: value.full_tensor() if _is_dtensor(value) else value for name, value in tensors.items()}


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, kind: Parallel,
                         ctx: DistContext) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Optimizer moments keyed ``"{index}.{slot}"`` by the trainable parameter's position (the
    single-process format) and the param groups as JSON; FSDP2's name-keyed state is converted."""
    if not is_sharded(kind, ctx):
        return ckpt.optimizer_to_tensors(optimizer)
    # deferred: DCP, for sharded runs only
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not state:  # ranks other than 0 receive nothing
        return {}, []
    index = {name: i for i, name in enumerate(_trainable_names(model))}
    tensors = {f"{index[name]}.{slot}": torch.as_tensor(value)
               for name, slots in state["state"].items() for slot, value in slots.items()}
    groups = [{**group, "params": [index[name] for name in group["params"]]} for group in state["param_groups"]]
    return tensors, groups


# ---- full state in -------------------------------------------------------------------------
def load_model_state(model: nn.Module, tensors: dict[str, torch.Tensor], kind: Parallel, ctx: DistContext) -> None:
    """Load full tensors (every rank passes the same) into the plain or sharded network."""
    if not is_sharded(kind, ctx):
        model.load_state_dict(tensors, strict=True)
        return
    # deferred: DCP, for sharded runs only
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, tensors, options=StateDictOptions(full_state_dict=True, strict=True))


def like_shadow(shadow: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Full tensors laid out like ``shadow``: sharded where the shadow is a DTensor."""
    out = {}
    for name, value in tensors.items():
        target = shadow.get(name)
        if _is_dtensor(target) and value.shape == target.shape:
            # deferred: DTensor takes ~0.5 s to import
            from torch.distributed.tensor import distribute_tensor

            value = distribute_tensor(value.to(target.device), target.device_mesh, target.placements)
        out[name] = value
    return out


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         groups: list[dict], kind: Parallel, ctx: DistContext) -> None:
    if not is_sharded(kind, ctx):
        ckpt.optimizer_from_tensors(optimizer, tensors, groups)
        return
    # deferred: DCP, for sharded runs only
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = _trainable_names(model)
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        param, _, slot = key.partition(".")
        state.setdefault(names[int(param)], {})[slot] = value
    named_groups = [{**group, "params": [names[i] for i in group["params"]]} for group in groups]
    set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": named_groups},
                             options=StateDictOptions(full_state_dict=True))


def _trainable_names(model: nn.Module) -> list[str]:
    """Names in the optimizer's parameter order (the trainer passes the trainable parameters)."""
    return [name for name, param in model.named_parameters() if param.requires_grad]


def _is_dtensor(value: object) -> bool:
    # deferred: DTensor takes ~0.5 s to import
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)
