"""Named architectures: DiT-{S,B,L,XL,H}/{2,4,8}, MaskDiT-{S,B,L,XL,H}/{2,4,8} and SiT-{S,B,L,XL}/{2,4,8}.

Encoder sizes are DiT's (Peebles & Xie 2023, Table 1). MaskDiT presets carry the reference
decoder, fixed for every size: 8 blocks, width 512, 16 heads, one-hot label embedding.
DiT presets have no decoder and DiT's label table with a learned null row.

``SiT-*`` (Ma et al. 2024) is DiT's network trained as a flow: the linear interpolant in SiT's
time (t = 1 at the data, fed to the network as is) with velocity output. Its checkpoints keep
DiT's learned-variance channels (``learn_sigma``), which the flow wrapper drops. SiT has no H size.

``MaskDiT-lite-*`` presets scale the decoder with the encoder instead (half the encoder width,
64-wide heads, 2 blocks for S and B, 4 for L, XL and H), so that the decoder costs a small
fraction of the encoder and masked training pays off at small sizes too (the reference decoder
makes MaskDiT-S/2 slower than DiT-S/2; see benchmarks/RESULTS.md, section train_step).

The other token-sparsity methods are DiT encoders with a ``routing`` (see RoutingSpec), at the
same depth and width as DiT of that size, so they compare at equal parameters:

- ``TREAD-*`` (Krause et al. 2025): blocks 2 .. depth-3 on the kept tokens, the dropped ones
  re-entering with their block-1 output (XL: blocks 2-25 of 28, as TREAD's DiT-XL/2 route).
- ``SPRINT-*`` (Park et al. 2025): 2 dense blocks, depth-4 sparse deep blocks, mask-token padding
  and concat fusion with the dense-shallow output, 2 dense blocks (XL: 2 + 24 + 2, as SPRINT's).
- ``Deferred-*`` (MicroDiT, Sehwag et al. 2024): the first depth // 6 blocks are the patch-mixer
  over all tokens (S, B: 2; L, XL, H: 4), the rest see the kept tokens only; MicroDiT's mixer is a
  separate narrower stack, here it is part of the same-width encoder.
"""

from __future__ import annotations

from types import MappingProxyType

ENCODER_SIZES = MappingProxyType(
    {
        "S": {"depth": 12, "hidden_size": 384, "num_heads": 6},
        "B": {"depth": 12, "hidden_size": 768, "num_heads": 12},
        "L": {"depth": 24, "hidden_size": 1024, "num_heads": 16},
        "XL": {"depth": 28, "hidden_size": 1152, "num_heads": 16},
        "H": {"depth": 32, "hidden_size": 1280, "num_heads": 16},
    }
)
PATCH_SIZES = (2, 4, 8)
REFERENCE_DECODER = MappingProxyType({"decoder_depth": 8, "decoder_hidden_size": 512, "decoder_num_heads": 16})
LITE_DECODER_DEPTH = MappingProxyType({"S": 2, "B": 2, "L": 4, "XL": 4, "H": 4})
SIT_SIZES = ("S", "B", "L", "XL")
SIT_PROCESS = MappingProxyType({"name": "flow", "convention": "sit", "prediction": "v"})


def lite_decoder(size: str) -> dict:
    """Decoder of ``MaskDiT-lite-<size>``: half the encoder width, heads of width 64."""
    width = ENCODER_SIZES[size]["hidden_size"] // 2
    return {"decoder_depth": LITE_DECODER_DEPTH[size], "decoder_hidden_size": width, "decoder_num_heads": width // 64}


def _build_presets() -> dict[str, dict]:
    presets: dict[str, dict] = {}
    for size, encoder in ENCODER_SIZES.items():
        for patch in PATCH_SIZES:
            presets[f"DiT-{size}/{patch}"] = {
                **encoder,
                "patch_size": patch,
                "decoder_depth": 0,
                "label_embedder": "table",
            }
            presets[f"MaskDiT-{size}/{patch}"] = {
                **encoder,
                "patch_size": patch,
                **REFERENCE_DECODER,
                "label_embedder": "onehot",
            }
            presets[f"MaskDiT-lite-{size}/{patch}"] = {
                **encoder,
                "patch_size": patch,
                **lite_decoder(size),
                "label_embedder": "onehot",
            }
            dit = presets[f"DiT-{size}/{patch}"]
            depth = encoder["depth"]
            presets[f"TREAD-{size}/{patch}"] = {**dit, "routing": {"start": 2, "end": depth - 2, "fill": "exit"}}
            presets[f"SPRINT-{size}/{patch}"] = {
                **dit, "routing": {"start": 2, "end": depth - 2, "fill": "mask_token", "fuse": "concat"}
            }
            presets[f"Deferred-{size}/{patch}"] = {**dit, "routing": {"start": depth // 6}}
            if size in SIT_SIZES:
                presets[f"SiT-{size}/{patch}"] = {**dit, "learn_sigma": True, "process": dict(SIT_PROCESS)}
    return presets


#: Read-only: preset name -> architecture fields of ModelSpec.
MODEL_PRESETS = MappingProxyType(_build_presets())
