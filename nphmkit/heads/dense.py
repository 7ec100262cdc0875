"""Dense geometry predictor with the Pixel3DMM architecture: image -> per-pixel normals, canonical points.

ViT tokens (prefix dropped) -> optional view embedding -> per-token down-projection ->
attention blocks (each two attention + MLP halves) -> three transposed 2x2 convolutions ->
per-pixel linear read-out of ``2 x 2 x P`` values per token, unpatchified. Module names follow
the official network (minus its ``net.`` prefix), so official checkpoints load strictly
(:func:`nphmkit.heads.pixel3dmm.load_pixel3dmm`).

``forward(images)``: RGB ``(B, 3, H, W)`` in [0, 1] (normalized internally with the ImageNet
statistics) -> raw ``(B, P, H, W)``. ``predict_maps(images (B, H, W, 3))``: a :class:`DenseMaps`,
channels-last, per docs/contracts.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nphmkit.heads.vit import ViT, ViTConfig
from nphmkit.weights import WeightFolderMixin

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNELS = {"normals": 3, "canonical": 3, "uv": 2, "mask": 1, "confidence": 1}
UV_FLIP_OFFSET = 0.015
"""Pixel3DMM's horizontal flip of a uv map: ``u -> 0.015 - u``."""


NORMAL_FRAMES = ("camera", "head")


@dataclass(frozen=True)
class DenseMaps:
    """A dense predictor's maps, channels-last (docs/contracts.md "Images and maps").

    Attributes:
        normals: ``(B, H, W, 3)`` unit normals towards the camera, or None.
        canonical: ``(B, H, W, 3)`` canonical (neutral-head) coordinates in NPHM units, or None.
        mask: ``(B, H, W)`` bool, the head's pixels, or None.
        confidence: ``(B, H, W)`` float per-pixel weights, or None. A predictor with a ``"confidence"``
            output gives ``exp(-s)``, the inverse of the per-pixel L1 error of its normals and canonical
            points that it expects (only ratios matter: fits take the weighted mean).
        uv: ``(B, H, W, 2)`` FLAME uv coordinates, or None.
        frame: the normals' frame: ``"camera"`` (nphmkit's predictors) or ``"head"`` (official
            Pixel3DMM networks: FLAME-aligned; rotate by the head rotation into the camera frame).
    """

    normals: torch.Tensor | None
    canonical: torch.Tensor | None
    mask: torch.Tensor | None
    confidence: torch.Tensor | None = None
    uv: torch.Tensor | None = None
    frame: str = "camera"

    def __post_init__(self) -> None:
        if self.frame not in NORMAL_FRAMES:
            raise ValueError(f"frame: expected one of {NORMAL_FRAMES}, got {self.frame!r}")


@dataclass(frozen=True)
class DenseConfig:
    """Sizes of a dense predictor. ``outputs`` order is the channel order of the raw prediction."""

    backbone: ViTConfig = field(default_factory=ViTConfig)
    image_size: int = 512
    embed_dim: int = 256
    num_layers: int = 6
    num_heads: int = 8
    n_views: int = 2
    """Views the view embedding was trained for; single-view inference uses entry 0 (1 = no embedding)."""
    view_embed_dim: int = 16
    outputs: tuple[str, ...] = ("normals", "canonical")
    patch_pos_enc: bool = False
    head_mix: int = 0
    """Residual 3x3 convolutions after each of the first two transposed convolutions, mixing neighbouring
    tokens (0: none, as Pixel3DMM, whose 2x2 up-sampling gives each token's pixels from that token alone)."""
    refine: int = 0
    """Width of a full-resolution refiner: two 3x3 convolutions over the raw prediction and the image,
    added to the raw prediction (0: none, as Pixel3DMM)."""
    refine_scales: int = 1
    """1: the refiner as above (5 px receptive field); 2: a two-scale refiner that also works at half
    resolution with twice the width (:class:`TwoScaleRefiner`, a 15 px receptive field: eyes, lips and
    nostrils span 5-15 px of a 128^2 crop)."""

    def __post_init__(self) -> None:
        unknown = [o for o in self.outputs if o not in CHANNELS]
        if unknown:
            raise ValueError(f"outputs: unknown {unknown}; choose from {sorted(CHANNELS)}")
        if self.head_mix < 0 or self.refine < 0:
            raise ValueError(f"head_mix, refine: expected >= 0, got {self.head_mix}, {self.refine}")
        if self.refine_scales not in (1, 2):
            raise ValueError(f"refine_scales: expected 1 or 2, got {self.refine_scales}")
        grid = self.image_size // self.backbone.patch_size
        if self.image_size % self.backbone.patch_size or self.image_size % (grid * 8):
            raise ValueError(
                f"image_size: {self.image_size} must be a multiple of patch size {self.backbone.patch_size} "
                f"and of 8 x the token grid {grid}"
            )

    @property
    def channels(self) -> int:
        return sum(CHANNELS[o] for o in self.outputs)

    @property
    def grid(self) -> int:
        return self.image_size // self.backbone.patch_size

    @property
    def out_patch(self) -> int:
        """Pixels per side each final token covers (2 for Pixel3DMM: 32 tokens -> 256 -> 512)."""
        return self.image_size // (self.grid * 8)

    @classmethod
    def pixel3dmm(cls, outputs: tuple[str, ...] = ("normals",)) -> "DenseConfig":
        """The official default: DINO ViT-S/16 at 512^2, 6 blocks of width 256, 2 views."""
        return cls(backbone=ViTConfig.preset("dino_vits16"), outputs=outputs)

    @classmethod
    def small(cls, outputs: tuple[str, ...] = ("normals", "canonical", "mask")) -> "DenseConfig":
        """A CPU-trainable predictor for 128^2 crops (tiny ViT, 2 blocks of width 64)."""
        return cls(backbone=ViTConfig.preset("tiny"), image_size=128, embed_dim=64, num_layers=2, num_heads=4,
                   n_views=1, outputs=outputs)

    def feature_dict(self) -> dict:
        """The sizes :meth:`DensePredictor.features` depends on (not the up-sampling head's)."""
        d = asdict(self)
        for key in ("outputs", "head_mix", "refine", "refine_scales"):
            d.pop(key)
        return d

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DenseConfig":
        d = dict(d)
        d.setdefault("head_mix", 0)
        d.setdefault("refine", 0)
        d.setdefault("refine_scales", 1)
        d["backbone"] = ViTConfig(**d["backbone"])
        d["outputs"] = tuple(d["outputs"])
        return cls(**d)


FEATURE_PREFIXES = ("img_encoder.", "vol_decoder.", "patch_pos_enc", "view_embed")


def is_feature_parameter(name: str) -> bool:
    """Whether a :class:`DensePredictor` state-dict entry feeds :meth:`DensePredictor.features`."""
    return name.startswith(FEATURE_PREFIXES)


class Encoder(nn.Module):
    """Holds the backbone as ``model`` (the official ``img_encoder.model`` names)."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.model = ViT(cfg)


class TwoHalfBlock(nn.Module):
    """``y = LN1(x); y += A1(y); y += M1(LN2(y)); z = LN3(y); z += A2(z); z + M2(LN4(z))`` (no biases in attention)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.LayerNorm(dim) for _ in range(4))
        self.self_attn = nn.MultiheadAttention(dim, heads, bias=False, batch_first=True)
        self.self_attn2 = nn.MultiheadAttention(dim, heads, bias=False, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim), nn.Dropout(0.0))
        self.mlp2 = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        y = y + self.self_attn(y, y, y, need_weights=False)[0]
        y = y + self.mlp(self.norm2(y))
        z = self.norm3(y)
        z = z + self.self_attn2(z, z, z, need_weights=False)[0]
        return z + self.mlp2(self.norm4(z))


class Decoder(nn.Module):
    """Down-projection + blocks (the official ``vol_decoder``)."""

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.down_proj = nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList([TwoHalfBlock(dim, heads) for _ in range(layers)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.down_proj(tokens)
        for layer in self.layers:
            x = layer(x)
        return x


class TwoScaleRefiner(nn.Module):
    """A residual refiner over ``(B, P + 3, H, W)`` (raw prediction and normalised image) -> ``(B, P, H, W)``:
    a full-resolution 3x3 convolution of width ``r``, a stride-2 3x3 convolution to width ``2r``, two residual
    3x3 convolutions at half resolution, a 2x2 transposed convolution back added to the full-resolution
    features, one more 3x3 and a 1x1 read-out that starts at zero (so a refiner added to a trained head
    starts as that head). ``H`` and ``W`` must be even."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        r = width
        self.conv_in = nn.Conv2d(channels + 3, r, 3, padding=1)
        self.down = nn.Conv2d(r, 2 * r, 3, stride=2, padding=1)
        self.mid = nn.ModuleList(nn.Conv2d(2 * r, 2 * r, 3, padding=1) for _ in range(2))
        self.up = nn.ConvTranspose2d(2 * r, r, 2, stride=2)
        self.conv_out = nn.Conv2d(r, r, 3, padding=1)
        self.read_out = nn.Conv2d(r, channels, 1)
        nn.init.zeros_(self.read_out.weight)
        nn.init.zeros_(self.read_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = F.gelu(self.conv_in(x))
        half = F.gelu(self.down(full))
        for conv in self.mid:
            half = half + F.gelu(conv(half))
        full = F.gelu(self.conv_out(full + self.up(half)))
        return self.read_out(full)


class DensePredictor(WeightFolderMixin, nn.Module):
    """Per-pixel geometry from an RGB image (see the module doc)."""

    _folder_kind = "DensePredictor"
    _config_class = DenseConfig
    refine_channels_last: bool = True
    """Run the refiner's convolutions on channels-last tensors (the fast path: its few channels at full
    resolution run 2-3x faster that way on the CPU); False runs them channels-first (the reference the tests hold
    it to). The results agree to float rounding."""

    def __init__(self, config: DenseConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or DenseConfig()
        c = cfg.backbone.embed_dim
        self.img_encoder = Encoder(cfg.backbone)
        if cfg.patch_pos_enc:
            self.patch_pos_enc = nn.Parameter(torch.randn(1, c, cfg.grid, cfg.grid) * c**-0.5)
        if cfg.n_views > 1:
            self.view_embed = nn.Parameter(torch.randn(1, cfg.n_views, cfg.view_embed_dim, 1, 1) * cfg.view_embed_dim**-0.5)
        in_dim = c + (cfg.view_embed_dim if cfg.n_views > 1 else 0)
        self.vol_decoder = Decoder(in_dim, cfg.embed_dim, cfg.num_layers, cfg.num_heads)
        d = cfg.embed_dim
        self.t_conv1 = nn.ConvTranspose2d(d, d, 2, stride=2)
        self.t_conv2 = nn.ConvTranspose2d(d, d, 2, stride=2)
        self.t_conv3 = nn.ConvTranspose2d(d, d, 2, stride=2)
        self.token_2_patch_content = nn.Linear(d, cfg.out_patch**2 * cfg.channels)
        if cfg.head_mix:
            self.head_mix = nn.ModuleList(
                nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in range(cfg.head_mix)) for _ in range(2))
            for conv in self.head_mix.modules():  # residual branches start at zero: a net grown from a trained
                if isinstance(conv, nn.Conv2d):  # predictor starts with its outputs
                    nn.init.zeros_(conv.weight)
                    nn.init.zeros_(conv.bias)
        if cfg.refine and cfg.refine_scales == 2:
            self.refiner = TwoScaleRefiner(cfg.channels, cfg.refine)
        elif cfg.refine:
            r = cfg.refine
            self.refiner = nn.Sequential(nn.Conv2d(cfg.channels + 3, r, 3, padding=1), nn.GELU(),
                                         nn.Conv2d(r, r, 3, padding=1), nn.GELU(), nn.Conv2d(r, cfg.channels, 1))
            nn.init.zeros_(self.refiner[-1].weight)
            nn.init.zeros_(self.refiner[-1].bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.metadata: dict = {}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The geometry tokens ``(B, grid * grid, embed_dim)`` of RGB ``(B, 3, S, S)`` in [0, 1]: the decoder's
        output before the up-sampling head (what a code regressor reads from a frozen predictor)."""
        cfg = self.config
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"images: expected shape (B, 3, {cfg.image_size}, {cfg.image_size}), got {tuple(images.shape)}"
            )
        b = images.shape[0]
        tokens = self.img_encoder.model.forward_features((images - self.mean) / self.std)
        tokens = tokens[:, self.img_encoder.model.num_prefix_tokens :]  # (B, h*w, C)
        g = cfg.grid
        if cfg.patch_pos_enc:
            tokens = tokens + self.patch_pos_enc.flatten(2).transpose(1, 2)
        if cfg.n_views > 1:
            view = self.view_embed[0, 0, :, 0, 0].expand(b, g * g, -1)
            tokens = torch.cat([tokens, view], dim=-1)
        return self.vol_decoder(tokens)  # (B, h*w, D)

    def features_sha256(self) -> str:
        """sha256 of what :meth:`features` computes with: the feature sizes of the config and the names,
        dtypes, shapes and bytes of the feature tensors (not the up-sampling head's). Equal digests mean equal
        features for every image, so a code regressor reading them can check its predictor by this digest."""
        import hashlib
        import json

        digest = hashlib.sha256(json.dumps(self.config.feature_dict(), sort_keys=True).encode())
        for name, value in sorted(self.state_dict().items()):
            if is_feature_parameter(name):
                t = value.detach().cpu().contiguous()
                digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """RGB ``(B, 3, H, W)`` in [0, 1] with ``H = W = config.image_size`` -> raw ``(B, P, H, W)``."""
        cfg = self.config
        x = self.features(images)
        b, g = x.shape[0], cfg.grid
        x = x.transpose(1, 2).reshape(b, -1, g, g)
        for level, up in enumerate((self.t_conv1, self.t_conv2, self.t_conv3)):
            x = F.gelu(up(x))
            if cfg.head_mix and level < 2:
                for conv in self.head_mix[level]:
                    x = x + F.gelu(conv(x))
        # (B, D, 8g, 8g)
        x = self.token_2_patch_content(x.permute(0, 2, 3, 1))  # (B, 8g, 8g, p*p*P)
        p, ch = cfg.out_patch, cfg.channels
        n = 8 * g
        x = x.reshape(b, n, n, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(b, ch, n * p, n * p)
        if cfg.refine:
            inputs = torch.cat([x, (images - self.mean) / self.std], dim=1)
            if self.refine_channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            x = x + self.refiner(inputs).contiguous()
        return x

    def split(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw ``(B, P, H, W)`` -> ``{output name: (B, C, H, W)}`` (views of ``raw``).

        One ``torch.split``: its backward writes the parts' gradients into one tensor, where per-output slices
        each zero-fill a tensor of ``raw``'s size and add them up (about 4 % of a stage-3 training step)."""
        names = self.config.outputs
        return dict(zip(names, torch.split(raw, [CHANNELS[n] for n in names], dim=1)))

    def predict_maps(self, images: torch.Tensor, flip_tta: bool = False) -> DenseMaps:
        """Maps of RGB images, channels-last (docs/contracts.md "Images and maps").

        Args:
            images: ``(B, H, W, 3)`` float RGB in [0, 1]. Any ``H, W``: the images are resized to the
                network's ``config.image_size`` square and the maps back to ``(H, W)`` (a square crop
                keeps its aspect; see :func:`nphmkit.preprocess.crop`).
            flip_tta: also predict on the mirrored image, mirror back (negating x of normals and
                canonical points; ``u -> 0.015 - u`` for uv) and average.

        Returns:
            :class:`DenseMaps` with whichever maps the network predicts (the others None).
        """
        if images.dim() != 4 or images.shape[-1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"images: expected float RGB (B, H, W, 3) in [0, 1], got {tuple(images.shape)} {images.dtype}"
            )
        if not bool(torch.isfinite(images).all()):
            raise ValueError("images: expected finite values, got NaN or inf")
        low, high = float(images.min()), float(images.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"images: expected values in [0, 1], got [{low:.3g}, {high:.3g}] (divide 8-bit values by 255)")
        h, w = images.shape[1:3]
        n = self.config.image_size
        x = images.permute(0, 3, 1, 2).to(self.mean.dtype)
        if (h, w) != (n, n):
            x = F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False, antialias=True)
        parts = self.split(self(x))
        if flip_tta:
            flipped = self.split(self(x.flip(-1)))
            for name, value in flipped.items():
                value = value.flip(-1)
                if name in ("normals", "canonical"):
                    value = torch.cat([-value[:, :1], value[:, 1:]], dim=1)
                elif name == "uv":
                    value = torch.cat([UV_FLIP_OFFSET - value[:, :1], value[:, 1:]], dim=1)
                parts[name] = 0.5 * (parts[name] + value)
        maps = {}
        for name, value in parts.items():
            if (h, w) != (n, n):
                value = F.interpolate(value, size=(h, w), mode="bilinear", align_corners=False)
            value = value.permute(0, 2, 3, 1)
            if name == "normals":
                value = F.normalize(value, dim=-1)
            elif name == "mask":
                value = value[..., 0] > 0
            elif name == "confidence":
                value = torch.exp(-value[..., 0].clamp(-10.0, 10.0))
            maps[name] = value
        frame = self.metadata.get("normal_frame", "camera") if isinstance(self.metadata, dict) else "camera"
        return DenseMaps(normals=maps.get("normals"), canonical=maps.get("canonical"), mask=maps.get("mask"),
                         uv=maps.get("uv"), confidence=maps.get("confidence"), frame=frame)
