"""Analytic compute count of a MaskDiT / DiT forward pass, per sample.

Counted as multiply-adds of every matrix product and convolution (DiT's convention, Peebles &
Xie 2023, Table 4: DiT-XL/2 = 118.6 GFLOPs at 256 tokens); normalisations, softmax, GELU, bias
adds and the other elementwise operations are left out. ``torch.utils.flop_counter`` counts
2 FLOPs per multiply-add, i.e. exactly twice these numbers. A training step (forward + backward)
is counted as 3 forwards, the usual rule (Kaplan et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

from maskdit.core.specs import ModelSpec
from maskdit.masking.strategies import num_kept as kept_tokens


@dataclass(frozen=True)
class FlopBreakdown:
    """Multiply-adds per sample of each part of one forward pass."""

    embed: int
    encoder: int
    decoder: int
    head: int

    @property
    def total(self) -> int:
        return self.embed + self.encoder + self.decoder + self.head


def block_macs(tokens: int, width: int, cond_dim: int, mlp_ratio: float = 4.0) -> int:
    """One adaLN-Zero block on ``tokens`` tokens: qkv + proj + MLP + attention + adaLN Linear."""
    mlp_hidden = int(width * mlp_ratio)
    linears = tokens * (4 * width * width + 2 * width * mlp_hidden)
    attention = 2 * tokens * tokens * width  # Q K^T and A V over all heads
    return linears + attention + cond_dim * 6 * width


def forward_breakdown(spec: ModelSpec, *, mask_ratio: float = 0.0, path_dropped: bool = False) -> FlopBreakdown:
    """Multiply-adds per sample of a forward pass with a mask dropping ``mask_ratio`` of the tokens.

    Follows ``spec.routing``: encoder blocks [start, end) run on int(L (1 - r)) tokens, as the
    reference's masking keeps, the other blocks on all L; SPRINT's fusion Linear runs on all L.
    Where the dropped tokens never rejoin, the decoder entry (or, without a decoder, the head)
    sees only the kept ones; the decoder always runs on all L (``mask_ratio = 0`` is the
    inference cost). ``path_dropped``: the sample keeps no token (path drop, SPRINT), so the
    blocks [start, end) do not run at all (``mask_ratio`` is then not used); needs ``routing.end``.
    """
    tokens = spec.num_tokens
    routing = spec.routing
    if path_dropped and not routing.rejoins:
        raise ValueError("a path-dropped forward needs a routing whose dropped tokens rejoin (routing.end)")
    kept = 0 if path_dropped else kept_tokens(tokens, mask_ratio)
    sparse_blocks = spec.sparse_blocks
    width, dec_width = spec.hidden_size, spec.decoder_hidden_size
    out_features = spec.patch_size**2 * spec.out_channels
    patch = tokens * width * spec.in_channels * spec.patch_size**2
    time = 256 * width + width * width
    encoder = sum(
        block_macs(kept if index in sparse_blocks else tokens, width, width, spec.mlp_ratio)
        for index in range(spec.depth)
        if not (path_dropped and index in sparse_blocks)  # the backbone skips a span that keeps nothing
    )
    if routing.rejoins and routing.fuse == "concat":
        encoder += tokens * 2 * width * width
    leaving = tokens if routing.rejoins else kept  # tokens at the encoder's output
    if spec.decoder_depth:
        entry = width * 2 * width + leaving * width * dec_width
        decoder = entry + spec.decoder_depth * block_macs(tokens, dec_width, width, spec.mlp_ratio)
        head = width * 2 * dec_width + tokens * dec_width * out_features
    else:
        decoder = 0
        head = width * 2 * width + leaving * width * out_features
    return FlopBreakdown(embed=patch + time, encoder=encoder, decoder=decoder, head=head)


def flops_per_forward(spec: ModelSpec, *, mask_ratio: float = 0.0, path_dropped: bool = False) -> int:
    """Multiply-adds per sample of one forward pass (DiT's 'GFLOPs' x 1e9); ``path_dropped``: with
    the sparse span dropped (see :func:`forward_breakdown`)."""
    return forward_breakdown(spec, mask_ratio=mask_ratio, path_dropped=path_dropped).total


def training_flops(spec: ModelSpec, *, mask_ratio: float = 0.0, path_drop: float = 0.0) -> int:
    """Multiply-adds per sample of a training step (forward + backward = 3 forwards); with path
    drop probability ``path_drop``, the expectation over dropped and kept paths (rounded)."""
    forward = flops_per_forward(spec, mask_ratio=mask_ratio)
    if path_drop:
        if not 0.0 <= path_drop <= 1.0:
            raise ValueError(f"path_drop must be a probability in [0, 1], got {path_drop}")
        dropped = flops_per_forward(spec, path_dropped=True)
        return round(3 * ((1.0 - path_drop) * forward + path_drop * dropped))
    return 3 * forward


def sampling_flops(spec: ModelSpec, *, guidance: bool = False, path_drop: bool = False) -> int:
    """Multiply-adds per sample of one network evaluation while sampling (all tokens): one forward;
    with guidance two, the weak one path-dropped with ``path_drop`` (path-drop guidance, SPRINT)."""
    full = flops_per_forward(spec, mask_ratio=0.0)
    if path_drop and not guidance:
        raise ValueError("path_drop is the weak branch of guidance: pass guidance=True too")
    if not guidance:
        return full
    return full + (flops_per_forward(spec, path_dropped=True) if path_drop else full)
