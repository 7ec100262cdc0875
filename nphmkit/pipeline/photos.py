"""From a photo on disk to the crop the networks see, and back (docs/contracts.md "Crops").

:func:`crop_photo` finds the face (or takes a given box), crops the square box x1.42 around it at the
working size, and records ``crop.json``'s fields: ``box`` in the original photo's pixels, the crop's
intrinsics ``K`` (the default crop intrinsics: a photo's own focal length is rarely known),
``image_size`` of the original and where the box came from. :func:`crop_frames` does the same for
the frames of one video with one static box (the mean of the per-frame detections).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nphmkit.preprocess.crop import crop, square_box
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


def _crop_record(box_work, factor: float, original_size, size: int, source: str, notes=()) -> tuple[dict, torch.Tensor]:
    K = default_intrinsics((size, size))[0]
    record = {
        "box": [round(float(v) / factor, 3) for v in box_work],
        "K": K.tolist(),
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


def crop_photo(photo: Photo, size: int, face_index: int = 0, bbox=None,
               detector: DetectorConfig = DEFAULT_DETECTOR) -> PhotoCrop:
    """The ``size``-pixel face crop of ``photo`` (see the module notes). ``bbox``: a face box by hand, in the
    original photo's pixels. Raises :class:`~nphmkit.preprocess.detect.NoFaceError` naming the photo."""
    image = torch.from_numpy(photo.image.copy()).float() / 255
    given = None if bbox is None else [float(v) * photo.factor for v in bbox]
    face, source = find_face(photo.image, str(photo.path), face_index, given, detector)
    out = crop(image[None], torch.tensor([face], dtype=torch.float32), size)
    record, K = _crop_record(out.box[0].tolist(), photo.factor, photo.original_size, size, source, photo.notes)
    return PhotoCrop(out.images[0].clamp(0, 1), K, image, record)


def crop_frames(frames: list[np.ndarray], name: str, size: int, face_index: int = 0, bbox=None,
                detector: DetectorConfig = DEFAULT_DETECTOR, every: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Crop all ``frames`` (each ``(H, W, 3)`` uint8, one size) with one static box: the given ``bbox`` or the
    mean face box over the frames (every ``every``-th frame is searched) where a face was found.

    Returns ``crops (T, size, size, 3)`` float, ``K (3, 3)`` and the ``crop.json`` record (with the number of
    frames the box was averaged over). Raises :class:`NoFaceError` when no searched frame has a face.
    """
    h, w = frames[0].shape[:2]
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
                              f"{len(frames[::max(1, every)])} searched frames; give one by hand with --bbox x0,y0,x1,y1")
        face, source, used = tuple(np.mean(np.asarray(boxes), axis=0).tolist()), "detector (mean over frames)", len(boxes)
    crops = []
    for image in frames:  # one at a time: a long video's full frames never sit in memory as floats
        x = torch.from_numpy(np.array(image)).float()[None] / 255
        crops.append(crop(x, torch.tensor([face], dtype=torch.float32), size).images[0].clamp(0, 1))
    box = square_box(torch.tensor([face], dtype=torch.float32))[0]
    record, K = _crop_record(box.tolist(), 1.0, (h, w), size, source)
    record["frames_with_face"] = used
    return torch.stack(crops), K, record
