"""A loss-curve picture of a run's ``log.csv`` without a plotting library: log-scale loss against step."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189))


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    n = int(max(abs(x1 - x0), abs(y1 - y0), 1)) * 2
    xs = np.clip(np.round(np.linspace(x0, x1, n)).astype(int), 0, img.shape[1] - 1)
    ys = np.clip(np.round(np.linspace(y0, y1, n)).astype(int), 0, img.shape[0] - 1)
    img[ys, xs] = colour


def plot_losses(log_csv: str | os.PathLike, out_png: str | os.PathLike, keys: tuple[str, ...] | None = None,
                size: tuple[int, int] = (320, 480)) -> Path | None:
    """Draw the loss columns of ``log_csv`` (default: ``loss`` and every ``*_loss``/term column) against
    step, log-scale, each in its own colour, normalised to share the axes; returns the PNG path (None
    when there is nothing to draw). Grey lines mark powers of ten of the ``loss`` column."""
    from nphmkit.data.image_io import write_png

    path = Path(log_csv)
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 2:
        return None
    skip = {"step", "lr", "items_per_s"}
    keys = keys or tuple(k for k in rows[0] if k not in skip)
    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    steps = np.array([float(r["step"]) for r in rows])
    pad = 12
    sx = lambda s: pad + (s - steps.min()) / max(steps.max() - steps.min(), 1e-12) * (w - 2 * pad)  # noqa: E731
    main = np.array([float(r.get("loss") or "nan") for r in rows])
    ref = main[np.isfinite(main) & (main > 0)]
    lo_all, hi_all = (np.log10(ref.min()), np.log10(ref.max())) if ref.size else (0.0, 1.0)
    span = max(hi_all - lo_all, 1e-6)
    for p in range(math.floor(lo_all), math.ceil(hi_all) + 1):
        y = h - pad - (p - lo_all) / span * (h - 2 * pad)
        if pad <= y <= h - pad:
            _line(img, pad, y, w - pad, y, (220, 220, 220))
    for i, key in enumerate(keys):
        vals = np.array([float(r.get(key) or "nan") for r in rows])
        ok = np.isfinite(vals) & (vals > 0)
        if ok.sum() < 2:
            continue
        lv = np.log10(vals[ok])
        lo, hi = (lo_all, hi_all) if key == "loss" else (lv.min(), lv.max())
        ys = h - pad - (lv - lo) / max(hi - lo, 1e-6) * (h - 2 * pad)
        xs = sx(steps[ok])
        for a in range(len(xs) - 1):
            _line(img, xs[a], ys[a], xs[a + 1], ys[a + 1], COLOURS[i % len(COLOURS)])
    return write_png(out_png, img)
