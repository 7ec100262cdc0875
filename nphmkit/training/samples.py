"""Training samples from synthetic heads: surface points with normals and canonical targets, near-surface
and free-space points with exact SDF values, and anchors. Everything is precomputed once per shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nphmkit.data.synthetic import BOUNDS, SyntheticHead
from nphmkit.data.synthetic.landmarks import anchors as synthetic_anchors
from nphmkit.data.synthetic.landmarks import project_to_surface


@dataclass
class ShapeSamples:
    """Samples of ``S`` shapes (one identity + expression each), stacked over shapes.

    ``surface (S, M, 3)``, ``normals (S, M, 3)``, ``canonical (S, M, 3)``, ``valid (S, M)``;
    ``near (S, K, 3)`` with ``near_sdf (S, K)``; ``space (S, F, 3)`` with ``space_sdf (S, F)``;
    ``identity_index (S,)``, ``expression_index (S,)``, ``is_neutral (S,)``; ``anchors (I, 65, 3)``
    per identity (canonical space).
    """

    surface: torch.Tensor
    normals: torch.Tensor
    canonical: torch.Tensor
    valid: torch.Tensor
    near: torch.Tensor
    near_sdf: torch.Tensor
    space: torch.Tensor
    space_sdf: torch.Tensor
    identity_index: torch.Tensor
    expression_index: torch.Tensor
    is_neutral: torch.Tensor
    anchors: torch.Tensor


def sample_surface(head: SyntheticHead, n: int, generator: torch.Generator, resolution: int = 72) -> torch.Tensor:
    """``(1, n, 3)`` points on the surface of a one-head batch: area-weighted mesh samples snapped by Newton steps."""
    mesh = head.mesh(0, resolution)
    v, f = mesh.vertices, mesh.faces
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = torch.cross(b - a, c - a, dim=-1).norm(dim=-1)
    tri = torch.multinomial(area, n, replacement=True, generator=generator)
    u = torch.rand(n, 2, generator=generator)
    flip = u.sum(-1) > 1
    u[flip] = 1 - u[flip]
    pts = a[tri] + u[:, :1] * (b[tri] - a[tri]) + u[:, 1:] * (c[tri] - a[tri])
    return project_to_surface(head.sdf, pts[None], steps=3)


def _normals(head: SyntheticHead, points: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        x = points.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(head.sdf(x).sum(), x)
    return torch.nn.functional.normalize(g, dim=-1)


@torch.no_grad()
def build_samples(
    identities: torch.Tensor,
    expressions: torch.Tensor,
    n_surface: int = 4000,
    n_near: int = 4000,
    n_space: int = 1500,
    seed: int = 0,
    progress: bool | None = None,
) -> ShapeSamples:
    """Samples for every (identity, expression) pair: ``identities (I, n_id)``, ``expressions (I, E, n_ex)``.

    Expression 0 of each identity should be the neutral one (it supervises zero deformation).
    """
    from nphmkit._progress import progress_bar

    g = torch.Generator().manual_seed(seed)
    n_id, n_ex = expressions.shape[:2]
    lo, hi = torch.tensor(BOUNDS[0]), torch.tensor(BOUNDS[1])
    rows = {k: [] for k in ("surface", "normals", "canonical", "valid", "near", "near_sdf", "space", "space_sdf")}
    id_idx, ex_idx, neutral = [], [], []
    bar = progress_bar(total=n_id * n_ex, desc="sampling synthetic shapes", progress=progress, leave=False)
    for i in range(n_id):
        for e in range(n_ex):
            head = SyntheticHead(identities[i : i + 1], expressions[i, e : e + 1])
            surf = sample_surface(head, n_surface, g)
            rows["surface"].append(surf[0])
            rows["normals"].append(_normals(head, surf)[0])
            can, ok = head.canonical(surf)
            rows["canonical"].append(can[0])
            rows["valid"].append(ok[0])
            # near points: two noise scales around the surface
            base = sample_surface(head, n_near, g)[0]
            sigma = torch.where(torch.rand(n_near, 1, generator=g) < 0.5, 0.004, 0.02)
            near = base + sigma * torch.randn(n_near, 3, generator=g)
            rows["near"].append(near)
            rows["near_sdf"].append(head.sdf(near[None])[0])
            space = lo + (hi - lo) * torch.rand(n_space, 3, generator=g)
            rows["space"].append(space)
            rows["space_sdf"].append(head.sdf(space[None])[0])
            id_idx.append(i)
            ex_idx.append(i * n_ex + e)
            neutral.append(bool((expressions[i, e] == 0).all()))
            bar.update(1)
    bar.close()
    anchors = torch.cat([synthetic_anchors(SyntheticHead(identities[i : i + 1])) for i in range(n_id)])
    stacked = {k: torch.stack(v) for k, v in rows.items()}
    return ShapeSamples(
        **stacked,
        identity_index=torch.tensor(id_idx),
        expression_index=torch.tensor(ex_idx),
        is_neutral=torch.tensor(neutral),
        anchors=anchors,
    )


_FIELDS = ("surface", "normals", "canonical", "valid", "near", "near_sdf", "space", "space_sdf", "identity_index",
           "expression_index", "is_neutral", "anchors")


def save_samples(samples: ShapeSamples, path: str | os.PathLike) -> Path:
    """Write ``samples`` as one safetensors file (atomically); :func:`load_samples` reads it back."""
    from safetensors.torch import save_file

    from nphmkit._io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: getattr(samples, k).contiguous() for k in _FIELDS}, str(tmp), metadata={"format": "nphmkit-samples"})
    return path


def load_samples(path: str | os.PathLike) -> ShapeSamples:
    """Read a samples file (:func:`save_samples`); checks that every field is there with consistent shapes.

    Your own data: a safetensors file with the :class:`ShapeSamples` fields (float32 points and
    values, bool ``valid`` / ``is_neutral``, int64 indices; ``anchors (I, 65, 3)`` in canonical space).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data: no samples file at {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"data: {path} is not a readable safetensors samples file ({err})") from None
    missing = [k for k in _FIELDS if k not in tensors]
    if missing:
        raise ValueError(f"data: {path} lacks the samples field(s) {missing}")
    s = ShapeSamples(**{k: tensors[k] for k in _FIELDS})
    n = s.surface.shape[0]
    for k in _FIELDS[:8] + ("identity_index", "expression_index", "is_neutral"):
        if getattr(s, k).shape[0] != n:
            raise ValueError(f"data: {path}: {k} has {getattr(s, k).shape[0]} shapes, surface has {n}")
    if s.anchors.dim() != 3 or s.anchors.shape[0] <= int(s.identity_index.max()):
        raise ValueError(f"data: {path}: anchors {tuple(s.anchors.shape)} do not cover identity index "
                         f"{int(s.identity_index.max())}")
    return s
