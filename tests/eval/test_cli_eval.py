"""``nphmkit eval``: surface and NoW figures for mesh pairs and folders, with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import torch

from nphmkit.cli import main
from nphmkit.eval import Similarity
from nphmkit.mesh import Mesh, save_mesh
from tests.eval.shapes import icosphere


def _save(path, v, f, units="nphm"):
    save_mesh(path, Mesh(torch.tensor(v, dtype=torch.float32), torch.tensor(f), units=units))


def test_surface_protocol_on_folders(tmp_path, capsys):
    v, f = icosphere(0.4, level=3)
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for i, r in enumerate((1.0, 1.01)):  # 0 mm and 0.4 % of 0.4 units = 0.4 mm ... radial offsets
        _save(tmp_path / "pred" / f"{i:02d}.ply", v * r, f)
        _save(tmp_path / "gt" / f"{i:02d}.ply", v, f)
    _save(tmp_path / "pred" / "unmatched.ply", v, f)
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "-o", str(tmp_path / "out"), "--quiet",
                 "--samples", "3000"]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    items = {r["item"]: r for r in result["items"]}
    assert set(items) == {"00", "01"}
    assert items["00"]["chamfer_mm"] < 1e-6 and items["00"]["fscore_1mm"] == 1.0
    assert abs(items["01"]["accuracy_mm"] - 0.004 * 250) < 0.05  # NPHM units x 250 = mm
    assert (tmp_path / "out" / "results.csv").read_text().startswith("item,")
    assert "2 item(s)" in capsys.readouterr().out


def test_now_protocol_recovers_an_aligned_copy(tmp_path):
    v, f = icosphere(0.4, level=3)
    v = v * [0.8, 1.0, 0.9]
    v[:, 2] += 0.25 * np.maximum(v[:, 2], 0) ** 2
    lm = np.array([0, 5, 11, 30, 60, 90, 120])
    pose = Similarity(1.3, np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0] * [1, 1, 1], np.array([0.1, 0, 0]))
    if np.linalg.det(pose.R) < 0:
        pose = Similarity(pose.s, -pose.R, pose.t)
    moved = pose.apply(v)
    _save(tmp_path / "scan.ply", v * 250, f, units="mm")
    np.save(tmp_path / "scan_landmarks.npy", v[lm] * 250)
    _save(tmp_path / "pred.ply", moved * 250, f, units="mm")
    np.save(tmp_path / "pred_landmarks.npy", moved[lm] * 250)
    assert main(["eval", str(tmp_path / "pred.ply"), str(tmp_path / "scan.ply"), "-o", str(tmp_path / "o"),
                 "--protocol", "now", "--quiet"]) == 0
    row = json.loads((tmp_path / "o" / "results.json").read_text())["items"][0]
    assert row["mean_mm"] < 0.01 and row["median_mm"] < 0.01


def test_eval_errors_are_one_line(tmp_path, capsys):
    v, f = icosphere(0.4, level=1)
    _save(tmp_path / "a.ply", v, f)
    _save(tmp_path / "mm.ply", v * 250, f, units="mm")
    (tmp_path / "d").mkdir()
    cases = [
        ([str(tmp_path / "a.ply"), str(tmp_path / "missing.ply")], "gt: no such file or folder"),
        ([str(tmp_path / "a.ply"), str(tmp_path / "d")], "two mesh files or two folders"),
        ([str(tmp_path / "a.ply"), str(tmp_path / "mm.ply")], "different units"),
        ([str(tmp_path / "a.ply"), str(tmp_path / "a.ply"), "--protocol", "now"], "no landmarks beside"),
        ([str(tmp_path / "big.ply"), str(tmp_path / "a.ply")], "the prediction is 250x the size"),
        ([str(tmp_path / "nan.ply"), str(tmp_path / "a.ply")], "NaN/infinite vertices"),
    ]
    _save(tmp_path / "big.ply", v * 250, f)  # millimetre numbers labelled as NPHM units
    bad = v.copy()
    bad[3] = np.nan
    _save(tmp_path / "nan.ply", bad, f)
    for extra, message in cases:
        assert main(["eval", *extra, "-o", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
