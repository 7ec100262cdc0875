"""Write the demo's test images (package data): synthetic heads the shipped model never saw.

    python examples/make_demo_data.py [-o nphmkit/assets/demo]

Two 128^2 images (one head: neutral and expressive) with their exact normal and canonical
maps, rendered by the dataset writer with a seed the training scripts do not use, framed as
photo crops (the face box enlarged x1.42) at a crop focal length near the default 2.0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nphmkit.data.synthetic.dataset import SynthConfig, write_dataset

DEFAULT = Path(__file__).resolve().parents[1] / "nphmkit" / "assets" / "demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(DEFAULT))
    args = parser.parse_args()
    cfg = SynthConfig(image_size=128, expressions_per_head=2, views_per_expression=1, seed=7, yaw=(-0.35, 0.35),
                      focal=(2.0, 2.4))
    print(f"wrote {write_dataset(args.output, 2, cfg, progress=False)}")


if __name__ == "__main__":
    main()
