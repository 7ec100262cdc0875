"""Video and frame-folder reading: round trips, stride, limits, and broken frames reported while the rest comes through."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nphmkit.preprocess.images import ImageReadError
from nphmkit.preprocess.video import read_frames, write_video

av = pytest.importorskip("av")


def _frames(n=6, h=48, w=64):
    out = []
    for k in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = (40 * k) % 250  # brightness encodes the frame number
        f[:, : w // 2, 1] = 200
        out.append(f)
    return out


def test_video_round_trip_with_stride_and_limit(tmp_path):
    frames = _frames()
    path = write_video(tmp_path / "clip.mp4", frames, fps=12)
    assert not list(tmp_path.glob(".*"))  # written atomically, nothing left beside it
    back = read_frames(path)
    assert len(back.images) == 6 and back.indices == list(range(6)) and back.problems == []
    assert back.images[0].shape == (48, 64, 3) and abs(back.fps - 12) < 1e-6
    reds = [float(f[..., 0].mean()) for f in back.images]
    assert np.allclose(reds, [40 * k for k in range(6)], atol=12), reds
    assert float(back.images[0][:, :32, 1].mean()) > 150 > float(back.images[0][:, 40:, 1].mean())
    some = read_frames(path, stride=2, max_frames=2)
    assert some.indices == [0, 2] and abs(some.fps - 6) < 1e-6


def test_frame_folder_skips_a_broken_frame_and_reports_it(tmp_path):
    for k, f in enumerate(_frames(4)):
        Image.fromarray(f).save(tmp_path / f"{k:04d}.png")
    (tmp_path / "0002.png").write_bytes(b"broken")
    Image.fromarray(np.zeros((40, 48, 3), np.uint8) + 9).save(tmp_path / "0004.png")  # another size
    got = read_frames(tmp_path)
    assert got.indices == [0, 1, 3]
    assert len(got.problems) == 2 and got.problems[0].startswith("frame 2: ") and "0002.png" in got.problems[0]
    assert "differs from the first frame" in got.problems[1]


def test_a_video_with_damaged_frame_data_still_gives_its_frames(tmp_path):
    rng = np.random.RandomState(0)
    path = write_video(tmp_path / "clip.mp4", [rng.randint(0, 255, (64, 64, 3)).astype(np.uint8) for _ in range(12)], 10)
    data = bytearray(path.read_bytes())
    start, end = data.find(b"mdat"), data.find(b"moov")  # the frames' data lies between the two boxes
    assert 0 < start < end
    mid = (start + end) // 2
    data[mid : mid + 300] = bytes(300)
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    got = read_frames(tmp_path / "bad.mp4")
    # FFmpeg conceals the damage inside the frame; a packet it cannot decode would be listed in problems
    assert len(got.images) + len(got.problems) == 12 and len(got.images) >= 6


def test_unusable_sources_are_errors_naming_them(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ImageReadError, match="empty.mp4: empty file"):
        read_frames(tmp_path / "empty.mp4")
    with pytest.raises(ImageReadError, match="text.mp4: not a video"):
        read_frames(tmp_path / "text.mp4")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0.png").write_bytes(b"x")
    with pytest.raises(ImageReadError, match="no readable frames"):
        read_frames(tmp_path / "frames")
    with pytest.raises(ValueError, match="stride"):
        read_frames(tmp_path / "frames", stride=0)
