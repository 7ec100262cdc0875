"""Face detection that works offline: scikit-image's bundled LBP frontal-face cascade (default) or
OpenCV's Haar cascade (the ``opencv`` extra, 4.x wheels), and the face box the crop starts from.

Detectors return boxes ``[x0, y0, x1, y1]`` in pixels of the image (continuous coordinates, as
:mod:`nphmkit.preprocess.crop`), largest first. Both cascades box the inner face (brows to mouth);
:func:`face_box` moves such a box to the framing nphmkit's training images use (mid-forehead to
chin, cheek to cheek; :mod:`nphmkit.data.synthetic.framing`): its centre ``DETECTOR_SHIFT`` x side
lower and its side ``DETECTOR_SCALE`` x the detector's, measured by hand on scikit-image's ``astronaut()``:
the face box is about 93 px centred at (224, 131); the LBP box is 85 px at column 177, row 71, or 99 px
at (177, 64), as the detector's scale steps fall (its sizes come in steps of ``scale_factor``).

Defaults, measured on scikit-image's sample photos: at the LBP cascade's own defaults there is a
49 px "face" in ``coffee()`` and a 38 px false positive beside the astronaut's real face (85 px);
with ``min_neighbors=8`` the coffee cup is gone and the real face stays (it is lost from 16), and
``min_relative_size=0.1`` (a face at least a tenth of the shorter image side) drops the 38 px box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nphmkit._optional import require

DETECTOR_SHIFT = 0.2
"""Downward shift of the detector box's centre, in box sides, to the face-box centre."""
DETECTOR_SCALE = 1.0
"""Face-box side / detector-box side (1.1 and 0.94 for the two astronaut boxes)."""
BACKENDS = ("lbp", "opencv")


class NoFaceError(ValueError):
    """No face found in an image (the message names the image)."""


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of :func:`detect_faces`.

    Attributes:
        backend: ``"lbp"`` (scikit-image, no extra dependency) or ``"opencv"`` (Haar cascade, the ``opencv`` extra).
        min_neighbors: overlapping detections a face needs (higher: fewer false positives).
        min_relative_size: smallest face side as a fraction of the shorter image side.
        scale_factor: step between the detector's scales (> 1).
        max_side: images are downscaled so their longer side is at most this for detection (speed).
    """

    backend: str = "lbp"
    min_neighbors: int = 8
    min_relative_size: float = 0.1
    scale_factor: float = 1.2
    max_side: int = 640

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.min_neighbors < 1:
            raise ValueError(f"min_neighbors: expected at least 1, got {self.min_neighbors}")
        if not 0 <= self.min_relative_size < 1:
            raise ValueError(f"min_relative_size: expected a fraction in [0, 1), got {self.min_relative_size}")
        if not self.scale_factor > 1:
            raise ValueError(f"scale_factor: expected > 1, got {self.scale_factor}")
        if self.max_side < 64:
            raise ValueError(f"max_side: expected at least 64 pixels, got {self.max_side}")


DEFAULT_DETECTOR = DetectorConfig()
"""The default settings (LBP cascade, 8 neighbours, faces of at least a tenth of the shorter side)."""

_CASCADES: dict[str, object] = {}


def _as_uint8(image) -> np.ndarray:
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image: expected an (H, W, 3) RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"image: expected uint8 or float in [0, 1], got dtype {arr.dtype}")
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    return arr


def _lbp(gray_rgb: np.ndarray, cfg: DetectorConfig, min_side: int) -> list[tuple[float, float, float, float]]:
    from skimage import data
    from skimage.feature import Cascade

    if "lbp" not in _CASCADES:
        _CASCADES["lbp"] = Cascade(data.lbp_frontal_face_cascade_filename())
    h, w = gray_rgb.shape[:2]
    found = _CASCADES["lbp"].detect_multi_scale(
        img=gray_rgb, scale_factor=cfg.scale_factor, step_ratio=1, min_size=(min_side, min_side),
        max_size=(min(h, w), min(h, w)), min_neighbor_number=cfg.min_neighbors)
    return [(d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]) for d in found]


def _opencv(rgb: np.ndarray, cfg: DetectorConfig, min_side: int) -> list[tuple[float, float, float, float]]:
    cv2 = require("cv2", "the OpenCV face detector (OpenCV 4.x)")
    if "opencv" not in _CASCADES:
        data_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if data_dir is None:
            raise ImportError("opencv: this OpenCV build ships no Haar cascade files (OpenCV 5 dropped them; "
                              "install opencv-python-headless<5)")
        _CASCADES["opencv"] = cv2.CascadeClassifier(data_dir + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = _CASCADES["opencv"].detectMultiScale(gray, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors,
                                                 minSize=(min_side, min_side))
    return [(float(x), float(y), float(x + bw), float(y + bh)) for x, y, bw, bh in np.asarray(found).reshape(-1, 4)]


def detect_faces(image, config: DetectorConfig = DEFAULT_DETECTOR) -> list[tuple[float, float, float, float]]:
    """Faces in one image, largest first.

    Args:
        image: ``(H, W, 3)`` RGB, uint8 or float in [0, 1] (numpy or torch).
        config: detector and thresholds (see :class:`DetectorConfig`).

    Returns:
        boxes ``[x0, y0, x1, y1]`` in pixels of ``image`` as the detector draws them (inner face; see
        :func:`face_box` for the crop's framing); an empty list when there is no face.
    """
    rgb = _as_uint8(image)
    h, w = rgb.shape[:2]
    factor = min(1.0, config.max_side / max(h, w))
    small = rgb
    if factor < 1:
        from skimage.transform import resize

        small = (resize(rgb, (max(1, round(h * factor)), max(1, round(w * factor))), anti_aliasing=True,
                        preserve_range=True) + 0.5).astype(np.uint8)
    sh, sw = small.shape[:2]
    min_side = max(24, int(np.ceil(config.min_relative_size * min(sh, sw))))
    if min(sh, sw) < min_side:
        return []
    boxes = (_lbp if config.backend == "lbp" else _opencv)(small, config, min_side)
    boxes = [tuple(float(v) / factor for v in b) for b in boxes]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def face_box(detection) -> tuple[float, float, float, float]:
    """A detector box ``[x0, y0, x1, y1]`` -> the face box of nphmkit's crop framing (see the module notes)."""
    x0, y0, x1, y1 = (float(v) for v in detection)
    side = max(x1 - x0, y1 - y0) * DETECTOR_SCALE
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + DETECTOR_SHIFT * (y1 - y0)
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def find_face(image, name: str = "image", face_index: int = 0, bbox=None,
              config: DetectorConfig = DEFAULT_DETECTOR) -> tuple[tuple[float, float, float, float], str]:
    """The face box to crop one image around, and where it came from (``"detector"`` or ``"given"``).

    Args:
        image: ``(H, W, 3)`` RGB.
        name: how errors name the image (e.g. its path).
        face_index: which face when there are several, 0 = largest.
        bbox: a face box ``[x0, y0, x1, y1]`` in pixels given by hand (used as is; no detection).
        config: the detector's settings.

    Raises:
        NoFaceError: no face (or fewer than ``face_index + 1``), naming ``name``.
    """
    h, w = np.asarray(image).shape[:2] if not hasattr(image, "shape") else tuple(image.shape[:2])
    if bbox is not None:
        x0, y0, x1, y1 = (float(v) for v in bbox)
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"bbox: expected x0 < x1 and y0 < y1, got {list(bbox)}")
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise ValueError(f"bbox: {list(bbox)} lies outside {name} ({w}x{h} pixels)")
        return (x0, y0, x1, y1), "given"
    if face_index < 0:
        raise ValueError(f"face_index: expected 0 or more, got {face_index}")
    boxes = detect_faces(image, config)
    if len(boxes) <= face_index:
        found = "no face" if not boxes else f"only {len(boxes)} face(s)"
        raise NoFaceError(f"{name}: {found} found by the {config.backend} detector"
                          + (f" (asked for face index {face_index})" if boxes else "")
                          + "; give one by hand with --bbox x0,y0,x1,y1, or pass --cropped if the images are already face crops")
    return face_box(boxes[face_index]), "detector"
