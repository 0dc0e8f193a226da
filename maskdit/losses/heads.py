"""Training heads: small modules a loss term trains with the model and inference never uses
(REPA's projector, Yu et al. 2025, sec. 3).

A head lives on the denoiser as ``denoiser.heads[term_name]`` so that the optimizer, the
checkpoints, resuming and data parallelism treat it as part of the trained model with no special
case. It sits beside the backbone (``denoiser.net``), never inside it: exports and sampling read
the backbone's weights only, and a run's checkpoint keys for heads all start with ``heads.``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

HEADS_PREFIX = "heads."


def unwrap(model: Any) -> Any:
    """The module under DDP's ``.module`` and torch.compile's ``._orig_mod`` wrappers."""
    while True:
        inner = getattr(model, "module", None) if isinstance(model, nn.parallel.DistributedDataParallel) else None
        inner = inner if inner is not None else getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def backbone_of(model: Any) -> Any:
    """The backbone that hands out block tokens (has ``tapping``): the model itself or its ``.net``."""
    model = unwrap(model)
    for candidate in (model, getattr(model, "net", None)):
        if candidate is not None and callable(getattr(candidate, "tapping", None)):
            return candidate
    raise TypeError(f"a term that reads block tokens needs a maskdit backbone (a MaskDiT, or a denoiser whose .net "
                    f"is one); got {type(model).__name__}")


def training_heads(model: Any) -> Mapping[str, nn.Module]:
    """The heads attached to ``model`` (empty when none)."""
    heads = getattr(unwrap(model), "heads", None)
    return dict(heads) if isinstance(heads, nn.ModuleDict) else {}


def attach_heads(denoiser: nn.Module, terms: Iterable[Any], *, generator: torch.Generator | None = None) -> nn.Module:
    """Give ``denoiser`` the head of every term that has one (a ``make_head(backbone, generator)``
    method), under the term's ``name``, initialised from ``generator`` only. ``terms`` are loss
    term objects, or :class:`~maskdit.losses.objective.WeightedTerm` / Objectives holding them.
    A name already attached keeps its head (the phases of a run share it) if the shapes agree."""
    backbone = backbone_of(denoiser)
    if not isinstance(terms, Iterable) or hasattr(terms, "terms") or hasattr(terms, "objective"):
        terms = [terms]  # one objective or term
    for name, term in _terms(terms):
        make_head = getattr(term, "make_head", None)
        if make_head is None:
            continue
        head = make_head(backbone, generator)
        attached = training_heads(denoiser).get(name)
        if attached is not None:
            old = {k: v.shape for k, v in attached.state_dict().items()}
            new = {k: v.shape for k, v in head.state_dict().items()}
            if old != new:
                raise ValueError(f"two phases give the loss term {name!r} heads of different shapes; a run's phases "
                                 f"share one head per term name")
            continue
        put_head(denoiser, name, head)
    return denoiser


def put_head(denoiser: nn.Module, name: str, head: nn.Module) -> None:
    """Set ``denoiser.heads[name] = head``, on the device of the denoiser's backbone."""
    if not hasattr(denoiser, "heads"):
        denoiser.heads = nn.ModuleDict()
    param = next(backbone_of(denoiser).parameters(), None)
    denoiser.heads[name] = head.to(param.device) if param is not None else head


def split_heads(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the model's tensors, the heads' tensors) of a state dict: inference loads the first only."""
    model = {k: v for k, v in tensors.items() if not k.startswith(HEADS_PREFIX)}
    heads = {k: v for k, v in tensors.items() if k.startswith(HEADS_PREFIX)}
    return model, heads


def _terms(items: Iterable[Any]) -> Iterable[tuple[str, Any]]:
    for item in items:
        inner = getattr(item, "terms", None)
        wrapped = getattr(item, "objective", None)
        if inner is not None:  # an Objective (or anything holding weighted terms)
            yield from _terms(inner)
        elif wrapped is not None:  # a wrapper of an objective (an unconditional model's WithoutLabels)
            yield from _terms([wrapped])
        elif hasattr(item, "term") and hasattr(item, "name"):  # a WeightedTerm
            yield item.name, item.term
        else:
            yield getattr(item, "name", type(item).__name__), item
