"""Bootstrap intervals of a ratio of means: the count-matrix resampling against a plain loop over the same draws,
the range every draw must stay in, coverage on data with a known ratio, and refusals of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.eval import ratio_interval


def _loop_reference(num, den, level, resamples, seed):
    """The same draws as ratio_interval, one resample at a time."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(num), size=(resamples, len(num)))
    ratios = np.array([num[p].sum() / den[p].sum() for p in picks])
    tail = (1 - level) / 2
    return np.quantile(ratios, [tail, 1 - tail])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 23), seed=st.integers(0, 2**16), level=st.sampled_from([0.5, 0.9, 0.95]))
def test_matches_a_plain_loop_over_the_same_draws(n, seed, level):
    g = np.random.default_rng(seed)
    den = g.uniform(0.2, 2.0, n)
    num = den * g.uniform(0.3, 1.2, n)
    got = ratio_interval(num, den, level=level, resamples=300, seed=seed)
    low, high = _loop_reference(num, den, level, 300, seed)
    assert got.low == pytest.approx(low, rel=1e-12) and got.high == pytest.approx(high, rel=1e-12)
    assert got.value == pytest.approx(num.sum() / den.sum(), rel=1e-12)
    assert got.images == n and got.level == level


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 31), seed=st.integers(0, 2**16))
def test_interval_lies_within_the_per_image_ratios(n, seed):
    g = np.random.default_rng(seed)
    den = g.uniform(0.1, 3.0, n)
    num = g.uniform(0.0, 3.0, n)
    got = ratio_interval(num, den, resamples=500, seed=seed)
    per_image = num / den
    assert per_image.min() - 1e-12 <= got.low <= got.high <= per_image.max() + 1e-12
    wider = ratio_interval(num, den, level=0.99, resamples=500, seed=seed)
    assert wider.low <= got.low + 1e-12 and wider.high >= got.high - 1e-12


def test_equal_ratios_give_a_point_and_the_same_seed_the_same_interval():
    den = np.array([0.4, 0.9, 0.6, 1.3])
    point = ratio_interval(0.7 * den, den)
    assert point.low == pytest.approx(0.7) and point.high == pytest.approx(0.7) and point.value == pytest.approx(0.7)
    g = np.random.default_rng(3)
    num, den = g.uniform(0.2, 1.0, 20), g.uniform(0.5, 1.5, 20)
    assert ratio_interval(num, den, seed=5) == ratio_interval(num, den, seed=5)
    assert ratio_interval(num, den, seed=5) != ratio_interval(num, den, seed=6)


def test_covers_the_true_ratio_about_as_often_as_asked():
    # per-image errors with a known population ratio: refined = 0.7 x feed-forward times noise of mean 1
    g = np.random.default_rng(0)
    trials, hits, widths = 200, 0, []
    for t in range(trials):
        a = g.lognormal(-0.5, 0.4, 20)
        b = 0.7 * a * g.uniform(0.5, 1.5, 20)
        got = ratio_interval(b, a, level=0.9, resamples=1000, seed=t)
        hits += got.low <= 0.7 <= got.high
        widths.append(got.high - got.low)
    assert 0.8 <= hits / trials <= 0.97  # percentile bootstrap on 20 images under-covers a little
    many = [ratio_interval(0.7 * a * g.uniform(0.5, 1.5, 200), a, level=0.9, resamples=1000)
            for a in [g.lognormal(-0.5, 0.4, 200)]]
    assert many[0].high - many[0].low < 0.5 * np.mean(widths)  # 10x the images: about a third of the width


@pytest.mark.parametrize("kwargs, message", [
    (dict(numerator=[1.0, 2.0], denominator=[1.0, 2.0, 3.0]), "same number of images, got 2 and 3"),
    (dict(numerator=[1.0], denominator=[1.0]), "at least 2 images"),
    (dict(numerator=[1.0, 2.0], denominator=[1.0, 0.0]), "denominator: expected positive"),
    (dict(numerator=[1.0, float("nan")], denominator=[1.0, 1.0]), "numerator: 1 of 2 values are NaN"),
    (dict(numerator=[[1.0, 2.0]], denominator=[[1.0, 2.0]]), "numerator: expected per-image values of shape (N,)"),
    (dict(numerator=[1.0, 2.0], denominator=[1.0, 2.0], level=1.0), "level: expected a coverage in (0, 1)"),
    (dict(numerator=[1.0, 2.0], denominator=[1.0, 2.0], resamples=10), "resamples: expected an int >= 100"),
])
def test_bad_input_is_refused_by_name(kwargs, message):
    with pytest.raises(ValueError) as err:
        ratio_interval(**kwargs)
    assert message in str(err.value)
