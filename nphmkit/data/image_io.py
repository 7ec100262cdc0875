"""PNG files without extra dependencies (8-bit grey, RGB, RGBA), and image/tensor conversions.

Writing is atomic. Reading handles every standard PNG filter, non-interlaced 8-bit images;
other PNGs (16-bit, palette, interlaced) and JPEGs are read through pillow when it is
installed (the ``image`` extra).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from nphmkit._io import write_bytes

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(H, W, C)`` or ``(H, W)`` float in [0, 1] (or uint8) -> uint8 array."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: torch.Tensor | np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` image (float [0, 1] or uint8)."""
    arr = to_uint8(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in _COLOR_TYPES:
        raise ValueError(f"image: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    h, w, c = arr.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), arr.reshape(h, w * c)], axis=1)  # filter 0 per row
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[c], 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + _chunk(b"IEND", b"")


def write_png(path: str | os.PathLike, image: torch.Tensor | np.ndarray) -> Path:
    """Write an image (see :func:`encode_png`) to ``path`` atomically."""
    path = Path(path)
    write_bytes(path, encode_png(image))
    return path


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a.astype(np.int16) + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced grey/grey-alpha/RGB/RGBA PNG to ``(H, W, C)`` uint8."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"PNG with bit depth {depth}, colour type {ctype}, interlace {interlace} is not supported here")
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * channels)
    out = np.zeros((h, w * channels), np.uint8)
    prev = np.zeros(w * channels, np.uint8)
    bpp = channels
    for y in range(h):
        kind, row = raw[y, 0], raw[y, 1:].copy()
        if kind == 1:
            for x in range(bpp, len(row), bpp):
                row[x : x + bpp] += row[x - bpp : x]
        elif kind == 2:
            row += prev
        elif kind == 3:
            for x in range(len(row)):
                left = int(row[x - bpp]) if x >= bpp else 0
                row[x] = (int(row[x]) + ((left + int(prev[x])) >> 1)) & 0xFF
        elif kind == 4:
            for x in range(len(row)):
                a = row[x - bpp] if x >= bpp else np.uint8(0)
                c = prev[x - bpp] if x >= bpp else np.uint8(0)
                row[x] = (int(row[x]) + int(_paeth(np.array(a), np.array(prev[x]), np.array(c)))) & 0xFF
        elif kind != 0:
            raise ValueError(f"PNG filter type {kind} is invalid")
        out[y] = row
        prev = row
    return out.reshape(h, w, channels)


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as ``(H, W, 3)`` float32 RGB in [0, 1] (alpha dropped, grey expanded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no image file at {path}")
    data = path.read_bytes()
    try:
        arr = decode_png(data)
    except ValueError:
        from nphmkit._optional import require

        image_mod = require("PIL", f"reading {path.suffix or 'this'} images").Image
        from io import BytesIO

        arr = np.asarray(image_mod.open(BytesIO(data)).convert("RGB"))
    if arr.shape[2] in (1, 2):
        arr = np.repeat(arr[..., :1], 3, axis=2)
    return torch.from_numpy(arr[..., :3].astype(np.float32) / 255.0)
