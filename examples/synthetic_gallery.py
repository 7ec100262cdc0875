"""A picture of the synthetic head family: shaded images, normal maps and canonical point maps.

    python examples/synthetic_gallery.py [-o docs/images/synthetic_heads.png] [--size 160]

Rows: the RGB image the dataset writer makes, the exact normal map (camera frame) and the exact
canonical point map (neutral-expression NPHM coordinates as colour; white where invalid, e.g.
inside an open mouth). Columns: different identities and expressions.
"""

from __future__ import annotations

import argparse

import torch

from nphmkit.data.image_io import write_png
from nphmkit.data.synthetic import params as P
from nphmkit.data.synthetic.dataset import SynthConfig, image_plan, render_batch
from nphmkit.render import canonical_map_rgb, normal_map_rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="docs/images/synthetic_heads.png")
    parser.add_argument("--size", type=int, default=160)
    args = parser.parse_args()
    cfg = SynthConfig(image_size=args.size, seed=2)
    plans = [image_plan(i, cfg) for i in (0, 4, 8, 12, 16, 20)]
    expressions = [
        [0.0, 0.0, 0.0, 0.0, 0.0],  # neutral
        [0.9, 0.0, 0.2, 0.0, 0.0],  # jaw open
        [0.0, 1.0, 0.6, 0.0, 0.0],  # smile, brows up
        [0.0, 0.0, -0.3, 1.0, 0.0],  # eyes closed, frown
        [0.3, -0.4, 0.0, 0.0, 1.0],  # pucker
        [0.6, 0.7, 1.0, 0.4, 0.0],  # mixed
    ]
    for p, e, yaw in zip(plans, expressions, (0.0, 0.35, -0.4, 0.2, 0.55, -0.25)):
        p["expression_params"] = torch.tensor(e)
        p["yaw"], p["pitch"], p["distance"] = yaw, 0.05, 2.7
    assert len(P.EXPRESSION) == 5
    rgb, out, *_ = render_batch(plans, cfg)
    rows = [
        torch.cat(list(rgb), dim=1),
        torch.cat(list(normal_map_rgb(out.normals, out.mask)), dim=1),
        torch.cat(list(canonical_map_rgb(out.canonical, out.canonical_valid)), dim=1),
    ]
    write_png(args.output, torch.cat(rows, dim=0))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
