"""diffusers' ``DiTTransformer2DModel`` folders in and out (DiT layout: no decoder, no qk-norm, MLP ratio 4).

A folder holds ``config.json`` and ``diffusion_pytorch_model.safetensors``, which
``diffusers.DiTTransformer2DModel.from_pretrained(folder)`` loads; we add ``maskdit.json`` (our
ModelSpec: preconditioning, sigma_data, label embedder), which diffusers ignores. Writing and
reading need only safetensors, not diffusers.

The mapping is the one of diffusers' own DiT conversion (``scripts/convert_dit_to_diffusers.py``):
our fused ``qkv`` is split into ``to_q`` / ``to_k`` / ``to_v``, the timestep and label embedders,
which diffusers repeats in every block, are copied into each. The reference MaskDiT's one-hot
label embedder is written as the equivalent table (its null row is zero).

What differs: diffusers' sinusoidal timestep embedding divides the frequency exponent by
``half - 1`` (``downscale_freq_shift=1``) where DiT (Peebles & Xie 2023) divides by ``half``, so
the two agree exactly at timestep 0 and differ slightly elsewhere; the network input is our
backbone's (for an EDM model the "timestep" is c_noise = ln(sigma) / 4, Karras et al. 2022,
Table 1), and the preconditioning stays outside, in :mod:`maskdit.core.denoiser`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from maskdit.config import json_input as jsonio
from maskdit.config.errors import CheckpointError, printable
from maskdit.core.denoiser import DDPMDenoiser, Denoiser
from maskdit.core.embeddings import sincos_2d
from maskdit.core.factory import build_model, wrap
from maskdit.core.specs import ModelSpec
from maskdit.interop.strict import check_keys, detached_copy, load_strict
from maskdit.io.weight_files import StateDict

CONFIG, WEIGHTS, SIDECAR = "config.json", "diffusion_pytorch_model.safetensors", "maskdit.json"
CLASS_NAME = "DiTTransformer2DModel"
_EMB = "norm1.emb"


def is_diffusers_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def check_expressible(spec: ModelSpec) -> None:
    """Raise CheckpointError naming what diffusers' DiT cannot express in ``spec``."""
    problems = []
    if spec.decoder_depth:
        problems.append(f"a MaskDiT decoder ({spec.decoder_depth} blocks; diffusers' DiT has none)")
    if spec.qk_norm:
        problems.append("qk_norm")
    if spec.mlp_ratio != 4.0:
        problems.append(f"mlp_ratio {spec.mlp_ratio:g} (diffusers' DiT feed-forward is 4x)")
    if spec.num_classes == 0:
        problems.append("no classes (diffusers' DiT is class-conditional)")
    if problems:
        raise CheckpointError(f"diffusers' {CLASS_NAME} cannot express this model: {', '.join(problems)}")


def diffusers_config(spec: ModelSpec) -> dict:
    return {
        "_class_name": CLASS_NAME,
        "num_attention_heads": spec.num_heads,
        "attention_head_dim": spec.hidden_size // spec.num_heads,
        "in_channels": spec.in_channels,
        "out_channels": spec.out_channels,
        "num_layers": spec.depth,
        "dropout": 0.0,
        "norm_num_groups": 32,
        "attention_bias": True,
        "sample_size": spec.input_size,
        "patch_size": spec.patch_size,
        "activation_fn": "gelu-approximate",
        "num_embeds_ada_norm": spec.num_classes,
        "upcast_attention": False,
        "norm_type": "ada_norm_zero",
        "norm_elementwise_affine": False,
        "norm_eps": 1e-6,  # DiT's LayerNorms; diffusers' default 1e-5 would differ
    }


def to_diffusers(state: StateDict, spec: ModelSpec) -> StateDict:
    """Our backbone's state dict -> diffusers' DiT keys."""
    width = spec.hidden_size
    table = state["y_embedder.embedding_table.weight"]
    if spec.label_embedder == "onehot":  # [hidden, classes] -> [classes + 1, hidden], null row 0
        table = torch.cat([table.t(), table.new_zeros(1, width)])
    out = {"pos_embed.proj.weight": state["x_embedder.proj.weight"], "pos_embed.proj.bias": state["x_embedder.proj.bias"]}
    for i in range(spec.depth):
        ours, theirs = f"blocks.{i}.", f"transformer_blocks.{i}."
        for end in ("weight", "bias"):
            out[f"{theirs}{_EMB}.timestep_embedder.linear_1.{end}"] = state[f"t_embedder.mlp.0.{end}"]
            out[f"{theirs}{_EMB}.timestep_embedder.linear_2.{end}"] = state[f"t_embedder.mlp.2.{end}"]
            q, k, v = state[f"{ours}attn.qkv.{end}"].split(width)  # [3D, ...] -> q, k, v rows
            out[f"{theirs}attn1.to_q.{end}"], out[f"{theirs}attn1.to_k.{end}"], out[f"{theirs}attn1.to_v.{end}"] = q, k, v
            out[f"{theirs}attn1.to_out.0.{end}"] = state[f"{ours}attn.proj.{end}"]
            out[f"{theirs}norm1.linear.{end}"] = state[f"{ours}adaLN_modulation.1.{end}"]
            out[f"{theirs}ff.net.0.proj.{end}"] = state[f"{ours}mlp.fc1.{end}"]
            out[f"{theirs}ff.net.2.{end}"] = state[f"{ours}mlp.fc2.{end}"]
        out[f"{theirs}{_EMB}.class_embedder.embedding_table.weight"] = table
    for end in ("weight", "bias"):
        out[f"proj_out_1.{end}"] = state[f"final_layer.adaLN_modulation.1.{end}"]
        out[f"proj_out_2.{end}"] = state[f"final_layer.linear.{end}"]
    return {key: value.clone().contiguous() for key, value in out.items()}  # copies: one per block


def from_diffusers(state: StateDict, spec: ModelSpec, *, source: str) -> StateDict:
    """diffusers' DiT keys -> our backbone's (the shared embedders must agree across blocks)."""
    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key}")
        return state[key]

    first = "transformer_blocks.0."
    out = {"x_embedder.proj.weight": take("pos_embed.proj.weight"), "x_embedder.proj.bias": take("pos_embed.proj.bias")}
    for end in ("weight", "bias"):
        out[f"t_embedder.mlp.0.{end}"] = take(f"{first}{_EMB}.timestep_embedder.linear_1.{end}")
        out[f"t_embedder.mlp.2.{end}"] = take(f"{first}{_EMB}.timestep_embedder.linear_2.{end}")
        out[f"final_layer.adaLN_modulation.1.{end}"] = take(f"proj_out_1.{end}")
        out[f"final_layer.linear.{end}"] = take(f"proj_out_2.{end}")
    table = take(f"{first}{_EMB}.class_embedder.embedding_table.weight")
    for i in range(spec.depth):
        ours, theirs = f"blocks.{i}.", f"transformer_blocks.{i}."
        shared = [(f"{theirs}{_EMB}.class_embedder.embedding_table.weight", table)]
        for end in ("weight", "bias"):
            shared += [(f"{theirs}{_EMB}.timestep_embedder.linear_1.{end}", out[f"t_embedder.mlp.0.{end}"]),
                       (f"{theirs}{_EMB}.timestep_embedder.linear_2.{end}", out[f"t_embedder.mlp.2.{end}"])]
            out[f"{ours}attn.qkv.{end}"] = torch.cat([take(f"{theirs}attn1.to_{n}.{end}") for n in "qkv"])
            out[f"{ours}attn.proj.{end}"] = take(f"{theirs}attn1.to_out.0.{end}")
            out[f"{ours}adaLN_modulation.1.{end}"] = take(f"{theirs}norm1.linear.{end}")
            out[f"{ours}mlp.fc1.{end}"] = take(f"{theirs}ff.net.0.proj.{end}")
            out[f"{ours}mlp.fc2.{end}"] = take(f"{theirs}ff.net.2.{end}")
        for key, expected in shared:
            if not torch.equal(take(key), expected):
                raise CheckpointError(f"{source}: {key} differs from block 0's; our DiT shares one embedder")
    if spec.label_embedder == "onehot":  # back to the bias-free Linear; its null row must be zero
        if bool(table[-1].any()):
            raise CheckpointError(f"{source}: the label table's null row is not zero, so it is no one-hot embedder")
        table = table[:-1].t()
    out["y_embedder.embedding_table.weight"] = table
    return out


def spec_from_config(config: dict, *, source: str) -> ModelSpec:
    """The ModelSpec of a diffusers DiT config (epsilon prediction on DDPM timesteps, as DiT)."""
    if config.get("_class_name", CLASS_NAME) != CLASS_NAME or config.get("norm_type", "ada_norm_zero") != "ada_norm_zero":
        raise CheckpointError(f"{source}: not a {CLASS_NAME} config (class {jsonio.short(config.get('_class_name'))})")
    try:
        heads, head_dim = int(config["num_attention_heads"]), int(config["attention_head_dim"])
        in_channels = int(config.get("in_channels", 4))
        out_channels = int(config.get("out_channels") or in_channels)
        fields = {"input_size": int(config["sample_size"]), "in_channels": in_channels,
                  "patch_size": int(config["patch_size"]), "depth": int(config["num_layers"]),
                  "hidden_size": heads * head_dim, "num_heads": heads, "mlp_ratio": 4.0, "decoder_depth": 0,
                  "num_classes": int(config["num_embeds_ada_norm"]), "label_embedder": "table",
                  "learn_sigma": out_channels == 2 * in_channels, "precond": "ddpm"}
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: incomplete {CLASS_NAME} config ({err})") from None
    if out_channels not in (in_channels, 2 * in_channels):
        raise CheckpointError(f"{source}: out_channels {out_channels} is neither in_channels nor twice it")
    return ModelSpec(**fields)


def save_diffusers(denoiser: Denoiser | DDPMDenoiser, folder: str | Path) -> Path:
    """Write ``folder`` for ``DiTTransformer2DModel.from_pretrained``; refuses what it cannot express."""
    spec = denoiser.spec
    check_expressible(spec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = to_diffusers(detached_copy(denoiser.net.state_dict()), spec)
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / CONFIG).write_text(json.dumps(diffusers_config(spec), indent=2) + "\n", encoding="utf-8")
    (folder / SIDECAR).write_text(json.dumps({"model": spec.model_dump(mode="json")}, indent=2) + "\n",
                                  encoding="utf-8")
    return folder


def load_diffusers(folder: str | Path) -> Denoiser | DDPMDenoiser:
    """A diffusers DiT folder as our denoiser: the spec from maskdit.json when we wrote it, else
    from config.json (a DDPM epsilon model, as DiT's checkpoints are)."""
    folder = Path(folder)
    shown = printable(folder)
    try:
        config = jsonio.load_file(folder / CONFIG, max_bytes=jsonio.SPEC_MAX_BYTES)
        if not isinstance(config, dict):
            raise CheckpointError(f"{printable(folder / CONFIG)}: not a JSON object")
        if (folder / SIDECAR).is_file():
            document = jsonio.load_file(folder / SIDECAR, max_bytes=jsonio.SPEC_MAX_BYTES)
            if not isinstance(document, dict) or not isinstance(document.get("model"), dict):
                raise CheckpointError(f"{printable(folder / SIDECAR)}: needs a 'model' object (our ModelSpec)")
            spec = ModelSpec.model_validate(document["model"])
        else:
            spec = spec_from_config(config, source=str(folder / CONFIG))
        state = load_file(str(folder / WEIGHTS), device="cpu")
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"{shown}: cannot read the diffusers folder: {printable(err)}") from None
    except (jsonio.JSONInputError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{shown}: {jsonio.short(str(err))}") from None
    check_expressible(spec)
    net = build_model(spec, device="meta")
    # every tensor must have the shape diffusers' layout of this spec gives it before any is split,
    # joined or compared (mismatched q/k/v, a 0-d class table would fail inside torch otherwise)
    expected = to_diffusers(net.state_dict(), spec)
    check_keys({key: tuple(value.shape) for key, value in expected.items()}, state, source=str(folder / WEIGHTS))
    ours = from_diffusers(state, spec, source=str(folder / WEIGHTS))
    ours["pos_embed"] = sincos_2d(spec.hidden_size, spec.grid_size)[None]  # diffusers recomputes it too
    load_strict(net, ours, source=str(folder / WEIGHTS))
    return wrap(net, spec)
