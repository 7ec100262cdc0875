"""What :class:`~nphmkit.pipeline.Pix2NPHM` returns: codes, pose, the maps it used, and views of the result."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nphmkit.heads.dense import DenseMaps


@dataclass
class Reconstruction:
    """Heads reconstructed from ``B`` images (or ``B`` frames of one video, one identity).

    Attributes:
        z_id: ``(B, id_dim)`` identity codes (equal rows for a track).
        z_ex: ``(B, ex_dim)`` expression codes.
        rotation: ``(B, 3, 3)``, translation ``(B, 3)``, scale ``(B,)``: the head pose, a similarity
            from head space to the camera frame, ``x_cam = s R x_head + t`` (docs/contracts.md).
        maps: the dense maps the fit used (at the working size ``image_size``).
        K: ``(B, 3, 3)`` intrinsics at the working size (pixels).
        image_size: ``(H, W)`` of the working images (the predictor's input size).
        timings: seconds per stage (``"maps"``, ``"feed_forward"``, ``"refine"``, ...), for all images.
        model: the head model, for :meth:`mesh`, :meth:`landmarks` and :meth:`render`.
        stages: what ran: ``"feed_forward"`` (a regressor's codes and pose) and/or ``"refine"``.
        steps: refinement steps taken per image (one entry for a track), empty without refinement.
    """

    z_id: torch.Tensor
    z_ex: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    maps: DenseMaps
    K: torch.Tensor
    image_size: tuple[int, int]
    model: object = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    steps: tuple[int, ...] = ()

    def __len__(self) -> int:
        return self.z_id.shape[0]

    def _index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index: expected 0..{len(self) - 1}, got {index}")
        return index % len(self)

    def mesh(self, index: int = 0, kind: str = "posed", resolution: int = 128, progress: bool | None = None):
        """The mesh of head ``index`` in head space (NPHM units): ``kind="posed"`` (with its expression) or
        ``"neutral"``; marching cubes at ``resolution`` per axis (coarse to fine). A :class:`~nphmkit.mesh.Mesh`."""
        from nphmkit.mesh import extract_mesh

        if kind not in ("posed", "neutral"):
            raise ValueError(f"kind: expected 'posed' or 'neutral', got {kind!r}")
        i = self._index(index)
        z_ex = self.z_ex[i : i + 1] if kind == "posed" else None
        field_ = self.model.field(self.z_id[i : i + 1], z_ex)
        with torch.no_grad():
            return extract_mesh(field_, resolution=resolution, progress=progress)

    def landmarks(self, frame: str = "head") -> torch.Tensor:
        """The 7 NoW landmarks ``(B, 7, 3)`` of each head: in head space (``frame="head"``, NPHM units) or
        posed into the camera frame (``"camera"``)."""
        if frame not in ("head", "camera"):
            raise ValueError(f"frame: expected 'head' or 'camera', got {frame!r}")
        with torch.no_grad():
            marks = self.model.landmarks(self.z_id, self.z_ex)
        if frame == "camera":
            marks = self.scale[:, None, None] * torch.einsum("bij,bnj->bni", self.rotation, marks) + self.translation[:, None]
        return marks

    def render(self, index: int | None = None, config=None):
        """Render the reconstructed heads as the input cameras see them: a :class:`~nphmkit.render.RenderOutput`
        (``normals``, ``mask``, ``depth``... at ``image_size``) for all heads or head ``index``; ``config``: a
        :class:`~nphmkit.render.RenderConfig` (default: the renderer's)."""
        from nphmkit.fields import posed_field
        from nphmkit.render import Camera, RenderConfig, render

        sl = slice(None) if index is None else slice(self._index(index), self._index(index) + 1)
        b = self.z_id[sl].shape[0]
        field_ = self.model.field(self.z_id[sl], self.z_ex[sl])
        scale = self.scale[sl]
        if not bool((scale == 1).all()):  # the camera sees the head scaled by s about its origin
            eye = torch.eye(3, dtype=self.K.dtype).expand(b, 3, 3)
            field_ = posed_field(field_, eye, torch.zeros(b, 3, dtype=self.K.dtype), scale)
        # the head pose is the camera's extrinsics: the renderer's bounds stay around the head
        camera = Camera(self.K[sl], self.rotation[sl], self.translation[sl], self.image_size)
        with torch.no_grad():
            return render(field_, camera, config=config or RenderConfig(), differentiable=False)
