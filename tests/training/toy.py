"""A toy regression task for the training-runner tests; also a script (for torchrun and signal tests):

    python tests/training/toy.py RUN_DIR --steps 6 [--resume] [--sleep 0.05] [--compile]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn


class ToyTask:
    """64 items ``x (5,) -> y (2,)``; augmentation noise seeded by (step, item), never by the process."""

    def __init__(self, n: int = 64, sleep: float = 0.0) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 5, generator=g)
        self.y = self.x @ torch.randn(5, 2, generator=g) + 0.1 * torch.randn(n, 2, generator=g)
        self.sleep = sleep

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, items, step, device):
        noise = torch.stack([torch.randn(5, generator=torch.Generator().manual_seed(step * 100_003 + int(i)))
                             for i in items])
        if self.sleep:
            time.sleep(self.sleep)
        return (self.x[items] + 0.01 * noise).to(device), self.y[items].to(device)

    def loss(self, model, batch):
        x, y = batch
        loss = (model(x) - y).square().mean()
        return loss, {"mse": float(loss.detach())}

    def finish(self, model, run_dir: Path) -> None:
        import os

        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run_dir / "final.safetensors"))
        (run_dir / "world.txt").write_text(os.environ.get("WORLD_SIZE", "1"))


def main() -> None:
    from nphmkit.training.runner import RunConfig, train

    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--compile", action="store_true", help="run.compile: the forward through torch.compile")
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg = RunConfig(steps=a.steps, batch_size=a.batch, accumulate=a.accumulate, lr=1e-2, log_every=1,
                    checkpoint_every=a.checkpoint_every, warmup=2, compile=a.compile)
    train(ToyTask(sleep=a.sleep), cfg, a.run_dir, resume=a.resume, progress=False)


if __name__ == "__main__":
    main()
