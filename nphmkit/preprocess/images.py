"""Photos from disk as the pipeline wants them: RGB uint8, upright, of a workable size.

PNG, JPEG, WebP, TIFF and BMP through Pillow (the ``image`` extra; plain 8-bit PNGs also without
it). The EXIF orientation is applied; grey, palette, CMYK and 16-bit / float images become 8-bit
RGB; an alpha channel is composited on white; images larger than ``max_side`` are downscaled (the
note says so, and :attr:`Photo.factor` maps coordinates back). Every problem is an
:class:`ImageReadError` whose message names the file.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
MIN_SIDE = 32
"""Smallest accepted image side in pixels."""
MAX_SIDE = 4096
"""Longer side above which photos are downscaled on reading."""


class ImageReadError(ValueError):
    """An image that cannot be used (the message names the file)."""


@dataclass(frozen=True)
class Photo:
    """One photo read from disk.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB (after orientation and any downscaling).
        path: the file.
        original_size: ``(H, W)`` of the file's pixels (after the EXIF rotation).
        factor: ``image`` pixels per original pixel (1.0 unless downscaled).
        notes: what was converted (e.g. ``"16-bit converted to 8-bit"``).
    """

    image: np.ndarray
    path: Path
    original_size: tuple[int, int]
    factor: float = 1.0
    notes: tuple[str, ...] = ()


def _to_rgb8(im, notes: list[str]) -> np.ndarray:
    """A Pillow image of any mode -> ``(H, W, 3)`` uint8."""
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = max(1.0, float(arr.max(initial=0)))
        notes.append(f"{'16-bit' if top == 65535.0 else mode + '-mode'} grey converted to 8-bit")
        grey = np.clip(arr / top * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append("alpha composited on white")
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "1"):
        notes.append("grey converted to RGB")
    return np.asarray(im.convert("RGB"))


def _decode(path: Path, data: bytes, notes: list[str]) -> np.ndarray:
    from nphmkit._optional import available

    if not available("PIL"):
        from nphmkit.data.image_io import decode_png

        try:
            arr = decode_png(data)
        except ValueError as err:
            raise ImageReadError(f"{path}: cannot read it without Pillow ({err}); pip install 'nphmkit[image]'") from None
        if arr.shape[2] in (2, 4):
            alpha = arr[..., -1:].astype(np.float32) / 255
            arr = (arr[..., :-1] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
            notes.append("alpha composited on white")
        return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
    from io import BytesIO

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(BytesIO(data)) as im:
            im.load()
            if im.getexif().get(0x0112, 1) != 1:
                notes.append("EXIF orientation applied")
            return _to_rgb8(ImageOps.exif_transpose(im), notes)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{path}: unreadable or truncated image ({' '.join(str(err).split())})") from None


def load_photo(path: str | os.PathLike, max_side: int = MAX_SIDE) -> Photo:
    """Read one photo (see the module notes); :class:`ImageReadError` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    data = path.read_bytes()
    if not data:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    notes: list[str] = []
    arr = _decode(path, data, notes)
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageReadError(f"{path}: too small ({w}x{h} pixels); expected at least {MIN_SIDE} on each side")
    factor = 1.0
    if max(h, w) > max_side:
        from skimage.transform import resize

        factor = max_side / max(h, w)
        size = (max(1, round(h * factor)), max(1, round(w * factor)))
        arr = (resize(arr, size, anti_aliasing=True, preserve_range=True) + 0.5).astype(np.uint8)
        notes.append(f"downscaled from {w}x{h} to {size[1]}x{size[0]} pixels")
    return Photo(np.array(arr, dtype=np.uint8, order="C"), path, (h, w), factor, tuple(notes))  # writable copy


def collect_inputs(specs, suffixes: tuple[str, ...] = IMAGE_SUFFIXES, what: str = "images") -> list[Path]:
    """Files named by ``specs`` (files, folders of files, glob patterns), in order, without repeats.

    Folders contribute their files with one of ``suffixes`` (not recursive, sorted by name). A folder with
    none, or a pattern or path that matches nothing, is a :class:`ImageReadError` naming it.
    """
    out: list[Path] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
            if not found:
                raise ImageReadError(f"{p}: a folder with no {what} (looked for {', '.join(suffixes)})")
        elif p.is_file():
            found = [p]
        elif any(ch in str(spec) for ch in "*?["):
            found = sorted(Path(f) for f in glob.glob(os.path.expanduser(str(spec)), recursive=True)
                           if Path(f).is_file() and Path(f).suffix.lower() in suffixes)
            if not found:
                raise ImageReadError(f"{spec}: the pattern matches no {what}")
        else:
            raise ImageReadError(f"{p}: no such file or folder")
        out.extend(f for f in found if f not in out)
    return out


def item_names(paths) -> list[str]:
    """A distinct output name per input: its stem, with ``-2``, ``-3``... for repeated stems."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for p in paths:
        stem = Path(p).stem or "item"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names
