"""The NPHM auto-decoder as a task of the training runner: ``nphmkit train nphm``.

The same losses as :func:`nphmkit.training.train_autodecoder` (:func:`autodecoder_terms`), run by
:func:`nphmkit.training.runner.train`, so NPHM training gets what every runner task gets:
``torchrun`` / DDP, atomic checkpoints with resume, SIGTERM safety, ``log.csv`` / TensorBoard,
bf16 and accumulation. An item is one shape (identity + expression); the network, one identity
code per identity and one expression code per shape are learned together (codes at
``lr_id`` / ``lr_ex`` times ``run.lr``). Each item's points are drawn by ``(seed, step, item)``
and every loss term is a mean of per-shape values (``per_item=True``), so ``torchrun`` with ``P``
processes computes the single-process steps.

Data (``data``): ``"synthetic"`` samples shapes of the synthetic family (``synthetic.*``; cached
as ``samples.safetensors`` in the run folder), or a samples file of your own written by
:func:`nphmkit.training.samples.save_samples` (surface points with normals and canonical
targets, near and free-space points with SDF values, anchors; docs/training.md).

    nphmkit train nphm --config small -o runs/nphm --set synthetic.identities=48
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from nphmkit.losses import CodeLayout
from nphmkit.nphm import NPHM, NPHMConfig
from nphmkit.training.autodecoder import LossWeights, autodecoder_terms
from nphmkit.training.runner import RunConfig
from nphmkit.training.samples import ShapeSamples, load_samples, save_samples


@dataclass
class SyntheticShapes:
    """Which synthetic shapes ``data="synthetic"`` samples (expression 0 of every identity is neutral)."""

    identities: int = 48
    expressions: int = 3
    seed: int = 0
    surface: int = 4000
    """Surface points per shape (with normals and canonical targets)."""
    near: int = 4000
    space: int = 1500


@dataclass
class NPHMTrainConfig:
    """Everything ``nphmkit train nphm`` reads (YAML/JSON, presets, ``--set`` overrides)."""

    data: str = "synthetic"
    """``"synthetic"`` or a samples file (``save_samples``)."""
    synthetic: SyntheticShapes = field(default_factory=SyntheticShapes)
    preset: str = "small"
    """The network: ``"small"`` or ``"tiny"`` (:class:`NPHMConfig` presets)."""
    surface_per_shape: int = 400
    near_per_shape: int = 600
    space_per_shape: int = 150
    lr_id: float = 3.0
    """Identity-code learning rate, a multiple of ``run.lr``."""
    lr_ex: float = 5.0
    """Expression-code learning rate, a multiple of ``run.lr``."""
    space_clamp: float = 0.1
    weights: LossWeights = field(default_factory=LossWeights)
    run: RunConfig = field(default_factory=lambda: RunConfig(steps=5000, batch_size=8, lr=1e-3, log_every=50,
                                                              checkpoint_every=500))


PRESETS = {
    "small": NPHMTrainConfig,
    "tiny": lambda: NPHMTrainConfig(
        synthetic=SyntheticShapes(identities=2, expressions=2, surface=300, near=300, space=100), preset="tiny",
        surface_per_shape=64, near_per_shape=64, space_per_shape=32,
        run=RunConfig(steps=20, batch_size=2, lr=1e-3, log_every=5, checkpoint_every=10)),
}
_NETWORKS = {"small": NPHMConfig.small, "tiny": NPHMConfig.tiny}


class AutoDecoder(nn.Module):
    """An NPHM with the codes of its training shapes; ``forward(batch)`` returns the loss terms."""

    def __init__(self, nphm: NPHM, n_identities: int, n_shapes: int, space_clamp: float) -> None:
        super().__init__()
        self.nphm = nphm
        self.z_id = nn.Parameter(0.01 * torch.randn(n_identities, nphm.config.id_dim))
        self.z_ex = nn.Parameter(torch.zeros(n_shapes, nphm.config.lat_dim_ex))
        self.space_clamp = space_clamp
        self.layout = CodeLayout.of(nphm.config)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        zi = self.z_id[batch["identity"]]
        return autodecoder_terms(
            self.nphm, zi, self.z_ex[batch["shape"]], zi, batch["anchors"], batch["surface"], batch["normals"],
            batch["canonical"], batch["valid"], batch["near"], batch["near_sdf"], batch["space"], batch["space_sdf"],
            batch["neutral"], self.space_clamp, self.layout, per_item=True,
        )


def synthetic_samples(cfg: SyntheticShapes, progress: bool | None = None) -> ShapeSamples:
    """Samples of ``cfg.identities x cfg.expressions`` synthetic shapes (expression 0 neutral)."""
    from nphmkit.data.synthetic import params as P
    from nphmkit.training.samples import build_samples

    if cfg.identities < 1 or cfg.expressions < 1:
        raise ValueError(f"synthetic: expected at least 1 identity and 1 expression, got {cfg.identities} x "
                         f"{cfg.expressions}")
    identities = P.sample_identity(cfg.identities, cfg.seed)
    expressions = P.neutral_expression(cfg.identities * cfg.expressions).reshape(cfg.identities, cfg.expressions, -1)
    if cfg.expressions > 1:
        n = cfg.identities * (cfg.expressions - 1)
        expressions[:, 1:] = P.sample_expression(n, cfg.seed + 1).reshape(cfg.identities, cfg.expressions - 1, -1)
    return build_samples(identities, expressions, cfg.surface, cfg.near, cfg.space, seed=cfg.seed, progress=progress)


class NPHMTask:
    """A :class:`~nphmkit.training.runner.TrainTask` training an NPHM auto-decoder on shape samples.

    ``cache``: where ``data="synthetic"`` keeps its samples (built once, reused on ``--resume``).
    """

    def __init__(self, cfg: NPHMTrainConfig, cache: str | os.PathLike | None = None, progress: bool | None = None) -> None:
        if cfg.preset not in _NETWORKS:
            raise ValueError(f"preset: expected one of {sorted(_NETWORKS)}, got {cfg.preset!r}")
        self.cfg = cfg
        for name in ("surface_per_shape", "near_per_shape", "space_per_shape"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(cfg, name)}")
        if cfg.data == "synthetic":
            cached = Path(cache) if cache is not None else None
            if cached is not None and cached.is_file():
                self.samples = load_samples(cached)
            else:
                self.samples = synthetic_samples(cfg.synthetic, progress)
                if cached is not None and int(os.environ.get("RANK", "0")) == 0:
                    save_samples(self.samples, cached)
        else:
            self.samples = load_samples(cfg.data)

    def build_model(self) -> nn.Module:
        s = self.samples
        nphm = NPHM(_NETWORKS[self.cfg.preset](), mean_anchors=s.anchors.mean(0))
        return AutoDecoder(nphm, s.anchors.shape[0], int(s.expression_index.max()) + 1, self.cfg.space_clamp)

    def param_groups(self, model: AutoDecoder) -> list[dict]:
        return [{"params": list(model.nphm.parameters())}, {"params": [model.z_id], "lr": self.cfg.lr_id},
                {"params": [model.z_ex], "lr": self.cfg.lr_ex}]

    def __len__(self) -> int:
        return self.samples.surface.shape[0]

    def batch(self, items: torch.Tensor, step: int, device: torch.device) -> dict:
        s, cfg = self.samples, self.cfg
        picks = {"surface": [], "near": [], "space": []}
        counts = {"surface": cfg.surface_per_shape, "near": cfg.near_per_shape, "space": cfg.space_per_shape}
        for i in items.tolist():
            g = torch.Generator().manual_seed((cfg.run.seed * 1_000_003 + step) * 1_000_033 + i)
            for kind, n in counts.items():
                picks[kind].append(torch.randint(0, getattr(s, kind).shape[1], (n,), generator=g))
        rows = items[:, None]
        idx = {k: torch.stack(v) for k, v in picks.items()}
        identity = s.identity_index[items]
        out = {
            "surface": s.surface[rows, idx["surface"]], "normals": s.normals[rows, idx["surface"]],
            "canonical": s.canonical[rows, idx["surface"]], "valid": s.valid[rows, idx["surface"]],
            "near": s.near[rows, idx["near"]], "near_sdf": s.near_sdf[rows, idx["near"]],
            "space": s.space[rows, idx["space"]], "space_sdf": s.space_sdf[rows, idx["space"]],
            "identity": identity, "shape": s.expression_index[items], "anchors": s.anchors[identity],
            "neutral": s.is_neutral[items],
        }
        out = {k: v.to(device) for k, v in out.items()}
        out["step"] = step
        return out

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        terms = model(batch)
        w = self.cfg.weights
        steps = self.cfg.run.steps
        weights = {**asdict(w), "correspondence": w.correspondence + (w.correspondence_final - w.correspondence)
                   * batch["step"] / max(steps - 1, 1)}
        weights.pop("correspondence_final")
        total = sum(weights[k] * v for k, v in terms.items())
        logged = {k: float(v.detach()) for k, v in terms.items()}
        logged["surface_mm"] = logged["surface"] * 250
        return total, logged

    def finish(self, model: nn.Module, run_dir: Path) -> None:
        from safetensors.torch import save_file

        from nphmkit._io import atomic_path
        from nphmkit.training.config import config_dict

        model.nphm.save(run_dir / "weights", metadata={"trained_by": "nphmkit train nphm", "data": self.cfg.data,
                                                       "config": config_dict(self.cfg)})
        s = self.samples
        codes = {"z_id": model.z_id.detach().cpu().contiguous(), "z_ex": model.z_ex.detach().cpu().contiguous(),
                 "identity_index": s.identity_index.contiguous(), "expression_index": s.expression_index.contiguous()}
        with atomic_path(run_dir / "codes.safetensors") as tmp:
            save_file(codes, str(tmp))
