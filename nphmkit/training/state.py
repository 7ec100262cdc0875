"""Training checkpoints: model, optimizer, scheduler, RNG states and the step, written atomically and read
without executing pickled code (``torch.load(weights_only=True)``).

The data position is a function of the step (:func:`nphmkit.training.runner.batch_indices`), so the
step is all a resumed run needs to see the same batches.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from nphmkit._io import atomic_path

_NAME = re.compile(r"step_(\d+)\.pt")


def _rng_state() -> dict:
    np_state = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


def save_state(run_dir: str | os.PathLike, step: int, model: torch.nn.Module, optimizer, scheduler, keep: int = 2) -> Path:
    """Write ``run_dir/checkpoints/step_NNNNNNN.pt`` atomically; keep the newest ``keep`` files."""
    folder = Path(run_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:07d}.pt"
    payload = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scheduler": scheduler.state_dict(), "rng": _rng_state()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of a run folder, or None."""
    found = sorted((Path(run_dir) / "checkpoints").glob("step_*.pt"))
    return found[-1] if found else None


def load_state(path: str | os.PathLike, model: torch.nn.Module, optimizer, scheduler) -> int:
    """Restore a checkpoint into ``model``, ``optimizer``, ``scheduler`` and the RNGs; returns its step."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    _set_rng_state(payload["rng"])
    return int(payload["step"])
