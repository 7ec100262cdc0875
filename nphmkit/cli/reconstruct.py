"""``nphmkit reconstruct IMAGE|DIR|GLOB... -o OUT``: photos -> face crops -> Pix2NPHM -> meshes, landmarks,
codes and pictures, one folder per photo (docs/contracts.md "Batch jobs"); resumable; under ``torchrun``
the photos are shared among the processes."""

from __future__ import annotations

import argparse
import time

from nphmkit.cli._common import CliError
from nphmkit.cli._pipeline import add_pipeline_flags, check_pipeline_flags, focal_note, focal_summary, input_K, run_batch


def add_parser(sub, parents) -> None:
    p = sub.add_parser("reconstruct", parents=parents, help="reconstruct heads from photos (one folder per photo)",
                       description="Detect the face in each photo, crop it as the networks were trained (square box "
                                   "x1.42), predict maps, regress codes and pose, refine, and write meshes, landmarks, "
                                   "codes and pictures to OUT/<photo name>/, plus summary.json, failures.json and "
                                   "index.html. A rerun skips finished photos. Exit status 1 if any photo failed.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE|DIR|GLOB", help="photos, folders of photos, or glob patterns")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--max-side", type=int, default=4096, help="photos with a longer side are downscaled (default 4096)")
    add_pipeline_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nphmkit.preprocess.images import ImageReadError, collect_inputs

    weights = check_pipeline_flags(args)
    if args.max_side < 64:
        raise CliError(f"--max-side: expected at least 64 pixels, got {args.max_side}")
    try:
        inputs = collect_inputs(args.inputs)
    except ImageReadError as err:
        raise CliError(f"inputs: {err}") from None
    if args.mask is not None and len(inputs) != 1:
        raise CliError(f"--mask: one mask is for one photo, got {len(inputs)} input photos")
    return run_batch(args, weights, inputs, _one, "photos", "reconstructed")


def _one(args, pipe, job, name: str, source) -> str:
    """Reconstruct one photo into its folder; a failure is recorded (the batch goes on). Returns a one-line report."""
    import torch

    from nphmkit.pipeline.outputs import write_item
    from nphmkit.pipeline.photos import crop_photo
    from nphmkit.preprocess.detect import NoFaceError
    from nphmkit.preprocess.images import ImageReadError, load_photo

    start = time.perf_counter()
    try:
        photo = load_photo(source, max_side=args.max_side)
        crop = crop_photo(photo, pipe.image_size, args.face_index, args.bbox_values, args.detector_config,
                          whole=args.cropped, focal=args.focal, K=input_K(args, source))
        if args.focal_auto:
            from dataclasses import replace

            from nphmkit.pipeline.photos import estimate_photo_focal

            K, info = estimate_photo_focal(pipe, crop.image[None], crop.info)
            crop = replace(crop, K=K, info=info)
        notes = [*photo.notes, *filter(None, [focal_note(args, crop.K, pipe.image_size)])]
        masks = None if args.mask is None else _mask_crop(args, photo, crop)
        rec = pipe.reconstruct(crop.image[None].to(args.device), crop.K.to(args.device), refine=args.refine,
                               steps=args.steps, seed=args.seed, progress=False, masks=masks)
        rec = _to_cpu(rec)
        with job.item(name) as folder:
            row = write_item(folder, rec, 0, crop.photo, crop.info, mm=args.mm, resolution=args.resolution)
            row.update({"rank": job.rank, "seconds": round(time.perf_counter() - start, 2), "steps": list(rec.steps),
                        "timings": {k: round(v, 3) for k, v in rec.timings.items()},
                        "face_box_source": crop.info["box_source"], "notes": notes})
            job.finish_item(folder, row)
    except (ImageReadError, NoFaceError) as err:
        job.fail(str(source), err)
        return f"{name}: FAILED: {' '.join(str(err).split())}"
    except (RuntimeError, ValueError, torch.linalg.LinAlgError) as err:
        if args.debug:
            raise
        job.fail(str(source), f"{type(err).__name__}: {err}")
        return f"{name}: FAILED: {type(err).__name__}: {' '.join(str(err).split())}"
    side = crop.info["box"][2] - crop.info["box"][0]
    refined = f"refined {rec.steps[0]} steps" if rec.steps else "feed-forward"
    tail = f" [{'; '.join(notes)}]" if notes else ""
    focal = focal_summary(args, crop.K, pipe.image_size)
    return (f"{name}: crop {side:.0f} px (face box: {crop.info['box_source']}){focal}, {refined}, "
            f"{time.perf_counter() - start:.1f} s -> {job.folder(name)}{tail}")


_CPU_MODELS: dict[int, object] = {}


def _to_cpu(rec):
    """A reconstruction made on a GPU, moved to the CPU for writing its files: its tensors, its maps and a CPU copy of
    its head model (made once per model; the model on the GPU stays there for the next item)."""
    import copy
    from dataclasses import replace

    if rec.z_id.device.type == "cpu":
        return rec
    cpu = {k: getattr(rec, k).cpu() for k in ("z_id", "z_ex", "rotation", "translation", "scale", "K")}
    key = id(rec.model)
    if key not in _CPU_MODELS:
        _CPU_MODELS[key] = copy.deepcopy(rec.model).cpu()
    maps = replace(rec.maps, **{k: (None if getattr(rec.maps, k) is None else getattr(rec.maps, k).cpu())
                                for k in ("normals", "canonical", "mask", "confidence")})
    return replace(rec, maps=maps, model=_CPU_MODELS[key], **cpu)


def _mask_crop(args, photo, crop):
    """``--mask``: the photo's mask (white = head) cropped like the photo, ``(1, n, n)`` bool."""
    import torch

    from nphmkit.preprocess import crop as crop_images
    from nphmkit.preprocess.images import load_photo

    mask = load_photo(args.mask, max_side=args.max_side)
    if mask.image.shape[:2] != photo.image.shape[:2]:
        raise ValueError(f"--mask: {args.mask} is {mask.image.shape[1]}x{mask.image.shape[0]} pixels, the photo "
                         f"{photo.image.shape[1]}x{photo.image.shape[0]}")
    m = torch.from_numpy(mask.image[..., :1].astype("float32") / 255)[None]
    box = torch.tensor([crop.info["box"]]) * photo.factor
    n = crop.image.shape[0]
    return crop_images(m, box, n, square=False).images[..., 0] > 0.5
