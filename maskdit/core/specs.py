"""The model section of a spec: a MaskDiT encoder-decoder (decoder depth 0 = plain DiT) and where
a Mask applies in it (``routing``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from maskdit.config.registry import name_of, one_of
from maskdit.config.spec_model import SpecModel
from maskdit.core import registries as _registries  # noqa: F401  (registers the built-in blocks first)
from maskdit.core.presets import MODEL_PRESETS
from maskdit.core.process_specs import PRECOND_PROCESS, EDMProcessSpec


class RoutingSpec(SpecModel):
    """Where the training Mask applies in the encoder: one setting per token-sparsity method.

    Encoder blocks ``[start, end)`` run on the kept tokens only; the others on all tokens.

    - MaskDiT (Zheng et al. 2024): ``start 0`` (drop right after the patch embedding), no ``end``;
      the decoder fills the dropped positions with its mask token.
    - Deferred masking (MicroDiT, Sehwag et al. 2024, sec. 3): ``start m``: the first m blocks
      are the patch-mixer over all tokens; no ``end``, no decoder: only kept tokens are predicted.
    - Token routing (TREAD, Krause et al. 2025, sec. 3): ``start a, end b, fill 'exit'``: the
      dropped tokens skip blocks a..b-1 and re-enter with their representation from before block a.
    - Sparse-deep (SPRINT, Park et al. 2025, sec. 3): ``start a, end b, fill 'mask_token',
      fuse 'concat'``: dropped positions are padded with a mask token and the sequence is fused
      with the dense-shallow output (Linear of the concatenation) before the dense blocks b...
    """

    start: int = Field(0, ge=0, le=128, description="first encoder block that sees only the kept tokens "
                                                     "(0: tokens leave right after the patch embedding)")
    end: int | None = Field(None, ge=1, le=128, description="first block after the sparse span: the dropped "
                                                             "tokens rejoin before it (None: never inside the encoder)")
    fill: Literal["exit", "mask_token"] = Field(
        "exit", description="what fills the dropped positions where they rejoin: their own representation "
                            "from where they left (TREAD) or a fixed mask token (SPRINT)")
    fuse: Literal["none", "concat"] = Field(
        "none", description="'concat': Linear([rejoined, representation where tokens left]) (SPRINT's residual fusion)")

    @model_validator(mode="after")
    def _span(self) -> RoutingSpec:
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"routing.end ({self.end}) must lie after routing.start ({self.start})")
        if self.end is None and (self.fill != "exit" or self.fuse != "none"):
            raise ValueError("routing.fill and routing.fuse apply where dropped tokens rejoin: set routing.end")
        return self

    @property
    def rejoins(self) -> bool:
        """True when the dropped tokens come back inside the encoder (every token reaches the output)."""
        return self.end is not None

    @property
    def loss_tokens(self) -> Literal["visible", "all"]:
        """What the denoising loss covers by default: every token when they all reach the output
        through the encoder (TREAD, SPRINT), else only those the encoder saw (MaskDiT, MicroDiT)."""
        return "all" if self.rejoins else "visible"


class ModelSpec(SpecModel):
    """Architecture. ``preset`` fills every architecture field not given explicitly."""

    preset: str | None = Field(None, description="named architecture, e.g. 'MaskDiT-S/2' or 'DiT-XL/2'")
    input_size: int = Field(32, ge=1, le=1024, description="side of the (latent) input, in pixels")
    in_channels: int = Field(4, ge=1, le=64, description="channels of the (latent) input")
    patch_size: int = Field(2, ge=1, le=64, description="side of a square patch token")
    depth: int = Field(12, ge=1, le=128, description="encoder blocks")
    hidden_size: int = Field(384, ge=8, le=8192, description="encoder width")
    num_heads: int = Field(6, ge=1, le=128, description="encoder attention heads")
    mlp_ratio: float = Field(4.0, gt=0, le=16, description="MLP hidden width / block width")
    decoder_depth: int = Field(8, ge=0, le=128, description="decoder blocks; 0 = plain DiT")
    decoder_hidden_size: int = Field(512, ge=8, le=8192, description="decoder width")
    decoder_num_heads: int = Field(16, ge=1, le=128, description="decoder attention heads")
    num_classes: int = Field(1000, ge=0, le=1_000_000, description="label classes; 0 = unconditional")
    label_embedder: name_of("label_embedder") = Field(
        "onehot", description="'table': DiT's table with a learned null row; 'onehot': reference MaskDiT"
    )
    block: name_of("block") = Field("dit", description="transformer block plugin")
    learn_sigma: bool = Field(False, description="also predict a variance (2C output channels), as DiT does")
    qk_norm: bool = Field(False, description="LayerNorm on queries and keys (guards against late-training NaNs)")
    process: one_of("process") = Field(
        EDMProcessSpec(), description="the noising process and what the network predicts: 'edm' (EDM preconditioning, "
                                      "Karras et al. 2022), 'vp' (DDPM epsilon, DiT), 'flow' (linear interpolant, SiT / REPA)")
    routing: RoutingSpec = Field(RoutingSpec(), description="where a training mask applies in the encoder "
                                                            "(default: MaskDiT's, right after the embedding)")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if not isinstance(name, str) or name not in MODEL_PRESETS:  # a list would be unhashable
                raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(MODEL_PRESETS)}")
            preset = MODEL_PRESETS[name]
            process = data.get("process")
            if isinstance(process, dict) and isinstance(preset.get("process"), dict) \
                    and process.get("name", preset["process"]["name"]) == preset["process"]["name"]:
                # the same process: fields given win one by one (SiT-XL/2 with an x0 prediction stays in SiT's time)
                data = {**data, "process": {**preset["process"], **process}}
            data = {**preset, **data}
        return _fold_precond(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.input_size % self.patch_size:
            raise ValueError(f"input_size {self.input_size} is not divisible by patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.decoder_depth and self.decoder_hidden_size % self.decoder_num_heads:
            raise ValueError(
                f"decoder_hidden_size {self.decoder_hidden_size} is not divisible by "
                f"decoder_num_heads {self.decoder_num_heads}"
            )
        routing = self.routing
        if routing.start >= self.depth or (routing.end is not None and routing.end > self.depth):
            raise ValueError(f"routing span [{routing.start}, {routing.end if routing.end is not None else self.depth}) "
                             f"must hold blocks of the {self.depth}-block encoder")
        return self

    @property
    def precond(self) -> str:
        """The wrapper's name: 'edm', 'ddpm' (the 'vp' process) or 'flow' (a plugin's own name otherwise)."""
        return getattr(self.process, "precond", "") or self.process.name

    @property
    def sigma_data(self) -> float | None:
        """EDM's sigma_data for an 'edm' process, else None."""
        return getattr(self.process, "sigma_data", None)

    @property
    def grid_size(self) -> int:
        """Tokens per side."""
        return self.input_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid_size**2

    @property
    def sparse_blocks(self) -> range:
        """The encoder blocks that see only the kept tokens: [routing.start, routing.end or depth)."""
        routing = self.routing
        return range(routing.start, routing.end if routing.end is not None else self.depth)

    @property
    def out_channels(self) -> int:
        """Channels the network predicts: C, or 2C with a learned variance."""
        return 2 * self.in_channels if self.learn_sigma else self.in_channels


def _fold_precond(data: dict[str, Any]) -> dict[str, Any]:
    """Specs written before ``model.process`` existed name ``precond`` and ``sigma_data``: fold them
    into ``process`` ({"precond": "ddpm"} -> {"process": {"name": "vp"}}). Given beside a process
    they must agree with it."""
    if "precond" not in data and "sigma_data" not in data:
        return data
    data = dict(data)
    precond, sigma_data = data.pop("precond", None), data.pop("sigma_data", None)
    process = data.get("process")
    if precond is not None and (not isinstance(precond, str) or precond not in PRECOND_PROCESS):
        raise ValueError(f"unknown precond {precond!r}; valid: {', '.join(PRECOND_PROCESS)} (or give model.process)")
    if isinstance(process, SpecModel):
        process = process.model_dump()
    if process is None:
        process = {"name": PRECOND_PROCESS[precond or "edm"]}
    elif not isinstance(process, dict):
        return data  # let the process field report its own type error
    else:
        process = dict(process)
        if precond is not None and process.get("name", "edm") != PRECOND_PROCESS[precond]:
            raise ValueError(f"precond {precond!r} contradicts model.process {process.get('name')!r}: give model.process only")
    if sigma_data is not None and precond is None and process.get("name", "edm") != "edm":
        # only a spec written before model.process holds sigma_data beside a non-EDM model, and it says precond
        raise ValueError(f"sigma_data is EDM's: model.process {process.get('name')!r} has none (drop sigma_data)")
    if sigma_data is not None and process.get("name", "edm") == "edm":  # older specs saved it for every precond
        if process.get("sigma_data", sigma_data) != sigma_data:
            raise ValueError(f"sigma_data {sigma_data} contradicts model.process.sigma_data {process['sigma_data']}")
        process["sigma_data"] = sigma_data
    data["process"] = process
    return data
