"""From a photo on disk to the crop the networks see, and back (docs/contracts.md "Crops").

:func:`crop_photo` finds the face (or takes a given box), crops the square box x1.42 around it at the
working size, and records ``crop.json``'s fields: ``box`` in the original photo's pixels, the crop's
intrinsics ``K`` (the default crop intrinsics, as a photo's own focal length is rarely known; or the crop of
the photo's intrinsics where its focal length or its ``K`` is given),
``image_size`` of the original and where the box came from. :func:`crop_frames` does the same for
the frames of one video with one static box (the mean of the per-frame detections).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from nphmkit.preprocess.crop import crop, crop_transform, square_box
from nphmkit.preprocess.detect import DEFAULT_DETECTOR, DetectorConfig, NoFaceError, find_face
from nphmkit.preprocess.images import Photo
from nphmkit.render import default_intrinsics


@dataclass(frozen=True)
class PhotoCrop:
    """A face crop of a photo: ``image (n, n, 3)`` float in [0, 1], ``K (3, 3)`` its intrinsics, ``photo (H, W, 3)``
    float (the oriented, possibly downscaled photo), and ``info`` (``crop.json``'s record)."""

    image: torch.Tensor
    K: torch.Tensor
    photo: torch.Tensor
    info: dict


def _photo_K(h: int, w: int, focal: float) -> torch.Tensor:
    """``(3, 3)`` intrinsics of an ``h x w`` image with focal length ``focal`` (pixels), principal point at its centre."""
    return torch.tensor([[focal, 0.0, w / 2], [0.0, focal, h / 2], [0.0, 0.0, 1.0]])


def _check_focal(focal) -> None:
    if focal is not None and not (isinstance(focal, numbers.Real) and not isinstance(focal, bool)
                                  and math.isfinite(focal) and focal > 0):
        raise ValueError(f"focal: expected a positive focal length in pixels, got {focal!r}")


def check_photo_K(K, name: str = "K") -> torch.Tensor:
    """``K`` as a float32 ``(3, 3)`` tensor of pinhole intrinsics (pixels): finite, positive focal lengths, last
    row ``[0, 0, 1]``; ValueError naming ``name`` otherwise."""
    try:
        K = torch.as_tensor(K, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name}: expected a 3 x 3 matrix of numbers, got {K!r}") from None
    if K.shape != (3, 3):
        raise ValueError(f"{name}: expected a 3 x 3 intrinsics matrix, got shape {tuple(K.shape)}")
    if not (torch.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0 and K[2].tolist() == [0.0, 0.0, 1.0]):
        raise ValueError(f"{name}: expected finite intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, "
                         f"got {K.tolist()}")
    return K


def _given_K(h: int, w: int, factor: float, focal: float | None, K) -> tuple[torch.Tensor | None, str]:
    """The intrinsics of an ``h x w`` working image (the photo downscaled by ``factor``) from a focal length or a
    ``K`` in the original photo's pixels, and how they were given; ``(None, ...)`` when neither is."""
    _check_focal(focal)
    if focal is not None and K is not None:
        raise ValueError("focal and K: give the photo's focal length or its intrinsics, not both")
    if focal is not None:
        return _photo_K(h, w, focal * factor), f"focal length {focal:g} px, centred"
    if K is not None:
        scale = torch.tensor([[factor, 0.0, 0.0], [0.0, factor, 0.0], [0.0, 0.0, 1.0]])
        return scale @ check_photo_K(K), "given intrinsics"
    return None, "default crop intrinsics"


def _crop_record(box_work, factor: float, original_size, size: int, source: str, notes=(),
                 K: torch.Tensor | None = None, K_source: str = "default crop intrinsics") -> tuple[dict, torch.Tensor]:
    K = default_intrinsics((size, size))[0] if K is None else K
    record = {
        "box": [round(float(v) / factor, 3) for v in box_work],
        "K": K.tolist(),
        "K_source": K_source,
        "image_size": [int(original_size[0]), int(original_size[1])],
        "crop_size": size,
        "box_source": source,
        "enlarge": 1.42,
    }
    if factor != 1.0:
        record["downscale"] = factor
    if notes:
        record["notes"] = list(notes)
    return record, K


WHOLE_SOURCE = "whole image (already a crop)"


def _whole_box(h: int, w: int, name: str) -> torch.Tensor:
    """The crop box ``(1, 4)`` of an ``h x w`` image that is already a face crop: all of it (it must be square)."""
    if h != w:
        raise ValueError(f"{name}: an image that is already a face crop must be square (the face box x1.42), "
                         f"got {w} x {h} pixels; drop --cropped (whole=True) to detect the face instead")
    return torch.tensor([[0.0, 0.0, float(w), float(h)]])


def crop_photo(photo: Photo, size: int, face_index: int = 0, bbox=None,
               detector: DetectorConfig = DEFAULT_DETECTOR, whole: bool = False, focal: float | None = None,
               K=None) -> PhotoCrop:
    """The ``size``-pixel face crop of ``photo`` (see the module notes). ``bbox``: a face box by hand, in the
    original photo's pixels. ``whole=True``: the photo is already a face crop in the networks' framing (square,
    the face box x1.42, as ``nphmkit synth`` writes images); it is resampled to ``size`` without detection, and
    a photo that is not square raises ValueError. ``focal``: the photo's focal length in its original pixels
    (principal point at its centre), or ``K`` its ``(3, 3)`` intrinsics in those pixels, for the crop's ``K`` (seen
    through the crop box); neither: the default crop intrinsics. Raises
    :class:`~nphmkit.preprocess.detect.NoFaceError` naming the photo when no face is found."""
    image = torch.from_numpy(photo.image.copy()).float() / 255
    K_photo, K_source = _given_K(*image.shape[:2], photo.factor, focal, K)
    if whole:
        out = crop(image[None], _whole_box(*image.shape[:2], str(photo.path)), size, K=K_photo, square=False)
        source = WHOLE_SOURCE
    else:
        given = None if bbox is None else [float(v) * photo.factor for v in bbox]
        face, source = find_face(photo.image, str(photo.path), face_index, given, detector)
        out = crop(image[None], torch.tensor([face], dtype=torch.float32), size, K=K_photo)
    record, K = _crop_record(out.box[0].tolist(), photo.factor, photo.original_size, size, source, photo.notes,
                             None if out.K is None else out.K[0], K_source)
    return PhotoCrop(out.images[0].clamp(0, 1), K, image, record)


def crop_frames(frames: list[np.ndarray], name: str, size: int, face_index: int = 0, bbox=None,
                detector: DetectorConfig = DEFAULT_DETECTOR, every: int = 1,
                whole: bool = False, focal: float | None = None, K=None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Crop all ``frames`` (each ``(H, W, 3)`` uint8, one size) with one static box: the given ``bbox`` or the
    mean face box over the frames (every ``every``-th frame is searched) where a face was found; with
    ``whole=True`` the frames are already face crops (square; see :func:`crop_photo`) and are only resampled.
    ``focal`` / ``K``: the frames' focal length or intrinsics in their pixels, as in :func:`crop_photo`.

    Returns ``crops (T, size, size, 3)`` float, ``K (3, 3)`` and the ``crop.json`` record (with the number of
    frames the box was averaged over). Raises :class:`NoFaceError` when no searched frame has a face.
    """
    h, w = frames[0].shape[:2]
    K_frames, K_source = _given_K(h, w, 1.0, focal, K)
    if whole:
        box, source, used = _whole_box(h, w, name), WHOLE_SOURCE, 0
    else:
        face, source, used = _static_face(frames, name, face_index, bbox, detector, every)
        box = square_box(torch.tensor([face], dtype=torch.float32))
    crops = []
    for image in frames:  # one at a time: a long video's full frames never sit in memory as floats
        x = torch.from_numpy(np.array(image)).float()[None] / 255
        crops.append(crop(x, box, size, square=False).images[0].clamp(0, 1))
    K = None if K_frames is None else (crop_transform(box, size) @ K_frames)[0]
    record, K = _crop_record(box[0].tolist(), 1.0, (h, w), size, source, K=K, K_source=K_source)
    record["frames_with_face"] = used
    return torch.stack(crops), K, record


def _static_face(frames, name: str, face_index: int, bbox, detector: DetectorConfig, every: int):
    """The face box of :func:`crop_frames`: the given ``bbox`` or the mean detection; with its source and the number
    of frames averaged."""
    if bbox is not None:
        face, _ = find_face(frames[0], name, face_index, bbox, detector)
        source, used = "given", 0
    else:
        boxes = []
        for image in frames[:: max(1, every)]:
            try:
                boxes.append(find_face(image, name, face_index, None, detector)[0])
            except NoFaceError:
                continue
        if not boxes:
            raise NoFaceError(f"{name}: no face found by the {detector.backend} detector in any of "
                              f"{len(frames[::max(1, every)])} searched frames; give one by hand with --bbox x0,y0,x1,y1, "
                              "or pass --cropped if the frames are already face crops")
        face, source, used = tuple(np.mean(np.asarray(boxes), axis=0).tolist()), "detector (mean over frames)", len(boxes)
    return face, source, used


def estimate_photo_focal(pipe, crops: torch.Tensor, info: dict, frames: int = 5) -> tuple[torch.Tensor, dict]:
    """The photo's focal length estimated from the predicted canonical maps of its crops, for a photo whose camera
    is unknown (``--focal auto``).

    ``crops (T, n, n, 3)``: the crops of one photo or one video's frames, all cut by ``info["box"]`` (``crop.json``'s
    record) from images of ``info["image_size"]``. The candidates are the photo's intrinsics with the principal
    point at its centre and focal lengths of :data:`~nphmkit.fitting.focal.DEFAULT_WIDTHS` crop widths, seen
    through the crop box; :func:`~nphmkit.fitting.focal.estimate_shared_focal` scores each on up to ``frames``
    evenly spaced crops (their summed median reprojection errors). Returns the crops' ``K (3, 3)`` and ``info`` with that
    ``K`` and its ``K_source``. Raises ValueError when the predictor has no canonical output.
    """
    from nphmkit.fitting.focal import DEFAULT_WIDTHS, PIPELINE_STEP, estimate_shared_focal, spread_picks

    box = torch.tensor([info["box"]], dtype=torch.float32)
    side = float(box[0, 2] - box[0, 0])
    h, w = info["image_size"]
    size = int(crops.shape[1])
    Ks = torch.stack([_photo_K(h, w, f * side) for f in DEFAULT_WIDTHS])
    candidates = crop_transform(box, size) @ Ks  # (C, 3, 3) in crop pixels
    picks = spread_picks(crops.shape[0], frames)
    device = next(pipe.predictor.parameters()).device
    maps = pipe.maps(crops[picks].to(device))
    if maps.canonical is None:
        raise ValueError("--focal auto: the predictor has no canonical point map to estimate the focal length from")
    canonical, mask = maps.canonical.cpu(), maps.mask.cpu()  # the PnP runs on the CPU
    k = estimate_shared_focal(canonical, mask, candidates, step=PIPELINE_STEP).index
    widths = DEFAULT_WIDTHS[k]
    K = candidates[k]
    record = {**info, "K": K.tolist(),
              "K_source": f"estimated from the predicted canonical map: focal length {widths * side:.0f} px "
                          f"({widths:.1f} crop widths), centred"}
    return K, record
