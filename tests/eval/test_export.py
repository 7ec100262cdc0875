"""NoW submission layout: where files go, units (NPHM units x 250 = mm), landmark order, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nphmkit.eval import now_errors
from nphmkit.eval.export import now_paths, read_image_list, write_now_item
from nphmkit.mesh import Mesh, load_mesh
from tests.eval.shapes import icosphere


def test_now_layout_units_and_a_round_trip(tmp_path):
    v, f = icosphere(0.4, level=3)
    lm_idx = np.array([3, 17, 40, 77, 101, 150, 200])
    mesh = Mesh(torch.tensor(v, dtype=torch.float32), torch.tensor(f), units="nphm")
    (tmp_path / "list.txt").write_text("FaMoS_1/multiview_neutral/IMG_0001.jpg\n\nFaMoS_2/selfie/IMG_0002.jpg\n")
    images = read_image_list(tmp_path / "list.txt")
    assert images == ["FaMoS_1/multiview_neutral/IMG_0001.jpg", "FaMoS_2/selfie/IMG_0002.jpg"]
    for image in images:
        m, lm = write_now_item(tmp_path / "sub", image, mesh, torch.tensor(v[lm_idx]))
        assert (m, lm) == now_paths(tmp_path / "sub", image) and m.is_file() and lm.is_file()
    assert (tmp_path / "sub" / "FaMoS_2" / "selfie" / "IMG_0002.npy").is_file()
    back = load_mesh(tmp_path / "sub" / "FaMoS_1" / "multiview_neutral" / "IMG_0001.ply")
    assert back.units == "mm"
    np.testing.assert_allclose(back.vertices.numpy(), v * 250, rtol=1e-6, atol=1e-4)
    marks = np.load(tmp_path / "sub" / "FaMoS_1" / "multiview_neutral" / "IMG_0001.npy")
    assert marks.shape == (7, 3) and marks.dtype == np.float32
    np.testing.assert_allclose(marks, v[lm_idx] * 250, rtol=1e-6, atol=1e-4)
    # the written prediction evaluated against the same surface as a scan (mm): error ~0
    res = now_errors(v * 250, v[lm_idx] * 250, back.vertices.numpy(), back.faces.numpy(), marks)
    assert res.mean < 1e-3


def test_now_export_refuses_bad_items(tmp_path):
    v, f = icosphere(0.4, level=1)
    mesh = Mesh(torch.tensor(v, dtype=torch.float32), torch.tensor(f))
    with pytest.raises(ValueError, match="image: expected"):
        write_now_item(tmp_path, "IMG_0001.jpg", mesh, np.zeros((7, 3)))
    with pytest.raises(ValueError, match="landmarks: expected 7"):
        write_now_item(tmp_path, "a/b/c.jpg", mesh, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="landmarks"):
        write_now_item(tmp_path, "a/b/c.jpg", mesh, np.full((7, 3), np.nan))
    with pytest.raises(ValueError, match="mesh: expected faces"):
        write_now_item(tmp_path, "a/b/c.jpg", Mesh(mesh.vertices, mesh.faces[:0]), np.zeros((7, 3)))
    assert not list(tmp_path.rglob("*.*"))
