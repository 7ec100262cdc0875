"""Train the shipped small Pix2NPHM regressor on nphmkit's SYNTHETIC head family and report held-out figures.

    python examples/train_small_regressor.py                    # data (if missing), training, report, weight folder
    python examples/train_small_regressor.py --stage report     # only the report of a finished run

Stages (each resumable; data and runs live under out/, only the weight folder is shipped):
1. data: the dense predictor's training renders (``out/small_predictor/train``, 3000 images at 128^2
   in the crop framing, seed 0), rendered here if missing (``SynthConfig(image_size=128, seed=0)``);
2. train: ``nphmkit train regressor`` (the shipped predictor's geometry tokens, frozen; the shipped
   small NPHM's codes; SDF-space + pose losses on 3D items, ``--two-d`` of them as 2D items);
3. report: ``benchmarks/bench_reconstruction.py`` on the first ``--report-images`` held-out images
   (seed 11): (a) feed-forward, (b) refined from predicted maps, (c) refined from exact maps,
   (d) fit_points; writes ``nphmkit/assets/small_regressor`` with ``quality.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data(args) -> None:
    from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset

    if (args.data / "index.json").is_file():
        print(f"data: {args.data} exists", flush=True)
        return
    start = time.perf_counter()
    write_dataset(args.data, args.images, SynthConfig(image_size=128, seed=0), progress=True)
    print(f"data: {args.images} images in {args.data} in {time.perf_counter() - start:.0f} s", flush=True)


def train(args) -> None:
    cmd = [sys.executable, "-m", "nphmkit", "train", "regressor", "--config", "small", "--set", f"data={args.data}",
           "--set", f"run.steps={args.steps}", "--set", f"two_d={args.two_d}", "-o", str(args.out / "run"),
           "--resume"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    (args.out / "train_seconds.txt").write_text(f"{time.perf_counter() - start:.0f}\n")


def report(args) -> None:
    from nphmkit.pretrained import SMALL_REGRESSOR

    run = args.out / "run" / "weights"
    if not (run / "weights.safetensors").is_file():
        raise SystemExit(f"report: no trained regressor in {run}; run the train stage first")
    tmp = SMALL_REGRESSOR.with_name("small_regressor.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run, tmp)
    shutil.rmtree(SMALL_REGRESSOR, ignore_errors=True)
    tmp.rename(SMALL_REGRESSOR)
    bench = ROOT / "out" / "bench_reconstruction"  # the full benchmark resumes from these images
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_reconstruction.py"), "--data", str(args.heldout),
                    "--images", str(args.report_images), "--out", str(bench)], check=True)
    summary = json.loads((bench / "summary.json").read_text())
    m = summary["mean"]
    a, b, c = m["a_feed_forward"], m["b_refined_predicted"], m["c_refined_exact"]
    seconds = (args.out / "train_seconds.txt").read_text().strip() if (args.out / "train_seconds.txt").is_file() else "?"
    quality = {
        "trained_on": "nphmkit's SYNTHETIC head family only (analytic heads, not real people): the small predictor's "
                      "3000 training renders (128^2, crop framing, seed 0)",
        "command": "python examples/train_small_regressor.py " + " ".join(sys.argv[1:]),
        "backbone": "the shipped small_predictor's geometry tokens (one shared, frozen backbone; not stored here: "
                    "config.json names it with its sha256)",
        "head_model": "the shipped small NPHM",
        "steps": args.steps, "two_d_fraction": args.two_d, "training_seconds": seconds,
        "heldout": {"images": summary["images"], "seed": 11, "refinement_steps": summary["steps"], "stages": m},
        "ratios": {
            "feed_forward_to_exact_now_mean": a["now_mean_mm"] / c["now_mean_mm"],
            "predicted_to_exact_now_mean": b["now_mean_mm"] / c["now_mean_mm"],
            "refinement_cut_of_feed_forward_now_mean": 1 - b["now_mean_mm"] / a["now_mean_mm"],
        },
        "how": "benchmarks/bench_reconstruction.py: NoW = landmark similarity + rigid ICP of the reconstruction to the "
               "ground-truth face region (100 mm around the nose tip), scan-to-mesh mm; posed = mean distance of "
               "ground-truth surface points to the reconstruction in its own pose",
    }
    (SMALL_REGRESSOR / "quality.json").write_text(json.dumps(quality, indent=1) + "\n")
    print(json.dumps(quality["ratios"], indent=1))
    print(f"wrote {SMALL_REGRESSOR}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "out" / "small_regressor")
    p.add_argument("--data", type=Path, default=ROOT / "out" / "small_predictor" / "train")
    p.add_argument("--heldout", type=Path, default=ROOT / "out" / "small_predictor" / "heldout")
    p.add_argument("--images", type=int, default=3000, help="training renders when --data must be made")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--two-d", type=float, default=0.0, help="fraction of 2D items (predictor maps via the renderer)")
    p.add_argument("--report-images", type=int, default=8)
    p.add_argument("--stage", choices=["all", "data", "train", "report"], default="all")
    args = p.parse_args()
    for name, fn in (("data", data), ("train", train), ("report", report)):
        if args.stage in ("all", name):
            fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
