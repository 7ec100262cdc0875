"""Write datasets of rendered synthetic heads: RGB images with exact normal and canonical maps.

Image ``i`` shows head ``i // (E * V)`` with expression ``(i // V) % E`` from view ``i % V``
(E expressions per head, the first neutral; V views per expression). Every image is framed as a
photo's face crop: the square box around the face enlarged x1.42 (:mod:`.framing`), with small
random shifts and scalings of the box (crop jitter) and a random crop focal length (perspective).
Layout (docs/contracts.md): one
``index.json`` and per image ``NNNNNN_rgb.png`` and ``NNNNNN_maps.npz``. Every file is
written atomically and ``index.json`` last, so an interrupted run leaves no index.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from nphmkit._io import write_bytes, write_text
from nphmkit.data.image_io import write_png
from nphmkit.data.synthetic import params as P
from nphmkit.data.synthetic.framing import crop_camera, face_points
from nphmkit.data.synthetic.head import BROW, EYE, LIPS, MOUTH, SyntheticHead
from nphmkit.data.synthetic.landmarks import landmarks
from nphmkit.render import RenderConfig, render

# skin tones (linear RGB albedo) from light to dark; a head's tone is a random blend of neighbours
SKIN_TONES = torch.tensor(
    [[0.92, 0.76, 0.66], [0.86, 0.66, 0.53], [0.74, 0.54, 0.41], [0.58, 0.4, 0.29], [0.4, 0.27, 0.19]]
)


@dataclass(frozen=True)
class SynthConfig:
    """How images are sampled."""

    image_size: int = 256
    expressions_per_head: int = 2
    views_per_expression: int = 2
    seed: int = 0
    yaw: tuple[float, float] = (-0.6, 0.6)
    """Camera azimuth range in radians (0 = frontal)."""
    pitch: tuple[float, float] = (-0.2, 0.3)
    focal: tuple[float, float] = (1.8, 4.0)
    """Range of the crop's focal length, multiples of the image width (sampled log-uniformly; the
    camera distance follows from it: about 1.7 to 3.7 NPHM units, 41 to 92 cm)."""
    shift: float = 0.03
    """Crop jitter: the box centre moves by up to this fraction of the crop side, in x and y."""
    scale: tuple[float, float] = (0.93, 1.07)
    """Scale jitter: range of the factor on the crop side."""
    target: tuple[float, float, float] = (0.0, -0.02, 0.13)
    """The head point the camera looks at (the mean face box centre, NPHM units)."""
    batch: int = 16
    """Images rendered together (one :func:`render_batch`; a worker's unit of work). The images do not depend
    on it; the analytic head's many small operations cost less per image in larger batches (on one thread,
    before the coordinate planes: 0.34 s per 128^2 image in batches of 16 against 0.47 s in batches of 4)."""


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _uniform(g: torch.Generator, lo: float, hi: float, n: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def image_plan(i: int, cfg: SynthConfig) -> dict:
    """Head, expression and view of image ``i`` and every random choice made for it (deterministic)."""
    e_count, v_count = cfg.expressions_per_head, cfg.views_per_expression
    head, expr, view = i // (e_count * v_count), (i // v_count) % e_count, i % v_count
    identity = P.sample_identity(1, cfg.seed * 100_003 + head)[0]
    expression = P.neutral_expression(1)[0] if expr == 0 else P.sample_expression(1, cfg.seed * 100_003 + 7 * head + expr)[0]
    g = _rng(cfg.seed * 1_000_003 + i)
    yaw = _uniform(g, *cfg.yaw)[0]
    pitch = _uniform(g, *cfg.pitch)[0]
    focal = math.exp(float(_uniform(g, math.log(cfg.focal[0]), math.log(cfg.focal[1]))[0]))
    shift = (2 * torch.rand(2, generator=g) - 1) * cfg.shift
    scale = float(_uniform(g, *cfg.scale)[0])
    tone = _uniform(_rng(cfg.seed * 10_007 + head), 0.0, len(SKIN_TONES) - 1.0)[0]
    light = torch.cat([_uniform(g, -0.8, 0.8), _uniform(g, -0.8, 0.3), -_uniform(g, 0.6, 1.0)])
    light = torch.nn.functional.normalize(light, dim=0)  # towards the light, camera frame
    return {
        "head": head, "expression": expr, "view": view, "identity": identity, "expression_params": expression,
        "yaw": float(yaw), "pitch": float(pitch), "focal": focal, "shift": shift, "scale": scale,
        "tone": float(tone), "light": light,
        "ambient": float(_uniform(g, 0.25, 0.45)[0]), "background": torch.rand(2, 3, generator=g) * 0.8 + 0.1,
    }


def _skin(tone: float) -> torch.Tensor:
    lo = int(math.floor(tone))
    hi = min(lo + 1, len(SKIN_TONES) - 1)
    return torch.lerp(SKIN_TONES[lo], SKIN_TONES[hi], tone - lo)


def _albedo(head: SyntheticHead, points: torch.Tensor, mask: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
    """Per-pixel albedo ``(B, H, W, 3)`` from the part under each pixel."""
    b, h, w, _ = points.shape
    flat = points.reshape(b, h * w, 3)
    with torch.no_grad():
        group = head.groups(flat).reshape(b, h, w)
    colour = skin[:, None, None, :].expand(b, h, w, 3).clone()
    colour[group == LIPS] = (skin[:, None, None, :] * torch.tensor([0.85, 0.55, 0.55])).expand(b, h, w, 3)[group == LIPS]
    colour[group == BROW] = (skin[:, None, None, :] * 0.45).expand(b, h, w, 3)[group == BROW]
    colour[group == MOUTH] = torch.tensor([0.32, 0.08, 0.08])
    # eyes: white, with a dark iris where the eyeball faces forward
    eye_centres = head._layout()["eye"]
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    eye = group == EYE
    if bool(eye.any()):
        d_left = (points - eye_centres[:, None, None, :])
        d_right = (points - (eye_centres * mirror)[:, None, None, :])
        near = torch.where((d_left.norm(dim=-1) < d_right.norm(dim=-1))[..., None], d_left, d_right)
        forward = torch.nn.functional.normalize(near, dim=-1)[..., 2]
        iris = forward > 0.86
        colour[eye] = torch.tensor([0.9, 0.9, 0.87])
        colour[eye & iris] = torch.tensor([0.22, 0.14, 0.08])
    return torch.where(mask[..., None], colour, torch.zeros_like(colour))


def render_batch(plans: list[dict], cfg: SynthConfig):
    """Render the images of ``plans``: RGB ``(B, H, W, 3)``, the render output, cameras, heads, face boxes ``(B, 4)``."""
    b = len(plans)
    head = SyntheticHead(torch.stack([p["identity"] for p in plans]), torch.stack([p["expression_params"] for p in plans]))
    yaw = torch.tensor([p["yaw"] for p in plans])
    pitch = torch.tensor([p["pitch"] for p in plans])
    target = torch.tensor(cfg.target).expand(b, 3)
    direction = torch.stack([torch.sin(yaw) * torch.cos(pitch), torch.sin(pitch), torch.cos(yaw) * torch.cos(pitch)], -1)
    camera, box = crop_camera(
        face_points(head), direction, target, cfg.image_size, torch.tensor([p["focal"] for p in plans]),
        torch.stack([p["shift"] for p in plans]), torch.tensor([p["scale"] for p in plans]),
    )
    with torch.no_grad():
        out = render(head.sdf, camera, head.canonical, RenderConfig(), differentiable=False)
    skin = torch.stack([_skin(p["tone"]) for p in plans])
    albedo = _albedo(head, out.points, out.mask, skin)
    light = torch.stack([p["light"] for p in plans])[:, None, None, :]
    ambient = torch.tensor([p["ambient"] for p in plans])[:, None, None, None]
    diffuse = (out.normals * light).sum(-1, keepdim=True).clamp_min(0)
    sky = 0.15 * (-out.normals[..., 1:2]).clamp_min(0)  # light from above (camera y is down)
    shaded = albedo * (ambient + (1 - ambient) * diffuse + sky)
    rows = torch.linspace(0, 1, cfg.image_size)[None, :, None, None]
    bg = torch.stack([p["background"] for p in plans])
    background = torch.lerp(bg[:, 0][:, None, None, :], bg[:, 1][:, None, None, :], rows)
    rgb = torch.where(out.mask[..., None], shaded.clamp(0, 1) ** (1 / 1.4), background.expand_as(shaded))
    return rgb, out, camera, head, box


def write_images(folder: str | os.PathLike, indices: list[int], config: SynthConfig) -> list[dict]:
    """Render and write images ``indices`` (one :func:`render_batch`) into ``folder``; returns their records."""
    folder = Path(folder)
    plans = [image_plan(i, config) for i in indices]
    rgb, out, camera, head, box = render_batch(plans, config)
    marks = landmarks(head)
    records = []
    for j, i in enumerate(indices):
        stem = f"{i:06d}"
        write_png(folder / f"{stem}_rgb.png", rgb[j])
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            normals=out.normals[j].numpy().astype(np.float32),
            canonical=out.canonical[j].numpy().astype(np.float32),
            mask=out.mask[j].numpy(),
            depth=out.depth[j].numpy().astype(np.float32),
            canonical_valid=out.canonical_valid[j].numpy(),
        )
        write_bytes(folder / f"{stem}_maps.npz", buf.getvalue())
        p = plans[j]
        records.append({
            "index": i, "head": p["head"], "expression": p["expression"], "view": p["view"],
            "rgb": f"{stem}_rgb.png", "maps": f"{stem}_maps.npz",
            "image_size": [config.image_size, config.image_size],
            "K": camera.K[j].tolist(), "R": camera.R[j].tolist(), "t": camera.t[j].tolist(),
            "face_box": box[j].tolist(), "focal": float(camera.K[j, 0, 0]) / config.image_size,
            "distance": float(camera.center()[j].sub(torch.tensor(config.target)).norm()),
            "identity": dict(zip(P.IDENTITY_NAMES, p["identity"].tolist())),
            "expression_params": dict(zip(P.EXPRESSION_NAMES, p["expression_params"].tolist())),
            "landmarks": marks[j].tolist(),
            "light": p["light"].tolist(), "ambient": p["ambient"], "skin_tone": p["tone"],
        })
    return records


def _worker_start() -> None:
    torch.set_num_threads(1)  # one core per worker process


def write_dataset(
    out_dir: str | os.PathLike,
    n_images: int,
    config: SynthConfig = SynthConfig(),
    progress: bool | None = None,
    workers: int = 1,
) -> Path:
    """Render ``n_images`` images into ``out_dir`` (see the module doc). Returns the folder.

    ``workers > 1`` renders batches of ``config.batch`` images in that many worker processes (one
    thread each); every image depends only on its index and the config, so the files are the same
    as with one process.
    """
    if n_images < 1:
        raise ValueError(f"n_images: expected >= 1, got {n_images}")
    if workers < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}")
    if config.batch < 1:
        raise ValueError(f"config.batch: expected >= 1, got {config.batch}")
    from nphmkit._progress import progress_bar

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = [list(range(s, min(s + config.batch, n_images))) for s in range(0, n_images, config.batch)]
    records: list[dict] = []
    bar = progress_bar(total=n_images, unit="img", desc="synthetic heads", progress=progress)
    if workers == 1 or len(chunks) == 1:
        for idx in chunks:
            records += write_images(folder, idx, config)
            bar.update(len(idx))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=ctx, initializer=_worker_start) as pool:
            futures = {pool.submit(write_images, str(folder), idx, config): len(idx) for idx in chunks}
            for done in as_completed(futures):
                records += done.result()
                bar.update(futures[done])
        records.sort(key=lambda r: r["index"])
    bar.close()
    index = {
        "description": "nphmkit synthetic head family (analytic heads, not real people); world = NPHM space",
        "frames": "camera: OpenCV, x_cam = R x_world + t; normals in the camera frame; canonical in NPHM units",
        "framing": "square box around the face box (face_box, crop pixels) enlarged x1.42, with crop jitter",
        "config": asdict(config),
        "images": records,
    }
    write_text(folder / "index.json", json.dumps(index, indent=1) + "\n")
    return folder
