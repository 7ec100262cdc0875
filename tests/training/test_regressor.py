"""``nphmkit train regressor``: 3D and 2D items, a weight folder that names its frozen predictor, refusals."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from nphmkit.cli import main
from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset
from nphmkit.heads import Pix2NPHMRegressor
from nphmkit.heads.regressor import PredictorBackbone, RegressorConfig
from nphmkit.pretrained import load_small_predictor
from nphmkit.training.regressor import shape_samples
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synth"), 6, SynthConfig(image_size=128, seed=3), progress=False)


def test_train_regressor_mixes_3d_and_2d_items_and_names_its_predictor(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "regressor", "--config", "tiny", "--set", f"data={dataset}", "--set", "two_d=0.5",
                 "-o", str(run), "--quiet"]) == 0, capsys.readouterr().err
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"sdf", "rotation", "position", "normals_2d", "silhouette_2d"} <= set(rows[0])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    reg = Pix2NPHMRegressor.load(run / "weights")  # resolves the shipped predictor and checks its sha256
    meta = reg.metadata
    assert meta["predictor"] == "small_predictor" and len(meta["predictor_sha256"]) == 64
    stored = load_file(str(run / "weights" / "weights.safetensors"))
    assert not any(k.startswith("backbones.") for k in stored)  # the frozen predictor is not stored again
    out = reg(torch.rand(2, 3, 128, 128))
    assert out["z_id"].shape == (2, 2176) and out["translation"].shape == (2, 3)
    assert meta["predictor_features_sha256"] == load_small_predictor().features_sha256()
    # the regressor reads only the predictor's features: a predictor with a retrained head still serves it,
    # one with other features is refused, naming both digests
    predictor = load_small_predictor()
    with torch.no_grad():
        predictor.t_conv3.weight.mul_(1.5)
    predictor.save(run / "retrained_head")
    doc = json.loads((run / "weights" / "config.json").read_text())
    doc["metadata"]["predictor"] = "../retrained_head"
    (run / "weights" / "config.json").write_text(json.dumps(doc))
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(Pix2NPHMRegressor.load(run / "weights")(images)["z_id"], reg(images)["z_id"])
        predictor.img_encoder.model.blocks[0].norm1.weight.mul_(1.01)
    predictor.save(run / "retrained_head")
    with pytest.raises(ValueError, match="trained on predictor '../retrained_head' whose features have sha256"):
        Pix2NPHMRegressor.load(run / "weights")
    # a folder from before the features digest is checked by the predictor folder's sha256
    del doc["metadata"]["predictor_features_sha256"]
    doc["metadata"]["predictor"] = "small_predictor"
    doc["metadata"]["predictor_sha256"] = "0" * 64
    (run / "weights" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="trained on predictor 'small_predictor' whose files have sha256 0000"):
        Pix2NPHMRegressor.load(run / "weights")


def test_predictor_backbone_reads_the_predictor_tokens():
    predictor = load_small_predictor()
    images = torch.rand(2, 3, 128, 128)
    backbone = PredictorBackbone(predictor)
    mean, std = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    prefix, tokens = backbone.forward_tokens((images - mean) / std)[0]
    assert prefix.shape == (2, 0, predictor.config.embed_dim)
    assert_close(tokens, predictor.features(images), atol=1e-5)
    cfg = RegressorConfig.on_predictor(predictor.config)
    with pytest.raises(ValueError, match="predictor: a regressor with backbone='predictor' needs"):
        Pix2NPHMRegressor(cfg)
    reg = Pix2NPHMRegressor(cfg, predictor=predictor)
    with pytest.raises(ValueError, match="metadata: a predictor-backed regressor needs"):
        reg.save("/nonexistent/never-written", metadata={})


def test_shape_samples_lie_near_the_surface():
    from nphmkit.data.synthetic import SyntheticHead

    head = SyntheticHead.sample(2, seed=4)
    pts, vals = shape_samples(head.sdf, 2, 300, 100, 0.01, torch.Generator().manual_seed(0))
    assert pts.shape == (2, 400, 3) and vals.shape == (2, 400)
    assert_close(vals, head.sdf(pts))
    near = vals[:, :300].abs()
    assert float(near.median()) < 0.02 and float((near < 0.1).float().mean()) > 0.97


def test_train_regressor_refuses_bad_data(tmp_path, capsys):
    small = write_dataset(tmp_path / "small", 1, SynthConfig(image_size=64, seed=3), progress=False)
    cases = [(["--set", f"data={small}"], "expected 128x128 images"),
             (["--set", f"data={small}", "--set", "predictor=/nonexistent"], "predictor:"),
             (["--set", f"data={small}", "--set", "two_d=2"], "two_d: expected a fraction"),
             (["--set", f"data={small}", "--set", "weights.regularizers.smile=1"], "unknown name(s) ['smile']")]
    for extra, message in cases:
        assert main(["train", "regressor", "--config", "tiny", *extra, "-o", str(tmp_path / "r"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_fine_tuning_starts_from_a_regressor_folder(dataset, tmp_path, capsys):
    """``init=small_regressor``: the run starts from the shipped weights (at lr 1e-12 it keeps them);
    a regressor of other sizes is refused naming the field."""
    from nphmkit.pretrained import SMALL_REGRESSOR

    run = tmp_path / "ft"
    assert main(["train", "regressor", "--config", "tiny", "--set", f"data={dataset}", "--set", "init=small_regressor",
                 "--set", "run.lr=1e-12", "--set", "run.steps=2", "-o", str(run), "--quiet"]) == 0, capsys.readouterr().err
    tuned, shipped = (load_file(str(p / "weights.safetensors")) for p in (run / "weights", SMALL_REGRESSOR))
    assert tuned.keys() == shipped.keys()
    assert all(torch.allclose(tuned[k], shipped[k], atol=1e-8) for k in shipped)
    assert main(["train", "regressor", "--config", "tiny", "--set", f"data={dataset}", "--set", "init=small_regressor",
                 "--set", "width=32", "-o", str(tmp_path / "bad"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "init:" in err and "'width': (64, 32)" in err, err
