"""One training loop for every trainable part: batches by step, DDP under ``torchrun``, checkpoints and resume.

A :class:`TrainTask` says what is trained (its model, how many items, how a batch is made, its
loss and what to write at the end); :func:`train` runs it for :class:`RunConfig`:

- **Batches are a function of the step**: each epoch is a permutation of the items seeded by
  ``(seed, epoch)``; step ``s`` takes items ``[s B, (s + 1) B)`` of that stream. A resumed run sees
  the same batches, and ``torchrun`` with ``P`` processes splits each global batch of ``B`` items
  (every ``P``-th one per process), so it computes the same steps as one process on ``B`` items.
  Tasks derive augmentation randomness from ``(seed, step, item)``, never from the process.
- **DDP** under ``torchrun`` (gloo on the CPU, nccl on CUDA); only rank 0 writes.
- **Checkpoints** every ``checkpoint_every`` steps and at the end, atomically (model, optimizer,
  scheduler, RNG states, step); ``resume=True`` continues from the newest. SIGTERM / SIGINT finish
  the current step, write a checkpoint and exit (status 143 / 130). A folder that holds a run (a
  checkpoint or a log) is not trained over without ``resume`` or ``overwrite`` (:func:`prepare_run_dir`).
- **Logs**: a progress bar (step, loss, items/s), ``log.csv`` always, TensorBoard events when the
  ``tensorboard`` extra is installed, ``loss.png`` at the end.
- ``precision="bf16"`` autocasts the forward passes; ``accumulate`` micro-batches per step.
- ``compile=True`` runs the model's forward through ``torch.compile`` (TorchInductor; on the CPU it needs a C++
  compiler). The same steps up to float rounding, after a one-off compilation (15-45 s on this CPU); measured in
  benchmarks/RESULTS.md ("`torch.compile` on this CPU": no gain for the small predictor there).
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from nphmkit._progress import progress_bar
from nphmkit.training import distributed as D
from nphmkit.training.state import checkpoint_step, latest_checkpoint, load_state, save_state

RUN_FILES = ("checkpoints", "weights", "log.csv", "loss.png", "tensorboard")
"""What a run writes into its folder (besides the task's own files): ``overwrite`` deletes these."""

PRECISIONS = ("fp32", "bf16")
SCHEDULES = ("cosine", "constant")


@dataclass
class RunConfig:
    """Schedule of a training run (the task's own settings live in the task's config)."""

    steps: int = 1000
    batch_size: int = 16
    """Items per step, over all processes and micro-batches."""
    accumulate: int = 1
    """Micro-batches per step (gradient accumulation)."""
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 0
    """Steps of linear learning-rate warm-up."""
    schedule: str = "cosine"
    log_every: int = 10
    checkpoint_every: int = 200
    seed: int = 0
    precision: str = "fp32"
    compile: bool = False
    """Run the model's forward through ``torch.compile`` (the task's loss and the optimizer stay eager)."""
    device: str = "cpu"

    def check(self, world_size: int = 1) -> None:
        for name in ("steps", "batch_size", "accumulate", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"run.{name}: expected a positive int, got {value!r}")
        if self.batch_size % (world_size * self.accumulate):
            raise ValueError(f"run.batch_size: {self.batch_size} must divide into {world_size} process(es) x "
                             f"{self.accumulate} micro-batch(es)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"run.precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"run.schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        if not self.lr > 0:
            raise ValueError(f"run.lr: expected a positive learning rate, got {self.lr}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"run.compile: expected true or false, got {self.compile!r}")


def _cxx_names() -> list[str]:
    """The C++ compilers TorchInductor may use on the CPU: ``$CXX`` where set, else the usual names."""
    return [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]


def has_cxx_compiler() -> bool:
    """Whether one of :func:`_cxx_names` is on PATH (what ``run.compile`` on the CPU needs)."""
    import shutil

    return any(shutil.which(n) for n in _cxx_names())


def _check_compiler(device: torch.device) -> None:
    """``torch.compile`` on the CPU writes C++: refuse ``run.compile`` up front where no compiler is found
    (instead of a long TorchInductor traceback at the first step)."""
    if device.type == "cpu" and not has_cxx_compiler():
        raise ValueError(f"run.compile: torch.compile on the CPU needs a C++ compiler; none of "
                         f"{', '.join(_cxx_names())} was found on PATH (install one, or set run.compile=false)")


@runtime_checkable
class TrainTask(Protocol):
    """What :func:`train` trains (see the module notes)."""

    def build_model(self) -> nn.Module:
        """The model, freshly initialised (seeded by :func:`train`)."""
        ...

    def __len__(self) -> int:
        """How many items the data has."""
        ...

    def batch(self, items: torch.Tensor, step: int, device: torch.device) -> object:
        """The batch of items ``(M,)`` int64 at ``step`` (augmentations seeded by step and item)."""
        ...

    def loss(self, model: nn.Module, batch: object) -> tuple[torch.Tensor, dict[str, float]]:
        """The mean loss over the batch, and named values to log."""
        ...

    def finish(self, model: nn.Module, run_dir: Path) -> None:
        """Write the result (e.g. a weight folder) at the end of training (rank 0 only)."""
        ...

    # Optional: ``param_groups(model) -> list[dict]``, optimizer groups whose ``"lr"`` is a multiple of
    # ``run.lr`` (e.g. per-shape codes learning faster than the network); default one group at ``run.lr``.


def batch_indices(step: int, n_items: int, batch_size: int, seed: int) -> torch.Tensor:
    """Items ``(batch_size,)`` of global step ``step``: positions ``[step B, (step + 1) B)`` of a stream of
    per-epoch permutations seeded by ``(seed, epoch)``."""
    start = step * batch_size
    out, pos = [], start
    while pos < start + batch_size:
        epoch, offset = divmod(pos, n_items)
        perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = min(n_items - offset, start + batch_size - pos)
        out.append(perm[offset : offset + take])
        pos += take
    return torch.cat(out)


def _lr_factor(cfg: RunConfig):
    def factor(step: int) -> float:
        if cfg.warmup and step < cfg.warmup:
            return (step + 1) / cfg.warmup
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, cfg.steps - cfg.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup) / span)))

    return factor


class _Stop:
    """SIGTERM / SIGINT set a flag; the loop checkpoints after the current step and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay as they are
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _Log:
    """``log.csv`` (and TensorBoard when installed), written by rank 0."""

    def __init__(self, run_dir: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled, self.rows = run_dir / "log.csv", enabled, []
        self.tb = None
        if not enabled:
            return
        if resume_step and self.path.is_file():  # keep the rows up to the checkpoint
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        from nphmkit._optional import available

        if available("tensorboard"):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def add(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        from nphmkit._io import atomic_path

        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, float):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def prepare_run_dir(run_dir: str | os.PathLike, steps: int, resume: bool = False, overwrite: bool = False,
                    main: bool = True, also: tuple[str, ...] = ()) -> None:
    """Check that ``run_dir`` may be trained into; with ``overwrite``, delete the earlier run's files first.

    A folder that holds a run (a checkpoint in ``checkpoints/``, or ``log.csv``) is refused (``ValueError``
    saying whether that run finished its ``steps`` or where it stopped) unless ``resume`` (continue it) or
    ``overwrite`` (start again: :data:`RUN_FILES` and the task's files named in ``also`` are deleted, by the main
    process only). Both at once are refused. An empty or missing folder passes.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite: pass one of them (--resume continues the run in the folder, "
                         "--overwrite deletes it and starts again)")
    run_dir = Path(run_dir)
    found = latest_checkpoint(run_dir)
    if resume or (found is None and not (run_dir / "log.csv").exists()):
        return
    if not overwrite:
        if found is None:
            held = "the log of an earlier run (log.csv) but no checkpoint"
        elif checkpoint_step(found) >= steps:
            held = f"a finished run ({checkpoint_step(found)} steps)"
        else:
            held = f"a run stopped at step {checkpoint_step(found)} of {steps}"
        raise ValueError(f"run folder: {run_dir} already holds {held}; pass --resume (resume=True) to continue it "
                         f"or --overwrite (overwrite=True) to delete it and start again")
    if main:
        import shutil

        for name in (*RUN_FILES, *also):
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def train(task: TrainTask, cfg: RunConfig, run_dir: str | os.PathLike, resume: bool = False,
          progress: bool | None = None, overwrite: bool = False) -> Path:
    """Train ``task`` by ``cfg`` into ``run_dir`` (see the module notes); returns ``run_dir``.

    ``resume``: continue from the folder's newest checkpoint (a damaged or mismatched one raises
    :class:`~nphmkit.training.state.CheckpointError` naming it). ``overwrite``: delete the run the folder holds
    and start again. Without either, a folder that holds a run is refused (:func:`prepare_run_dir`).
    Raises ``SystemExit(143)`` / ``SystemExit(130)`` after checkpointing when stopped by SIGTERM / SIGINT.
    """
    world = D.setup(cfg.device)
    cfg.check(world.size)
    if cfg.compile:
        _check_compiler(world.device)
    if not isinstance(task, TrainTask):
        raise TypeError(f"task: expected a TrainTask (build_model, __len__, batch, loss, finish), got {type(task).__name__}")
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, cfg.steps, resume, overwrite, world.main)
    D.barrier(world)  # every process has looked at the folder before the first writes into it
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = task.build_model().to(world.device)
    if hasattr(task, "param_groups"):
        groups = [{**g, "lr": cfg.lr * g.get("lr", 1.0)} for g in task.param_groups(model)]
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    # the fused kernel: one pass over all parameters (5x cheaper a step than the per-tensor loop on the CPU; the
    # same update up to float rounding); it takes dense floating-point tensors on the CPU or CUDA only
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg))
    start = 0
    found = latest_checkpoint(run_dir) if resume else None
    if found is not None:
        start = load_state(found, model, optimizer, scheduler)
    elif resume and world.main:
        print(f"resume: no checkpoint in {run_dir / 'checkpoints'}; starting at step 0", flush=True)
    net = model  # what the steps call; ``model`` (its parameters, the same tensors) is what gets saved
    if cfg.compile:
        net = torch.compile(model)
    if world.size > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[world.device.index] if world.device.type == "cuda"
                                                  else None)
    log = _Log(run_dir, start, world.main)
    n_items = len(task)
    local = cfg.batch_size // world.size
    micro = local // cfg.accumulate
    autocast = torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    bar = progress_bar(range(start, cfg.steps), progress=progress if world.main else False, desc="training",
                       unit="step", total=cfg.steps - start)
    tick, running, count = time.perf_counter(), {}, 0
    with _Stop() as stop:
        for step in bar:
            items = D.shard(batch_indices(step, n_items, cfg.batch_size, cfg.seed), world)
            optimizer.zero_grad(set_to_none=True)
            values: dict[str, float] = {}
            for m in range(cfg.accumulate):
                part = items[m * micro : (m + 1) * micro]
                batch = task.batch(part, step, world.device)
                sync = m == cfg.accumulate - 1 or world.size == 1
                ctx = net.no_sync() if not sync else contextlib.nullcontext()
                with ctx:
                    with autocast:
                        loss, terms = task.loss(net, batch)
                    (loss / cfg.accumulate).backward()
                for k, v in {"loss": float(loss.detach()), **terms}.items():
                    values[k] = values.get(k, 0.0) + v / cfg.accumulate
            optimizer.step()
            scheduler.step()
            for k, v in values.items():
                running[k] = running.get(k, 0.0) + v
            count += 1
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                mean = D.mean_over_world({k: v / count for k, v in running.items()}, world)
                seconds = time.perf_counter() - tick
                row = {"step": done, **mean, "lr": float(scheduler.get_last_lr()[0]),
                       "items_per_s": count * cfg.batch_size / max(seconds, 1e-9)}
                log.add(row)
                bar.set_postfix(loss=f"{mean['loss']:.4g}", items_s=f"{row['items_per_s']:.1f}", refresh=False)
                tick, running, count = time.perf_counter(), {}, 0
            stopping = stop.signal is not None
            if done % cfg.checkpoint_every == 0 or done == cfg.steps or stopping:
                if world.main:
                    save_state(run_dir, done, model, optimizer, scheduler)
                D.barrier(world)
            if stopping:
                bar.close()
                log.close()
                D.teardown(world)
                raise SystemExit(143 if stop.signal == signal.SIGTERM else 130)
    bar.close()
    log.close()
    if world.main:
        task.finish(model, run_dir)
        from nphmkit.training.curves import plot_losses

        plot_losses(run_dir / "log.csv", run_dir / "loss.png")
    D.barrier(world)
    D.teardown(world)
    return run_dir
