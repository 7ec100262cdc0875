"""The nphmkit command line: meshes from codes, provenance, and a corpus of bad inputs, each a one-line
error naming the input, the documented exit status (2 bad input, 1 runtime failure) and no output file."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from nphmkit.cli import main
from nphmkit.mesh import Mesh, load_mesh, save_mesh
from nphmkit.nphm import load_mononphm
from nphmkit.nphm.checkpoint import nphmkit_to_official
from nphmkit.nphm.codes import load_codes, save_codes
from nphmkit.pretrained import SMALL_NPHM
from tests.nphm.cases import make_model

REGISTRATIONS = SMALL_NPHM / "registrations.npz"


def _surface_model(seed=3):
    model = make_model(seed=seed)
    with torch.no_grad():  # a field that crosses zero inside the box: sdf = f(q) - 0.02
        model.ensemble.biases[-1].add_(-0.02 - model.ensemble.biases[-1].mean())
    return model


def test_mesh_command_writes_posed_and_neutral_meshes_with_provenance(tmp_path, capsys):
    model = _surface_model()
    folder = model.save(tmp_path / "weights")
    codes = save_codes(tmp_path / "codes.npz", torch.zeros(2, model.config.id_dim), 0.3 * torch.randn(2, 100))
    out = tmp_path / "new" / "deeper" / "posed.ply"  # folders that do not exist are created
    assert main(["mesh", "--weights", str(folder), "--codes", str(codes), "-o", str(out),
                 "--resolution", "40", "--quiet", "--frame", "1", "--threads", "1"]) == 0
    line = capsys.readouterr().out
    assert "vertices" in line and "SDF queries" in line and "posed" in line
    posed = load_mesh(out)
    record = json.loads((out.parent / "posed.ply.json").read_text())
    assert record["command"] == "mesh" and record["arguments"]["frame"] == 1 and record["threads"] == 1
    assert len(record["weights"]["sha256"]) == 64 and record["nphmkit"]
    assert main(["mesh", "--weights", str(folder), "--codes", str(codes), "-o", str(tmp_path / "neutral.obj"),
                 "--resolution", "40", "--quiet", "--neutral", "--mm"]) == 0
    neutral = load_mesh(tmp_path / "neutral.obj")
    assert posed.n_faces > 0 and neutral.n_faces > 0 and neutral.units == "mm"


def test_shipped_weights_by_name_and_python_m(tmp_path):
    """`python -m nphmkit mesh --weights small` with the shipped registrations, from any folder."""
    out = subprocess.run([sys.executable, "-m", "nphmkit", "mesh", "--weights", "small", "--codes", str(REGISTRATIONS),
                          "-o", "head.ply", "--resolution", "32", "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert load_mesh(tmp_path / "head.ply").n_faces > 100
    assert (tmp_path / "head.ply.json").is_file()


def test_mesh_band_flag_reaches_the_extraction(tmp_path, capsys):
    """`--band none` evaluates every point of the flagged cells: more queries, the same triangles here."""
    model = _surface_model()
    folder = model.save(tmp_path / "weights")
    codes = save_codes(tmp_path / "codes.npz", torch.zeros(1, model.config.id_dim), torch.zeros(1, 100))
    queries = {}
    for band in ("0.5", "none"):
        out = tmp_path / f"band_{band}.ply"
        assert main(["mesh", "--weights", str(folder), "--codes", str(codes), "-o", str(out), "--resolution", "48",
                     "--quiet", "--band", band]) == 0
        queries[band] = int(capsys.readouterr().out.split(" SDF queries")[0].rsplit(" ", 1)[-1])
    banded, full = load_mesh(tmp_path / "band_0.5.ply"), load_mesh(tmp_path / "band_none.ply")
    assert queries["0.5"] < queries["none"]
    assert banded.n_faces == full.n_faces > 0
    assert torch.allclose(banded.vertices, full.vertices, atol=1e-6)


def test_mesh_command_reads_official_checkpoints(tmp_path, capsys):
    model = _surface_model(seed=1)
    torch.save(nphmkit_to_official(model), tmp_path / "checkpoint_epoch_5.tar")
    np.save(tmp_path / "anchors_65.npy", model.mean_anchors.numpy())
    folder = tmp_path / "track"
    folder.mkdir()
    np.save(folder / "z_geo.npy", np.zeros((1, 1, model.config.id_dim), np.float32))
    np.save(folder / "z_exp.npy", np.zeros((3, 100), np.float32))
    rc = main(["mesh", "--checkpoint", str(tmp_path / "checkpoint_epoch_5.tar"), "--anchors", str(tmp_path / "anchors_65.npy"),
               "--codes", str(folder), "-o", str(tmp_path / "m.ply"), "--resolution", "24", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "m.ply.json").read_text())
    assert len(record["weights"]["checkpoint_sha256"]) == 64


# ---------------------------------------------------------------------- the bad-input corpus
class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Files of every bad kind, written once: (name -> path) and the good weight folder and codes."""
    root = tmp_path_factory.mktemp("corpus")
    model = _surface_model()
    files = {"weights": model.save(root / "weights")}
    d, e = model.config.id_dim, model.config.lat_dim_ex
    files["codes"] = save_codes(root / "codes.npz", torch.zeros(1, d), torch.zeros(1, e))
    files["wrong_codes"] = save_codes(root / "wrong.npz", torch.zeros(1, 100), torch.zeros(1, e))
    nan = np.zeros((1, d), np.float32)
    nan[0, 3] = np.nan
    np.savez(root / "nan.npz", z_id=nan, z_ex=np.zeros((1, e), np.float32))
    files["nan_codes"] = root / "nan.npz"
    # official checkpoints: good, truncated, with a tensor missing, code-carrying, mismatched anchors
    state = nphmkit_to_official(model)
    torch.save(state, root / "good.tar")
    files["good_ckpt"] = root / "good.tar"
    np.save(root / "anchors.npy", model.mean_anchors.numpy())
    files["anchors"] = root / "anchors.npy"
    data = (root / "good.tar").read_bytes()
    (root / "truncated.tar").write_bytes(data[: len(data) // 2])
    files["truncated"] = root / "truncated.tar"
    missing = {k: dict(v) for k, v in state.items()}
    missing["id_decoder"].pop("mlp_pos.0.weight")
    torch.save(missing, root / "missing.tar")
    files["missing"] = root / "missing.tar"
    (root / "evil.tar").write_bytes(pickle.dumps({"id_decoder": Evil(), "ex_decoder": {}}))
    files["evil"] = root / "evil.tar"
    np.save(root / "anchors_10.npy", np.zeros((10, 3), np.float32))
    files["wrong_anchors"] = root / "anchors_10.npy"
    # a decoder whose surface lies outside the box: nothing to mesh
    empty = make_model(seed=3)
    with torch.no_grad():
        empty.ensemble.biases[-1].add_(5.0)
    files["empty_weights"] = empty.save(root / "empty")
    (root / "a_file").write_text("not a folder")
    files["a_file"] = root / "a_file"
    return files


def _mesh_args(files, out, **over):
    args = {"--weights": str(files["weights"]), "--codes": str(files["codes"]), "--resolution": "24"}
    args.update(over)
    flat = ["mesh", "-o", str(out), "--quiet"]
    for k, v in args.items():
        if v is not None:
            flat += [k, v]
    return flat


CASES = [
    # (id, overrides, output name, expected status, text in the error)
    ("missing weights", {"--weights": "/nonexistent/w"}, "x.ply", 2, "--weights: '/nonexistent/w' is neither a weight folder"),
    ("missing codes", {"--codes": "/nonexistent/c.npz"}, "x.ply", 2, "--codes: no such file or folder"),
    ("wrong-shaped codes", {"--codes": "wrong_codes"}, "x.ply", 2, "the model expects"),
    ("NaN codes", {"--codes": "nan_codes"}, "x.ply", 2, "codes.z_id: holds NaN or Inf"),
    ("no model", {"--weights": None}, "x.ply", 2, "give --weights small|DIR"),
    ("truncated checkpoint", {"--weights": None, "--checkpoint": "truncated", "--anchors": "anchors"}, "x.ply", 2,
     "could not be read as a plain tensor checkpoint"),
    ("code-carrying checkpoint", {"--weights": None, "--checkpoint": "evil", "--anchors": "anchors"}, "x.ply", 2,
     "weights_only=True refuses pickled code"),
    ("tensor missing", {"--weights": None, "--checkpoint": "missing", "--anchors": "anchors"}, "x.ply", 2,
     "is missing tensor(s) 'mlp_pos.0.weight'"),
    ("wrong anchors", {"--weights": None, "--checkpoint": "good_ckpt", "--anchors": "wrong_anchors"}, "x.ply", 2,
     "anchors: expected"),
    ("empty surface", {"--weights": "empty_weights"}, "x.ply", 2, "no surface in the box"),
    ("resolution too small", {"--resolution": "2"}, "x.ply", 2, "--resolution: expected 16 to 1024"),
    ("bad suffix", {}, "x.stl", 2, "-o/--output: expected a file name ending in .ply, .obj, .glb"),
    ("output parent is a file", {}, "a_file/x.ply", 2, "exists and is not a folder"),
    ("negative band", {"--band": "-0.5"}, "x.ply", 2, "--band: expected a positive number of cell diagonals or 'none'"),
    ("word band", {"--band": "wide"}, "x.ply", 2, "--band: expected a positive number of cell diagonals or 'none', got 'wide'"),
    ("negative threads", {"--threads": "0"}, "x.ply", 2, "--threads: expected at least 1"),
]


@pytest.mark.parametrize("name, over, out_name, status, message", CASES, ids=[c[0] for c in CASES])
def test_bad_inputs_are_one_line_errors(corpus, tmp_path, capsys, name, over, out_name, status, message):
    over = {k: (str(corpus[v]) if v in corpus else v) for k, v in over.items()}
    out = (corpus["a_file"].parent / out_name) if out_name.startswith("a_file") else tmp_path / out_name
    assert main(_mesh_args(corpus, out, **over)) == status
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("nphmkit mesh: error: ") and "Traceback" not in captured.err
    assert not out.exists() and not out.with_name(out.name + ".json").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_glb_without_trimesh_fails_before_meshing(corpus, tmp_path, capsys):
    from nphmkit._optional import available

    if available("trimesh"):
        pytest.skip("trimesh is installed here")
    assert main(_mesh_args(corpus, tmp_path / "x.glb")) == 2
    assert "needs the optional extra trimesh" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(corpus, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(_mesh_args(corpus, locked / "x.ply")) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_debug_shows_the_traceback(corpus, tmp_path):
    with pytest.raises(Exception, match="no such file or folder"):
        main([*_mesh_args(corpus, tmp_path / "x.ply", **{"--codes": "/nonexistent"}), "--debug"])


def test_python_api_refuses_the_same_corpus(corpus, tmp_path):
    with pytest.raises(ValueError, match="codes.z_id: holds NaN or Inf"):
        load_codes(corpus["nan_codes"])
    with pytest.raises(ValueError, match="refuses pickled code"):
        load_mononphm(corpus["evil"], corpus["anchors"])
    with pytest.raises(ValueError, match="could not be read"):
        load_mononphm(corpus["truncated"], corpus["anchors"])
    with pytest.raises(ValueError, match=r"is missing tensor\(s\) 'mlp_pos.0.weight'"):
        load_mononphm(corpus["missing"], corpus["anchors"])
    with pytest.raises(ValueError, match="anchors: expected 4 anchors|anchors: expected"):
        load_mononphm(corpus["good_ckpt"], corpus["wrong_anchors"])
    nan_anchors = tmp_path / "nan_anchors.npy"
    arr = np.load(corpus["anchors"])
    arr[0, 0] = np.inf
    np.save(nan_anchors, arr)
    with pytest.raises(ValueError, match="anchors: holds NaN or Inf"):
        load_mononphm(corpus["good_ckpt"], nan_anchors)
    empty = Mesh(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="mesh: has no faces"):
        save_mesh(tmp_path / "empty.ply", empty)
    assert not (tmp_path / "empty.ply").exists()
