"""The nphmkit command line: mesh a head from codes; clear errors for bad files."""

from __future__ import annotations

import numpy as np
import torch

from nphmkit.cli import main
from nphmkit.mesh import load_mesh
from nphmkit.nphm.checkpoint import nphmkit_to_official
from nphmkit.nphm.codes import save_codes
from tests.nphm.cases import make_model


def test_mesh_command_writes_posed_and_neutral_meshes(tmp_path, capsys):
    model = make_model(seed=3)
    with torch.no_grad():  # a field that crosses zero inside the box: sdf = f(q) - 0.02
        model.ensemble.biases[-1].add_(-0.02 - model.ensemble.biases[-1].mean())
    folder = model.save(tmp_path / "weights")
    codes = save_codes(tmp_path / "codes.npz", torch.zeros(2, model.config.id_dim), 0.3 * torch.randn(2, 100))
    assert main(["mesh", "--weights", str(folder), "--codes", str(codes), "-o", str(tmp_path / "posed.ply"),
                 "--resolution", "40", "--quiet", "--frame", "1"]) == 0
    line = capsys.readouterr().out
    assert "vertices" in line and "SDF queries" in line and "posed" in line
    posed = load_mesh(tmp_path / "posed.ply")
    assert main(["mesh", "--weights", str(folder), "--codes", str(codes), "-o", str(tmp_path / "neutral.obj"),
                 "--resolution", "40", "--quiet", "--neutral", "--mm"]) == 0
    neutral = load_mesh(tmp_path / "neutral.obj")
    assert posed.n_faces > 0 and neutral.n_faces > 0 and neutral.units == "mm"


def test_mesh_command_reads_official_checkpoints(tmp_path, capsys):
    model = make_model(seed=1)
    torch.save(nphmkit_to_official(model), tmp_path / "checkpoint_epoch_5.tar")
    np.save(tmp_path / "anchors_65.npy", model.mean_anchors.numpy())
    folder = tmp_path / "track"
    folder.mkdir()
    np.save(folder / "z_geo.npy", np.zeros((1, 1, model.config.id_dim), np.float32))
    np.save(folder / "z_exp.npy", np.zeros((3, 100), np.float32))
    rc = main(["mesh", "--checkpoint", str(tmp_path / "checkpoint_epoch_5.tar"), "--anchors", str(tmp_path / "anchors_65.npy"),
               "--codes", str(folder), "-o", str(tmp_path / "m.ply"), "--resolution", "24", "--quiet"])
    assert rc == 0, capsys.readouterr().err


def test_mesh_command_errors_are_one_line(tmp_path, capsys):
    model = make_model()
    folder = model.save(tmp_path / "weights")
    bad_codes = save_codes(tmp_path / "bad.npz", torch.zeros(1, 100), torch.zeros(1, 100))
    cases = [
        (["--weights", str(tmp_path / "nope"), "--codes", str(bad_codes)], "weight folder"),
        (["--weights", str(folder), "--codes", str(bad_codes)], "the model expects"),
        (["--weights", str(folder), "--codes", str(tmp_path / "missing.npz")], "no codes file"),
        (["--codes", str(bad_codes)], "--weights DIR"),
    ]
    for extra, message in cases:
        assert main(["mesh", *extra, "-o", str(tmp_path / "x.ply"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.ply").exists()
