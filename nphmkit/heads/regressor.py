"""Pix2NPHM regressor: frozen geometry ViTs' tokens + learned query tokens -> transformer -> NPHM codes.

Tokens of each frozen backbone (patch tokens of its last block) are projected to a common width
and tagged with a learned per-backbone embedding; 1 global-identity, ``n_anchors`` local-identity
and 1 expression query token (+ 1 pose token, optional) are appended; a stack of pre-norm
transformer layers mixes everything; small MLPs read the query tokens out:

- global token -> ``z_glob (B, lat_dim_glob)``;
- local token j -> ``z_loc[j] (B, lat_dim_loc)`` (one MLP shared by all locals, each token learned);
- the anchor-free background slot (local slot ``n_anchors``) is read out of the **global** token
  by its own MLP: the background MLP models what no anchor does (back of the head, neck), a
  property of the whole head, so it has no query token of its own;
- expression token -> ``z_ex (B, lat_dim_ex)``;
- pose token -> a rotation (6D, Gram-Schmidt) and a translation (docs/contracts.md pose, scale 1).

``z_id = [z_glob | z_loc[0..n_anchors-1] | z_bg]`` is the NPHM layout (2176 values at the official sizes).

The frozen backbones are either ViTs built from the config (``backbone="vit"``) or one trained
:class:`~nphmkit.heads.dense.DensePredictor` whose geometry tokens (:meth:`DensePredictor.features`)
are read (``backbone="predictor"``, :meth:`RegressorConfig.on_predictor`). A predictor-backed
regressor's weight folder does not hold the predictor again: its metadata names the predictor
(``predictor``: a shipped name or a folder) and the digest of its features
(``predictor_features_sha256``, :meth:`DensePredictor.features_sha256`), and :meth:`Pix2NPHMRegressor.load`
loads that predictor and refuses one whose features differ. A predictor whose up-sampling head was retrained
with frozen features (``nphmkit train predictor --set freeze_features=true``) keeps serving the regressor.
Folders written before the features digest record ``predictor_sha256`` (the whole predictor folder's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from nphmkit.heads.vit import Block, ViT, ViTConfig
from nphmkit.transforms import rotation_6d_to_matrix
from nphmkit.weights import WeightFolderMixin


@dataclass(frozen=True)
class RegressorConfig:
    """Sizes of the regressor; the code sizes must match the NPHM it predicts for."""

    backbones: tuple[ViTConfig, ...] = field(default_factory=lambda: (ViTConfig.preset("dino_vitb16"),) * 2)
    image_size: int = 512
    width: int = 768
    layers: int = 6
    heads: int = 12
    readout_hidden: int = 512
    lat_dim_glob: int = 64
    lat_dim_loc: int = 32
    n_anchors: int = 65
    lat_dim_ex: int = 100
    pose_token: bool = True
    attention: str = "sdpa"
    """Attention backend of the regressor's own transformer (the backbones' is in their configs)."""
    backbone: str = "vit"
    """``"vit"``: frozen ViTs from ``backbones``; ``"predictor"``: a frozen dense predictor's tokens."""
    feature_dim: int = 0
    """Width of the predictor's tokens (``backbone="predictor"``)."""

    @property
    def id_dim(self) -> int:
        return self.lat_dim_glob + (self.n_anchors + 1) * self.lat_dim_loc

    @classmethod
    def paper_like(cls) -> "RegressorConfig":
        """nphmkit's reading of the Pix2NPHM paper: two frozen geometry ViTs (normal- and position-pretrained,
        ViT-B/16 here, 512^2 -> 32 x 32 tokens each), 1 + 65 + 1 query tokens, 6 layers of width 768, 2-layer MLP
        read-outs."""
        return cls()

    @classmethod
    def small(cls) -> "RegressorConfig":
        """CPU-trainable: two tiny ViTs at 128^2, width 64, 2 layers (same code layout as the small NPHM)."""
        return cls(backbones=(ViTConfig.preset("tiny"),) * 2, image_size=128, width=64, layers=2, heads=4,
                   readout_hidden=64)

    @classmethod
    def on_predictor(cls, predictor_config, **sizes) -> "RegressorConfig":
        """Read a frozen dense predictor (its :class:`~nphmkit.heads.dense.DenseConfig`): its input size and
        token width; ``sizes`` override the rest (default: the small sizes)."""
        base = dict(width=64, layers=2, heads=4, readout_hidden=64)
        base.update(sizes)
        return cls(backbones=(), image_size=predictor_config.image_size, backbone="predictor",
                   feature_dim=predictor_config.embed_dim, **base)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["backbones"] = [asdict(b) for b in self.backbones]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RegressorConfig":
        d = dict(d)
        d["backbones"] = tuple(ViTConfig(**b) for b in d["backbones"])
        return cls(**d)


class PredictorBackbone(nn.Module):
    """A frozen dense predictor seen as a backbone: ``forward_tokens`` of ImageNet-normalized images gives its
    geometry tokens (:meth:`~nphmkit.heads.dense.DensePredictor.features`) with no prefix tokens."""

    def __init__(self, predictor) -> None:
        super().__init__()
        self.predictor = predictor
        self.config = ViTConfig(embed_dim=predictor.config.embed_dim)

    def forward_tokens(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        p = self.predictor
        tokens = p.features(images * p.std + p.mean)  # the predictor normalizes itself
        return [(tokens[:, :0], tokens)]


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


def check_predictor(metadata: dict, predictor, folder, directory: str) -> None:
    """Refuse a predictor other than the one a regressor's ``metadata`` names. With
    ``predictor_features_sha256`` only the predictor's features must match (its up-sampling head, which the
    regressor never reads, may have been retrained); older folders record ``predictor_sha256``, the sha256 of
    the whole predictor folder (:func:`nphmkit.pretrained.weights_sha256`)."""
    from nphmkit.pretrained import weights_sha256

    name = metadata.get("predictor")
    if metadata.get("predictor_features_sha256"):
        want, have, what = metadata["predictor_features_sha256"], predictor.features_sha256(), "features"
    else:
        want, have, what = metadata.get("predictor_sha256"), weights_sha256(folder), "files"
    if want != have:
        raise ValueError(f"directory: {directory} was trained on predictor {name!r} whose {what} have sha256 {want}, "
                         f"but {folder} has sha256 {have}")


class Pix2NPHMRegressor(WeightFolderMixin, nn.Module):
    """Predict NPHM codes (and pose) from an image; backbones are frozen, everything else trains.

    ``forward(images)`` takes RGB ``(B, 3, S, S)`` in [0, 1] (ImageNet-normalized inside) and returns
    a dict with ``z_id (B, id_dim)``, ``z_ex (B, lat_dim_ex)`` and, with a pose token, ``rotation
    (B, 3, 3)``, ``translation (B, 3)``.
    """

    _folder_kind = "Pix2NPHMRegressor"
    _config_class = RegressorConfig

    def __init__(self, config: RegressorConfig | None = None, backbones: list[ViT] | None = None,
                 predictor=None) -> None:
        super().__init__()
        self.config = cfg = config or RegressorConfig()
        if cfg.backbone == "predictor":
            if predictor is None:
                raise ValueError("predictor: a regressor with backbone='predictor' needs the dense predictor it reads")
            if predictor.config.embed_dim != cfg.feature_dim or predictor.config.image_size != cfg.image_size:
                raise ValueError(f"predictor: expected tokens of width {cfg.feature_dim} at {cfg.image_size}^2, got "
                                 f"{predictor.config.embed_dim} at {predictor.config.image_size}^2")
            backbones = [PredictorBackbone(predictor)]
        elif cfg.backbone != "vit":
            raise ValueError(f"backbone: expected 'vit' or 'predictor', got {cfg.backbone!r}")
        else:
            if backbones is None:
                backbones = [ViT(b) for b in cfg.backbones]
            if len(backbones) != len(cfg.backbones):
                raise ValueError(f"backbones: expected {len(cfg.backbones)} (the config's), got {len(backbones)}")
        self.backbones = nn.ModuleList(backbones)
        for bb in self.backbones:
            bb.requires_grad_(False)
            bb.eval()
        w = cfg.width
        self.proj = nn.ModuleList([nn.Linear(b.config.embed_dim, w) for b in self.backbones])
        self.source_embed = nn.Parameter(torch.zeros(len(backbones), w))
        n_queries = 2 + cfg.n_anchors + int(cfg.pose_token)
        self.queries = nn.Parameter(torch.randn(n_queries, w) * 0.02)
        block_cfg = ViTConfig(embed_dim=w, depth=cfg.layers, num_heads=cfg.heads, norm_eps=1e-6, attention=cfg.attention)
        self.blocks = nn.ModuleList([Block(block_cfg) for _ in range(cfg.layers)])
        self.norm = nn.LayerNorm(w, eps=1e-6)
        h = cfg.readout_hidden
        self.read_glob = _mlp(w, h, cfg.lat_dim_glob)
        self.read_local = _mlp(w, h, cfg.lat_dim_loc)
        self.read_background = _mlp(w, h, cfg.lat_dim_loc)
        self.read_expression = _mlp(w, h, cfg.lat_dim_ex)
        if cfg.pose_token:
            self.read_pose = _mlp(w, h, 9)
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), persistent=False)
        self.metadata: dict = {}

    def train(self, mode: bool = True) -> "Pix2NPHMRegressor":
        super().train(mode)
        for bb in self.backbones:
            bb.eval()  # frozen backbones always run in eval mode
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, cfg.image_size, cfg.image_size):
            raise ValueError(f"images: expected shape (B, 3, {cfg.image_size}, {cfg.image_size}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images: expected float RGB in [0, 1], got dtype {images.dtype} (divide 8-bit values by 255)")
        x_in = (images.to(self.mean.dtype) - self.mean) / self.std
        b = images.shape[0]
        seq = []
        with torch.no_grad():
            feats = [bb.forward_tokens(x_in)[0][1] for bb in self.backbones]
        for i, (f, proj) in enumerate(zip(feats, self.proj)):
            seq.append(proj(f) + self.source_embed[i])
        q = self.queries.expand(b, -1, -1)
        x = torch.cat(seq + [q], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        tokens = x[:, -q.shape[1] :]
        glob_tok, local_tok, ex_tok = tokens[:, 0], tokens[:, 1 : 1 + cfg.n_anchors], tokens[:, 1 + cfg.n_anchors]
        z_id = torch.cat(
            [self.read_glob(glob_tok), self.read_local(local_tok).flatten(1), self.read_background(glob_tok)], dim=1
        )
        out = {"z_id": z_id, "z_ex": self.read_expression(ex_tok)}
        if cfg.pose_token:
            pose = self.read_pose(tokens[:, -1])
            base = pose.new_tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            out["rotation"] = rotation_6d_to_matrix(base + pose[:, :6])
            out["translation"] = pose[:, 6:]
        return out

    def save(self, directory, metadata: dict | None = None):
        """Save to a weight folder; a predictor-backed regressor leaves the predictor out and needs
        ``metadata["predictor"]`` (a shipped name or a folder) and ``metadata["predictor_features_sha256"]``
        (or the older ``metadata["predictor_sha256"]``)."""
        from nphmkit.weights import save_folder

        meta = dict(self.metadata if metadata is None else metadata)
        state = self.state_dict()
        if self.config.backbone == "predictor":
            if not meta.get("predictor") or not (meta.get("predictor_sha256") or meta.get("predictor_features_sha256")):
                raise ValueError("metadata: a predictor-backed regressor needs 'predictor' (a shipped name or folder) "
                                 "and 'predictor_features_sha256' (DensePredictor.features_sha256) or "
                                 "'predictor_sha256' (nphmkit.pretrained.weights_sha256)")
            state = {k: v for k, v in state.items() if not k.startswith("backbones.")}
        return save_folder(directory, self._folder_kind, self.config.to_dict(), state, meta)

    @classmethod
    def load(cls, directory, map_location="cpu", predictor=None) -> "Pix2NPHMRegressor":
        """Load a weight folder (strict). A predictor-backed regressor loads the predictor its metadata names
        (a shipped name, or a folder relative to the regressor's) after checking its sha256, unless
        ``predictor`` is given."""
        import os
        from pathlib import Path

        from nphmkit.pretrained import SHIPPED, weights_folder
        from nphmkit.weights import load_folder, load_state_strict

        if isinstance(directory, str) and not os.path.isdir(directory) and directory in SHIPPED:
            directory = weights_folder(directory)
        config, tensors, metadata = load_folder(directory, cls._folder_kind, "cpu")
        cfg = RegressorConfig.from_dict(config)
        if cfg.backbone != "predictor":
            model = cls(cfg)
            load_state_strict(model, tensors, str(directory))
        else:
            if predictor is None:
                from nphmkit.heads.dense import DensePredictor

                name = str(metadata.get("predictor", ""))
                folder = weights_folder(name) if name in SHIPPED else Path(directory, name)
                if not name or not folder.is_dir():
                    raise FileNotFoundError(f"directory: {directory} reads the predictor {name!r}, not found")
                predictor = DensePredictor.load(folder).eval().requires_grad_(False)
                check_predictor(metadata, predictor, folder, str(directory))
            model = cls(cfg, predictor=predictor)
            load_state_strict(model, tensors, str(directory), skip="backbones.")
        model.metadata = metadata
        return model.to(map_location)

    def parameter_summary(self) -> dict[str, dict[str, int]]:
        """Trainable and frozen parameter counts per top-level part."""
        summary: dict[str, dict[str, int]] = {}
        for name, module in self.named_children():
            params = list(module.parameters())
            summary[name] = {
                "trainable": sum(p.numel() for p in params if p.requires_grad),
                "frozen": sum(p.numel() for p in params if not p.requires_grad),
            }
        own = [p for n, p in self.named_parameters(recurse=False)]
        summary["tokens"] = {"trainable": sum(p.numel() for p in own), "frozen": 0}
        return summary
