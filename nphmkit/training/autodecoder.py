"""Train an NPHM as an auto-decoder on synthetic shapes, with MonoNPHM's losses.

Every identity gets a learned ``z_id`` and every (identity, expression) shape a learned
``z_ex``; network and codes are optimized jointly on: |sdf| at surface points, normal
alignment, eikonal, SDF values near the surface and in free space (exact for the synthetic
family; the official model had only point clouds), anchors supervised by the synthetic
anchors, posed -> canonical correspondences from the synthetic canonical map, zero
deformation for neutral shapes, hyper-coordinate sparsity and code regularizers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from nphmkit.losses import CodeLayout, code_norms, eikonal_loss, expression_norm, normal_loss, symmetry_loss
from nphmkit.nphm import NPHM
from nphmkit.training.samples import ShapeSamples


@dataclass(frozen=True)
class LossWeights:
    surface: float = 3.0
    normals: float = 0.3
    eikonal: float = 0.1
    near: float = 3.0
    space: float = 1.0
    anchors: float = 7.5
    correspondence: float = 30.0
    correspondence_final: float = 3.0
    neutral_zero: float = 3.0
    hyper: float = 0.05
    reg_id: float = 1e-3
    reg_ex: float = 5e-3
    symmetry: float = 0.01


@dataclass(frozen=True)
class AutoDecoderConfig:
    steps: int = 3000
    shapes_per_step: int = 8
    surface_per_shape: int = 400
    near_per_shape: int = 600
    space_per_shape: int = 150
    lr: float = 1e-3
    lr_id: float = 3e-3
    lr_ex: float = 5e-3
    decay_every: int = 1000
    decay: float = 0.5
    space_clamp: float = 0.1
    seed: int = 0
    log_every: int = 100
    weights: LossWeights = field(default_factory=LossWeights)


@dataclass
class TrainResult:
    z_id: torch.Tensor  # (I, id_dim), per identity
    z_ex: torch.Tensor  # (S, lat_dim_ex), per shape
    history: list[dict]
    seconds: float


def autodecoder_terms(
    model: NPHM, zi, ze, z_anchor_ids, anchors_gt, xs, normals, canonical_gt, valid, xn, near_gt, xf, space_gt,
    neutral, space_clamp: float, layout: CodeLayout, per_item: bool = False,
) -> dict[str, torch.Tensor]:
    """The unweighted loss terms of one auto-decoder step (MonoNPHM's, see the module doc).

    ``zi (B, id_dim)``, ``ze (B, lat_dim_ex)`` the codes of ``B`` shapes; ``z_anchor_ids (I, id_dim)``
    and ``anchors_gt (I, 65, 3)`` the distinct identities among them; surface points ``xs (B, M, 3)``
    with ``normals``, ``canonical_gt (B, M, 3)`` and ``valid (B, M)``; near points ``xn (B, K, 3)`` with
    ``near_gt (B, K)``; free-space points ``xf (B, F, 3)`` with ``space_gt (B, F)``; ``neutral (B,)`` bool.

    ``per_item=True``: every term is a mean over the ``B`` shapes of a per-shape value (anchors of each
    shape's identity, correspondence per shape, zero deformation counted over all ``B``), so the mean of
    the terms over equal shards of a batch is the term of the whole batch: data-parallel training then
    computes exactly the single-process step. Otherwise (:func:`train_autodecoder`) anchors are averaged
    over the distinct identities and correspondence and zero deformation over the points that have them.
    """
    sdf_s, grad_s = model.sdf_and_gradient(xs, zi, ze, backend="torch", create_graph=True)
    values = model.sdf(torch.cat([xn, xf], dim=1), zi, ze, backend="torch")[..., 0]
    v_near, v_space = values[:, : xn.shape[1]], values[:, xn.shape[1] :]
    can = model.canonical(xs, zi, ze, backend="torch")
    c = space_clamp
    deform = torch.cat([can[..., :3] - xs, can[..., 3:]], dim=-1)
    anchor_err = ((model.anchors(z_anchor_ids) - anchors_gt) ** 2).sum(-1).mean()
    corr = ((can[..., :3] - canonical_gt) ** 2).sum(-1)
    if per_item:
        corr_term = ((corr * valid).sum(1) / valid.sum(1).clamp_min(1)).mean()
        zero = ((deform ** 2).sum(-1).mean(1) * neutral).mean()
    else:
        corr_term = (corr * valid).sum() / valid.sum().clamp_min(1)
        zero = (deform[neutral] ** 2).sum(-1).mean() if bool(neutral.any()) else xs.new_zeros(())
    return {
        "surface": sdf_s.abs().mean(),
        "normals": normal_loss(grad_s, normals),
        "eikonal": eikonal_loss(grad_s),
        "near": (v_near - near_gt).abs().mean(),
        "space": (v_space.clamp(-c, c) - space_gt.clamp(-c, c)).abs().mean(),
        "anchors": anchor_err,
        "correspondence": corr_term,
        "neutral_zero": zero,
        "hyper": can[..., 3:].abs().mean(),
        "reg_id": sum(code_norms(zi, layout)),
        "reg_ex": expression_norm(ze),
        "symmetry": symmetry_loss(zi, layout),
    }


def train_autodecoder(
    model: NPHM, samples: ShapeSamples, config: AutoDecoderConfig = AutoDecoderConfig(), progress: bool | None = None,
    log=print,
) -> TrainResult:
    """Optimize ``model`` (in place) and the codes of every shape in ``samples``."""
    from nphmkit._progress import progress_bar, show_progress

    cfg, w = config, config.weights
    mc = model.config
    layout = CodeLayout.of(mc)
    g = torch.Generator().manual_seed(cfg.seed)
    n_id = samples.anchors.shape[0]
    n_shapes = samples.surface.shape[0]
    z_id = torch.nn.Parameter(0.01 * torch.randn(n_id, mc.id_dim, generator=g))
    z_ex = torch.nn.Parameter(torch.zeros(int(samples.expression_index.max()) + 1, mc.lat_dim_ex))
    optim = torch.optim.Adam(
        [
            {"params": list(model.parameters()), "lr": cfg.lr},
            {"params": [z_id], "lr": cfg.lr_id},
            {"params": [z_ex], "lr": cfg.lr_ex},
        ]
    )
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=cfg.decay_every, gamma=cfg.decay)
    model.train()
    history: list[dict] = []
    running: dict[str, float] = {}
    start = time.perf_counter()
    bar = progress_bar(range(cfg.steps), desc="training NPHM", progress=progress)
    for step in bar:
        shapes = torch.randint(0, n_shapes, (cfg.shapes_per_step,), generator=g)
        b = shapes.shape[0]

        def pick(points, n):
            idx = torch.randint(0, points.shape[1], (b, n), generator=g)
            return idx, points[shapes[:, None], idx]

        s_idx, xs = pick(samples.surface, cfg.surface_per_shape)
        normals = samples.normals[shapes[:, None], s_idx]
        canonical_gt = samples.canonical[shapes[:, None], s_idx]
        valid = samples.valid[shapes[:, None], s_idx]
        n_idx, xn = pick(samples.near, cfg.near_per_shape)
        near_gt = samples.near_sdf[shapes[:, None], n_idx]
        f_idx, xf = pick(samples.space, cfg.space_per_shape)
        space_gt = samples.space_sdf[shapes[:, None], f_idx]
        zi = z_id[samples.identity_index[shapes]]
        ze = z_ex[samples.expression_index[shapes]]

        neutral = samples.is_neutral[shapes]
        ids = torch.unique(samples.identity_index[shapes])
        corr_w = w.correspondence + (w.correspondence_final - w.correspondence) * step / max(cfg.steps - 1, 1)
        terms = autodecoder_terms(
            model, zi, ze, z_id[ids], samples.anchors[ids], xs, normals, canonical_gt, valid, xn, near_gt, xf, space_gt,
            neutral, cfg.space_clamp, layout,
        )
        weights = {**asdict(w), "correspondence": corr_w}
        loss = sum(weights[k] * v for k, v in terms.items())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            n = (step % cfg.log_every) + 1 if (step + 1) % cfg.log_every else cfg.log_every
            row = {k: v / n for k, v in running.items()}
            row.update(step=step + 1, seconds=time.perf_counter() - start, surface_mm=row["surface"] * 250)
            history.append(row)
            running = {}
            bar.set_postfix(surface_mm=f"{row['surface_mm']:.2f}", near=f"{row['near']:.4f}")
            if log is not None and not show_progress(progress):
                log(f"step {step + 1}: surface {row['surface_mm']:.2f} mm, near {row['near'] * 250:.2f} mm, "
                    f"normals {row['normals']:.3f}, corr {row['correspondence'] ** 0.5 * 250:.2f} mm, "
                    f"anchors {row['anchors'] ** 0.5 * 250:.2f} mm, {row['seconds']:.0f} s")
    model.eval()
    return TrainResult(z_id.detach().clone(), z_ex.detach().clone(), history, time.perf_counter() - start)
