"""Synthetic images rendered when asked for: a dataset without files, for training on the fly.

``SyntheticStream(n, config)[i]`` is image ``i`` of ``write_dataset(folder, n, config)`` (the same
head, expression, view, framing and lighting; RGB quantized to 8 bits as the PNG would be), so a
training run can switch between a pre-rendered folder and rendering on the fly without changing
what it sees. Rendering costs ~0.2 s per 128^2 image per core: worth it where cores are spare
(``workers`` processes render the requested images in parallel) or where the data must be larger
than a disk folder; on a small machine pre-render with ``nphmkit synth --workers``.
"""

from __future__ import annotations

import numpy as np
import torch

from nphmkit.data.image_io import to_uint8
from nphmkit.data.synthetic.dataset import SynthConfig, image_plan, render_batch

_KEYS = ("rgb", "normals", "canonical", "mask", "depth", "canonical_valid", "K", "R", "t")


def render_items(indices: list[int], config: SynthConfig) -> dict[str, np.ndarray]:
    """Arrays of images ``indices`` (one :func:`render_batch`): ``rgb (M, H, W, 3)`` uint8, maps and cameras."""
    rgb, out, camera, _, _ = render_batch([image_plan(i, config) for i in indices], config)
    arrays = {
        "rgb": np.stack([to_uint8(rgb[j]) for j in range(len(indices))]),
        "normals": out.normals.numpy().astype(np.float32),
        "canonical": out.canonical.numpy().astype(np.float32),
        "mask": out.mask.numpy(),
        "depth": out.depth.numpy().astype(np.float32),
        "canonical_valid": out.canonical_valid.numpy(),
        "K": camera.K.numpy(),
        "R": camera.R.numpy(),
        "t": camera.t.numpy(),
    }
    return arrays


def _worker_start() -> None:
    torch.set_num_threads(1)


class SyntheticStream:
    """``n_images`` synthetic images of ``config``, rendered on request (optionally in worker processes).

    Items are dicts like :class:`~nphmkit.data.dataset.ImageDataset`'s: ``rgb (H, W, 3)`` float in [0, 1]
    (8-bit levels), ``normals``, ``canonical (H, W, 3)``, ``mask``, ``canonical_valid (H, W)`` bool,
    ``depth (H, W)``, ``K``, ``R (3, 3)``, ``t (3,)``. :meth:`items` renders several at once (batches of
    ``config.batch``, spread over the workers; smaller ones where there would be fewer batches than
    workers). Use as a context manager, or :meth:`close`, to stop the workers.
    """

    def __init__(self, n_images: int, config: SynthConfig | None = None, workers: int = 0) -> None:
        if n_images < 1:
            raise ValueError(f"n_images: expected >= 1, got {n_images}")
        if workers < 0:
            raise ValueError(f"workers: expected >= 0 (0: render in this process), got {workers}")
        self.n, self.config, self.workers = n_images, config or SynthConfig(), workers
        self._pool = None

    def __len__(self) -> int:
        return self.n

    def __enter__(self) -> SyntheticStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _executor(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_start)
        return self._pool

    def items(self, indices) -> dict[str, torch.Tensor]:
        """Images ``indices`` stacked: ``rgb (M, H, W, 3)`` float and the maps/cameras as in the class notes."""
        idx = [int(i) for i in indices]
        for i in idx:
            if not 0 <= i < self.n:
                raise IndexError(f"index {i} out of range for a stream of {self.n} images")
        if not idx:
            raise ValueError("indices: expected at least one image index, got none")
        b = self.config.batch
        if self.workers:  # at least one chunk per worker (the images do not depend on the chunking)
            b = max(1, min(b, -(-len(idx) // self.workers)))
        chunks = [idx[s : s + b] for s in range(0, len(idx), b)]
        if self.workers and len(chunks) > 1:
            parts = list(self._executor().map(render_items, chunks, [self.config] * len(chunks)))
        else:
            parts = [render_items(c, self.config) for c in chunks]
        out = {k: torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in _KEYS}
        out["rgb"] = out["rgb"].float() / 255.0
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for a stream of {self.n} images")
        batch = self.items([i % self.n])
        return {k: v[0] for k, v in batch.items()}
