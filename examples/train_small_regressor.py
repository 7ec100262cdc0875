"""Train the shipped small Pix2NPHM regressor on nphmkit's SYNTHETIC head family and report held-out figures.

    python examples/train_small_regressor.py                    # data (if missing), training, ship, report
    python examples/train_small_regressor.py --stage report     # only the report, of the shipped weights

Stages (each resumable; data and runs live under out/, only the weight folder is shipped):
1. data: the dense predictor's training renders (``out/small_predictor/train``, 3000 images at 128^2
   in the crop framing, seed 0), rendered here if missing (``SynthConfig(image_size=128, seed=0)``);
2. train: ``nphmkit train regressor`` (the shipped predictor's geometry tokens, frozen; the shipped
   small NPHM's codes; SDF-space + pose losses on 3D items, ``--two-d`` of them as 2D items);
3. ship: the run's weight folder becomes ``nphmkit/assets/small_regressor`` (copied beside it, then renamed
   over it), with a ``quality.json`` holding how it was trained;
4. report: ``benchmarks/bench_reconstruction.py`` with the shipped weights on the first ``--report-images``
   held-out images (seed 11; default 100, the figures held against the targets; images 0-19 also served to
   choose ``REFINE``'s settings, images 20-99 chose nothing, and the report gives their cut on its own; it reads
   the seed from the folder's ``index.json`` and gives no such split for another set): (a) feed-forward, (b)
   refined from predicted maps (the pipeline's ``REFINE``), (c) refined from exact maps, (d) fit_points
   (``--report-stages abce`` skips it), (e) ``REFINE`` from exact maps. Their means, the ratios and the targets
   (each with its 95 % bootstrap interval over the images) go into ``quality.json`` (written atomically, keeping
   the training facts of step 3).
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


TARGETS = {"feed_forward_to_exact_now_mean": 3.0, "predicted_to_exact_now_mean": 1.5,
           "feed_forward_to_exact_same_refinement_now_mean": 3.0, "predicted_to_exact_same_refinement_now_mean": 1.5,
           "refinement_cut_of_feed_forward_now_mean": 0.30}
"""Issue 17's targets on the NoW mean: (a) <= 3x (c), (b) <= 1.5x (c), (b) at least 30 % below (a). The
``same_refinement`` ratios hold (a) and (b) against (e), the same refinement (``REFINE``, same steps) on the exact
maps, where (c) is ``fit_image``'s default 100 steps."""

CHOSE_ON, CHOSE_SEED = 20, 11
"""Held-out images 0 to CHOSE_ON - 1 of the set rendered with seed CHOSE_SEED (the report's default set) also served
to choose ``REFINE``'s settings; on that set the report gives the cut on the images after them on its own."""

INTERVAL_KEYS = {"feed_forward_to_exact_now_mean": "a/c", "predicted_to_exact_now_mean": "b/c",
                 "feed_forward_to_exact_same_refinement_now_mean": "a/e",
                 "predicted_to_exact_same_refinement_now_mean": "b/e", "refinement_cut_of_feed_forward_now_mean": "b/a"}
"""Each target's ratio in the benchmark summary's ``ratio_intervals`` (the cut is one minus ``b/a``). A target's
``interval_95`` is where a fresh draw of as many held-out images could put its figure; ``decided`` says whether the
whole interval lies on one side of the target (false: the draw of images could flip met / not met)."""


def _count(folder: Path, default: int) -> int:
    """The number of images of the dataset ``folder`` (``default`` if it has no index)."""
    index = folder / "index.json"
    return len(json.loads(index.read_text())["images"]) if index.is_file() else default


def ship(args) -> None:
    from nphmkit._io import write_text
    from nphmkit.pretrained import SMALL_REGRESSOR

    run = args.out / "run" / "weights"
    if not (run / "weights.safetensors").is_file():
        raise SystemExit(f"ship: no trained regressor in {run}; run the train stage first")
    tmp, old = SMALL_REGRESSOR.with_name("small_regressor.tmp"), SMALL_REGRESSOR.with_name("small_regressor.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run, tmp)
    seconds = (args.out / "train_seconds.txt").read_text().strip() if (args.out / "train_seconds.txt").is_file() else "?"
    trained = {
        "trained_on": "nphmkit's SYNTHETIC head family only (analytic heads, not real people): the small predictor's "
                      f"{_count(args.data, args.images)} training renders (128^2, crop framing, seed 0)",
        "command": f"python examples/train_small_regressor.py --steps {args.steps} --two-d {args.two_d:g}",
        "backbone": "the shipped small_predictor's geometry tokens (one shared, frozen backbone; not stored here: "
                    "config.json names it with its sha256)",
        "head_model": "the shipped small NPHM",
        "steps": args.steps, "two_d_fraction": args.two_d, "training_seconds": seconds,
    }
    write_text(tmp / "quality.json", json.dumps(trained, indent=1) + "\n")
    shutil.rmtree(old, ignore_errors=True)
    if SMALL_REGRESSOR.exists():
        SMALL_REGRESSOR.rename(old)
    tmp.rename(SMALL_REGRESSOR)
    shutil.rmtree(old, ignore_errors=True)
    print(f"ship: {run} -> {SMALL_REGRESSOR}", flush=True)


def _meets(key: str, value: float) -> bool:
    """Whether ``value`` meets the target ``TARGETS[key]`` (the cut from above, the ratios from below)."""
    return value >= TARGETS[key] if key.startswith("refinement_cut") else value <= TARGETS[key]


def heldout_seed(data: str | Path) -> int | None:
    """The seed a synthetic dataset folder was rendered with (its ``index.json``), or None where it names none.
    A relative ``data`` is looked for from the working folder, then from the repository."""
    for folder in (Path(data), ROOT / data):
        try:
            seed = json.loads((folder / "index.json").read_text())["config"]["seed"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return int(seed) if isinstance(seed, int) else None
    return None


def quality_figures(summary: dict, stages: str = "abcde") -> dict:
    """The report's part of ``quality.json`` from ``bench_reconstruction.py``'s ``summary.json``: the stage means,
    the ratios of issue 17 and whether each target is met."""
    from nphmkit._io import relative_path
    from nphmkit.eval import ratio_interval
    from nphmkit.pipeline.pix2nphm import REFINE

    m = summary["mean"]
    a, b, c = (m[k]["now_mean_mm"] for k in ("a_feed_forward", "b_refined_predicted", "c_refined_exact"))
    ratios = {"feed_forward_to_exact_now_mean": a / c, "predicted_to_exact_now_mean": b / c}
    if "e_refine_exact" in m:
        e = m["e_refine_exact"]["now_mean_mm"]
        ratios.update(feed_forward_to_exact_same_refinement_now_mean=a / e,
                      predicted_to_exact_same_refinement_now_mean=b / e)
    ratios["refinement_cut_of_feed_forward_now_mean"] = 1 - b / a
    targets = {k: {"op": ">=" if k.startswith("refinement_cut") else "<=", "value": TARGETS[k], "met": _meets(k, v)}
               for k, v in ratios.items()}
    for k, key in INTERVAL_KEYS.items():  # the benchmark's bootstrap intervals over the images, where it gave them
        v = summary.get("ratio_intervals", {}).get(key)
        if k in targets and v is not None:
            low, high = (1 - v["high"], 1 - v["low"]) if k.startswith("refinement_cut") else (v["low"], v["high"])
            targets[k].update(interval_95=[low, high], decided=_meets(k, low) == _meets(k, high))
    per_image = summary.get("now_mean_per_image", {})
    seed = heldout_seed(summary["data"])
    fresh = {}
    if seed == CHOSE_SEED and len(per_image.get("a_feed_forward", [])) >= CHOSE_ON + 2 and "b_refined_predicted" in per_image:
        r = ratio_interval(per_image["b_refined_predicted"][CHOSE_ON:], per_image["a_feed_forward"][CHOSE_ON:])
        fresh = {"refinement_cut_on_images_that_chose_nothing": {
            "images": f"{CHOSE_ON}-{r.images + CHOSE_ON - 1}", "value": 1 - r.value, "interval_95": [1 - r.high, 1 - r.low],
            "why": f"images 0-{CHOSE_ON - 1} of the seed-{CHOSE_SEED} held-out set also served to choose REFINE's "
                   "settings (benchmarks/RESULTS.md); these chose nothing"}}
    return {
        "heldout": {"images": summary["images"], "seed": seed, "data": relative_path(summary["data"], ROOT),
                    "refinement": f"stage b: the pipeline's REFINE ({REFINE.steps} steps, codes only, anchor "
                                  f"{REFINE.anchor:g}, lr {REFINE.lr_codes:g}, {REFINE.robust} penalty) against the "
                                  "shipped predictor's maps weighted by its confidence; stage c: "
                                  f"{summary['steps']} steps of fit_image's default schedule against the exact maps; "
                                  "stage e: REFINE against the exact maps; all from the feed-forward codes and pose",
                    "stages": m},
        "ratios": ratios,
        "targets": targets,
        **fresh,
        "report_command": f"python benchmarks/bench_reconstruction.py --data {relative_path(summary['data'], ROOT)} "
                          f"--images {summary['images']}" + (f" --stages {stages}" if stages != "abcde" else ""),
        "how": "benchmarks/bench_reconstruction.py: NoW = landmark similarity + rigid ICP of the reconstruction to the "
               "ground-truth face region (100 mm around the nose tip), scan-to-mesh mm; posed = mean distance of "
               "ground-truth surface points to the reconstruction in its own pose",
    }


def report(args) -> None:
    from nphmkit._io import write_text
    from nphmkit.pretrained import SMALL_REGRESSOR

    if not (SMALL_REGRESSOR / "weights.safetensors").is_file():
        raise SystemExit(f"report: no regressor in {SMALL_REGRESSOR}; run the ship stage first")
    if not set("abc") <= set(args.report_stages) <= set("abcde"):
        raise SystemExit(f"--report-stages: expected a subset of 'abcde' holding a, b and c (the targets' stages), got "
                         f"{args.report_stages!r}")
    have = _count(args.heldout, args.report_images)  # a missing folder is rendered by the benchmark
    if have < args.report_images:
        raise SystemExit(f"--report-images: expected at most the {have} images of {args.heldout}, got "
                         f"{args.report_images} (or point --heldout at a larger held-out set)")
    bench = ROOT / "out" / "bench_reconstruction"  # the full benchmark resumes from these images
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_reconstruction.py"), "--data", str(args.heldout),
                    "--images", str(args.report_images), "--out", str(bench), "--redo-b", "--stages", args.report_stages],
                   check=True)
    summary = json.loads((bench / "summary.json").read_text())
    path = SMALL_REGRESSOR / "quality.json"
    quality = json.loads(path.read_text()) if path.is_file() else {}
    for stale in ("heldout", "ratios", "targets", "report_command", "how", "refinement_cut_on_images_that_chose_nothing"):
        quality.pop(stale, None)
    quality.update(quality_figures(summary, args.report_stages))
    write_text(path, json.dumps(quality, indent=1) + "\n")
    def line(k: str, v: float) -> str:
        t = quality["targets"][k]
        span = f"; 95 % interval {t['interval_95'][0]:.3f} to {t['interval_95'][1]:.3f}, " \
               f"{'decided' if t['decided'] else 'the draw of images could flip it'}" if "interval_95" in t else ""
        return f"{v:.3f} ({'met' if t['met'] else 'NOT met'}{span})"

    print(json.dumps({k: line(k, v) for k, v in quality["ratios"].items()}, indent=1))
    print(f"wrote {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "out" / "small_regressor")
    p.add_argument("--data", type=Path, default=ROOT / "out" / "small_predictor" / "train")
    p.add_argument("--heldout", type=Path, default=ROOT / "out" / "heldout100",
                   help="held-out renders (seed 11) for the report; rendered there by the benchmark if missing")
    p.add_argument("--images", type=int, default=3000, help="training renders when --data must be made")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--two-d", type=float, default=0.0, help="fraction of 2D items (predictor maps via the renderer)")
    p.add_argument("--report-images", type=int, default=100,
                   help="held-out images the report measures (100: about 2 hours here; at 20 images the cut's 95 %% "
                        "interval over the images is about 16 points wide, at 100 about 7)")
    p.add_argument("--report-stages", default="abcde",
                   help="the benchmark's stages (abce skips (d), the head model's 3D floor, which no target uses)")
    p.add_argument("--stage", choices=["all", "data", "train", "ship", "report"], default="all")
    args = p.parse_args()
    for name, fn in (("data", data), ("train", train), ("ship", ship), ("report", report)):
        if args.stage in ("all", name):
            fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
