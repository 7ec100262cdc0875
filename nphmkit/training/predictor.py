"""Training the dense geometry predictor (image -> normals, canonical points, mask) on a dataset folder.

Any folder in the dataset layout (docs/contracts.md "Datasets": ``index.json``, ``NNNNNN_rgb.png``,
``NNNNNN_maps.npz``) trains the same way, so renders of your own scans work as well as
``nphmkit synth``'s; ``data="synthetic:N"`` renders the synthetic family's images on the fly instead
(the same images as the folder ``nphmkit synth -n N`` writes; ``render_workers`` processes).
Losses follow Pixel3DMM: L1 on normals and canonical points inside the target
mask, plus a mask term (binary cross-entropy on the mask logits); weights in the config. With
``confidence=True`` the network also predicts a per-pixel log error scale ``s`` trained by a Laplace
likelihood of its own (detached) L1 error ``e`` (normals plus ``weights.confidence_canonical`` x canonical
points), ``e exp(-s) + s``, so ``exp(-s)`` weights pixels in fits.

``init`` starts from a trained predictor (layers it lacks, such as a new refiner, start fresh);
``freeze_features=True`` then trains only the up-sampling head, which leaves
:meth:`DensePredictor.features` -- what a code regressor reads -- unchanged bit for bit.

Augmentations (:mod:`nphmkit.training.augment`, each seeded by ``(seed, step, item)``, so runs resume
and shard exactly): horizontal flip, background, colour jitter, blur, noise, JPEG compression.

    nphmkit train predictor --config small -o runs/predictor --set run.steps=2000
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nphmkit.heads.dense import CHANNELS, DenseConfig, DensePredictor, is_feature_parameter
from nphmkit.training.augment import Augment, augment_item
from nphmkit.training.runner import RunConfig


@dataclass
class LossWeights:
    normals: float = 1.0
    canonical: float = 1.0
    mask: float = 0.2
    confidence: float = 0.1
    """Weight of the confidence likelihood (with ``confidence=True``)."""
    confidence_canonical: float = 8.0
    """Scale of the canonical L1 error (NPHM units) in the error the confidence predicts, beside the normal L1
    error: 8 makes the two contribute alike on the small predictor's held-out images (mean 0.047 vs 0.0057)."""


@dataclass
class PredictorTrainConfig:
    """Everything ``nphmkit train predictor`` reads (YAML/JSON, presets, ``--set`` overrides)."""

    data: str = "data/synth"
    """A dataset folder (docs/contracts.md "Datasets") with images at ``image_size``, or ``"synthetic:N"``:
    N synthetic images rendered on the fly (:class:`~nphmkit.data.synthetic.stream.SyntheticStream`, the
    images ``nphmkit synth -n N --size image_size --seed synthetic_seed`` would write)."""
    synthetic_seed: int = 0
    """With ``data="synthetic:N"``: the synthetic family's sampling seed."""
    render_workers: int = 0
    """With ``data="synthetic:N"``: processes rendering each step's images (0: the training process)."""
    preset: str = "small"
    """The network: ``"small"`` (:meth:`DenseConfig.small`)."""
    head_mix: int = 0
    """:attr:`DenseConfig.head_mix` of the network."""
    refine: int = 0
    """:attr:`DenseConfig.refine` of the network."""
    refine_scales: int = 1
    """:attr:`DenseConfig.refine_scales` of the network."""
    confidence: bool = False
    """Add a ``"confidence"`` output (see the module doc)."""
    init: str = ""
    """A predictor weight folder or shipped name whose weights start the run (empty: random). Its feature
    sizes must match; parameters it lacks start fresh."""
    freeze_features: bool = False
    """Train only the up-sampling head (needs ``init``): :meth:`DensePredictor.features` stays ``init``'s."""
    image_size: int = 128
    augment: Augment = field(default_factory=Augment)
    weights: LossWeights = field(default_factory=LossWeights)
    run: RunConfig = field(default_factory=lambda: RunConfig(steps=2000, batch_size=16, lr=1e-3, warmup=100,
                                                              log_every=20, checkpoint_every=200))


PRESETS = {
    "small": PredictorTrainConfig,
    "tiny": lambda: PredictorTrainConfig(run=RunConfig(steps=20, batch_size=4, lr=1e-3, log_every=5, checkpoint_every=10)),
}


def transfer_state(start: DensePredictor, net: DensePredictor) -> dict[str, torch.Tensor]:
    """``net``'s state dict with every tensor ``start`` has at the same name and shape; the read-out's rows of
    outputs both predict are copied channel by channel (a new output adds rows)."""
    state = net.state_dict()
    theirs = start.state_dict()
    for name, value in theirs.items():
        if name in state and state[name].shape == value.shape:
            state[name] = value.clone()
    old, new = start.config, net.config
    if old.outputs != new.outputs and old.out_patch == new.out_patch:
        def rows(cfg, name):  # read-out rows of one output: token_2_patch_content's (p*p) blocks of P channels
            start_ch = sum(CHANNELS[o] for o in cfg.outputs[: cfg.outputs.index(name)])
            return [k * cfg.channels + start_ch + c for k in range(cfg.out_patch**2) for c in range(CHANNELS[name])]
        for key in ("weight", "bias"):
            src, dst = theirs[f"token_2_patch_content.{key}"], state[f"token_2_patch_content.{key}"].clone()
            for name in set(old.outputs) & set(new.outputs):
                dst[rows(new, name)] = src[rows(old, name)]
            state[f"token_2_patch_content.{key}"] = dst
    return state


class PredictorTask:
    """A :class:`~nphmkit.training.runner.TrainTask` for :class:`DensePredictor` on a dataset folder."""

    def __init__(self, cfg: PredictorTrainConfig) -> None:
        from nphmkit.data.dataset import ImageDataset

        self.cfg = cfg
        self.seed = cfg.run.seed
        self.stream = None
        if cfg.data.startswith("synthetic:"):
            self._open_stream(cfg)
            return
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

    def _open_stream(self, cfg: PredictorTrainConfig) -> None:
        from nphmkit.data.synthetic.dataset import SynthConfig
        from nphmkit.data.synthetic.stream import SyntheticStream

        count = cfg.data.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"data: expected a folder or 'synthetic:N' with N >= 1 images, got {cfg.data!r}")
        if cfg.render_workers < 0:
            raise ValueError(f"render_workers: expected >= 0, got {cfg.render_workers}")
        synth = SynthConfig(image_size=cfg.image_size, seed=cfg.synthetic_seed)
        self.stream = SyntheticStream(int(count), synth, workers=cfg.render_workers)

    def _arrays(self, items: list[int]):
        """Channels-first ``rgb``, ``normals``, ``canonical`` ``(M, 3, H, W)`` and ``mask (M, H, W)`` of ``items``."""
        if self.stream is None:
            return self.rgb[items], self.normals[items], self.canonical[items], self.mask[items]
        got = self.stream.items(items)
        cf = lambda k: got[k].permute(0, 3, 1, 2).contiguous()  # noqa: E731
        return cf("rgb"), cf("normals"), cf("canonical"), got["mask"]

    def network_config(self) -> DenseConfig:
        c = self.cfg
        if c.preset != "small":
            raise ValueError(f"preset: expected 'small', got {c.preset!r}")
        outputs = ("normals", "canonical", "mask") + (("confidence",) if c.confidence else ())
        return replace(DenseConfig.small(outputs), head_mix=c.head_mix, refine=c.refine,
                       refine_scales=c.refine_scales)

    def build_model(self) -> nn.Module:
        net = DensePredictor(self.network_config())
        c = self.cfg
        if c.freeze_features and not c.init:
            raise ValueError("freeze_features: needs init (the predictor whose features stay fixed)")
        if c.init:
            from nphmkit.pretrained import weights_folder

            try:
                folder = weights_folder(c.init)
            except (FileNotFoundError, ValueError) as err:
                raise FileNotFoundError(f"init: {err}") from None
            try:
                start = DensePredictor.load(folder)
            except ValueError as err:
                raise ValueError(f"init: {err}") from None
            want, have = net.config.feature_dict(), start.config.feature_dict()
            diff = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
            if diff:
                raise ValueError(f"init: {folder} has other feature sizes than this config (its value, this config's): "
                                 f"{diff}")
            net.load_state_dict(transfer_state(start, net))
            if c.freeze_features:
                for name, p in net.named_parameters():
                    if is_feature_parameter(name):
                        p.requires_grad_(False)
        return net

    def __len__(self) -> int:
        return len(self.stream) if self.stream is not None else self.rgb.shape[0]

    def item_generator(self, step: int, item: int) -> torch.Generator:
        """The generator of item ``item``'s augmentation at ``step``: seeded by (run seed, step, item) alone, so
        resumed and sharded runs draw the same augmentations."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 1_000_033 + item)

    def batch(self, items: torch.Tensor, step: int, device: torch.device):
        ids = items.tolist()
        arrays = self._arrays(ids)  # fresh tensors (gathered): each item's augmented arrays go back in place
        for j, i in enumerate(ids):
            views = [a[j] for a in arrays]
            for a, view, new in zip(arrays, views, augment_item(*views, self.cfg.augment, self.item_generator(step, i))):
                if new is not view:  # unchanged targets (no flip) are not copied
                    a[j] = new
        return tuple(a.to(device) for a in arrays)

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
        if "confidence" in parts:
            err = raw.new_zeros(mask.shape, dtype=torch.float32)  # (B, H, W) the pixel's own L1 error
            if "normals" in parts:
                err = err + (parts["normals"] - normals).abs().mean(1).detach()
            if "canonical" in parts:
                err = err + w.confidence_canonical * (parts["canonical"] - canonical).abs().mean(1).detach()
            s = parts["confidence"][:, 0].clamp(-10.0, 10.0)
            terms["confidence"] = ((err * torch.exp(-s) + s) * mask).sum() / denom
            total = total + w.confidence * terms["confidence"]
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def finish(self, model: nn.Module, run_dir: Path) -> None:
        from nphmkit.training.config import config_dict

        if self.stream is not None:
            self.stream.close()
        model.save(run_dir / "weights", metadata={"trained_by": "nphmkit train predictor", "data": self.cfg.data,
                                                  "config": config_dict(self.cfg), "normal_frame": "camera"})
