"""Dataset writing and reading (API.md layout), the synth command, PNG files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nphmkit.cli import main
from nphmkit.data.dataset import ImageDataset
from nphmkit.data.image_io import decode_png, encode_png, read_image, write_png
from nphmkit.data.synthetic import SyntheticHead
from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset
from nphmkit.render import Camera, render
from tests.helpers import assert_close


def test_synth_command_writes_the_dataset_layout(tmp_path, capsys):
    assert main(["synth", "-n", "5", "-o", str(tmp_path / "ds"), "--size", "48", "--quiet", "--views", "1"]) == 0
    assert "wrote 5 images" in capsys.readouterr().out
    index = json.loads((tmp_path / "ds" / "index.json").read_text())
    assert len(index["images"]) == 5 and "not real people" in index["description"]
    ds = ImageDataset(tmp_path / "ds")
    item = ds[4]
    assert item["rgb"].shape == (48, 48, 3) and item["normals"].shape == (48, 48, 3)
    assert item["mask"].dtype == torch.bool and item["canonical_valid"].shape == (48, 48)
    assert item["normals"].dtype == torch.float32 and item["K"].shape == (3, 3)
    n = item["normals"][item["mask"]]
    assert_close(n.norm(dim=-1), torch.ones(n.shape[0]), atol=1e-4)
    # facing the camera: against each pixel's viewing ray (with perspective, not against the optical axis)
    ys, xs = torch.nonzero(item["mask"], as_tuple=True)
    pix = torch.stack([xs + 0.5, ys + 0.5, torch.ones_like(xs, dtype=torch.float32)], -1)
    rays = torch.nn.functional.normalize(pix @ torch.linalg.inv(item["K"]).T, dim=-1)
    facing = (n * rays).sum(-1)
    assert float((facing < 0).float().mean()) > 0.98 and float(facing.mean()) < -0.4, float(facing.max())
    assert sorted(p.name for p in (tmp_path / "ds").iterdir())[:2] == ["000000_maps.npz", "000000_rgb.png"]
    assert main(["synth", "-n", "0", "-o", str(tmp_path / "x"), "--quiet"]) == 2


def test_worker_processes_write_the_same_dataset(tmp_path, capsys):
    """``--workers 2`` (spawned processes, one thread each): the same files and index as one process."""
    args = ["-n", "7", "--size", "24", "--quiet", "--seed", "5", "--batch", "4"]  # two batches: both workers render
    assert main(["synth", *args, "-o", str(tmp_path / "one")]) == 0
    assert main(["synth", *args, "-o", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert "2 worker processes" in capsys.readouterr().out
    one, two = ImageDataset(tmp_path / "one"), ImageDataset(tmp_path / "two")
    assert len(two) == 7
    a, b = (json.loads((tmp_path / d / "index.json").read_text()) for d in ("one", "two"))
    assert [r["index"] for r in b["images"]] == list(range(7))
    for ra, rb in zip(a["images"], b["images"]):
        assert ra.keys() == rb.keys() and ra["rgb"] == rb["rgb"] and ra["identity"] == rb["identity"]
        assert_close(torch.tensor(ra["landmarks"]), torch.tensor(rb["landmarks"]), atol=1e-5)
    for i in range(7):
        assert torch.equal(one[i]["mask"], two[i]["mask"])
        assert_close(one[i]["rgb"].float(), two[i]["rgb"].float(), atol=1.0)  # 8-bit; at most one level
        assert_close(one[i]["normals"], two[i]["normals"], atol=1e-5)
    assert main(["synth", *args, "-o", str(tmp_path / "bad"), "--workers", "0"]) == 2
    assert not (tmp_path / "bad").exists()


def test_images_do_not_depend_on_the_batch(tmp_path, capsys):
    """``SynthConfig.batch`` groups the renders (a speed setting): batches of 2 and of 5 write the same images."""
    from dataclasses import replace

    cfg = SynthConfig(image_size=24, seed=7, batch=2)
    write_dataset(tmp_path / "two", 5, cfg, progress=False)
    assert main(["synth", "-n", "5", "--size", "24", "--seed", "7", "--batch", "5", "--quiet",
                 "-o", str(tmp_path / "five")]) == 0
    a, b = ImageDataset(tmp_path / "two"), ImageDataset(tmp_path / "five")
    for i in range(5):
        assert torch.equal(a[i]["mask"], b[i]["mask"])
        assert_close(a[i]["rgb"].float(), b[i]["rgb"].float(), atol=1.0)  # 8-bit; at most one level
        assert_close(a[i]["normals"], b[i]["normals"], atol=1e-5)
        assert_close(a[i]["canonical"], b[i]["canonical"], atol=1e-5)
        assert a[i]["record"]["identity"] == b[i]["record"]["identity"]
    with pytest.raises(ValueError, match="config.batch: expected >= 1, got 0"):
        write_dataset(tmp_path / "zero", 2, replace(cfg, batch=0), progress=False)
    capsys.readouterr()
    assert main(["synth", "-n", "2", "--batch", "0", "-o", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "--batch: expected 1 to 4096, got 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_maps_match_a_fresh_render_of_the_recorded_camera(tmp_path):
    cfg = SynthConfig(image_size=40, expressions_per_head=2, views_per_expression=1, seed=3)
    write_dataset(tmp_path, 2, cfg, progress=False)
    ds = ImageDataset(tmp_path)
    item = ds[1]
    rec = item["record"]
    head = SyntheticHead(torch.tensor([list(rec["identity"].values())]), torch.tensor([list(rec["expression_params"].values())]))
    cam = Camera(item["K"][None], item["R"][None], item["t"][None], (40, 40))
    with torch.no_grad():
        out = render(head.sdf, cam, head.canonical)
    assert torch.equal(out.mask[0], item["mask"])
    assert_close(out.normals[0], item["normals"], atol=1e-5)
    assert_close(out.canonical[0], item["canonical"], atol=1e-5)
    assert rec["expression"] == 1 and any(v != 0 for v in rec["expression_params"].values())
    with pytest.raises(IndexError):
        ds[2]


def test_interrupted_write_leaves_no_index(tmp_path, monkeypatch):
    import nphmkit.data.synthetic.dataset as mod

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mod, "landmarks", boom)
    with pytest.raises(RuntimeError):
        write_dataset(tmp_path, 3, SynthConfig(image_size=24), progress=False)
    assert not (tmp_path / "index.json").exists()
    with pytest.raises(FileNotFoundError, match="index.json"):
        ImageDataset(tmp_path)


def test_png_round_trip_and_filters(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(img)), img)
    grey = np.random.default_rng(1).random((5, 6))
    assert decode_png(encode_png(grey)).shape == (5, 6, 1)
    path = write_png(tmp_path / "a.png", torch.from_numpy(img.astype(np.float32) / 255))
    assert np.array_equal((read_image(path).numpy() * 255 + 0.5).astype(np.uint8), img)
    # rows with Sub, Up, Average and Paeth filters (as other encoders write them)
    import struct
    import zlib

    rows = []
    prev = np.zeros(17 * 3, np.int64)
    for y in range(13):
        kind = y % 5
        row = img[y].reshape(-1).astype(np.int64)
        left = np.concatenate([np.zeros(3, np.int64), row[:-3]])
        upleft = np.concatenate([np.zeros(3, np.int64), prev[:-3]])
        if kind == 1:
            enc = row - left
        elif kind == 2:
            enc = row - prev
        elif kind == 3:
            enc = row - (left + prev) // 2
        elif kind == 4:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            enc = row - pred
        else:
            enc = row
        rows.append(bytes([kind]) + (enc % 256).astype(np.uint8).tobytes())
        prev = row

    def chunk(k, d):
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d) & 0xFFFFFFFF)

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 17, 13, 8, 2, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    assert np.array_equal(decode_png(data), img)
