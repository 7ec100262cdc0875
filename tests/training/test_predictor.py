"""Training the dense predictor: augmentations keep image and targets consistent; the command trains and
writes a loadable weight folder from a dataset folder."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.cli import main
from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset
from nphmkit.heads import DenseConfig, DensePredictor
from nphmkit.training.augment import Augment, _blur, _blur_reference, augment_item, jpeg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    return write_dataset(folder, 8, SynthConfig(image_size=128, expressions_per_head=2, views_per_expression=2, seed=3),
                         progress=False)


def test_flip_mirrors_targets_and_background_stays_outside_the_head():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 16, 16, generator=g)
    normals, canonical = torch.randn(3, 16, 16, generator=g), torch.randn(3, 16, 16, generator=g)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:12, 2:7] = True
    only_flip = Augment(flip=1.0, colour=0.0, background=0.0, blur=0.0, noise=0.0, jpeg=0.0)
    r, n, c, m = augment_item(rgb, normals, canonical, mask, only_flip, torch.Generator().manual_seed(1))
    assert torch.equal(m, mask.flip(-1)) and torch.equal(r, rgb.flip(-1))
    assert torch.equal(n[0], -normals[0].flip(-1)) and torch.equal(c[1:], canonical[1:].flip(-1))
    only_bg = Augment(flip=0.0, colour=0.0, background=1.0, blur=0.0, noise=0.0, jpeg=0.0)
    r, n, c, m = augment_item(rgb, normals, canonical, mask, only_bg, torch.Generator().manual_seed(2))
    assert torch.equal(r[:, mask], rgb[:, mask]) and not torch.equal(r[:, ~mask], rgb[:, ~mask])
    again = augment_item(rgb, normals, canonical, mask, Augment(), torch.Generator().manual_seed(5))
    assert torch.equal(again[0], augment_item(rgb, normals, canonical, mask, Augment(), torch.Generator().manual_seed(5))[0])
    assert again[0].min() >= 0 and again[0].max() <= 1


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 41), w=st.integers(1, 41), sigma=st.floats(0.05, 3.0), seed=st.integers(0, 2**31 - 1),
       channels=st.integers(1, 4))
def test_blur_by_shifted_slices_equals_the_depthwise_convolutions(h, w, sigma, seed, channels):
    img = torch.rand(channels, h, w, generator=torch.Generator().manual_seed(seed))
    ours, ref = _blur(img, sigma), _blur_reference(img, sigma)
    assert ours.shape == ref.shape == img.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    # the edges replicate, so a constant image stays constant
    flat = torch.full((channels, h, w), 0.3)
    torch.testing.assert_close(_blur(flat, sigma), flat, rtol=0, atol=1e-6)


def test_task_batch_is_the_per_item_augmentation_and_leaves_the_data_alone(dataset):
    """``PredictorTask.batch`` writes each item's augmentation back into the gathered arrays (the fast path):
    the batch is, bit for bit, the stack of ``augment_item`` over the items (the reference), repeated items
    and flipped and unflipped ones included, and the task's own arrays stay as loaded."""
    from nphmkit.training.predictor import PredictorTask, PredictorTrainConfig

    task = PredictorTask(PredictorTrainConfig(data=str(dataset)))
    kept = [t.clone() for t in (task.rgb, task.normals, task.canonical, task.mask)]
    items = torch.tensor([3, 0, 5, 3, 7, 1, 2, 6, 4, 0])
    step = 12
    got = task.batch(items, step, torch.device("cpu"))
    ref = []
    for i in items.tolist():
        g = torch.Generator().manual_seed((task.seed * 1_000_003 + step) * 1_000_033 + i)
        ref.append(augment_item(task.rgb[i], task.normals[i], task.canonical[i], task.mask[i], task.cfg.augment, g))
    flipped = [not torch.equal(r[3], task.mask[i]) for r, i in zip(ref, items.tolist())]
    assert any(flipped) and not all(flipped)
    for a, b in zip(got, (torch.stack(t) for t in zip(*ref))):
        assert a.dtype == b.dtype and torch.equal(a, b)
    for a, b in zip((task.rgb, task.normals, task.canonical, task.mask), kept):
        assert torch.equal(a, b)


@pytest.mark.parametrize("size", [(16, 16), (37, 53)])
def test_jpeg_matches_an_encoder_round_trip(size):
    pil = pytest.importorskip("PIL.Image")
    import io

    import numpy as np

    g = torch.Generator().manual_seed(size[1])
    low = torch.rand(1, 3, 5, 7, generator=g)  # smooth content with an edge: blocking and ringing show
    img = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)[0]
    img[:, :, size[1] // 2:] *= 0.4
    img = torch.round(img * 255) / 255
    errors = []
    for quality in (20, 50, 90):
        ours = jpeg(img, quality)
        assert ours.shape == img.shape and ours.min() >= 0 and ours.max() <= 1
        buf = io.BytesIO()
        pil.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=quality)
        ref = torch.from_numpy(np.array(pil.open(buf))).permute(2, 0, 1).float() / 255
        err, ref_err = float((ours - img).abs().mean()), float((ref - img).abs().mean())
        assert 0.6 * ref_err < err < 1.5 * ref_err, (quality, err, ref_err)
        assert float((ours - ref).abs().mean()) < 0.6 * ref_err + 2e-3, quality
        errors.append(err)
    assert errors[0] > errors[1] > errors[2] > 0
    with pytest.raises(ValueError, match="img: expected"):
        jpeg(torch.rand(1, 8, 8), 50)


def test_train_command_writes_a_loadable_predictor(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", "predictor", "--config", "tiny", "--set", f"data={dataset}", "--set", "run.steps=12",
               "-o", str(run), "--quiet", "--threads", "2"])
    assert rc == 0, capsys.readouterr().err
    net = DensePredictor.load(run / "weights")
    assert net.metadata["trained_by"] == "nphmkit train predictor"
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [5, 10, 12] and {"normals", "canonical", "mask"} <= set(rows[0])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert (run / "config.yaml").read_text().count("steps: 12") == 1 and (run / "loss.png").is_file()
    with torch.no_grad():
        maps = net.predict_maps(torch.rand(1, 128, 128, 3))
    assert maps.normals.shape == (1, 128, 128, 3)
    json.loads((run / "weights" / "config.json").read_text())
    # the finished run is not trained over without --overwrite (or continued without --resume)
    again = ["train", "predictor", "--config", "tiny", "--set", f"data={dataset}", "-o", str(run), "--quiet"]
    before = (run / "weights" / "weights.safetensors").read_bytes()
    assert main([*again, "--set", "run.steps=12"]) == 2
    err = capsys.readouterr().err
    assert f"{run} already holds a finished run (12 steps)" in err and "--overwrite" in err and err.count("\n") == 1
    assert (run / "weights" / "weights.safetensors").read_bytes() == before
    assert main([*again, "--set", "run.steps=3", "--overwrite", "--resume"]) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert main([*again, "--set", "run.steps=3", "--overwrite"]) == 0
    with open(run / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [3]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_0000003.pt"]


def test_train_command_refuses_bad_configs(dataset, tmp_path, capsys):
    cases = [
        (["--set", "run.lrr=1"], "run.lrr"),
        (["--set", "data=/nonexistent"], "no such file or folder"),
        (["--set", f"data={dataset}", "--set", "image_size=64"], "expected 64x64 images"),
        (["--config", "huge"], "presets: small, tiny"),
    ]
    for extra, message in cases:
        assert main(["train", "predictor", *extra, "-o", str(tmp_path / "r"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "r").exists(), extra  # no half-made run folder


@pytest.mark.parametrize("workers", [0, 2])
def test_on_the_fly_data_is_the_prerendered_folder(dataset, workers):
    """``data="synthetic:N"`` renders the images ``nphmkit synth -n N`` writes; the task's batches match."""
    from nphmkit.data.dataset import ImageDataset
    from nphmkit.data.synthetic.stream import SyntheticStream
    from nphmkit.training.predictor import PredictorTask, PredictorTrainConfig
    from nphmkit.training.runner import RunConfig

    folder = ImageDataset(dataset)
    # batches of 4 + 1 here (3 + 2 with two workers: one each), one of 8 in the folder (the images do not depend
    # on the batches)
    cfg = SynthConfig(image_size=128, expressions_per_head=2, views_per_expression=2, seed=3, batch=4)
    with SyntheticStream(8, cfg, workers=workers) as stream:
        got = stream.items([6, 1, 5, 2, 7])
        for j, i in enumerate([6, 1, 5, 2, 7]):
            want = folder[i]
            assert torch.equal(got["rgb"][j], want["rgb"]) and torch.equal(got["mask"][j], want["mask"])
            for key in ("normals", "canonical", "K", "R", "t"):
                assert torch.allclose(got[key][j], want[key], atol=1e-6), key
        with pytest.raises(IndexError, match="out of range for a stream of 8"):
            stream[8]
    if workers:
        return
    # the training task on the fly vs on the folder: the same augmented batch (SynthConfig defaults: 2 x 2)
    run = RunConfig(steps=1, batch_size=3, seed=4)
    fly = PredictorTask(PredictorTrainConfig(data="synthetic:8", synthetic_seed=3, run=run))
    disk = PredictorTask(PredictorTrainConfig(data=str(dataset), run=run))
    assert len(fly) == len(disk) == 8
    items = torch.tensor([3, 0, 7])
    for a, b in zip(fly.batch(items, 5, torch.device("cpu")), disk.batch(items, 5, torch.device("cpu"))):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)
    with pytest.raises(ValueError, match="synthetic:N"):
        PredictorTask(PredictorTrainConfig(data="synthetic:many", run=run))


def test_a_head_grown_from_a_trained_predictor_trains_with_frozen_features(dataset, tmp_path, capsys):
    """``init`` + ``freeze_features``: the mixing convolutions, refiner and confidence output learn while the
    features (what a regressor reads) keep their digest; bad combinations are refused by name."""
    from nphmkit.pretrained import load_small_predictor

    shipped = load_small_predictor()
    run = tmp_path / "grow"
    args = ["train", "predictor", "--config", "tiny", "--set", f"data={dataset}", "--set", "run.steps=10",
            "--set", "init=small_predictor", "--set", "freeze_features=true", "--set", "head_mix=1",
            "--set", "refine=8", "--set", "confidence=true", "-o", str(run), "--quiet", "--threads", "2"]
    assert main(args) == 0, capsys.readouterr().err
    net = DensePredictor.load(run / "weights")
    assert net.config.outputs == ("normals", "canonical", "mask", "confidence") and net.config.refine == 8
    assert net.features_sha256() == shipped.features_sha256()
    assert float(net.refiner[-1].weight.detach().abs().max()) > 0 and float(net.head_mix[0][0].weight.detach().abs().max()) > 0
    with open(run / "log.csv", newline="") as f:
        assert "confidence" in next(csv.DictReader(f))
    cases = [
        (["--set", "freeze_features=true"], "freeze_features: needs init"),
        (["--set", "init=small"], "init: directory: expected weights of kind 'DensePredictor', got 'NPHM'"),
        (["--set", "init=/nonexistent/folder"], "init: weights: '/nonexistent/folder' is neither a weight folder"),
    ]
    for extra, message in cases:
        rc = main(["train", "predictor", "--config", "tiny", "--set", f"data={dataset}", *extra,
                   "-o", str(tmp_path / "bad"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and err.count("\n") == 1, err
    other = tmp_path / "other"
    DensePredictor(replace(DenseConfig.small(), num_layers=1)).save(other)
    rc = main(["train", "predictor", "--config", "tiny", "--set", f"data={dataset}", "--set", f"init={other}",
               "-o", str(tmp_path / "bad2"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "other feature sizes" in err and "'num_layers': (1, 2)" in err, err
