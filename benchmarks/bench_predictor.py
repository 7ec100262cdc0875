"""Dense predictor speed: inference (small at 128^2, Pixel3DMM-size at 512^2) and training throughput per process count.

    python benchmarks/bench_predictor.py [--steps 60] [--device cpu|cuda] [--skip-training | --only-steps] [--heldout DIR]

Inference: median time of ``predict_maps`` per batch, images/s; the shipped predictor (the grown head) with its
refiner channels-first (the reference) and channels-last (the default), alternated. Training: ``nphmkit train
predictor`` (the small preset, batch 16) on a freshly rendered 64-image dataset, as one process
with all threads, one process with one thread, and ``torchrun`` with 2 processes of one thread
each (gloo on the CPU, nccl on CUDA), and the first of these again with ``run.compile`` (the forward through
``torch.compile``); images/s and s/step are the means of ``log.csv`` rows after the first (warm-up) row, which
holds the compilation. The ratio column compares each to one process with all threads.

One training step, fast paths against their references, in one process (both alternated, 3 rounds, the median
round): the step of stage 2 (the small preset) and of stage 3 (the grown head of the shipped predictor on its
frozen features, ``head_mix=1``, ``refine=8``, confidence) of examples/train_small_predictor.py, each as the
runner takes it (the fused AdamW, the refiner on channels-last tensors, the augmentation's blur by shifted
slices, ``DensePredictor.split`` by one ``torch.split``, the batch's augmented items written back in place) and
with every one of those on its reference (the per-tensor AdamW, the refiner channels-first, the
depthwise-convolution blur, one slice per output, every item's arrays stacked anew).
``--only-steps`` runs only these.

``--heldout DIR`` (a rendered dataset, e.g. out/small_predictor/heldout) measures only the map errors there of
the shipped predictor (or of ``--weights DIR``), once plain and once with ``predict_maps(..., flip_tta=True)``
(the mirrored image's maps averaged in).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _timing import machine, median_time
from nphmkit.heads import DenseConfig, DensePredictor


def inference(device: str) -> None:
    print(f"{'network':<24s} {'size':>5s} {'batch':>5s} {'params':>9s} {'s/batch':>8s} {'img/s':>7s}")
    cases = [("small (shipped)", DenseConfig.small(), 128, 1), ("small (shipped)", DenseConfig.small(), 128, 16),
             ("Pixel3DMM ViT-S/16", DenseConfig.pixel3dmm(), 512, 1)]
    for name, cfg, size, batch in cases:
        net = DensePredictor(cfg).eval().to(device)
        images = torch.rand(batch, size, size, 3, device=device)
        with torch.no_grad():
            t = median_time(lambda: net.predict_maps(images), repeats=3 if size < 512 else 2)  # noqa: B023
        params = sum(p.numel() for p in net.parameters())
        print(f"{name:<24s} {size:5d} {batch:5d} {params / 1e6:8.2f}M {t:8.3f} {batch / t:7.1f}")
    from nphmkit.pretrained import load_small_predictor

    net = load_small_predictor().eval().to(device)  # the grown head: its refiner channels-first, then channels-last
    params = sum(p.numel() for p in net.parameters())
    for batch in (1, 16):
        images = torch.rand(batch, 128, 128, 3, device=device)
        times = {}
        for fast in (False, True, False, True):  # alternated; each path keeps the faster of its two medians
            net.refine_channels_last = fast
            with torch.no_grad():
                times.setdefault(fast, []).append(median_time(lambda: net.predict_maps(images), repeats=5))  # noqa: B023
        for fast in (False, True):
            t = min(times[fast])
            name = f"shipped, refine {'ch-last' if fast else 'ch-first'}"
            print(f"{name:<24s} {128:5d} {batch:5d} {params / 1e6:8.2f}M {t:8.3f} {batch / t:7.1f}")


def _train(data: Path, run: Path, steps: int, procs: int, threads: int, device: str,
           compile: bool = False) -> tuple[float, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = ["-m", "nphmkit", "train", "predictor", "--config", "small", "--set", f"data={data}", "--set",
           f"run.steps={steps}", "--set", "run.log_every=10", "--set", f"run.checkpoint_every={steps}",
           "--set", f"run.compile={str(compile).lower()}", "-o", str(run), "--quiet", "--device", device]
    if procs > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), *cmd]
    else:
        cmd += ["--threads", str(threads)]
    done = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"training run failed ({procs} processes):\n{done.stderr[-2000:]}")
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))[1:]
    rate = sum(float(r["items_per_s"]) for r in rows) / len(rows)
    return rate, 16 / rate


def training(steps: int, device: str) -> None:
    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset(Path(tmp) / "data", 64, SynthConfig(image_size=128, seed=5), progress=False)
        cases = [(1, cores, f"1 process x {cores} threads", False), (1, 1, "1 process x 1 thread", False),
                 (2, 1, "2 processes x 1 thread (torchrun)", False)]
        if device == "cuda":
            gpus = torch.cuda.device_count()
            cases = [(1, cores, "1 process, 1 GPU", False)] + \
                ([(gpus, 1, f"{gpus} processes, {gpus} GPUs", False)] if gpus > 1 else [])
        cases.insert(1, (1, cores, f"{cases[0][2]}, run.compile", True))  # the compiled forward beside eager
        print(f"{'training (small, batch 16)':<36s} {'img/s':>7s} {'s/step':>7s} {'ratio':>6s}")
        base = None
        for i, (procs, threads, name, compiled) in enumerate(cases):
            rate, step = _train(data, Path(tmp) / f"run{i}", steps, procs, threads, device, compiled)
            base = base or rate
            print(f"{name:<36s} {rate:7.1f} {step:7.3f} {rate / base:6.2f}")


def _split_by_slices(net: DensePredictor, raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """``DensePredictor.split`` as before 2026-12-06 (one slice per output): the reference of ``torch.split``."""
    from nphmkit.heads.dense import CHANNELS

    out, start = {}, 0
    for name in net.config.outputs:
        out[name] = raw[:, start : start + CHANNELS[name]]
        start += CHANNELS[name]
    return out


def _batch_by_stacking(task, items: torch.Tensor, step: int):
    """``PredictorTask.batch`` as before 2026-12-06 (every item's arrays stacked anew): its reference."""
    from nphmkit.training.augment import augment_item

    ids = items.tolist()
    arrays = task._arrays(ids)
    out = []
    for j, i in enumerate(ids):
        out.append(augment_item(*(a[j] for a in arrays), task.cfg.augment, task.item_generator(step, i)))
    return tuple(torch.stack(t) for t in zip(*out))


def _step_time(task, net, fast: bool, steps: int, first: int) -> float:
    """Mean seconds of ``steps`` training steps (after 3 unmeasured ones) of ``task`` on ``net``: the fast paths
    (``fast``) or their references."""
    import nphmkit.training.augment as augment
    from nphmkit.training.runner import batch_indices

    net.refine_channels_last = fast
    blur = augment._blur
    if not fast:  # for this timing only: the references of the blur and of split
        augment._blur = augment._blur_reference
        net.split = lambda raw: _split_by_slices(net, raw)
    make = (lambda items, step: task.batch(items, step, torch.device("cpu"))) if fast else \
        (lambda items, step: _batch_by_stacking(task, items, step))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True if fast else None)
    try:
        for step in range(first, first + 3 + steps):
            if step == first + 3:
                start = time.perf_counter()
            loss, _ = task.loss(net, make(batch_indices(step, len(task), 16, 0), step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        augment._blur = blur
        net.__dict__.pop("split", None)
    return (time.perf_counter() - start) / steps


def step_paths(steps: int) -> None:
    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset
    from nphmkit.pretrained import ASSETS
    from nphmkit.training.predictor import PredictorTask, PredictorTrainConfig

    print(f"{'one training step (batch 16)':<36s} {'reference':>9s} {'fast':>7s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        data = str(write_dataset(Path(tmp) / "data", 64, SynthConfig(image_size=128, seed=5), progress=False))
        stages = [("stage 2: small preset", PredictorTrainConfig(data=data)),
                  ("stage 3: grown head, frozen features", PredictorTrainConfig(
                      data=data, init=str(ASSETS / "small_predictor"), freeze_features=True, head_mix=1, refine=8,
                      confidence=True))]
        for name, cfg in stages:
            task = PredictorTask(cfg)
            torch.manual_seed(0)
            net = task.build_model()
            rounds = [[_step_time(task, net, fast, steps, 100 * r) for fast in (False, True)] for r in range(3)]
            ref, fast = (sorted(r[k] for r in rounds)[1] for k in (0, 1))
            print(f"{name:<36s} {ref:9.3f} {fast:7.3f} {ref / fast:5.2f}x")


def heldout(folder: Path, weights: Path | None) -> None:
    from nphmkit.data.dataset import ImageDataset
    from nphmkit.pretrained import load_small_predictor

    net = (load_small_predictor() if weights is None else DensePredictor.load(weights)).eval()
    data = ImageDataset(folder)
    print(f"{'shipped predictor' if weights is None else weights} on {len(data)} images of {folder}")
    print(f"{'maps':<10s} {'normals mean/median (deg)':>26s} {'canonical mean/median (mm)':>27s} {'mask IoU':>9s} {'s':>6s}")
    for flip in (False, True):
        normal_err, canon_err, inter, union, seconds = [], [], 0, 0, 0.0
        for s in range(0, len(data), 16):
            items = [data[i] for i in range(s, min(s + 16, len(data)))]
            images = torch.stack([it["rgb"] for it in items])
            t0 = time.perf_counter()
            with torch.no_grad():
                maps = net.predict_maps(images, flip_tta=flip)
            seconds += time.perf_counter() - t0
            for k, it in enumerate(items):
                both = maps.mask[k] & it["mask"]
                cos = (maps.normals[k][both] * it["normals"][both]).sum(-1).clamp(-1, 1)
                normal_err.append(torch.rad2deg(torch.acos(cos)))
                canon_err.append((maps.canonical[k][both] - it["canonical"][both]).norm(dim=-1) * 250)
                inter += int(both.sum())
                union += int((maps.mask[k] | it["mask"]).sum())
        ne, ce = torch.cat(normal_err), torch.cat(canon_err)
        print(f"{'flip TTA' if flip else 'plain':<10s} {ne.mean():14.2f} / {ne.median():.2f}      {ce.mean():14.2f} / "
              f"{ce.median():.2f}      {inter / union:9.4f} {seconds:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per run (default 60)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--skip-training", action="store_true")
    only.add_argument("--only-steps", action="store_true", help="only the training step, fast paths against references")
    parser.add_argument("--heldout", type=Path, default=None,
                        help="only the shipped predictor's held-out map errors on this rendered dataset")
    parser.add_argument("--weights", type=Path, default=None,
                        help="with --heldout: this predictor weight folder instead of the shipped one")
    args = parser.parse_args()
    if args.weights is not None and args.heldout is None:
        raise SystemExit("--weights: only measured with --heldout DIR (the held-out map errors)")
    if args.heldout is not None:
        if not (args.heldout / "index.json").is_file():
            raise SystemExit(f"--heldout: {args.heldout} has no index.json (render one with "
                             "examples/train_small_predictor.py --stage data)")
        heldout(args.heldout, args.weights)
        return
    if args.steps < 20:
        raise SystemExit(f"--steps: expected at least 20 (the first logged 10 are warm-up), got {args.steps}")
    print(f"machine: {machine()}; device {args.device}; torch {torch.__version__}")
    if args.only_steps:
        step_paths(args.steps)
        return
    inference(args.device)
    if not args.skip_training:
        if args.device == "cpu":
            step_paths(args.steps)
        training(args.steps, args.device)


if __name__ == "__main__":
    main()
