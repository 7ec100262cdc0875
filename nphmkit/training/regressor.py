"""Training the Pix2NPHM regressor (image -> NPHM codes and pose) on a dataset folder: ``nphmkit train regressor``.

The regressor reads a frozen dense predictor's geometry tokens (``predictor``, a shipped name or a
folder; :meth:`RegressorConfig.on_predictor`) and predicts codes of a frozen head model (``model``:
an NPHM weight folder or shipped name). Supervision per item, as Pix2NPHM mixes it:

- **3D items** (the dataset's records carry the ground-truth shape: the synthetic family's
  ``identity`` / ``expression_params``, or NPHM codes ``z_id`` / ``z_ex`` of ``model``): the
  SDF-space loss (:func:`nphmkit.losses.sdf_space_loss`) between the predicted codes' field and the
  ground truth's at points near its surface and in space (sampled once per shape at start-up), and
  a pose loss against the record's camera (rotation relative to frontal, the head origin's crop
  position and focal-normalized depth: :func:`nphmkit.transforms.encode_crop_pose`);
- **2D items** (a fraction ``two_d`` of the items, their 3D labels unused, as for frames of
  videos): the frozen predictor's normal map and mask of the image as pseudo ground truth, compared
  through the differentiable renderer with the predicted codes and pose (normal and silhouette terms
  of :mod:`nphmkit.fitting.terms`, ``two_d_pixels`` pixels per item; ~0.7 s per item per step here);
- the head model's ``code_regularizers``, weighted by name.

Augmentations are photometric only (:mod:`nphmkit.training.augment` without the flip: a mirrored
image is another head). Everything else is the runner's: ``torchrun``, checkpoints, resume, logs.

    nphmkit train regressor --set data=out/synth -o runs/regressor
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from nphmkit.training.augment import Augment, augment_item
from nphmkit.training.runner import RunConfig


@dataclass
class RegressorLossWeights:
    sdf: float = 1.0
    rotation: float = 0.5
    position: float = 0.5
    normals_2d: float = 1.0
    silhouette_2d: float = 0.05
    regularizers: dict = field(default_factory=lambda: {"id_global": 1e-4, "id_local": 1e-4, "ex": 1e-4})


@dataclass
class RegressorTrainConfig:
    """Everything ``nphmkit train regressor`` reads (YAML/JSON, presets, ``--set`` overrides)."""

    data: str = "data/synth"
    """A dataset folder (docs/contracts.md "Datasets") at the predictor's input size."""
    predictor: str = "small_predictor"
    """The frozen dense predictor: a shipped name or a weight folder."""
    model: str = "small"
    """The head model the codes are for: a shipped NPHM name or an NPHM weight folder."""
    width: int = 64
    layers: int = 2
    heads: int = 4
    readout_hidden: int = 64
    near: int = 1200
    """Points near each ground-truth surface, sampled at start-up."""
    space: int = 400
    """Points uniform in the head box, sampled at start-up."""
    near_per_step: int = 384
    space_per_step: int = 128
    sigma: float = 0.01
    """Spread of the near points around the surface (NPHM units)."""
    truncation: float = 0.05
    two_d: float = 0.0
    """Fraction of the items supervised as 2D items (predictor maps through the renderer)."""
    two_d_pixels: int = 600
    augment: Augment = field(default_factory=lambda: Augment(flip=0.0))
    weights: RegressorLossWeights = field(default_factory=RegressorLossWeights)
    seed_samples: int = 0
    init: str = ""
    """A regressor weight folder or shipped name (``small_regressor``) to start from (fine-tuning); its
    network sizes and predictor must match this config's. Empty: random initialization."""
    run: RunConfig = field(default_factory=lambda: RunConfig(steps=6000, batch_size=16, lr=1e-3, warmup=200,
                                                              log_every=50, checkpoint_every=500))


PRESETS = {
    "small": RegressorTrainConfig,
    "tiny": lambda: RegressorTrainConfig(near=200, space=60, near_per_step=48, space_per_step=16, two_d_pixels=64,
                                         run=RunConfig(steps=20, batch_size=4, lr=1e-3, log_every=5, checkpoint_every=10)),
}


def _load_named(kind: str, name: str, expected: str):
    from nphmkit.pretrained import load_weights, weights_folder

    try:
        folder = weights_folder(name)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{kind}: {err}") from None
    module = load_weights(folder)
    if type(module).__name__ != expected:
        raise ValueError(f"{kind}: expected {expected} weights, got {type(module).__name__} in {folder}")
    return module, folder


def shape_samples(sdf, batch: int, n_near: int, n_space: int, sigma: float, g: torch.Generator,
                  bounds=((-0.45, -0.5, -0.62), (0.45, 0.62, 0.42))) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``(batch, n_near + n_space, 3)`` near the zero level set of ``sdf`` (a batched field) and in
    ``bounds``, with their values ``(batch, n_near + n_space)``: uniform points are walked onto the surface
    by damped Newton steps, jittered by ``sigma`` (half of them by ``4 sigma``)."""
    from nphmkit.data.synthetic.landmarks import project_to_surface

    lo, hi = torch.tensor(bounds[0]), torch.tensor(bounds[1])
    start = lo + (hi - lo) * torch.rand(batch, 3 * n_near, 3, generator=g)
    surf = project_to_surface(sdf, start, steps=20, max_step=0.04)
    with torch.no_grad():
        err = sdf(surf).abs()
    # the n_near best-converged points of each shape
    order = err.argsort(dim=1)[:, :n_near]
    surf = surf.gather(1, order[..., None].expand(-1, -1, 3))
    scale = torch.where(torch.rand(batch, n_near, 1, generator=g) < 0.5, sigma, 4 * sigma)
    near = surf + scale * torch.randn(batch, n_near, 3, generator=g)
    space = lo + (hi - lo) * torch.rand(batch, n_space, 3, generator=g)
    points = torch.cat([near, space], dim=1)
    with torch.no_grad():
        return points, sdf(points)


class RegressorTask:
    """A :class:`~nphmkit.training.runner.TrainTask` for :class:`~nphmkit.heads.Pix2NPHMRegressor`."""

    def __init__(self, cfg: RegressorTrainConfig, progress: bool | None = None) -> None:
        from nphmkit._progress import progress_bar
        from nphmkit.data.dataset import ImageDataset
        from nphmkit.data.synthetic import SyntheticHead

        self.cfg = cfg
        if not 0.0 <= cfg.two_d <= 1.0:
            raise ValueError(f"two_d: expected a fraction in [0, 1], got {cfg.two_d}")
        self.predictor, self.predictor_folder = _load_named("predictor", cfg.predictor, "DensePredictor")
        self.nphm, self.model_folder = _load_named("model", cfg.model, "NPHM")
        known = set(self.nphm.code_regularizers(*self.nphm.initial_codes(1)))
        unknown = sorted(set(cfg.weights.regularizers) - known)
        if unknown:
            raise ValueError(f"weights.regularizers: unknown name(s) {unknown}; the model has {sorted(known)}")
        data = ImageDataset(cfg.data)
        if len(data) == 0:
            raise ValueError(f"data: {cfg.data} holds no images")
        items = [data[i] for i in range(len(data))]
        size = self.predictor.config.image_size
        if tuple(items[0]["rgb"].shape[:2]) != (size, size):
            h, w = items[0]["rgb"].shape[:2]
            raise ValueError(f"data: expected {size}x{size} images (the predictor's input), got {w}x{h} in {cfg.data}")
        self.rgb = torch.stack([it["rgb"] for it in items]).permute(0, 3, 1, 2).contiguous()
        self.K = torch.stack([it["K"] for it in items]).float()
        self.R = torch.stack([it["R"] for it in items]).float()
        self.t = torch.stack([it["t"] for it in items]).float()
        self.size = (size, size)
        # ground-truth fields: one per distinct shape
        recs = [it["record"] for it in items]
        keys = [(tuple(r["identity"].values()), tuple(r["expression_params"].values())) if "identity" in r
                else None for r in recs]
        if any(k is None for k in keys):
            raise ValueError(f"data: every record needs the ground-truth shape ('identity' and 'expression_params' of "
                             f"the synthetic family); {cfg.data} has records without")
        shapes = sorted(set(keys))
        self.shape_of = torch.tensor([shapes.index(k) for k in keys])
        g = torch.Generator().manual_seed(cfg.seed_samples)
        pts, vals = [], []
        bar = progress_bar(total=len(shapes), progress=progress, desc="sampling ground-truth shapes", unit="shape")
        for s in range(0, len(shapes), 16):
            chunk = shapes[s : s + 16]
            head = SyntheticHead(torch.tensor([c[0] for c in chunk]), torch.tensor([c[1] for c in chunk]))
            p, v = shape_samples(head.sdf, len(chunk), cfg.near, cfg.space, cfg.sigma, g)
            pts.append(p)
            vals.append(v)
            bar.update(len(chunk))
        bar.close()
        self.points, self.values = torch.cat(pts), torch.cat(vals)
        # 2D items: an item-seeded choice, and the predictor's maps of the clean image as pseudo ground truth
        self.two_d = torch.rand(len(items), generator=torch.Generator().manual_seed(cfg.run.seed + 17)) < cfg.two_d
        self.maps = None
        if bool(self.two_d.any()):
            idx = self.two_d.nonzero()[:, 0]
            with torch.no_grad():
                maps = self.predictor.predict_maps(self.rgb[idx].permute(0, 2, 3, 1))
            self.maps = {int(i): (maps.normals[k], maps.mask[k]) for k, i in enumerate(idx)}

    # ------------------------------------------------------------------ the runner's interface
    def build_model(self) -> nn.Module:
        from nphmkit.heads.regressor import Pix2NPHMRegressor, RegressorConfig

        c = self.cfg
        rc = RegressorConfig.on_predictor(self.predictor.config, width=c.width, layers=c.layers, heads=c.heads,
                                          readout_hidden=c.readout_hidden, lat_dim_glob=self.nphm.config.lat_dim_glob,
                                          lat_dim_loc=self.nphm.config.lat_dim_loc,
                                          lat_dim_ex=self.nphm.config.lat_dim_ex)
        net = Pix2NPHMRegressor(rc, predictor=self.predictor)
        if c.init:
            net.load_state_dict(self._initial_state(rc))
        return net

    def _initial_state(self, rc) -> dict:
        """The weights of ``cfg.init`` after checking that they fit ``rc`` and read this run's predictor."""
        from nphmkit.heads.regressor import Pix2NPHMRegressor
        from nphmkit.pretrained import weights_folder, weights_sha256

        try:
            folder = weights_folder(self.cfg.init)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"init: {err}") from None
        start = Pix2NPHMRegressor.load(folder, predictor=self.predictor)
        if start.metadata.get("predictor_features_sha256"):
            want, have = start.metadata["predictor_features_sha256"], self.predictor.features_sha256()
        else:
            want, have = start.metadata.get("predictor_sha256"), weights_sha256(self.predictor_folder)
        if want and want != have:
            raise ValueError(f"init: {folder} was trained on the predictor with sha256 {want[:12]}, this run reads "
                             f"{self.cfg.predictor} ({have[:12]})")
        if start.config != rc:
            diff = {k: (getattr(start.config, k), getattr(rc, k)) for k in vars(rc)
                    if getattr(start.config, k) != getattr(rc, k)}
            raise ValueError(f"init: {folder} has other network sizes than this config (its value, this config's): {diff}")
        return start.state_dict()

    def __len__(self) -> int:
        return self.rgb.shape[0]

    def batch(self, items: torch.Tensor, step: int, device: torch.device) -> dict:
        cfg = self.cfg
        rgb, idx_near, idx_space = [], [], []
        for i in items.tolist():
            g = torch.Generator().manual_seed((cfg.run.seed * 1_000_003 + step) * 1_000_033 + i)
            r, *_ = augment_item(self.rgb[i], self.rgb[i], self.rgb[i], torch.ones(self.size, dtype=torch.bool),
                                 cfg.augment, g)
            rgb.append(r)
            idx_near.append(torch.randint(0, cfg.near, (cfg.near_per_step,), generator=g))
            idx_space.append(cfg.near + torch.randint(0, cfg.space, (cfg.space_per_step,), generator=g))
        shape = self.shape_of[items]
        pick = torch.cat([torch.stack(idx_near), torch.stack(idx_space)], dim=1)
        out = {
            "rgb": torch.stack(rgb), "items": items, "K": self.K[items], "R": self.R[items], "t": self.t[items],
            "points": self.points[shape[:, None], pick], "values": self.values[shape[:, None], pick],
            "two_d": self.two_d[items], "step": step,
        }
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in out.items()}

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from nphmkit.losses import sdf_space_loss
        from nphmkit.transforms import decode_crop_pose, encode_crop_pose

        cfg, w = self.cfg, self.cfg.weights
        out = model(batch["rgb"])
        z_id, z_ex = out["z_id"], out["z_ex"]
        three = ~batch["two_d"]
        terms: dict[str, torch.Tensor] = {}
        zero = z_id.new_zeros(())
        n3 = int(three.sum())
        if n3:
            field = self.nphm.field(z_id[three], z_ex[three])
            terms["sdf"] = sdf_space_loss(field, None, batch["points"][three], truncation=cfg.truncation,
                                          gt_values=batch["values"][three])
            rel, pos = encode_crop_pose(batch["R"][three], batch["t"][three], batch["K"][three], self.size)
            terms["rotation"] = (out["rotation"][three] - rel).abs().mean()
            terms["position"] = (out["translation"][three] - pos).abs().mean()
        total = sum((getattr(w, k) * v for k, v in terms.items()), zero)
        if n3 < z_id.shape[0]:
            two = batch["two_d"]
            R, t = decode_crop_pose(out["rotation"][two], out["translation"][two], batch["K"][two], self.size)
            n_2d, sil = self._two_d_terms(z_id[two], z_ex[two], R, t, batch["K"][two], batch["items"][two],
                                          batch["step"])
            terms["normals_2d"], terms["silhouette_2d"] = n_2d, sil
            share = (~three).float().mean()
            total = (1 - share) * total + share * (w.normals_2d * n_2d + w.silhouette_2d * sil)
        regs = self.nphm.code_regularizers(z_id, z_ex)
        for name, weight in w.regularizers.items():
            if weight:
                total = total + weight * regs[name]
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def _two_d_terms(self, z_id, z_ex, R, t, K, items, step):
        from nphmkit.fitting import ImageFitConfig
        from nphmkit.fitting.objective import ImageObjective
        from nphmkit.fitting.terms import normal_term, silhouette_term

        normals = torch.stack([self.maps[int(i)][0] for i in items])
        mask = torch.stack([self.maps[int(i)][1] for i in items])
        fit = ImageFitConfig(pixels_per_step=self.cfg.two_d_pixels, seed=self.cfg.run.seed * 7919 + step)
        objective = ImageObjective(normals, None, mask, None, None, K, self.size, fit, use_points=False)
        ctx = objective.context(self.nphm, z_id, z_ex, R, t, objective.sample(), torch.arange(len(items)), step)
        return normal_term(ctx), silhouette_term(ctx)

    def finish(self, model: nn.Module, run_dir: Path) -> None:
        from nphmkit.pretrained import weights_sha256
        from nphmkit.training.config import config_dict

        name = self.cfg.predictor
        meta_name = name if not os.path.isdir(name) else os.path.relpath(self.predictor_folder, run_dir / "weights")
        model.save(run_dir / "weights", metadata={
            "trained_by": "nphmkit train regressor", "data": self.cfg.data, "config": config_dict(self.cfg),
            "predictor": meta_name, "predictor_sha256": weights_sha256(self.predictor_folder),
            "predictor_features_sha256": self.predictor.features_sha256(),
            "model": self.cfg.model, "model_sha256": weights_sha256(self.model_folder),
        })
