"""Frames of a video file (PyAV, the ``video`` extra; its wheels carry FFmpeg) or of a folder of images,
and writing an MP4.

Reading keeps going past a frame that cannot be decoded or read: the frame is listed in
:attr:`Frames.problems` (its index and why) and the rest comes through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nphmkit._optional import require
from nphmkit.preprocess.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageReadError, collect_inputs, load_photo


@dataclass
class Frames:
    """Frames of one video.

    Attributes:
        images: the frames kept, each ``(H, W, 3)`` uint8 (all of one size).
        indices: their frame numbers in the source.
        fps: frames per second of the source divided by the stride (25 for a folder).
        problems: ``"frame N: why"`` per frame that could not be read.
        source: the file or folder.
    """

    images: list[np.ndarray]
    indices: list[int]
    fps: float
    source: Path
    problems: list[str] = field(default_factory=list)


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _check(stride: int, max_frames: int | None) -> None:
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride: expected a positive int, got {stride!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames: expected a positive int or None, got {max_frames!r}")


def read_frames(path: str | os.PathLike, stride: int = 1, max_frames: int | None = None) -> Frames:
    """Every ``stride``-th frame of a video file or a folder of images (sorted by name), at most ``max_frames``.

    A frame of another size than the first is a problem (listed, skipped). A source without any readable
    frame is an :class:`~nphmkit.preprocess.images.ImageReadError` naming it.
    """
    _check(stride, max_frames)
    path = Path(path)
    frames = _read_folder(path, stride, max_frames) if path.is_dir() else _read_video(path, stride, max_frames)
    if not frames.images:
        why = f" ({'; '.join(frames.problems[:3])})" if frames.problems else ""
        raise ImageReadError(f"{path}: no readable frames{why}")
    return frames


def _keep(frames: Frames, index: int, image: np.ndarray) -> None:
    if frames.images and image.shape != frames.images[0].shape:
        frames.problems.append(f"frame {index}: size {image.shape[1]}x{image.shape[0]} differs from the first frame's "
                               f"{frames.images[0].shape[1]}x{frames.images[0].shape[0]}")
        return
    frames.images.append(image)
    frames.indices.append(index)


def _read_folder(path: Path, stride: int, max_frames: int | None) -> Frames:
    files = collect_inputs([path], IMAGE_SUFFIXES, "frames")
    frames = Frames([], [], 25.0 / stride, path)
    for index, file in enumerate(files):
        if index % stride:
            continue
        if max_frames is not None and len(frames.images) >= max_frames:
            break
        try:
            _keep(frames, index, load_photo(file).image)
        except ImageReadError as err:
            frames.problems.append(f"frame {index}: {err}")
    return frames


def _read_video(path: Path, stride: int, max_frames: int | None) -> Frames:
    if not path.is_file():
        raise ImageReadError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    av = require("av", "reading videos")
    try:
        container = av.open(str(path))
    except Exception as err:  # PyAV raises its own error types per FFmpeg code
        raise ImageReadError(f"{path}: not a video PyAV can open ({' '.join(str(err).split())})") from None
    with container:
        if not container.streams.video:
            raise ImageReadError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        frames = Frames([], [], rate / stride, path)
        index = 0
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except Exception as err:
                if packet.size:  # a packet that carried a frame
                    frames.problems.append(f"frame {index}: cannot be decoded ({' '.join(str(err).split())})")
                    index += 1
                continue
            for frame in decoded:
                if index % stride == 0:
                    if max_frames is not None and len(frames.images) >= max_frames:
                        return frames
                    _keep(frames, index, frame.to_ndarray(format="rgb24"))
                index += 1
    return frames


def write_video(path: str | os.PathLike, frames, fps: float = 25.0) -> Path:
    """Write ``frames`` (each ``(H, W, 3)`` uint8, even sizes are safest) as an MP4 at ``path``, atomically."""
    av = require("av", "writing videos")
    from nphmkit._io import atomic_path

    frames = [np.ascontiguousarray(f) for f in frames]
    if not frames:
        raise ValueError("frames: expected at least one frame, got none")
    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = out.add_stream("mpeg4", rate=max(1, round(fps)))
            stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
            stream.bit_rate = 4_000_000
            for image in frames:
                frame = av.VideoFrame.from_ndarray(image[:h2, :w2], format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    return path
