"""Evaluation plots (the plot extra): CDFs, bars and heat maps are written, atomically, and show the data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from nphmkit.cli import main  # noqa: E402
from nphmkit.eval.plots import error_cdf, error_heatmap, item_bars  # noqa: E402
from nphmkit.mesh import Mesh, save_mesh  # noqa: E402
from tests.eval.shapes import icosphere  # noqa: E402


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB"), np.float64) / 255


def test_heatmap_colours_follow_the_error(tmp_path):
    v, f = icosphere(1.0, level=3)
    err = np.where(v[:, 0] > 0, 4.5, 0.0)  # the viewer's right half (+x) is bad
    path = error_heatmap(v, f, err, tmp_path / "h.png", max_mm=5.0, views=(0.0,))
    img = _rgb(path)
    body = img[img.std(-1) > 0.05]  # coloured pixels (background and axes are grey/white)
    assert len(body) > 1000
    h, w, _ = img.shape
    left, right = img[:, : w // 3], img[:, w // 3 : 2 * w // 3]
    # viridis: low errors are purple-blue (blue > green), high errors yellow (green, red >> blue)
    mean = lambda a: a[a.std(-1) > 0.05].mean(0)  # noqa: E731
    assert mean(left)[2] > mean(left)[1] and mean(right)[1] > mean(right)[2], (mean(left), mean(right))
    assert not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(ValueError, match="vertex_errors"):
        error_heatmap(v, f, err[:-1], tmp_path / "x.png")
    with pytest.raises(ValueError, match="vertices, faces"):
        error_heatmap(v, f[:0], err, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_cdf_and_bars(tmp_path):
    rng = np.random.default_rng(0)
    p = error_cdf({"good": rng.random(500), "bad": 3 + rng.random(500)}, tmp_path / "cdf.png")
    assert p.is_file() and _rgb(p).shape[0] > 100
    b = item_bars({"a": 1.0, "b": 2.5, "c": 0.5}, tmp_path / "bars.png")
    assert b.is_file()
    with pytest.raises(ValueError, match="errors"):
        error_cdf({}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="errors\\['x'\\]"):
        error_cdf({"x": []}, tmp_path / "none.png")


def test_eval_command_writes_plots(tmp_path):
    v, f = icosphere(0.4, level=2)
    for side, r in (("pred", 1.01), ("gt", 1.0)):
        (tmp_path / side).mkdir()
        save_mesh(tmp_path / side / "00.ply", Mesh(torch.tensor(v * r, dtype=torch.float32), torch.tensor(f), units="nphm"))
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "-o", str(tmp_path / "out"), "--quiet",
                 "--samples", "2000", "--protocol", "surface"]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["protocol"] == "svfr"
    for name in ("cdf.png", "items.png", "00_heatmap.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "-o", str(tmp_path / "o2"), "--quiet",
                 "--samples", "2000", "--no-plots"]) == 0
    assert not list((tmp_path / "o2").glob("*.png"))
