"""Train nphmkit's small NPHM on the synthetic head family (the shipped default model).

    python examples/train_small_nphm.py                          # ~40 min on 2 CPU cores (seed 0)
    python examples/train_small_nphm.py --toy -o /tmp/toy_nphm   # a minute-sized run (tests)

Writes to the output folder (default: the package's ``nphmkit/assets/small_nphm``):
``weights.safetensors`` + ``config.json`` (an nphmkit weight folder), ``registrations.npz``
(the learned codes of every training shape, with its synthetic parameters) and
``quality.json`` (the figures below). The weights know only the synthetic family.

Quality figures (mm = NPHM units x 250): mean |sdf| of the trained model at fresh surface
points of its training shapes, and the mean surface distance after ``fit_points`` on heads it
never saw (and, for comparison, the same fit on training heads).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from nphmkit._io import write_bytes, write_text
from nphmkit.data.synthetic import SyntheticHead
from nphmkit.data.synthetic import params as P
from nphmkit.data.synthetic.landmarks import ANCHOR_NAMES
from nphmkit.fitting import PointFitConfig, fit_points, surface_distance
from nphmkit.nphm import NPHM, NPHMConfig
from nphmkit.protocols import NOW_LANDMARKS
from nphmkit.training import AutoDecoderConfig, build_samples, train_autodecoder
from nphmkit.training.samples import sample_surface

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "nphmkit" / "assets" / "small_nphm"


def expressions_for(n_id: int, n_ex: int, seed: int) -> torch.Tensor:
    """``(n_id, n_ex, 5)``: the neutral expression first, then random ones."""
    out = P.neutral_expression(n_id * n_ex).reshape(n_id, n_ex, -1)
    if n_ex > 1:
        out[:, 1:] = P.sample_expression(n_id * (n_ex - 1), seed).reshape(n_id, n_ex - 1, -1)
    return out


def evaluate(model: NPHM, identities, expressions, z_id=None, z_ex=None, fit_steps=150, seed=0) -> dict:
    """Mean surface distance (mm) of each shape: with the given codes, or after fit_points."""
    g = torch.Generator().manual_seed(seed)
    dists = []
    for i in range(identities.shape[0]):
        for e in range(expressions.shape[1]):
            head = SyntheticHead(identities[i : i + 1], expressions[i, e : e + 1])
            fit_pts = sample_surface(head, 3000, g)
            test_pts = sample_surface(head, 3000, g)
            if z_id is not None:
                k = i * expressions.shape[1] + e
                with torch.no_grad():
                    d = model.sdf(test_pts, z_id[i : i + 1], z_ex[k : k + 1])
                dists.append(float(d.abs().mean()) * 250)
            else:
                res = fit_points(model, fit_pts, config=PointFitConfig(steps=fit_steps, seed=seed))
                dists.append(float(surface_distance(model, res, test_pts).mean()) * 250)
    return {"mean_mm": float(np.mean(dists)), "median_mm": float(np.median(dists)), "shapes": len(dists)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUT))
    parser.add_argument("--identities", type=int, default=48)
    parser.add_argument("--expressions", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--heldout", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--toy", action="store_true", help="tiny preset, few shapes and steps (for tests)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if args.toy:
        args.identities, args.expressions, args.steps, args.heldout = 3, 2, 30, 1
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    identities = P.sample_identity(args.identities, args.seed)
    expressions = expressions_for(args.identities, args.expressions, args.seed + 1)
    n_pts = 600 if args.toy else 4000
    samples = build_samples(identities, expressions, n_pts, n_pts, n_pts // 3, seed=args.seed, progress=not args.quiet)
    t_samples = time.perf_counter() - start
    config = NPHMConfig.tiny() if args.toy else NPHMConfig.small()
    model = NPHM(config, mean_anchors=samples.anchors.mean(0))
    train_cfg = AutoDecoderConfig(steps=args.steps, seed=args.seed, log_every=10 if args.toy else 100,
                                  decay_every=max(args.steps // 3, 1))
    result = train_autodecoder(model, samples, train_cfg, progress=not args.quiet, log=print)

    train_quality = evaluate(model, identities, expressions, result.z_id, result.z_ex)
    h_id = P.sample_identity(args.heldout, args.seed + 10_000)
    h_ex = expressions_for(args.heldout, 2, args.seed + 10_001)
    fit_steps = 20 if args.toy else 150
    heldout = evaluate(model, h_id, h_ex, fit_steps=fit_steps, seed=args.seed)
    train_fit = evaluate(model, identities[: args.heldout], expressions[: args.heldout, :2], fit_steps=fit_steps, seed=args.seed)
    quality = {
        "trained_on": "nphmkit synthetic head family (analytic heads, not real people)",
        "training_shapes": int(samples.surface.shape[0]),
        "identities": args.identities,
        "expressions_per_identity": args.expressions,
        "steps": args.steps,
        "seed": args.seed,
        "preset": "tiny" if args.toy else "small",
        "seconds_sampling": round(t_samples, 1),
        "seconds_training": round(result.seconds, 1),
        "train_codes_surface_mm": train_quality,
        "fit_points_heldout_mm": heldout,
        "fit_points_training_heads_mm": train_fit,
        "final_log": result.history[-1],
    }
    out = Path(args.output)
    # the synthetic family's anchors are named; the ones named like the NoW landmarks mark them
    model.landmark_anchors = [ANCHOR_NAMES.index(name) for name in NOW_LANDMARKS]
    model.save(out, metadata={**model.metadata, "trained_on": quality["trained_on"], "script": "examples/train_small_nphm.py",
                              "seed": args.seed, "steps": args.steps})
    n_ex = args.expressions
    buf = io.BytesIO()
    np.savez(buf, z_id=result.z_id.repeat_interleave(n_ex, 0).numpy(), z_ex=result.z_ex.numpy(),
             identity=identities.repeat_interleave(n_ex, 0).numpy(), expression=expressions.reshape(-1, 5).numpy())
    write_bytes(out / "registrations.npz", buf.getvalue())
    write_text(out / "quality.json", json.dumps(quality, indent=1) + "\n")
    print(json.dumps({k: quality[k] for k in ("train_codes_surface_mm", "fit_points_heldout_mm",
                                               "fit_points_training_heads_mm", "seconds_training")}, indent=1))
    print(f"wrote {out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
