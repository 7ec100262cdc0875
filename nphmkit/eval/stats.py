"""How far a benchmark's mean figures can be trusted: bootstrap intervals over its images.

A benchmark reports ratios of per-image means, such as "refined error / feed-forward error" on the same 20
images. Which 20 images were drawn moves such a ratio by several percent. :func:`ratio_interval` resamples the
images (with replacement, the two figures of an image kept together) and gives the percentile interval of the
ratio: the spread a fresh draw of as many images would show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A ratio of means and its bootstrap percentile interval (``low <= high``)."""

    value: float
    """The ratio on the images as given: ``sum(numerator) / sum(denominator)``."""
    low: float
    high: float
    level: float
    """Coverage the interval aims at, e.g. 0.95."""
    images: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level, "images": self.images}


def _values(name: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name}: expected per-image values of shape (N,), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: {int((~np.isfinite(v)).sum())} of {len(v)} values are NaN or infinite")
    return v


def ratio_interval(numerator, denominator, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> Interval:
    """Bootstrap percentile interval of ``mean(numerator) / mean(denominator)`` over paired images.

    Args:
        numerator, denominator: ``(N,)`` per-image figures of the same ``N >= 2`` images (any units, the same
            for both; the denominator's values must be positive, e.g. errors in mm).
        level: coverage in (0, 1).
        resamples: bootstrap draws of ``N`` images with replacement (image ``i`` keeps both of its figures).
        seed: the draws' seed; the same inputs and seed give the same interval.

    Returns:
        :class:`Interval`. Each draw's ratio is an average of the per-image ratios weighted by the denominator,
        so the interval lies within their range. A cut ``1 - ratio`` has the interval ``(1 - high, 1 - low)``.
    """
    num, den = _values("numerator", numerator), _values("denominator", denominator)
    if num.shape != den.shape:
        raise ValueError(f"numerator, denominator: expected the same number of images, got {len(num)} and {len(den)}")
    if len(num) < 2:
        raise ValueError(f"numerator: expected at least 2 images to resample, got {len(num)}")
    if not (den > 0).all():
        raise ValueError(f"denominator: expected positive per-image values, got minimum {den.min()!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a coverage in (0, 1), got {level!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 100:
        raise ValueError(f"resamples: expected an int >= 100, got {resamples!r}")
    rng = np.random.default_rng(seed)
    n = len(num)
    counts = np.zeros((resamples, n))  # how often each image is drawn, per resample
    picks = rng.integers(0, n, size=(resamples, n))
    np.add.at(counts, (np.arange(resamples)[:, None], picks), 1.0)
    ratios = (counts @ num) / (counts @ den)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return Interval(float(num.sum() / den.sum()), float(low), float(high), float(level), n)
