"""The shipped small dense predictor: trained (not random), honest about its data, and as good on images it
never saw as its quality.json says."""

from __future__ import annotations

import json

import torch

from nphmkit.data.dataset import ImageDataset
from nphmkit.pretrained import SMALL_PREDICTOR, load_small_predictor


def test_quality_record_is_honest_and_meets_the_targets():
    q = json.loads((SMALL_PREDICTOR / "quality.json").read_text())
    assert "SYNTHETIC" in q["trained_on"] and "not real people" in q["trained_on"]
    held = q["heldout"]
    assert held["images"] >= 200 and held["seed"] != 0  # never-trained heads
    assert held["normals_deg"]["mean"] <= 8.0 and held["canonical_mm"]["mean"] <= 4.0 and held["mask_iou"] >= 0.95


def test_maps_of_an_unseen_render_match_its_exact_maps(tmp_path):
    """A render from a seed no training data used, in the training framing: a trained network, not a random one."""
    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset

    net = load_small_predictor()
    item = ImageDataset(write_dataset(tmp_path, 1, SynthConfig(image_size=128, seed=99), progress=False))[0]
    with torch.no_grad():
        maps = net.predict_maps(item["rgb"][None])
    assert maps.frame == "camera"
    both = maps.mask[0] & item["mask"]
    iou = float(both.sum() / (maps.mask[0] | item["mask"]).sum())
    angle = torch.rad2deg(torch.acos((maps.normals[0][both] * item["normals"][both]).sum(-1).clamp(-1, 1)))
    canon_mm = (maps.canonical[0][both] - item["canonical"][both]).norm(dim=-1) * 250
    assert iou > 0.95 and angle.mean() < 10 and canon_mm.mean() < 5, (iou, float(angle.mean()), float(canon_mm.mean()))


def test_its_confidence_falls_where_its_maps_are_wrong(tmp_path):
    """On unseen renders, the pixels the shipped predictor trusts least carry several times the error of
    those it trusts most (the confidence the pipeline's refinement weights pixels by)."""
    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset

    net = load_small_predictor()
    data = ImageDataset(write_dataset(tmp_path, 2, SynthConfig(image_size=128, seed=98), progress=False))
    items = [data[i] for i in range(len(data))]
    with torch.no_grad():
        maps = net.predict_maps(torch.stack([it["rgb"] for it in items]))
    assert maps.confidence is not None and maps.confidence.shape == (2, 128, 128)
    err, conf = [], []
    for k, it in enumerate(items):
        both = maps.mask[k] & it["mask"]
        err.append((maps.normals[k] - it["normals"]).abs().mean(-1)[both]
                   + 8 * (maps.canonical[k] - it["canonical"]).abs().mean(-1)[both])
        conf.append(maps.confidence[k][both])
    err, conf = torch.cat(err), torch.cat(conf)
    order = conf.argsort()
    quarter = len(order) // 4
    low, high = err[order[:quarter]].mean(), err[order[-quarter:]].mean()
    assert low > 3 * high, (float(low), float(high))
