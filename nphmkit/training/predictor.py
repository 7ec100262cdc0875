"""Training the dense geometry predictor (image -> normals, canonical points, mask) on a dataset folder.

Any folder in the dataset layout (docs/contracts.md "Datasets": ``index.json``, ``NNNNNN_rgb.png``,
``NNNNNN_maps.npz``) trains the same way, so renders of your own scans work as well as
``nphmkit synth``'s. Losses follow Pixel3DMM: L1 on normals and canonical points inside the target
mask, plus a mask term (binary cross-entropy on the mask logits); weights in the config.

Augmentations (:mod:`nphmkit.training.augment`, each seeded by ``(seed, step, item)``, so runs resume
and shard exactly): horizontal flip, background, colour jitter, blur, noise, JPEG compression.

    nphmkit train predictor --config small -o runs/predictor --set run.steps=2000
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nphmkit.heads.dense import DenseConfig, DensePredictor
from nphmkit.training.augment import Augment, augment_item
from nphmkit.training.runner import RunConfig


@dataclass
class LossWeights:
    normals: float = 1.0
    canonical: float = 1.0
    mask: float = 0.2


@dataclass
class PredictorTrainConfig:
    """Everything ``nphmkit train predictor`` reads (YAML/JSON, presets, ``--set`` overrides)."""

    data: str = "data/synth"
    """A dataset folder (docs/contracts.md "Datasets") with images at ``image_size``."""
    preset: str = "small"
    """The network: ``"small"`` (:meth:`DenseConfig.small`)."""
    image_size: int = 128
    augment: Augment = field(default_factory=Augment)
    weights: LossWeights = field(default_factory=LossWeights)
    run: RunConfig = field(default_factory=lambda: RunConfig(steps=2000, batch_size=16, lr=1e-3, warmup=100,
                                                              log_every=20, checkpoint_every=200))


PRESETS = {
    "small": PredictorTrainConfig,
    "tiny": lambda: PredictorTrainConfig(run=RunConfig(steps=20, batch_size=4, lr=1e-3, log_every=5, checkpoint_every=10)),
}


class PredictorTask:
    """A :class:`~nphmkit.training.runner.TrainTask` for :class:`DensePredictor` on a dataset folder."""

    def __init__(self, cfg: PredictorTrainConfig) -> None:
        from nphmkit.data.dataset import ImageDataset

        self.cfg = cfg
        data = ImageDataset(cfg.data)
        if len(data) == 0:
            raise ValueError(f"data: {cfg.data} holds no images")
        items = [data[i] for i in range(len(data))]
        size = tuple(items[0]["rgb"].shape[:2])
        if size != (cfg.image_size, cfg.image_size):
            raise ValueError(f"data: expected {cfg.image_size}x{cfg.image_size} images (image_size), got {size[1]}x{size[0]} "
                             f"in {cfg.data}; write the data at that size (nphmkit synth --size {cfg.image_size})")
        stack = lambda k: torch.stack([it[k].float() if k != "mask" else it[k].bool() for it in items])  # noqa: E731
        self.rgb = stack("rgb").permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
        self.normals = stack("normals").permute(0, 3, 1, 2).contiguous()
        self.canonical = stack("canonical").permute(0, 3, 1, 2).contiguous()
        self.mask = stack("mask")
        self.seed = cfg.run.seed

    def network_config(self) -> DenseConfig:
        if self.cfg.preset != "small":
            raise ValueError(f"preset: expected 'small', got {self.cfg.preset!r}")
        return DenseConfig.small()

    def build_model(self) -> nn.Module:
        return DensePredictor(self.network_config())

    def __len__(self) -> int:
        return self.rgb.shape[0]

    def batch(self, items: torch.Tensor, step: int, device: torch.device):
        out = []
        for i in items.tolist():
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1_000_033 + i)
            out.append(augment_item(self.rgb[i], self.normals[i], self.canonical[i], self.mask[i], self.cfg.augment, g))
        rgb, normals, canonical, mask = (torch.stack(t).to(device) for t in zip(*out))
        return rgb, normals, canonical, mask

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        rgb, normals, canonical, mask = batch
        raw = model(rgb)
        inner = model.module if hasattr(model, "module") else model
        parts = inner.split(raw.float())
        w = self.cfg.weights
        m = mask[:, None].float()
        denom = m.sum().clamp_min(1.0)
        terms = {}
        total = raw.new_zeros((), dtype=torch.float32)
        if "normals" in parts:
            terms["normals"] = ((parts["normals"] - normals).abs() * m).sum() / (3 * denom)
            total = total + w.normals * terms["normals"]
        if "canonical" in parts:
            terms["canonical"] = ((parts["canonical"] - canonical).abs() * m).sum() / (3 * denom)
            total = total + w.canonical * terms["canonical"]
        if "mask" in parts:
            terms["mask"] = F.binary_cross_entropy_with_logits(parts["mask"][:, 0], mask.float())
            total = total + w.mask * terms["mask"]
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def finish(self, model: nn.Module, run_dir: Path) -> None:
        from nphmkit.training.config import config_dict

        model.save(run_dir / "weights", metadata={"trained_by": "nphmkit train predictor", "data": self.cfg.data,
                                                  "config": config_dict(self.cfg), "normal_frame": "camera"})
