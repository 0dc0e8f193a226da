"""The reference MaskDiT / DiT / SiT / REPA state-dict layouts, spelled out from the reference code's
key list (Anima-Lab/MaskDiT, facebookresearch/DiT, willisma/SiT, sihyun-yu/REPA), and independent
functional forward passes over such dicts (explicit one-hot Linear or table lookup, explicit softmax
attention, explicit unpatchify), to check that our modules compute what the reference computes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _block(prefix, width, cond, mlp=4):
    return {
        f"{prefix}.attn.qkv.weight": (3 * width, width), f"{prefix}.attn.qkv.bias": (3 * width,),
        f"{prefix}.attn.proj.weight": (width, width), f"{prefix}.attn.proj.bias": (width,),
        f"{prefix}.mlp.fc1.weight": (mlp * width, width), f"{prefix}.mlp.fc1.bias": (mlp * width,),
        f"{prefix}.mlp.fc2.weight": (width, mlp * width), f"{prefix}.mlp.fc2.bias": (width,),
        f"{prefix}.adaLN_modulation.1.weight": (6 * width, cond), f"{prefix}.adaLN_modulation.1.bias": (6 * width,),
    }


def maskdit_shapes(*, depth=12, hidden=384, dec_depth=8, dec_hidden=512, patch=2, channels=4, classes=1000,
                   input_size=32, prefix="model."):
    tokens = (input_size // patch) ** 2
    shapes = {
        "pos_embed": (1, tokens, hidden), "decoder_pos_embed": (1, tokens, dec_hidden), "mask_token": (1, 1, dec_hidden),
        "x_embedder.proj.weight": (hidden, channels, patch, patch), "x_embedder.proj.bias": (hidden,),
        "t_embedder.mlp.0.weight": (hidden, 256), "t_embedder.mlp.0.bias": (hidden,),
        "t_embedder.mlp.2.weight": (hidden, hidden), "t_embedder.mlp.2.bias": (hidden,),
        "y_embedder.embedding_table.weight": (hidden, classes),
    }
    for i in range(depth):
        shapes.update(_block(f"blocks.{i}", hidden, hidden))
    shapes.update({
        "decoder_layer.linear.weight": (dec_hidden, hidden), "decoder_layer.linear.bias": (dec_hidden,),
        "decoder_layer.adaLN_modulation.1.weight": (2 * hidden, hidden),
        "decoder_layer.adaLN_modulation.1.bias": (2 * hidden,),
    })
    for j in range(dec_depth):
        shapes.update(_block(f"decoder_blocks.{j}", dec_hidden, hidden))
    shapes.update({
        "final_layer.linear.weight": (patch * patch * channels, dec_hidden),
        "final_layer.linear.bias": (patch * patch * channels,),
        "final_layer.adaLN_modulation.1.weight": (2 * dec_hidden, hidden),
        "final_layer.adaLN_modulation.1.bias": (2 * dec_hidden,),
    })
    return {prefix + key: shape for key, shape in shapes.items()}


def dit_shapes(*, depth=28, hidden=1152, patch=2, channels=4, classes=1000, input_size=32, learn_sigma=True):
    tokens = (input_size // patch) ** 2
    out = patch * patch * channels * (2 if learn_sigma else 1)
    shapes = {
        "pos_embed": (1, tokens, hidden),
        "x_embedder.proj.weight": (hidden, channels, patch, patch), "x_embedder.proj.bias": (hidden,),
        "t_embedder.mlp.0.weight": (hidden, 256), "t_embedder.mlp.0.bias": (hidden,),
        "t_embedder.mlp.2.weight": (hidden, hidden), "t_embedder.mlp.2.bias": (hidden,),
        "y_embedder.embedding_table.weight": (classes + 1, hidden),
    }
    for i in range(depth):
        shapes.update(_block(f"blocks.{i}", hidden, hidden))
    shapes.update({
        "final_layer.linear.weight": (out, hidden), "final_layer.linear.bias": (out,),
        "final_layer.adaLN_modulation.1.weight": (2 * hidden, hidden),
        "final_layer.adaLN_modulation.1.bias": (2 * hidden,),
    })
    return shapes


def sit_shapes(*, depth=28, hidden=1152, patch=2, channels=4, classes=1000, input_size=32, learn_sigma=True):
    """SiT's models.py: timm PatchEmbed (proj only), TimestepEmbedder MLP on 256 frequencies, an
    nn.Embedding of classes + 1 rows (class dropout 0.1 > 0 adds the null row), pos_embed as a frozen
    Parameter, SiTBlocks (affine-free LayerNorms, timm Attention with qkv bias and no qk-norm, timm
    Mlp, adaLN Linear to 6 widths), FinalLayer (Linear to p*p*C_out, adaLN Linear to 2 widths)."""
    tokens = (input_size // patch) ** 2
    out = patch * patch * channels * (2 if learn_sigma else 1)
    shapes = {
        "x_embedder.proj.weight": (hidden, channels, patch, patch), "x_embedder.proj.bias": (hidden,),
        "t_embedder.mlp.0.weight": (hidden, 256), "t_embedder.mlp.0.bias": (hidden,),
        "t_embedder.mlp.2.weight": (hidden, hidden), "t_embedder.mlp.2.bias": (hidden,),
        "y_embedder.embedding_table.weight": (classes + 1, hidden),
        "pos_embed": (1, tokens, hidden),
    }
    for i in range(depth):
        shapes.update(_block(f"blocks.{i}", hidden, hidden))
    shapes.update({
        "final_layer.linear.weight": (out, hidden), "final_layer.linear.bias": (out,),
        "final_layer.adaLN_modulation.1.weight": (2 * hidden, hidden),
        "final_layer.adaLN_modulation.1.bias": (2 * hidden,),
    })
    return shapes


def repa_shapes(*, z_dims=(768,), projector_dim=2048, **sizes):
    """REPA's models/sit.py: SiT without learned variance, plus one projector MLP per target encoder
    (Linear hidden -> projector_dim, SiLU, Linear, SiLU, Linear -> z_dim: indices 0, 2, 4)."""
    shapes = sit_shapes(learn_sigma=False, **sizes)
    hidden = shapes["pos_embed"][-1]
    for k, z in enumerate(z_dims):
        shapes.update({
            f"projectors.{k}.0.weight": (projector_dim, hidden), f"projectors.{k}.0.bias": (projector_dim,),
            f"projectors.{k}.2.weight": (projector_dim, projector_dim), f"projectors.{k}.2.bias": (projector_dim,),
            f"projectors.{k}.4.weight": (z, projector_dim), f"projectors.{k}.4.bias": (z,),
        })
    return shapes


def random_state(shapes, seed=0, scale=0.2):
    """Random values in EVERY tensor, including the ones the reference zero-initialises."""
    g = torch.Generator().manual_seed(seed)
    return {key: scale * torch.randn(shape, generator=g) for key, shape in shapes.items()}


# ---- an independent forward pass over a reference MaskDiT state dict (prefix removed) ---------
def _lin(s, name, x):
    return x @ s[f"{name}.weight"].T + s[f"{name}.bias"]


def _ln(x):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6)


def _block_forward(s, name, x, c, heads):
    mod = _lin(s, f"{name}.adaLN_modulation.1", F.silu(c))
    sa, ca, ga, sm, cm, gm = [m[:, None, :] for m in mod.chunk(6, dim=1)]
    h = _ln(x) * (1 + ca) + sa
    b, n, d = h.shape
    qkv = _lin(s, f"{name}.attn.qkv", h).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(b, n, d)
    x = x + ga * _lin(s, f"{name}.attn.proj", out)
    h = _ln(x) * (1 + cm) + sm
    h = _lin(s, f"{name}.mlp.fc2", F.gelu(_lin(s, f"{name}.mlp.fc1", h), approximate="tanh"))
    return x + gm * h


def _modulated_linear(s, name, x, c):
    shift, scale = _lin(s, f"{name}.adaLN_modulation.1", F.silu(c)).chunk(2, dim=1)
    return _lin(s, f"{name}.linear", _ln(x) * (1 + scale[:, None]) + shift[:, None])


def functional_forward(s, x, t, onehot, *, heads, dec_heads, patch, ids_keep=None, ids_restore=None):
    """F(x, t, y) of the reference MaskDiT; ``onehot`` [B, classes] (zeros = null); masks as in MAE."""
    b, ch, hgt, _ = x.shape
    w = s["x_embedder.proj.weight"]
    tokens = F.conv2d(x, w, s["x_embedder.proj.bias"], stride=patch).flatten(2).transpose(1, 2) + s["pos_embed"]
    if ids_keep is not None:
        tokens = torch.gather(tokens, 1, ids_keep[:, :, None].expand(-1, -1, tokens.shape[-1]))
    c = _t_embed(s, t)
    if "y_embedder.embedding_table.weight" in s:
        c = c + onehot @ s["y_embedder.embedding_table.weight"].T
    depth = len({k.split(".")[1] for k in s if k.startswith("blocks.")})
    for i in range(depth):
        tokens = _block_forward(s, f"blocks.{i}", tokens, c, heads)
    tokens = _modulated_linear(s, "decoder_layer", tokens, c)
    if ids_restore is not None:
        fill = s["mask_token"].expand(b, ids_restore.shape[1] - tokens.shape[1], -1)
        tokens = torch.cat([tokens, fill], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore[:, :, None].expand(-1, -1, tokens.shape[-1]))
    tokens = tokens + s["decoder_pos_embed"]
    dec_depth = len({k.split(".")[1] for k in s if k.startswith("decoder_blocks.")})
    for j in range(dec_depth):
        tokens = _block_forward(s, f"decoder_blocks.{j}", tokens, c, dec_heads)
    return _unpatchify(_modulated_linear(s, "final_layer", tokens, c), hgt // patch, patch)


def sit_functional_forward(s, x, t, labels, *, heads, patch):
    """SiT's (and REPA's) forward over a state dict without projectors: t fed as is (continuous),
    labels index the table (num_classes = null); the learned-variance half is dropped as SiT does."""
    tokens = F.conv2d(x, s["x_embedder.proj.weight"], s["x_embedder.proj.bias"], stride=patch)
    tokens = tokens.flatten(2).transpose(1, 2) + s["pos_embed"]
    c = _t_embed(s, t) + s["y_embedder.embedding_table.weight"][labels]
    depth = len({k.split(".")[1] for k in s if k.startswith("blocks.")})
    for i in range(depth):
        tokens = _block_forward(s, f"blocks.{i}", tokens, c, heads)
    out = _unpatchify(_modulated_linear(s, "final_layer", tokens, c), x.shape[-1] // patch, patch)
    return out[:, : x.shape[1]]


def _t_embed(s, t):
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    temb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return _lin(s, "t_embedder.mlp.2", F.silu(_lin(s, "t_embedder.mlp.0", temb)))


def _unpatchify(out, grid, patch):
    b, cout = out.shape[0], out.shape[-1] // (patch * patch)
    out = out.reshape(b, grid, grid, patch, patch, cout)
    return torch.einsum("nhwpqc->nchpwq", out).reshape(b, cout, grid * patch, grid * patch)
