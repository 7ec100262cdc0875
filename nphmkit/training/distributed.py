"""torch.distributed for training runs launched with ``torchrun`` (one process per device or core group).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything runs in one process. With it,
:func:`setup` joins the process group (gloo on the CPU, nccl on CUDA) and each process takes its
share of every global batch (:func:`shard`); only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Whether this process writes (rank 0)."""
        return self.rank == 0


def setup(device: str = "cpu") -> World:
    """Join the process group when launched by ``torchrun``; a one-process world otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if size == 1:
        return World(0, 1, dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return World(rank, size, dev)


def shard(indices: torch.Tensor, world: World) -> torch.Tensor:
    """This process's share of a global batch: every ``world.size``-th index from ``world.rank``."""
    return indices[world.rank :: world.size]


def mean_over_world(values: dict[str, float], world: World) -> dict[str, float]:
    """The mean of each value over the processes (for logging)."""
    if world.size == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if world.device.type == "cuda":
        t = t.to(world.device)
    dist.all_reduce(t)
    return {k: float(v) / world.size for k, v in zip(keys, t.tolist())}


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def teardown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
