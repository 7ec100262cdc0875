"""Read dataset folders in the layout of docs/contracts.md (``index.json`` + ``NNNNNN_rgb.png`` + ``NNNNNN_maps.npz``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from nphmkit.data.image_io import read_image


class ImageDataset:
    """Images with their maps and cameras. ``dataset[i]`` is a dict of tensors:

    ``rgb (H, W, 3)`` float in [0, 1]; ``normals (H, W, 3)`` camera frame; ``canonical (H, W, 3)``
    NPHM units; ``mask``, ``canonical_valid`` ``(H, W)`` bool; ``depth (H, W)``; ``K``, ``R``
    ``(3, 3)``; ``t (3,)``; plus ``record`` (the index entry).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        index = self.folder / "index.json"
        if not index.is_file():
            raise FileNotFoundError(f"folder: {self.folder} has no index.json (not a dataset, or an interrupted write)")
        self.index = json.loads(index.read_text())
        self.records = self.index["images"]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        rec = self.records[i]
        item = {"rgb": read_image(self.folder / rec["rgb"]), "record": rec}
        with np.load(self.folder / rec["maps"], allow_pickle=False) as maps:
            for key in maps.files:
                item[key] = torch.from_numpy(np.asarray(maps[key]))
        for key in ("K", "R", "t"):
            item[key] = torch.tensor(rec[key], dtype=torch.float32)
        return item
