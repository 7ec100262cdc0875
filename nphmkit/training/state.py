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


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: unreadable, not a training checkpoint, or made for another
    model or optimizer. The message names the file and the reason."""


def checkpoint_step(path: str | os.PathLike) -> int:
    """The step in a checkpoint's file name (``step_0000500.pt`` -> 500)."""
    match = _NAME.fullmatch(Path(path).name)
    if match is None:
        raise ValueError(f"path: expected a checkpoint named step_NNNNNNN.pt, got {Path(path).name!r}")
    return int(match.group(1))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of a run folder, or None."""
    found = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*.pt") if _NAME.fullmatch(p.name))
    return found[-1] if found else None


def _mismatch(expected: dict, found: dict) -> str:
    """What differs between two state dicts (names and shapes), in a few words; empty if nothing."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
              if k in found and hasattr(found[k], "shape") and tuple(found[k].shape) != tuple(v.shape)]
    parts = []
    for what, names in (("missing", missing), ("unexpected", extra), ("of another shape", shapes)):
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            parts.append(f"{len(names)} tensor(s) {what}: {', '.join(names[:3])}{more}")
    return "; ".join(parts)


def load_state(path: str | os.PathLike, model: torch.nn.Module, optimizer, scheduler) -> int:
    """Restore a checkpoint into ``model``, ``optimizer``, ``scheduler`` and the RNGs; returns its step.

    Raises :class:`CheckpointError` (naming ``path`` and the reason) for a damaged or foreign file, or one made
    for another network or optimizer; nothing is restored then.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file raises RuntimeError, EOFError, KeyError, UnpicklingError, ...
        reason = " ".join(str(err).split()).split(". ")[0][:160] or "empty or truncated"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {reason})") from None
    keys = ("step", "model", "optimizer", "scheduler", "rng")
    missing = [k for k in keys if not isinstance(payload, dict) or k not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (it has no {', '.join(missing)})")
    problem = _mismatch(model.state_dict(), payload["model"])
    if problem:
        raise CheckpointError(f"{path}: made for another network than this run's: {problem}")
    groups = payload["optimizer"].get("param_groups", [])
    sizes = [len(g["params"]) for g in optimizer.state_dict()["param_groups"]]
    if [len(g.get("params", [])) for g in groups] != sizes:
        raise CheckpointError(f"{path}: its optimizer has parameter groups of {[len(g.get('params', [])) for g in groups]} "
                              f"tensors; this run's has {sizes}")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    _set_rng_state(payload["rng"])
    return int(payload["step"])
