"""A plain Vision Transformer with timm's parameter names, so DINO / DINOv2 weights load directly.

No timm or torchvision dependency. Presets: DINO ViT-S/16 and ViT-B/16, DINOv2 ViT-S/14 and
ViT-B/14 (optionally with register tokens). The learned absolute position embedding is
resampled to the input's patch grid every forward (bicubic with antialiasing, as timm does with
``dynamic_img_size=True``). Attention runs through ``scaled_dot_product_attention``; xformers
is an optional backend on CUDA.

Inputs are normalized images ``(B, 3, H, W)`` (the caller normalizes; the dense predictor does
ImageNet normalization itself). :meth:`ViT.forward_tokens` returns chosen blocks' outputs with
the prefix tokens (class, registers) separated from the patch tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from nphmkit._optional import available

ATTENTION_BACKENDS = ("sdpa", "xformers")


@dataclass(frozen=True)
class ViTConfig:
    """Sizes of a ViT. ``pos_grid`` is the patch grid its position embedding is stored for."""

    patch_size: int = 16
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    pos_grid: int = 14
    reg_tokens: int = 0
    no_embed_class: bool = False
    """True when only the patch tokens carry a position embedding (timm's DINOv2 with registers)."""
    layer_scale: float | None = None
    """Initial LayerScale (DINOv2: 1e-5); None for none."""
    final_norm: bool = True
    attention: str = "sdpa"
    """Attention backend: ``"sdpa"`` (``scaled_dot_product_attention``) or ``"xformers"`` (CUDA inputs only,
    other devices fall back to sdpa; needs the ``xformers`` extra). Weights are the same for both."""

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention: expected one of {ATTENTION_BACKENDS}, got {self.attention!r}")

    @classmethod
    def preset(cls, name: str) -> "ViTConfig":
        """``dino_vits16``, ``dino_vitb16``, ``dinov2_vits14``, ``dinov2_vitb14`` (``_reg4`` for 4 registers), ``tiny``."""
        base = {
            "dino_vits16": cls(),
            "dino_vitb16": cls(embed_dim=768, num_heads=12),
            "dinov2_vits14": cls(patch_size=14, pos_grid=37, layer_scale=1e-5),
            "dinov2_vitb14": cls(patch_size=14, embed_dim=768, num_heads=12, pos_grid=37, layer_scale=1e-5),
            "tiny": cls(patch_size=16, embed_dim=64, depth=2, num_heads=2, pos_grid=4),
        }
        key = name.removesuffix("_reg4")
        if key not in base:
            raise ValueError(f"name: expected one of {sorted(base)} (optionally + '_reg4'), got {name!r}")
        cfg = base[key]
        if name.endswith("_reg4"):
            cfg = replace(cfg, reg_tokens=4, no_embed_class=True)
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    """Multi-head self-attention with a packed ``qkv`` projection (timm's layout)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attention: str = "sdpa") -> None:
        super().__init__()
        if attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention: expected one of {ATTENTION_BACKENDS}, got {attention!r}")
        if attention == "xformers" and not available("xformers"):
            from nphmkit._optional import require

            require("xformers", "the xformers attention backend")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_xformers = attention == "xformers"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        if self.use_xformers and x.is_cuda:
            import xformers.ops as xops

            q, k, v = qkv.unbind(2)  # (B, N, heads, d)
            out = xops.memory_efficient_attention(q, k, v).reshape(b, n, c)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, heads, N, d)
            out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias, cfg.attention)
        self.ls1 = LayerScale(d, cfg.layer_scale) if cfg.layer_scale is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        self.ls2 = LayerScale(d, cfg.layer_scale) if cfg.layer_scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, C, h, w)


def resample_pos_embed(pos: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """Resample ``(1, prefix + h*w, C)`` to a new patch grid: bicubic, antialiased, in float32 (as timm)."""
    if tuple(new_grid) == tuple(old_grid):
        return pos
    head, grid = pos[:, :prefix], pos[:, prefix:]
    dtype = grid.dtype
    c = grid.shape[-1]
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], c).to(dtype)
    return torch.cat([head, grid], dim=1)


class ViT(nn.Module):
    """Vision Transformer; ``state_dict`` keys match timm's ``VisionTransformer`` for the same config."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, d)) if cfg.reg_tokens else None
        n_pos = cfg.pos_grid**2 + (0 if cfg.no_embed_class else 1 + cfg.reg_tokens)
        self.pos_embed = nn.Parameter(torch.randn(1, n_pos, d) * 0.02)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps) if cfg.final_norm else nn.Identity()
        nn.init.normal_(self.cls_token, std=1e-6)

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.config.reg_tokens

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens ``(B, prefix + h*w, C)`` with position embeddings, and the patch grid ``(h, w)``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected shape (B, 3, H, W), got {tuple(images.shape)}")
        p = self.config.patch_size
        if images.shape[2] % p or images.shape[3] % p:
            raise ValueError(f"images: height and width must be multiples of the patch size {p}, got {tuple(images.shape[2:])}")
        x = self.patch_embed(images)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        b = x.shape[0]
        cfg = self.config
        old = (cfg.pos_grid, cfg.pos_grid)
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(b, -1, -1))
        if cfg.no_embed_class:  # only patches carry positions; prefix tokens are prepended after
            x = torch.cat(prefix + [x + resample_pos_embed(self.pos_embed, grid, old, 0)], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + resample_pos_embed(self.pos_embed, grid, old, self.num_prefix_tokens)
        return x, grid

    def forward_tokens(
        self, images: torch.Tensor, layers: tuple[int, ...] | None = None, norm: bool = True
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Outputs of blocks ``layers`` (default: the last) as ``(prefix (B, P, C), patches (B, h*w, C))``.

        ``norm``: apply the final LayerNorm to every returned output (as timm's intermediates do).
        Negative indices count from the end.
        """
        depth = self.config.depth
        layers = (depth - 1,) if layers is None else tuple(i % depth for i in layers)
        x, _ = self.embed(images)
        outs = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in layers:
                y = self.norm(x) if norm else x
                outs.append((y[:, : self.num_prefix_tokens], y[:, self.num_prefix_tokens :]))
            if i >= max(layers):
                break
        return outs

    def forward_grids(self, images: torch.Tensor, layers: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """Patch tokens of blocks ``layers`` as grids ``(B, C, h, w)``."""
        p = self.config.patch_size
        h, w = images.shape[2] // p, images.shape[3] // p
        return [t.transpose(1, 2).reshape(t.shape[0], -1, h, w) for _, t in self.forward_tokens(images, layers)]

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """All tokens after the last block and the final norm, ``(B, prefix + h*w, C)`` (timm's name)."""
        x, _ = self.embed(images)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)
