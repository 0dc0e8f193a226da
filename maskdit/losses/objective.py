"""The training objective: noise a batch, run the denoiser once, sum the weighted loss terms."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from maskdit.losses.heads import backbone_of, training_heads
from maskdit.losses.inputs import LossInputs
from maskdit.losses.label_dropout import drop_labels
from maskdit.losses.patches import infer_patch_size
from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask

LossTerm = Callable[[LossInputs], torch.Tensor]


@dataclass(frozen=True)
class WeightedTerm:
    """One term of the objective: its name (the key in ``parts``), weight and callable."""

    name: str
    weight: float
    term: LossTerm


@dataclass(frozen=True, eq=False)
class ObjectiveOutput:
    """total: sum of weight * part [B]; parts: term name -> unweighted per-sample values [B];
    sigma [B], mask and labels (after dropout) as the denoiser saw them, for logging."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]
    sigma: torch.Tensor
    mask: Mask | GroupedMask | None
    labels: torch.Tensor | None


class Objective:
    """``objective(denoiser, y, labels=None, *, sigma=None, noise=None, mask=None, generator=None)``.

    Draws, in this order and from ``generator`` only, whatever is not passed in: sigma [B]
    from the noise distribution, unit noise shaped like y (x_t = y + sigma * noise, EDM eq. 2),
    label dropout (probability ``label_dropout``, null = ``num_classes``), and the mask from
    the masking strategy on the (H / p) x (W / p) token grid. Draws happen on the generator's
    device and are then moved to y's (a CPU generator gives the same draws for CUDA data).
    With ``rows`` and ``total``, ``y`` holds rows ``rows`` of a batch of ``total`` samples (one
    rank's share of a data-parallel micro-batch): every draw is made for the whole batch, in the
    same order, and these rows of it are used, so the ranks together see exactly what a single
    process draws and every rank's generator stays in the same state.
    Then one denoiser call D(x_t; sigma, labels, mask) (an all-kept mask is passed as None:
    the inference path), and every term on the result. When the masking gives samples different
    kept counts (a noise-adaptive ratio schedule), the mask is a GroupedMask: the denoiser still
    gets one call with it (the backbone runs each group as one dense tensor and returns the
    outputs in batch order), and the terms see each sample's own mask. The patch size p comes
    from the mask's token count and the image size (p^2 = H W / L), checked against ``patch_size`` when that
    is given; drawing a mask needs ``patch_size``.

    ``pixels``: when y are latents, the clean images they encode [B, 3, R, R] in [-1, 1], handed to
    the terms that read images (``reads_pixels``: REPA's encoder); nothing is drawn for them.

    ``patch_size`` and ``num_classes`` left as None are taken from the denoiser on each call
    (its ``patch_size`` / ``num_classes`` attributes, as :class:`~maskdit.core.Denoiser` has);
    given ones must agree with the denoiser's, and so must a term's ``sigma_data`` with the
    denoiser's (EDM's loss weight and preconditioning share it, Karras et al. 2022, Table 1).
    A mismatch raises ValueError naming the objective's and the model's values, instead of,
    say, training label 5 of a 10-class model as the null label of a 5-class objective.
    """

    def __init__(
        self,
        terms: Sequence[WeightedTerm],
        noise: Callable[..., torch.Tensor],
        *,
        masking: Callable[..., Mask | GroupedMask] | None = None,
        patch_size: int | None = None,
        label_dropout: float = 0.0,
        num_classes: int | None = None,
    ) -> None:
        terms = tuple(terms)
        if not terms:
            raise ValueError("an objective needs at least one loss term")
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"loss term names must be unique, got {names}")
        if any(not (t.weight >= 0) for t in terms):
            raise ValueError(f"loss term weights must be >= 0, got {[t.weight for t in terms]}")
        if not 0.0 <= label_dropout <= 1.0:
            raise ValueError(f"label_dropout must be in [0, 1], got {label_dropout!r}")
        if patch_size is not None and (not isinstance(patch_size, int) or patch_size < 1):
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 0):
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.terms = terms
        # blocks whose tokens some term reads (REPA), handed out of the denoiser's own forward pass
        self.tapped_blocks = tuple(sorted({b for t in terms for b in getattr(t.term, "blocks", ())}))
        # whether some term reads the clean images (REPA's encoder): on latents they come as ``pixels``
        self.reads_pixels = any(getattr(t.term, "reads_pixels", False) for t in terms)
        self.noise = noise
        self.masking = masking
        self.patch_size = patch_size
        self.label_dropout = float(label_dropout)
        self.num_classes = num_classes

    def reads_pixels_at(self, step: int | None) -> bool:
        """Whether a term reads the clean images at ``step``: one that reads them and is on then
        (a term's ``active(step)``, REPA's ``until_step``), so a trainer fetches no crops it would drop."""
        return any(getattr(t.term, "reads_pixels", False) and _active(t.term, step) for t in self.terms)

    def __call__(
        self,
        denoiser: Any,
        y: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        sigma: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        mask: Mask | GroupedMask | None = None,
        generator: torch.Generator | None = None,
        step: int | None = None,
        rows: slice | None = None,
        total: int | None = None,
        pixels: torch.Tensor | None = None,
    ) -> ObjectiveOutput:
        if not isinstance(y, torch.Tensor) or y.ndim != 4 or not y.is_floating_point():
            raise ValueError(f"y must be a floating tensor [B, C, H, W], got {_describe(y)}")
        batch, _, height, width = y.shape
        if pixels is not None:
            if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4 or not pixels.is_floating_point() \
                    or pixels.shape[0] != batch:
                raise ValueError(f"pixels must be a floating tensor [B={batch}, C, H, W] (the clean images of y), "
                                 f"got {_describe(pixels)}")
            pixels = pixels.to(y.device)
        rows, total = _rows_of(rows, total, batch, given=(sigma, noise, mask))
        draw_on = generator.device if generator is not None else y.device  # draws happen where the generator lives
        patch_size, num_classes = self._agree_with(denoiser)
        labels = self._check_labels(labels, batch, num_classes)
        sigma = self._sigma(sigma, total, y, generator, draw_on)  # [N] on draw_on, or the given [B]
        noise = self._noise(noise, (total, *y.shape[1:]), y, generator, draw_on)[rows].to(y.device)  # [N] -> [B]
        if labels is not None and self.label_dropout > 0 and num_classes:
            labels = drop_labels(labels.to(draw_on), self.label_dropout, num_classes, generator=generator,
                                 rows=rows, total=total)
            labels = labels.to(y.device)
        mask = self._mask(mask, total, (height, width), sigma, step, generator, draw_on, patch_size)
        if mask is not None and mask.batch_size != batch:
            mask = mask.rows(rows)
        if mask is not None and mask.dropped.device != y.device:
            mask = mask.to(y.device)
        sigma = sigma[rows].to(y.device)
        if mask is not None:
            patch_size = infer_patch_size((height, width), mask.num_tokens, patch_size)
        model_mask = None if mask is None or mask.is_identity else mask
        noisy = y + sigma.view(-1, 1, 1, 1) * noise  # [B] -> [B, 1, 1, 1] broadcast
        heads = self._heads_of(denoiser)
        hidden = {}
        if self.tapped_blocks:
            with backbone_of(denoiser).tapping(self.tapped_blocks) as taps:
                denoised = denoiser(noisy, sigma, labels=labels, mask=model_mask)
            hidden = taps.resolve(model_mask)
        else:
            denoised = denoiser(noisy, sigma, labels=labels, mask=model_mask)
        if not isinstance(denoised, torch.Tensor) or denoised.shape != y.shape:
            raise ValueError(
                f"the denoiser must return a tensor shaped like y {tuple(y.shape)}, got {_describe(denoised)}"
            )
        inputs = LossInputs(y=y, noisy=noisy, sigma=sigma, denoised=denoised, mask=model_mask, patch_size=patch_size,
                            step=step, hidden=hidden, heads=heads, pixels=pixels)
        parts = {t.name: t.term(inputs) for t in self.terms}
        weighted = sum(t.weight * parts[t.name] for t in self.terms)
        return ObjectiveOutput(total=weighted, parts=parts, sigma=sigma, mask=model_mask, labels=labels)

    # ---- inputs ---------------------------------------------------------------------------
    def _agree_with(self, denoiser: Any) -> tuple[int | None, int | None]:
        """(patch_size, num_classes) for this call: the objective's, else the denoiser's; they must agree."""
        resolved = []
        for name in ("patch_size", "num_classes"):
            ours, theirs = getattr(self, name), _int_attribute(denoiser, name)
            if ours is not None and theirs is not None and ours != theirs:
                raise ValueError(f"the objective has {name}={ours} but the denoiser's {name} is {theirs}; build the "
                                 f"objective with {name}={theirs} or leave it None to take the denoiser's")
            resolved.append(ours if ours is not None else theirs)
        model_sigma_data = getattr(denoiser, "sigma_data", None)
        if isinstance(model_sigma_data, float):
            for t in self.terms:
                term_sigma_data = getattr(t.term, "sigma_data", None)
                if isinstance(term_sigma_data, float) and term_sigma_data != model_sigma_data:
                    raise ValueError(f"the objective's {t.name} term has sigma_data={term_sigma_data:g} but the "
                                     f"denoiser's sigma_data is {model_sigma_data:g}; they must be the same")
        return resolved[0], resolved[1]

    def _heads_of(self, denoiser: Any) -> Any:
        """The denoiser's training heads; each term that trains one must find it there."""
        heads = training_heads(denoiser)
        missing = [t.name for t in self.terms if hasattr(t.term, "make_head") and t.term.name not in heads]
        if missing:
            raise ValueError(f"the loss term(s) {missing} train a head (e.g. REPA's projector) that the denoiser does "
                             f"not have: call maskdit.losses.attach_heads(denoiser, objective) once before training, "
                             f"and give the optimizer the denoiser's parameters after that")
        return heads

    def _check_labels(self, labels: torch.Tensor | None, batch: int, num_classes: int | None) -> torch.Tensor | None:
        if labels is None:
            return None
        if not isinstance(labels, torch.Tensor) or labels.shape != (batch,) or labels.is_floating_point() \
                or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor [B={batch}], got {_describe(labels)}")
        if num_classes is None:
            if self.label_dropout > 0:
                raise ValueError("label dropout needs num_classes (the null label); pass num_classes=... or call "
                                 "the objective with a denoiser that has num_classes")
            return labels
        if bool((labels < 0).any()) or bool((labels > num_classes).any()):
            raise ValueError(f"labels must lie in [0, {num_classes}] ({num_classes} = null)")
        return labels

    def _sigma(self, sigma, batch, y, generator, draw_on) -> torch.Tensor:
        if sigma is None:
            return self.noise(batch, generator=generator, device=draw_on, dtype=y.dtype)
        if not isinstance(sigma, torch.Tensor) or sigma.shape != (batch,):
            raise ValueError(f"sigma must be a tensor [B={batch}], got {_describe(sigma)}")
        if not bool(torch.isfinite(sigma).all()) or bool((sigma <= 0).any()):
            raise ValueError("sigma must hold finite, positive noise levels (got NaN, inf or <= 0)")
        return sigma.to(y.dtype)

    def _noise(self, noise, shape, y, generator, draw_on) -> torch.Tensor:
        if noise is None:
            return torch.randn(shape, generator=generator, device=draw_on, dtype=y.dtype)
        if not isinstance(noise, torch.Tensor) or noise.shape != y.shape:
            raise ValueError(f"noise must be shaped like y {tuple(y.shape)}, got {_describe(noise)}")
        if not bool(torch.isfinite(noise).all()):
            raise ValueError("noise contains NaN or infinite values")
        return noise.to(y.dtype)

    def _mask(self, mask, batch, image_hw, sigma, step, generator, device, patch_size) -> Mask | GroupedMask | None:
        if mask is not None:
            if not isinstance(mask, (Mask, GroupedMask)) or mask.batch_size != batch:
                raise ValueError(f"mask must be a Mask or GroupedMask for a batch of {batch}, got {mask!r}")
            return mask
        if self.masking is None:
            return None
        if patch_size is None:
            raise ValueError("drawing a mask needs the patch size: build the objective with patch_size=... or call "
                             "it with a denoiser that has patch_size")
        height, width = image_hw
        if height % patch_size or width % patch_size:
            raise ValueError(f"a {height}x{width} input does not tile into {patch_size}x{patch_size} patches")
        grid = (height // patch_size, width // patch_size)
        return self.masking(batch, grid, sigma=sigma.to(device), step=step, generator=generator, device=device)

    def __repr__(self) -> str:
        terms = " + ".join(f"{t.weight:g}*{t.name}" for t in self.terms)
        return (f"Objective({terms}, noise={self.noise!r}, masking={self.masking!r}, patch_size={self.patch_size}, "
                f"label_dropout={self.label_dropout:g}, num_classes={self.num_classes})")


def _rows_of(rows: slice | None, total: int | None, batch: int, *, given: tuple) -> tuple[slice, int]:
    """(rows, total) of a call: the whole batch unless the caller holds rows of a larger one."""
    if rows is None and total is None:
        return slice(0, batch), batch
    if rows is None or total is None or not isinstance(rows, slice) or rows.step not in (None, 1):
        raise ValueError(f"rows and total go together: rows=slice(start, stop) of a batch of total samples, "
                         f"got rows={rows!r}, total={total!r}")
    if rows.stop - rows.start != batch or not 0 <= rows.start < rows.stop <= total:
        raise ValueError(f"rows {rows.start}:{rows.stop} of {total} do not match a batch of {batch}")
    if any(value is not None for value in given):
        raise ValueError("rows draw sigma, noise and the mask for the whole batch; pass sigma / noise / mask "
                         "without rows")
    return rows, total


def _active(term: Any, step: int | None) -> bool:
    """A term is on at ``step`` unless its ``active(step)`` says otherwise."""
    active = getattr(term, "active", None)
    return bool(active(step)) if callable(active) else True


def _int_attribute(obj: Any, name: str) -> int | None:
    value = getattr(obj, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
