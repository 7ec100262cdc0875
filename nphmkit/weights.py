"""nphmkit's own weight folders: ``weights.safetensors`` + ``config.json``.

Every trainable module of nphmkit saves and loads through these two functions, so a weight
folder never holds pickled code. ``config.json`` records the module kind, its config and free
metadata (e.g. what the weights were trained on).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from nphmkit._io import atomic_path, write_text

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


def save_folder(
    directory: str | os.PathLike,
    kind: str,
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``state_dict`` and ``config`` into ``directory`` (each file atomically). Returns the folder."""
    from safetensors.torch import save_file

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp))
    doc = {"kind": kind, "config": config, "metadata": metadata or {}}
    write_text(folder / CONFIG_FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return folder


def load_folder(
    directory: str | os.PathLike, kind: str, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """Read a weight folder written by :func:`save_folder`: ``(config, tensors, metadata)``."""
    from safetensors.torch import load_file

    folder = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"directory: expected a weight folder with {name}, not found in {folder}")
    doc = json.loads((folder / CONFIG_FILE).read_text())
    if doc.get("kind") != kind:
        raise ValueError(f"directory: expected weights of kind {kind!r}, got {doc.get('kind')!r} in {folder}")
    tensors = load_file(str(folder / WEIGHTS_FILE), device=str(map_location))
    return doc["config"], tensors, doc.get("metadata", {})


def load_state_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str,
                      skip: str | None = None) -> None:
    """``module.load_state_dict`` that names every missing, unexpected or misshapen tensor.

    ``skip``: a key prefix (e.g. ``"backbones."``) whose tensors the module keeps as they are (not stored)."""
    own = {k: v for k, v in module.state_dict().items() if skip is None or not k.startswith(skip)}
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    shapes = sorted(
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(tensors[k].shape)}"
        for k in set(own) & set(tensors)
        if own[k].shape != tensors[k].shape
    )
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing}")
        if extra:
            parts.append(f"unexpected tensors {extra}")
        if shapes:
            parts.append("wrong shapes: " + "; ".join(shapes))
        raise ValueError(f"{source}: weights do not match {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(tensors, strict=skip is None)


class WeightFolderMixin:
    """``save(dir)`` / ``load(dir)`` for an ``nn.Module`` with a dataclass ``config`` and ``metadata``.

    A subclass names its folder kind (``_folder_kind``) and its config class (``_config_class``,
    with ``to_dict``/``from_dict``); loading is strict (every tensor must match).
    """

    _folder_kind: str = ""
    _config_class: Any = None

    def save(self, directory: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
        """Save to a weight folder (``weights.safetensors`` + ``config.json``, atomic writes)."""
        meta = dict(self.metadata if metadata is None else metadata)
        return save_folder(directory, self._folder_kind, self.config.to_dict(), self.state_dict(), meta)

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"):
        """Load a weight folder written by :meth:`save` (strict: every tensor must match).

        ``directory`` may also name shipped weights (``"small"``, :mod:`nphmkit.pretrained`).
        """
        if isinstance(directory, str) and not os.path.isdir(directory):
            from nphmkit.pretrained import SHIPPED, weights_folder

            if directory in SHIPPED:
                directory = weights_folder(directory)
        config, tensors, metadata = load_folder(directory, cls._folder_kind, "cpu")
        model = cls(cls._config_class.from_dict(config))
        load_state_strict(model, tensors, str(directory))
        model.metadata = metadata
        return model.to(map_location)
