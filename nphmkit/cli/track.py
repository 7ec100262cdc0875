"""``nphmkit track VIDEO|FRAME_DIR... -o OUT``: one identity per video, expression and pose per frame, smooth over
time; one folder per video with the first frame's files, per-frame codes, a smoothed code track and an overlay
MP4 (docs/contracts.md "Batch jobs")."""

from __future__ import annotations

import argparse
import time

from nphmkit.cli._common import CliError, say
from nphmkit.cli._pipeline import add_pipeline_flags, check_pipeline_flags, focal_note, focal_summary, input_K, run_batch


def add_parser(sub, parents) -> None:
    p = sub.add_parser("track", parents=parents, help="track a head through videos or frame folders",
                       description="Crop every frame with one static box (the mean face box), predict maps and "
                                   "per-frame codes, then fit one identity with per-frame expression and pose, smooth "
                                   "over time. Writes OUT/<video name>/ (codes.npz per frame, codes_track.npz smoothed, "
                                   "overlay.mp4, meshes of the first frame), summary.json, failures.json, index.html.")
    p.add_argument("inputs", nargs="+", metavar="VIDEO|FRAME_DIR", help="video files (the video extra) or folders of frames")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--stride", type=int, default=1, help="use every N-th frame (default 1)")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames per video")
    p.add_argument("--no-video", action="store_true", help="skip overlay.mp4")
    add_pipeline_flags(p)
    p.set_defaults(run=run)


def _sources(specs) -> list:
    from pathlib import Path

    from nphmkit.preprocess.images import VIDEO_SUFFIXES

    out = []
    for spec in specs:
        p = Path(spec).expanduser()
        if not p.exists():
            raise CliError(f"inputs: {p}: no such video file or frame folder")
        if p.is_file() and p.suffix.lower() not in VIDEO_SUFFIXES:
            raise CliError(f"inputs: {p}: not a video file (expected {', '.join(VIDEO_SUFFIXES)}) or a frame folder")
        if p not in out:
            out.append(p)
    return out


def _schedule(args):
    """The video fit's schedule: ``--steps N`` sets N steps on the first frame, N/3 per later frame, N/2 joint."""
    from dataclasses import replace

    from nphmkit.fitting import ImageFitConfig, VideoFitConfig

    video = VideoFitConfig(image=ImageFitConfig(steps=100, patience=100))
    if args.steps is None:
        return video
    n = args.steps
    return replace(video, first_steps=n, frame_steps=max(1, n // 3), joint_steps=max(1, n // 2))


def run(args: argparse.Namespace) -> int:
    weights = check_pipeline_flags(args)
    if args.stride < 1:
        raise CliError(f"--stride: expected a positive number of frames, got {args.stride}")
    if args.max_frames is not None and args.max_frames < 1:
        raise CliError(f"--max-frames: expected a positive number of frames, got {args.max_frames}")
    sources = _sources(args.inputs)
    if not args.no_video or any(p.is_file() for p in sources):
        from nphmkit._optional import available

        if not available("av"):
            raise CliError("videos need the optional package 'av' (pip install 'nphmkit[video]'); "
                           "for frame folders without it, add --no-video")
    return run_batch(args, weights, sources, _one, "videos", "tracked")


def _one(args, pipe, job, name: str, source) -> str:
    import torch

    from nphmkit.pipeline.outputs import write_track
    from nphmkit.pipeline.photos import crop_frames
    from nphmkit.preprocess.detect import NoFaceError
    from nphmkit.preprocess.images import ImageReadError
    from nphmkit.preprocess.video import read_frames

    start = time.perf_counter()
    try:
        frames = read_frames(source, args.stride, args.max_frames)
        for problem in frames.problems:
            say(args, f"{name}: {problem} (skipped)")
        crops, K, info = crop_frames(frames.images, str(source), pipe.image_size, args.face_index, args.bbox_values,
                                     args.detector_config, every=max(1, len(frames.images) // 16),
                                     whole=args.cropped, focal=args.focal, K=input_K(args, source))
        if args.focal_auto:
            from nphmkit.pipeline.photos import estimate_photo_focal

            K, info = estimate_photo_focal(pipe, crops, info)
        note = focal_note(args, K, pipe.image_size)
        if note:
            say(args, f"{name}: {note}")
        rec = pipe.track(crops.to(args.device), K.to(args.device), refine=args.refine, seed=args.seed,
                         progress=False if args.quiet else None, video=_schedule(args))
        from nphmkit.cli.reconstruct import _to_cpu

        rec = _to_cpu(rec)
        full = torch.stack([torch.from_numpy(f.copy()).float() / 255 for f in frames.images])
        with job.item(name) as folder:
            row = write_track(folder, rec, full, info, frames.indices, frames.fps, mm=args.mm,
                              resolution=args.resolution, video=not args.no_video)
            row.update({"rank": job.rank, "seconds": round(time.perf_counter() - start, 2), "frame_problems": frames.problems,
                        "timings": {k: round(v, 3) for k, v in rec.timings.items()}, "notes": [note] if note else []})
            job.finish_item(folder, row)
    except (ImageReadError, NoFaceError) as err:
        job.fail(str(source), err)
        return f"{name}: FAILED: {' '.join(str(err).split())}"
    except (RuntimeError, ValueError) as err:
        if args.debug:
            raise
        job.fail(str(source), f"{type(err).__name__}: {err}")
        return f"{name}: FAILED: {type(err).__name__}: {' '.join(str(err).split())}"
    bad = len(frames.problems)
    skipped = f", {bad} frame{'s' * (bad != 1)} unreadable" if bad else ""
    return (f"{name}: {len(frames.images)} frames{skipped}{focal_summary(args, K, pipe.image_size)}, "
            f"{'refined' if args.refine else 'feed-forward'}, "
            f"{time.perf_counter() - start:.1f} s -> {job.folder(name)}")
