"""Build the paper-like Pix2NPHM regressor, print its parameters and time one forward pass at 512^2 on the CPU.

    python examples/regressor_paper_like.py [--small]

The weights are random (nothing is trained here); this shows size and speed only.
"""

from __future__ import annotations

import argparse
import time

import torch

from nphmkit.heads import Pix2NPHMRegressor, RegressorConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the CPU-trainable preset instead")
    args = parser.parse_args()
    cfg = RegressorConfig.small() if args.small else RegressorConfig.paper_like()
    model = Pix2NPHMRegressor(cfg).eval()
    print(f"{'part':16s} {'trainable':>12s} {'frozen':>12s}")
    total_t = total_f = 0
    for name, counts in model.parameter_summary().items():
        print(f"{name:16s} {counts['trainable']:12,d} {counts['frozen']:12,d}")
        total_t += counts["trainable"]
        total_f += counts["frozen"]
    print(f"{'total':16s} {total_t:12,d} {total_f:12,d}")
    images = torch.rand(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        model(images)  # warm-up
        start = time.perf_counter()
        out = model(images)
        seconds = time.perf_counter() - start
    print(f"one forward pass at {cfg.image_size}^2 on the CPU ({torch.get_num_threads()} threads): {seconds:.2f} s; "
          f"z_id {tuple(out['z_id'].shape)}, z_ex {tuple(out['z_ex'].shape)}")


if __name__ == "__main__":
    main()
