"""Bring your own head model: an ellipsoid-plus-nose family written only against ``nphmkit.protocols``,
fitted by nphmkit's ``fit_points`` (to surface points) and ``fit_image`` (to a rendered normal map and
silhouette). This model has no canonical map, so ``fit_image`` sees normals and a silhouette only: from
one view these trade head depth against pose, so the image fit is given the camera pose (as a tracker
or a regressor would give it) and fits the codes alone.

    python examples/custom_head_model.py
"""

import torch

from nphmkit.fitting import FitResult, ImageFitConfig, PointFitConfig, fit_image, fit_points
from nphmkit.mesh import extract_mesh
from nphmkit.protocols import HeadModel
from nphmkit.render import Camera, default_crop_pose, default_intrinsics, render
from nphmkit.transforms import axis_angle_to_matrix

BASE = torch.tensor([0.36, 0.46, 0.40, 0.10])  # ellipsoid semi-axes x, y, z and nose length (NPHM units)


class EggHead:
    """Codes: z_id (B, 4) scale the semi-axes and the nose by 0.1 per unit; z_ex (B, 1) lifts the nose tip."""

    id_dim, ex_dim = 4, 1

    def field(self, z_id, z_ex=None):
        size = BASE.to(z_id) + 0.1 * z_id  # (B, 4)
        lift = torch.zeros_like(z_id[:, :1]) if z_ex is None else 0.05 * z_ex  # (B, 1)
        tip = torch.cat([torch.zeros_like(lift), lift - 0.05, size[:, 2:3] + size[:, 3:4] - 0.05], dim=-1)  # (B, 3)

        def sdf(p):  # (B, N, 3) -> (B, N): a scaled ellipsoid bound (exact normals) smooth-joined with a nose
            r = size[:, None, :3]
            egg = ((p / r).norm(dim=-1) - 1) * r.amin(-1)
            nose = (p - tip[:, None]).norm(dim=-1) - 0.05
            h = (0.5 + 0.5 * (nose - egg) / 0.04).clamp(0, 1)  # polynomial smooth minimum, blend 0.04
            return torch.lerp(nose, egg, h) - 0.04 * h * (1 - h)

        return sdf

    def initial_codes(self, batch, device=None, dtype=None):
        return torch.zeros(batch, 4, device=device, dtype=dtype), torch.zeros(batch, 1, device=device, dtype=dtype)

    def code_regularizers(self, z_id, z_ex):
        return {"id_global": (z_id**2).sum(-1).mean()}

    def landmarks(self, z_id, z_ex=None):
        raise NotImplementedError("EggHead has no landmarks")


def main() -> None:
    model = EggHead()
    assert isinstance(model, HeadModel)
    z_id, z_ex = torch.tensor([[0.6, -0.4, 0.5, 0.8]]), torch.tensor([[0.7]])
    mesh = extract_mesh(model.field(z_id, z_ex), bounds=((-0.6, -0.6, -0.6), (0.6, 0.6, 0.8)), resolution=64, progress=False)
    points = mesh.vertices[torch.randperm(mesh.n_vertices, generator=torch.Generator().manual_seed(0))[:3000]][None]
    res = fit_points(model, points, config=PointFitConfig(steps=200, lr=3e-2))
    print(f"fit_points error: z_id {(res.z_id - z_id).abs().max():.3f}, z_ex {(res.z_ex - z_ex).abs().max():.3f}")
    R, t = default_crop_pose(1)
    R = R @ axis_angle_to_matrix(torch.tensor([[0.0, 0.3, 0.0]]))  # turned 17 degrees
    cam = Camera(default_intrinsics((64, 64)), R, t, (64, 64))
    with torch.no_grad():
        target = render(model.field(z_id, z_ex), cam, differentiable=False)
    start = FitResult(*model.initial_codes(1), rotation=R, translation=t, scale=torch.ones(1))
    config = ImageFitConfig(steps=150, lr_codes=3e-2, fit_pose=False)
    res = fit_image(model, target.normals, None, target.mask, cam.K, init=start, config=config)
    print(f"fit_image error: z_id {(res.z_id - z_id).abs().max():.3f}, z_ex {(res.z_ex - z_ex).abs().max():.3f}")


if __name__ == "__main__":
    main()
