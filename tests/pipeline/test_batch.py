"""Batch-job bookkeeping (atomic item folders, resume, shards, merged failures), pasting a crop back onto its
photo, and smoothing a code track."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nphmkit.pipeline.batch import BatchJob, rank_and_world
from nphmkit.pipeline.outputs import crop_to_photo, smooth_track
from nphmkit.pipeline.views import paste
from nphmkit.preprocess import crop
from nphmkit.transforms import axis_angle_to_matrix
from tests.helpers import assert_close


def test_an_item_folder_appears_only_whole(tmp_path):
    job = BatchJob(tmp_path)
    with pytest.raises(RuntimeError):
        with job.item("a") as folder:
            (folder / "posed.ply").write_text("half")
            raise RuntimeError("killed half way")
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".partial-*"))
    with job.item("a") as folder:
        (folder / "posed.ply").write_text("whole")
        job.finish_item(folder, {"seconds": 1.0})
    assert job.is_done("a") and (tmp_path / "a" / "posed.ply").read_text() == "whole"
    # a partial folder left by a killed process is removed by the next job
    (tmp_path / ".partial-b.r0").mkdir()
    BatchJob(tmp_path)
    assert not (tmp_path / ".partial-b.r0").exists()


def test_two_ranks_share_items_and_rank_0_merges(tmp_path):
    names = [f"i{k}" for k in range(5)]
    sources = [f"/photos/{n}.png" for n in names]
    jobs = [BatchJob(tmp_path, r, 2) for r in (0, 1)]
    shards = [j.shard(list(zip(names, sources))) for j in jobs]
    assert sorted(n for s in shards for n, _ in s) == names and not set(shards[0]) & set(shards[1])
    for job, shard in zip(jobs, shards):
        for name, source in shard:
            if name == "i3":
                job.fail(source, ValueError("no face"))
                continue
            with job.item(name) as folder:
                job.finish_item(folder, {"v": name})
    assert jobs[1].close(names, sources, {"command": "test"}) is None
    summary = jobs[0].close(names, sources, {"command": "test"})
    assert [x["name"] for x in summary["items"]] == ["i0", "i1", "i2", "i4"] and summary["processes"] == 2
    assert json.loads((tmp_path / "failures.json").read_text()) == [{"input": "/photos/i3.png", "error": "no face"}]
    assert not list(tmp_path.glob(".failures-*"))


def test_rank_and_world_from_the_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert rank_and_world() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK: expected 0..1, got 2"):
        rank_and_world()


@settings(max_examples=15, deadline=None)
@given(h=st.integers(40, 90), w=st.integers(40, 90), size=st.integers(16, 48), fx=st.floats(0.3, 0.6),
       fy=st.floats(0.3, 0.6), side=st.floats(0.2, 0.35))
def test_a_crop_pasted_back_lands_where_it_was_cut(h, w, size, fx, fy, side):
    """Cutting a smooth image and pasting the cut back changes nothing inside the box (the two transforms agree)."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    photo = torch.stack([xs / w, ys / h, 0.5 + 0 * xs], -1).double()
    s = side * min(h, w)
    box = torch.tensor([[fx * w - s / 2, fy * h - s / 2, fx * w + s / 2, fy * h + s / 2]], dtype=torch.float64)
    cut = crop(photo[None], box, size, square=False)
    back = paste(photo.clone() * 0, cut.images[0], torch.ones(size, size, dtype=torch.bool), cut.box[0], alpha=1.0)
    x0, y0, x1, y1 = cut.box[0].tolist()
    inner = (xs > x0 + 2) & (xs < x1 - 2) & (ys > y0 + 2) & (ys < y1 - 2)
    assert bool(inner.any())
    assert_close(back[inner], photo[inner], atol=0.03)
    outside = ~((xs > x0 - 1) & (xs < x1 + 1) & (ys > y0 - 1) & (ys < y1 + 1))
    assert float(back[outside].abs().sum()) == 0
    # a crop pixel maps back to the photo pixel it came from
    centre = torch.tensor([[size / 2, size / 2]], dtype=torch.float64)
    assert_close(crop_to_photo(centre, cut.box[0].tolist(), size)[0],
                 torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2], dtype=torch.float64), atol=1e-9)


def test_smoothing_keeps_a_steady_track_and_calms_a_noisy_one():
    g = torch.Generator().manual_seed(0)
    n = 30
    z = torch.randn(1, 8, generator=g).expand(n, 8)
    R = axis_angle_to_matrix(torch.tensor([[0.1, 0.2, 0.0]])).expand(n, 3, 3)
    t = torch.tensor([[0.0, 0.1, 2.0]]).expand(n, 3)
    zs, Rs, ts = smooth_track(z, R, t)
    assert_close(zs, z, atol=1e-5)
    assert_close(Rs, R, atol=1e-5)
    assert_close(ts, t, atol=1e-6)
    noisy_R = axis_angle_to_matrix(0.05 * torch.randn(n, 3, generator=g)) @ R
    noisy_t = t + 0.01 * torch.randn(n, 3, generator=g)
    _, Rs, ts = smooth_track(z, noisy_R, noisy_t)
    assert_close(Rs @ Rs.transpose(1, 2), torch.eye(3).expand(n, 3, 3), atol=1e-5)
    assert torch.linalg.det(Rs).min() > 0.999
    jitter = lambda x: float((x[1:] - x[:-1]).norm(dim=-1).mean())  # noqa: E731
    assert jitter(ts) < 0.6 * jitter(noisy_t)
    assert jitter(Rs.reshape(n, 9)) < 0.6 * jitter(noisy_R.reshape(n, 9))
