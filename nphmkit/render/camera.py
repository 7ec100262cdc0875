"""Pinhole cameras (OpenCV convention), rays, and the head pose (a similarity NPHM -> world).

Camera frame: x right, y down, z forward. ``K (B, 3, 3)`` in pixels, extrinsics world ->
camera ``x_cam = R @ x_world + t``. Pixel ``(u, v)`` has its centre at ``(u + 0.5, v + 0.5)``.
Head pose (docs/contracts.md): ``x_world = s * R_h @ x_nphm + t_h``; for single-view fitting world = camera.

Default intrinsics for a square head crop: focal length ``DEFAULT_FOCAL x`` the image width
(a 28 degree field of view), principal point at the image centre. A crop is the square box
around the face (mid-forehead to chin, cheek to cheek) enlarged x1.42 (:data:`CROP_ENLARGE`, Pixel3DMM's
convention). The default crop pose (:func:`default_crop_pose`) puts a frontal head's face centre
(:data:`CROP_CENTRE`) on the optical axis at the depth where its face box (:data:`FACE_EXTENT`
high) times 1.42 fills the crop: ``2.0 * 1.42 * 0.65 = 1.85`` NPHM units (46 cm) at the default
focal length.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from nphmkit._checks import check_tensor
from nphmkit.transforms import FRONTAL_ROTATION, nphm_to_world, world_to_nphm  # noqa: F401  (re-exported: the head pose)

DEFAULT_FOCAL = 2.0
"""Default focal length as a multiple of the image width (square head crops)."""
CROP_ENLARGE = 1.42
"""A crop is the square box around the detected head enlarged by this factor (Pixel3DMM's convention)."""
FACE_EXTENT = 0.65
"""Longer side of an average face box (mid-forehead to chin) in NPHM units (16 cm): what fills the crop before
the x1.42 enlargement (the synthetic family's mean, nphmkit.data.synthetic.framing)."""
CROP_CENTRE = (0.0, -0.02, 0.13)
"""The head-space point that the default crop pose puts on the optical axis: the face box centre (NPHM units)."""
FRONTAL = FRONTAL_ROTATION
"""Head-to-camera rotation of a frontal view without head rotation: the head's y (up) and z (towards the
viewer) become the camera's -y and -z (camera y points down, z away from the viewer)."""


def default_crop_pose(batch: int = 1, focal: float = DEFAULT_FOCAL, dtype=torch.float32,
                      device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The head pose a crop is framed for, ``R (batch, 3, 3)``, ``t (batch, 3)`` (``x_cam = R x_head + t``).

    Frontal (:data:`FRONTAL`), :data:`CROP_CENTRE` on the optical axis, at depth
    ``focal * CROP_ENLARGE * FACE_EXTENT`` (1.85 NPHM units at the default focal length ``focal``,
    a multiple of the image width). Where fits start without a pose of their own.
    """
    R = torch.tensor(FRONTAL, dtype=dtype, device=device).expand(batch, 3, 3).clone()
    depth = focal * CROP_ENLARGE * FACE_EXTENT
    centre = torch.tensor(CROP_CENTRE, dtype=dtype, device=device)
    t = torch.tensor([0.0, 0.0, depth], dtype=dtype, device=device) - R[0] @ centre
    return R, t.expand(batch, 3).clone()


def default_intrinsics(image_size: tuple[int, int], focal: float = DEFAULT_FOCAL, batch: int = 1,
                       dtype=torch.float32, device=None) -> torch.Tensor:
    """Intrinsics ``(batch, 3, 3)``: ``fx = fy = focal * W``, principal point at the centre."""
    h, w = image_size
    k = torch.tensor([[focal * w, 0.0, w / 2.0], [0.0, focal * w, h / 2.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device)
    return k.expand(batch, 3, 3).clone()


@dataclass(frozen=True)
class Camera:
    """A batch of pinhole cameras: ``K (B, 3, 3)``, ``R (B, 3, 3)``, ``t (B, 3)``, ``image_size (H, W)``."""

    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        b = self.K.shape[0] if isinstance(self.K, torch.Tensor) and self.K.dim() == 3 else "B"
        check_tensor("K", self.K, (b, 3, 3), finite=True)
        check_tensor("R", self.R, (b, 3, 3), finite=True)
        check_tensor("t", self.t, (b, 3), finite=True)
        with torch.no_grad():
            R = self.R.detach().double()
            off = (R @ R.transpose(1, 2) - torch.eye(3, dtype=R.dtype, device=R.device)).abs().amax() if R.numel() else 0.0
            if float(off) > 1e-3 or bool((torch.linalg.det(R) <= 0).any()):
                raise ValueError(f"R: expected rotation matrices (R R^T = I, det +1; off by {float(off):.2g}); scale "
                                 "belongs in the head model's pose, not the camera")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size: expected (H, W) with positive sizes, got {self.image_size!r}")
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))

    # ------------------------------------------------------------------ construction
    @classmethod
    def look_at(
        cls,
        eye: torch.Tensor,
        target: torch.Tensor,
        up: torch.Tensor | None = None,
        K: torch.Tensor | None = None,
        image_size: tuple[int, int] = (256, 256),
        focal: float = DEFAULT_FOCAL,
    ) -> "Camera":
        """Cameras at ``eye (B, 3)`` looking at ``target (B, 3)`` with world ``up (B, 3) or (3,)`` (default +y)."""
        check_tensor("eye", eye, ("B", 3))
        check_tensor("target", target, (eye.shape[0], 3))
        if up is None:
            up = eye.new_tensor([0.0, 1.0, 0.0])
        up = up.expand_as(eye)
        forward = torch.nn.functional.normalize(target - eye, dim=-1)
        right = torch.nn.functional.normalize(torch.cross(forward, up, dim=-1), dim=-1)
        down = torch.cross(forward, right, dim=-1)
        R = torch.stack([right, down, forward], dim=1)
        t = -torch.einsum("bij,bj->bi", R, eye)
        if K is None:
            K = default_intrinsics(image_size, focal, eye.shape[0], eye.dtype, eye.device)
        elif K.dim() == 2:
            K = K.expand(eye.shape[0], 3, 3)
        return cls(K, R, t, image_size)

    @property
    def batch(self) -> int:
        return self.K.shape[0]

    @property
    def device(self) -> torch.device:
        return self.K.device

    def to(self, device=None, dtype=None) -> "Camera":
        return replace(self, K=self.K.to(device, dtype), R=self.R.to(device, dtype), t=self.t.to(device, dtype))

    def center(self) -> torch.Tensor:
        """Camera centres in world coordinates ``(B, 3)`` = ``-R^T t``."""
        return -torch.einsum("bji,bj->bi", self.R, self.t)

    # ------------------------------------------------------------------ transforms
    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, N, 3)`` world -> camera frame."""
        return torch.einsum("bij,bnj->bni", self.R, points) + self.t[:, None, :]

    def camera_to_world(self, points: torch.Tensor) -> torch.Tensor:
        """``(B, N, 3)`` camera frame -> world."""
        return torch.einsum("bji,bnj->bni", self.R, points - self.t[:, None, :])

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points ``(B, N, 3)`` -> pixel coordinates ``(B, N, 2)`` (continuous, x then y) and depth ``(B, N)``."""
        cam = self.world_to_camera(points)
        z = cam[..., 2]
        uv = torch.einsum("bij,bnj->bni", self.K, cam)
        return uv[..., :2] / z[..., None], z

    def pixel_grid(self) -> torch.Tensor:
        """Centres of all pixels ``(H * W, 2)`` (x, y), row-major."""
        h, w = self.image_size
        ys, xs = torch.meshgrid(torch.arange(h, device=self.device), torch.arange(w, device=self.device), indexing="ij")
        return torch.stack([xs, ys], dim=-1).reshape(-1, 2).to(self.K.dtype) + 0.5

    def rays(self, pixels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ray origins and unit directions in world coordinates, each ``(B, N, 3)``.

        ``pixels``: continuous pixel coordinates ``(N, 2)`` or ``(B, N, 2)``; default: every pixel centre.
        """
        if pixels is None:
            pixels = self.pixel_grid()
        pixels = pixels.to(self.K.dtype)
        if pixels.dim() == 2:
            pixels = pixels.expand(self.batch, -1, -1)
        homo = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)
        dirs_cam = torch.einsum("bij,bnj->bni", torch.linalg.inv(self.K), homo)
        dirs = torch.nn.functional.normalize(torch.einsum("bji,bnj->bni", self.R, dirs_cam), dim=-1)
        origins = self.center()[:, None, :].expand_as(dirs)
        return origins, dirs
