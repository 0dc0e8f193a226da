"""MaskDiT: the asymmetric encoder-decoder diffusion transformer (Zheng et al. 2024, sec. 3.1, Fig. 2).

The encoder (a DiT stack) sees only the tokens a Mask keeps, so its compute shrinks with the
mask ratio; the decoder entry maps them to the decoder width, learned mask tokens fill the
dropped positions, a fixed decoder position embedding is added and a light decoder runs on all
tokens. ``decoder_depth = 0`` gives plain DiT (Peebles & Xie 2023). ``spec.routing`` moves where
the Mask applies (deferred masking, token routing, sparse-deep training: see RoutingSpec); with
no mask every block sees every token. A GroupedMask (per-sample kept counts) runs one dense
forward per group and returns the outputs in batch order. This is the raw backbone F(x, c_noise, y);
preconditioning lives in :mod:`maskdit.core.denoiser`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from einops import rearrange
from torch import nn

from maskdit.core.blocks import DiTBlock
from maskdit.core.embeddings import PatchEmbed, TimestepEmbedder, sincos_2d
from maskdit.core.init_check import check_written, fill_nan_
from maskdit.core.layers import DecoderEntry, FinalLayer
from maskdit.core.registries import LABEL_EMBEDDERS
from maskdit.core.specs import ModelSpec
from maskdit.core.taps import BlockTaps
from maskdit.masking.grouped import GroupedMask
from maskdit.masking.mask import Mask

BlockFactory = Callable[..., nn.Module]
LabelEmbedderFactory = Callable[[int, int], nn.Module]


class MaskDiT(nn.Module):
    """Backbone ``net(x, noise_labels, labels=None, mask=None) -> [B, C_out, H, W]``.

    Modules are created on the meta device and then materialised on ``device`` and initialised
    from ``generator`` only (never the global RNG); on ``device='meta'`` nothing is allocated,
    which is how parameter counts of big presets are checked. A float parameter or buffer that
    ``init_weights`` (a block or label-embedder plugin's included) leaves unwritten is an
    :class:`~maskdit.core.init_check.UninitializedWeightsError` naming it. Position embeddings are frozen
    persistent buffers (they are in the reference checkpoints), not parameters.
    """

    _taps: BlockTaps | None = None  # set only inside ``tapping``

    def __init__(
        self,
        spec: ModelSpec,
        *,
        block: BlockFactory = DiTBlock,
        label_embedder: LabelEmbedderFactory | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        width, dec_width = spec.hidden_size, spec.decoder_hidden_size
        last_width = dec_width if spec.decoder_depth else width
        if label_embedder is None:
            label_embedder = LABEL_EMBEDDERS.build(spec.label_embedder)
        with torch.device("meta"):
            self.x_embedder = PatchEmbed(spec.in_channels, width, spec.patch_size)
            self.t_embedder = TimestepEmbedder(width)
            self.y_embedder = label_embedder(spec.num_classes, width) if spec.num_classes else None
            self.register_buffer("pos_embed", torch.empty(1, spec.num_tokens, width))
            self.blocks = nn.ModuleList(
                block(width, spec.num_heads, cond_dim=width, mlp_ratio=spec.mlp_ratio, qk_norm=spec.qk_norm)
                for _ in range(spec.depth)
            )
            routing = spec.routing
            if routing.rejoins and routing.fill == "mask_token":
                # fixed (not learned) padding token, as in SPRINT's code; persistent, so it is saved
                self.register_buffer("route_mask_token", torch.empty(1, 1, width))
            if routing.rejoins and routing.fuse == "concat":
                self.route_fuse = nn.Linear(2 * width, width)  # [rejoined, dense-shallow] -> width
            if spec.decoder_depth:
                self.decoder_layer = DecoderEntry(width, dec_width, cond_dim=width)
                self.mask_token = nn.Parameter(torch.empty(1, 1, dec_width))
                self.register_buffer("decoder_pos_embed", torch.empty(1, spec.num_tokens, dec_width))
                self.decoder_blocks = nn.ModuleList(
                    block(dec_width, spec.decoder_num_heads, cond_dim=width, mlp_ratio=spec.mlp_ratio,
                          qk_norm=spec.qk_norm)
                    for _ in range(spec.decoder_depth)
                )
            self.final_layer = FinalLayer(last_width, spec.patch_size**2 * spec.out_channels, cond_dim=width)
        device = torch.device("cpu" if device is None else device)
        if device.type != "meta":
            self.to_empty(device=device)
            fill_nan_(self)  # so a tensor init_weights (a plugin's, say) leaves unwritten is found
            self.init_weights(generator)
            check_written(self, spec)

    @property
    def has_decoder(self) -> bool:
        return self.spec.decoder_depth > 0

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """DiT / MaskDiT initialisation; every tensor is written, randomness only from ``generator``."""
        spec = self.spec
        with torch.no_grad():
            self.pos_embed.copy_(sincos_2d(spec.hidden_size, spec.grid_size)[None])
            proj = self.x_embedder.proj
            nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1), generator=generator)
            nn.init.zeros_(proj.bias)
            for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
                nn.init.normal_(layer.weight, std=0.02, generator=generator)
                nn.init.zeros_(layer.bias)
            if self.y_embedder is not None:
                self.y_embedder.init_weights(generator)
            for block in self.blocks:
                block.init_weights(generator)
            if hasattr(self, "route_mask_token"):
                nn.init.normal_(self.route_mask_token, std=0.02, generator=generator)
            if hasattr(self, "route_fuse"):
                nn.init.xavier_uniform_(self.route_fuse.weight, generator=generator)
                nn.init.zeros_(self.route_fuse.bias)
            if self.has_decoder:
                self.decoder_layer.init_weights(generator)
                nn.init.normal_(self.mask_token, std=0.02, generator=generator)
                self.decoder_pos_embed.copy_(sincos_2d(spec.decoder_hidden_size, spec.grid_size)[None])
                for block in self.decoder_blocks:
                    block.init_weights(generator)
            self.final_layer.init_weights(generator)

    def condition(self, noise_labels: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """c = t_emb(noise_labels) + y_emb(labels): [B, hidden]. ``labels=None`` means the null label."""
        c = self.t_embedder(noise_labels)
        if self.y_embedder is None:
            if labels is not None and labels.numel() and bool((labels != 0).any()):
                raise ValueError("this model is unconditional (num_classes = 0): pass labels=None or all zeros")
            return c
        if labels is None:
            labels = torch.full_like(noise_labels, self.spec.num_classes, dtype=torch.long)
        if labels.shape != noise_labels.shape:
            raise ValueError(f"labels {tuple(labels.shape)} and noise labels {tuple(noise_labels.shape)} must both be [B]")
        return c + self.y_embedder(labels)

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        labels: torch.Tensor | None = None,
        mask: Mask | GroupedMask | None = None,
    ) -> torch.Tensor:
        spec = self.spec
        expected = (spec.in_channels, spec.input_size, spec.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected input [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
        if mask is not None and not isinstance(mask, (Mask, GroupedMask)):
            raise TypeError(f"mask must be a maskdit Mask, GroupedMask or None, got {type(mask).__name__}"
                            + (" (for a bool [B, L] drop pattern use Mask.from_dropped(dropped))"
                               if isinstance(mask, torch.Tensor) else ""))
        if mask is not None and (mask.batch_size != x.shape[0] or mask.num_tokens != spec.num_tokens):
            raise ValueError(f"{mask} does not fit a batch of {x.shape[0]} with {spec.num_tokens} tokens")
        if isinstance(mask, GroupedMask):
            # one K per group keeps each group's tokens dense; samples are independent, so this
            # equals running each sample with its own mask: [B_g, C, H, W] per group -> [B, C, H, W]
            return mask.run(lambda group, *rows: self.forward(*rows, mask=group), x, noise_labels, labels)
        if mask is not None and mask.num_kept == 0 and not spec.routing.rejoins:
            raise ValueError(f"{mask} keeps no token (path drop), which needs a routing whose dropped tokens rejoin "
                             "(routing.end): this model's encoder would see nothing")
        masked = mask is not None and not mask.is_identity

        tokens = self.x_embedder(x) + self.pos_embed  # [B, L, D]
        c = self.condition(noise_labels, labels)  # [B, D]
        tokens = self.encode(tokens, c, mask if masked else None)  # [B, L, D], or [B, K, D] if never rejoined
        masked = masked and not spec.routing.rejoins  # rejoined: every position holds a real token again
        if self.has_decoder:
            tokens = self.decoder_layer(tokens, c)  # [B, K, D_dec]
            if masked:
                tokens = mask.scatter(tokens, self.mask_token)  # [B, L, D_dec], mask tokens at dropped positions
            tokens = tokens + self.decoder_pos_embed
            for block in self.decoder_blocks:
                tokens = block(tokens, c)
            out = self.final_layer(tokens, c)  # [B, L, p*p*C_out]
        else:
            out = self.final_layer(tokens, c)  # [B, K, p*p*C_out]
            if masked:
                out = mask.scatter(out, 0.0)  # [B, L, p*p*C_out]: no prediction at dropped positions
        return self.unpatchify(out)

    @contextmanager
    def tapping(self, blocks: Iterable[int]) -> Iterator[BlockTaps]:
        """Record the tokens after encoder blocks ``blocks`` during the forward pass run inside
        the ``with`` (one pass; :meth:`BlockTaps.resolve` gives them with their positions)."""
        if self._taps is not None:
            raise RuntimeError("this backbone is already being tapped; taps do not nest")
        taps = BlockTaps(blocks, len(self.blocks), (self.spec.grid_size, self.spec.grid_size))
        self._taps = taps
        try:
            yield taps
        finally:
            del self._taps  # back to the class default: None

    def encode(self, tokens: torch.Tensor, c: torch.Tensor, mask: Mask | None) -> torch.Tensor:
        """The encoder blocks, with the kept tokens alone in blocks [start, end) of ``spec.routing``.

        tokens [B, L, D] -> [B, L, D]; with a mask and no ``end``: [B, K, D] (the dropped tokens
        never come back inside the encoder). The dropped tokens skip the sparse span entirely.
        """
        routing, sparse_blocks = self.spec.routing, self.spec.sparse_blocks
        left = tokens  # the sequence where tokens leave (TREAD's fill, SPRINT's dense-shallow output)
        for index, block in enumerate(self.blocks):
            if index == sparse_blocks.start:
                left = tokens
                if mask is not None:
                    tokens = mask.gather(tokens)  # [B, K, D]
            if tokens.shape[1]:  # a path-dropped sample (nothing kept) skips the sparse span
                tokens = block(tokens, c)
            if self._taps is not None and index in self._taps.blocks:
                sparse = mask is not None and index in sparse_blocks
                self._taps.record(index, tokens, mask.ids_keep if sparse else None)  # [B, K or L, D]
            if routing.rejoins and index == sparse_blocks.stop - 1:
                tokens = self.rejoin(tokens, left, mask)  # [B, L, D]
        return tokens

    def rejoin(self, tokens: torch.Tensor, left: torch.Tensor, mask: Mask | None) -> torch.Tensor:
        """Put the dropped tokens back after the sparse span: [B, K, D] (+ [B, L, D]) -> [B, L, D]."""
        routing = self.spec.routing
        if mask is not None:
            fill = left if routing.fill == "exit" else self.route_mask_token
            tokens = mask.scatter(tokens, fill)  # [B, L, D]
        if routing.fuse == "concat":
            tokens = self.route_fuse(torch.cat([tokens, left], dim=-1))  # [B, L, 2D] -> [B, L, D]
        return tokens

    def unpatchify(self, out: torch.Tensor) -> torch.Tensor:
        """[B, L, p*p*C] -> [B, C, H, W]; channels vary fastest inside a patch, as in DiT."""
        p, grid = self.spec.patch_size, self.spec.grid_size
        return rearrange(out, "b (h w) (p q c) -> b c (h p) (w q)", h=grid, w=grid, p=p, q=p)
