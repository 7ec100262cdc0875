"""The files of one reconstructed photo or frame (docs/contracts.md "Batch jobs", "Crops").

One item folder holds ``posed.ply`` and ``neutral.ply`` (head space, NPHM units; with ``mm`` also
``posed_mm.ply`` and ``neutral_mm.ply``), ``landmarks.json`` (the 7 NoW landmarks in head space,
camera frame and original photo pixels), ``codes.npz`` (codes, pose, crop intrinsics), ``z_geo.npy``
and ``z_exp.npy`` (MonoNPHM's names for the identity and expression codes), ``normals.png`` (the
predicted normals of the crop), ``overlay.png`` (the reconstruction rendered over the full photo),
``turntable.png`` and ``crop.json``. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from nphmkit._io import write_bytes, write_text
from nphmkit.data.image_io import write_png
from nphmkit.pipeline.reconstruction import Reconstruction
from nphmkit.pipeline.views import PICTURE_RENDER, head_views, normals_picture, paste
from nphmkit.protocols import NOW_LANDMARKS
from nphmkit.render.shading import lambert

OVERLAY_SIZE = 256
"""Largest side of the renders pasted onto photos (a crop's picture is resampled onto the photo anyway)."""


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def crop_to_photo(points: torch.Tensor, box, size: int) -> torch.Tensor:
    """Crop pixels ``(N, 2)`` (x, y) of a ``size``-pixel crop of square ``box`` -> photo pixels ``(N, 2)``."""
    x0, y0, x1, _ = (float(v) for v in box)
    return points * ((x1 - x0) / size) + points.new_tensor([x0, y0])


def render_small(rec: Reconstruction, index: int, longest: int = OVERLAY_SIZE):
    """Render head ``index`` as its camera sees it, at most ``longest`` pixels wide (the intrinsics scaled):
    pictures of a 512-pixel crop do not need a quarter of a million rays."""
    from dataclasses import replace

    n = rec.image_size[1]
    if n <= longest:
        return rec.render(index, PICTURE_RENDER)
    f = longest / n
    size = (round(rec.image_size[0] * f), round(n * f))
    small = replace(rec, K=rec.K * torch.tensor([f, f, 1.0], dtype=rec.K.dtype)[:, None], image_size=size)
    return small.render(index, PICTURE_RENDER)


def write_item(folder: str | os.PathLike, rec: Reconstruction, index: int, photo: torch.Tensor, crop: dict,
               mm: bool = False, resolution: int = 128, overlay_render=None) -> dict:
    """Write the files of reconstruction ``index`` of ``rec`` into ``folder``.

    Args:
        folder: the item folder (created).
        rec: the reconstruction (its working size is the crop's size).
        index: which head of ``rec``.
        photo: ``(H, W, 3)`` float in [0, 1], the full photo (after orientation) the crop came from.
        crop: ``{"box": [x0, y0, x1, y1], "K": 3x3, "image_size": [H, W], ...}`` (written as ``crop.json``;
            box and K in the photo's pixels and the crop's).
        mm: also write millimetre meshes.
        resolution: marching-cubes resolution per axis.
        overlay_render: a :class:`~nphmkit.render.RenderOutput` of head ``index`` (B = 1) to reuse, or None.

    Returns:
        a summary row: mesh sizes and the landmark pixels.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    i = index
    n = rec.image_size[0]
    row: dict = {}
    for kind in ("posed", "neutral"):
        mesh = rec.mesh(i, kind=kind, resolution=resolution, progress=False)
        if mesh.n_faces == 0:
            raise RuntimeError(f"the {kind} mesh is empty (the field has no surface in the box)")
        from nphmkit.mesh import save_mesh

        save_mesh(folder / f"{kind}.ply", mesh)
        if mm:
            save_mesh(folder / f"{kind}_mm.ply", mesh, units="mm")
        row[f"{kind}_vertices"] = int(mesh.n_vertices)
    z_id, z_ex = rec.z_id[i : i + 1], rec.z_ex[i : i + 1]
    marks = None
    try:
        head = rec.landmarks("head")[i]
        cam = rec.landmarks("camera")[i]
        pix = torch.einsum("ij,nj->ni", rec.K[i], cam)
        pix = crop_to_photo(pix[:, :2] / pix[:, 2:], crop["box"], n)
        marks = {"names": list(NOW_LANDMARKS), "units": "nphm (x 250 = mm)",
                 "head": head.tolist(), "camera": cam.tolist(), "photo_pixels": pix.tolist()}
    except (ValueError, NotImplementedError) as err:  # a head model without landmark anchors
        marks = {"names": list(NOW_LANDMARKS), "error": " ".join(str(err).split())}
    write_text(folder / "landmarks.json", json.dumps(marks, indent=1) + "\n")
    codes = {"z_id": z_id[0].numpy(), "z_ex": z_ex[0].numpy(), "rotation": rec.rotation[i].numpy(),
             "translation": rec.translation[i].numpy(), "scale": rec.scale[i].numpy(), "K": rec.K[i].numpy(),
             "box": np.asarray(crop["box"], np.float64)}
    write_bytes(folder / "codes.npz", _npz(**codes))
    write_bytes(folder / "z_geo.npy", _npy(z_id[0].numpy()))
    write_bytes(folder / "z_exp.npy", _npy(z_ex[0].numpy()))
    maps = rec.maps
    write_png(folder / "normals.png", normals_picture(maps.normals[i], maps.mask[i]))
    out = overlay_render if overlay_render is not None else render_small(rec, i)
    shaded = lambert(out.normals, out.mask, albedo=torch.tensor([0.75, 0.8, 0.95]))[0]
    write_png(folder / "overlay.png", paste(photo, shaded, out.mask[0], crop["box"]))
    write_png(folder / "turntable.png", head_views(rec.model, z_id, z_ex))
    write_text(folder / "crop.json", json.dumps(crop, indent=1) + "\n")
    if marks is not None and "photo_pixels" in marks:
        row["landmarks_px"] = [[round(v, 1) for v in p] for p in marks["photo_pixels"]]
    row["mask_pixels"] = int(out.mask[0].sum())
    return row


def smooth_track(z_ex: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                 sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian smoothing over time (``sigma`` in frames) of ``z_ex (T, E)``, ``rotation (T, 3, 3)`` (the
    smoothed matrices projected back onto rotations) and ``translation (T, 3)``; the edges renormalized."""
    n = z_ex.shape[0]
    if n < 2 or sigma <= 0:
        return z_ex.clone(), rotation.clone(), translation.clone()
    idx = torch.arange(n, dtype=z_ex.dtype)
    w = torch.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2)
    w = w / w.sum(1, keepdim=True)  # (T, T): row t averages the frames near t
    rot = torch.einsum("ts,sij->tij", w, rotation)
    u, _, vh = torch.linalg.svd(rot)
    d = torch.sign(torch.linalg.det(u @ vh))
    u = torch.cat([u[..., :2], u[..., 2:] * d[:, None, None]], dim=-1)
    return w @ z_ex, u @ vh, w @ translation


def write_track(folder: str | os.PathLike, rec: Reconstruction, frames: torch.Tensor, crop: dict, indices, fps: float,
                mm: bool = False, resolution: int = 128, video: bool = True) -> dict:
    """Write a tracked video's files: the first frame's files as :func:`write_item` writes them (its ``posed.ply``,
    ``overlay.png``; ``neutral.ply`` is the shared identity), then per-frame ``codes.npz``, ``z_exp.npy`` ``(T, E)``
    and ``landmarks.json``, the smoothed ``codes_track.npz`` and ``overlay.mp4`` (with ``video``).

    ``frames``: ``(T, H, W, 3)`` float, the full frames; ``indices``: their frame numbers in the source.
    """
    folder = Path(folder)
    first = render_small(rec, 0)
    row = write_item(folder, rec, 0, frames[0], crop, mm=mm, resolution=resolution, overlay_render=first)
    n = len(rec)
    z_ex_s, rot_s, trans_s = smooth_track(rec.z_ex, rec.rotation, rec.translation)
    base = {"z_id": rec.z_id[0].numpy(), "K": rec.K[0].numpy(), "box": np.asarray(crop["box"], np.float64),
            "frame_index": np.asarray(list(indices), np.int64)}
    write_bytes(folder / "codes.npz", _npz(**base, z_ex=rec.z_ex.numpy(), rotation=rec.rotation.numpy(),
                                            translation=rec.translation.numpy(), scale=rec.scale.numpy()))
    write_bytes(folder / "codes_track.npz", _npz(**base, z_ex=z_ex_s.numpy(), rotation=rot_s.numpy(),
                                                  translation=trans_s.numpy(), scale=rec.scale.numpy(), sigma_frames=1.0))
    write_bytes(folder / "z_exp.npy", _npy(rec.z_ex.numpy()))
    size = rec.image_size[0]
    try:
        cam = rec.landmarks("camera")
        pix = torch.einsum("tij,tnj->tni", rec.K, cam)
        pix = crop_to_photo((pix[..., :2] / pix[..., 2:]).reshape(-1, 2), crop["box"], size).reshape(n, -1, 2)
        marks = {"names": list(NOW_LANDMARKS), "units": "nphm (x 250 = mm)", "frame_index": list(map(int, indices)),
                 "head": rec.landmarks("head").tolist(), "camera": cam.tolist(), "photo_pixels": pix.tolist()}
    except (ValueError, NotImplementedError) as err:
        marks = {"names": list(NOW_LANDMARKS), "error": " ".join(str(err).split())}
    write_text(folder / "landmarks.json", json.dumps(marks) + "\n")
    if video:
        from nphmkit.preprocess.video import write_video

        pictures = []
        for t in range(n):
            out = first if t == 0 else render_small(rec, t)
            shaded = lambert(out.normals, out.mask, albedo=torch.tensor([0.75, 0.8, 0.95]))[0]
            picture = paste(frames[t], shaded, out.mask[0], crop["box"])
            pictures.append((picture.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
        write_video(folder / "overlay.mp4", pictures, fps)
    row.update({"frames": n, "fps": fps})
    return row
