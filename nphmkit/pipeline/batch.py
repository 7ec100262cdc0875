"""Batch jobs over many inputs: one folder per item, resumable, sharded across ``torchrun`` processes.

``OUT/<name>/`` is assembled in a hidden ``OUT/.partial-<name>/`` folder and renamed into place after
its last file, ``done`` (a JSON row of the item's figures), so a killed run leaves no partial item
folder; a rerun removes stale partial folders and skips items whose ``done`` exists. Under
``torchrun`` (``RANK``, ``WORLD_SIZE`` in the environment) rank ``r`` takes items ``r, r + K, ...``;
each rank leaves its failures in ``OUT/.failures-<r>.json``, and rank 0 merges them into
``OUT/failures.json`` (a list of ``{"input", "error"}``) and writes ``OUT/summary.json`` from every
item's ``done`` row once all ranks have finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nphmkit._io import write_text


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``torchrun``'s environment; 0, 1 without it)."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"RANK, WORLD_SIZE: expected integers, got {os.environ.get('RANK')!r}, "
                         f"{os.environ.get('WORLD_SIZE')!r}") from None
    if not 0 <= rank < world:
        raise ValueError(f"RANK: expected 0..{world - 1}, got {rank}")
    return rank, world


@dataclass
class BatchJob:
    """The bookkeeping of one batch run into folder ``out``.

    Attributes:
        out: the output folder (exists).
        rank, world: this process and the number of processes (see :func:`rank_and_world`).
        failures: ``{"input", "error"}`` of the items this process failed on in this run.
    """

    out: Path
    rank: int = 0
    world: int = 1
    failures: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        (self.out / f".failures-{self.rank}.json").unlink(missing_ok=True)
        for stale in self.out.glob(".partial-*"):
            if stale.is_dir() and self._owns(stale.name):
                shutil.rmtree(stale, ignore_errors=True)

    def _owns(self, partial: str) -> bool:
        return partial.endswith(f".r{self.rank}") or self.world == 1

    def shard(self, items: list) -> list:
        """This process's share of ``items`` (every ``world``-th, from ``rank``)."""
        return items[self.rank :: self.world]

    def folder(self, name: str) -> Path:
        return self.out / name

    def is_done(self, name: str) -> bool:
        return (self.out / name / "done").is_file()

    @contextmanager
    def item(self, name: str) -> Iterator[Path]:
        """A fresh partial folder for item ``name``; on success ``done`` is written from the dict the caller
        stored in ``folder/.row`` (see :meth:`finish_item`) and the folder renamed to ``OUT/name``."""
        partial = self.out / f".partial-{name}.r{self.rank}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            yield partial
            target = self.out / name
            if target.exists():  # an older, unfinished folder (no done): replaced
                shutil.rmtree(target)
            os.replace(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    @staticmethod
    def finish_item(partial: Path, row: dict) -> None:
        """Write ``done`` (the item's summary row, JSON) as the partial folder's last file."""
        write_text(partial / "done", json.dumps(row, indent=1) + "\n")

    def fail(self, source: str, error: BaseException | str) -> None:
        message = error if isinstance(error, str) else (" ".join(str(error).split()) or type(error).__name__)
        self.failures.append({"input": str(source), "error": message})

    def close(self, names: list[str], sources: list[str], provenance: dict, timeout: float = 3600.0) -> dict | None:
        """Write this rank's failures; on rank 0 wait for the others, then write ``failures.json`` and
        ``summary.json`` (``provenance`` plus one row per finished item, read from the ``done`` files of
        ``names``) and return the summary (None on other ranks)."""
        write_text(self.out / f".failures-{self.rank}.json", json.dumps(self.failures) + "\n")
        if self.rank != 0:
            return None
        deadline = time.monotonic() + timeout
        files = [self.out / f".failures-{r}.json" for r in range(self.world)]
        while not all(f.is_file() for f in files):
            if time.monotonic() > deadline:
                raise RuntimeError(f"ranks {[r for r, f in enumerate(files) if not f.is_file()]} did not finish "
                                   f"within {timeout:.0f} s")
            time.sleep(0.2)
        failures = [x for f in files for x in json.loads(f.read_text())]
        for f in files:
            f.unlink()
        order = {s: k for k, s in enumerate(sources)}
        failures.sort(key=lambda x: order.get(x["input"], len(order)))
        write_text(self.out / "failures.json", json.dumps(failures, indent=1) + "\n")
        items = []
        for name, source in zip(names, sources):
            done = self.out / name / "done"
            if done.is_file():
                items.append({"name": name, "input": source, **json.loads(done.read_text())})
        summary = {**provenance, "items": items, "finished": len(items), "failed": len(failures),
                   "processes": self.world}
        write_text(self.out / "summary.json", json.dumps(summary, indent=1) + "\n")
        return summary
