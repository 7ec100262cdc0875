"""Regressor supervision ablation at a small scale: 3D items only vs 3D + 2D items, fine-tuned from the shipped regressor.

    python benchmarks/bench_regressor_ablation.py [--steps 300] [--two-d 0.25] [--images 20]

Pix2NPHM mixes 3D items (SDF-space and pose losses against ground-truth shapes) with 2D items (the
predictor's normal maps and mask through the differentiable renderer, no 3D labels). A full
from-scratch run with 2D items costs ~0.7 s per 2D item per step here, so this ablation fine-tunes
the shipped regressor (trained 6000 steps on 3D items only) for ``--steps`` more steps twice, with
the same data, seed, learning rate and batches: once 3D only, once with ``--two-d`` of the items as
2D items; then compares the feed-forward result (stage (a) of bench_reconstruction.py: NoW mean,
posed surface error, landmarks, normals) on the held-out images, beside the shipped regressor.
Runs resume (``out/regressor_ablation``); needs the predictor's training renders
(``out/small_predictor/train``) and the held-out set (``out/small_predictor/heldout``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def train(name: str, two_d: float, args) -> float:
    run = args.out / name
    if (run / "weights" / "weights.safetensors").is_file():
        return float((run / "train_seconds.txt").read_text())
    cmd = [sys.executable, "-m", "nphmkit", "train", "regressor", "--config", "small", "--set", f"data={args.data}",
           "--set", "init=small_regressor", "--set", f"two_d={two_d}", "--set", f"two_d_pixels={args.two_d_pixels}",
           "--set", f"run.steps={args.steps}", "--set", f"run.lr={args.lr}", "--set", "run.warmup=0",
           "--set", f"run.checkpoint_every={max(1, args.steps // 4)}", "--set", "run.log_every=10",
           "-o", str(run), "--resume", "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    (run / "train_seconds.txt").write_text(f"{seconds:.0f}\n")
    return seconds


def evaluate(regressor, images: list[int], heldout: Path, cache: Path) -> dict:
    import torch
    from bench_reconstruction import evaluate_stage, ground_truth

    from nphmkit.data.dataset import ImageDataset
    from nphmkit.pipeline import Pix2NPHM
    from nphmkit.pretrained import load_small_nphm, load_small_predictor

    if cache.is_file():
        return json.loads(cache.read_text())
    data = ImageDataset(heldout)
    model = load_small_nphm()
    pipe = Pix2NPHM(model, load_small_predictor(), regressor)
    keys = ("now_mean_mm", "posed_mm", "landmarks_mm", "normals_deg")
    rows = []
    for i in images:
        item = data[i]
        ff = pipe.reconstruct(item["rgb"][None], item["K"], refine=False)
        row = evaluate_stage(model, (ff.z_id, ff.z_ex), (ff.rotation, ff.translation, ff.scale), ground_truth(i, item),
                             item, 96)
        rows.append({k: row[k] for k in keys})
    mean = {k: float(torch.tensor([r[k] for r in rows]).nanmean()) for k in keys}
    result = {"images": len(images), "mean": mean, "per_image": rows}
    cache.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "small_predictor" / "train")
    parser.add_argument("--heldout", type=Path, default=ROOT / "out" / "small_predictor" / "heldout")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "regressor_ablation")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--two-d", type=float, default=0.25)
    parser.add_argument("--two-d-pixels", type=int, default=300)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    for folder, what in ((args.data, "--data"), (args.heldout, "--heldout")):
        if not (folder / "index.json").is_file():
            raise SystemExit(f"{what}: {folder} has no index.json (run examples/train_small_predictor.py and "
                             "benchmarks/bench_reconstruction.py first)")
    args.out.mkdir(parents=True, exist_ok=True)
    from nphmkit.heads import Pix2NPHMRegressor
    from nphmkit.pretrained import load_small_regressor

    images = list(range(args.images))
    rows = [("shipped (6000 steps, 3D only)", None, evaluate(load_small_regressor(), images, args.heldout,
                                                               args.out / "eval_shipped.json"))]
    for name, two_d in (("3d", 0.0), ("3d_2d", args.two_d)):
        seconds = train(name, two_d, args)
        reg = Pix2NPHMRegressor.load(args.out / name / "weights")
        label = f"+{args.steps} steps, 3D only" if two_d == 0 else f"+{args.steps} steps, {two_d:.0%} 2D items"
        rows.append((label, seconds, evaluate(reg, images, args.heldout, args.out / f"eval_{name}.json")))
    print(f"feed-forward on {args.images} held-out images; fine-tuning lr {args.lr}, batch 16, "
          f"{args.two_d_pixels} rendered pixels per 2D item")
    print("| regressor | training s | NoW mean | posed | landmarks | normals (deg) |")
    print("|---|---|---|---|---|---|")
    for label, seconds, res in rows:
        m = res["mean"]
        secs = "-" if seconds is None else f"{seconds:.0f}"
        print(f"| {label} | {secs} | {m['now_mean_mm']:.3f} | {m['posed_mm']:.2f} | {m['landmarks_mm']:.2f} | "
              f"{m['normals_deg']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
