"""Identity SDF of small chunks: the tiled path (one batched matmul per layer) against the per-type loop.

Sphere tracing evaluates ever fewer live rays per iteration (1500 -> ~60 in a refinement step), so
most of its calls are small and cost launches, not arithmetic. Times ``identity_chunk`` of the shipped
small NPHM (or the tiny random config without weights) on both paths, interleaved, median of repeats.

    python benchmarks/bench_tiled.py [--sizes 8 64 256 512 768 1500] [--repeats 30]
"""

from __future__ import annotations

import argparse

import torch

from _timing import machine, median_time
from nphmkit.nphm import vectorized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 64, 256, 512, 768, 1500])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    from nphmkit.pretrained import has_weights, load_small_nphm

    if has_weights("small"):
        model, name = load_small_nphm().eval(), "shipped small NPHM"
    else:
        from tests.nphm.cases import make_model

        model, name = make_model().eval(), "tiny random NPHM"
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    z_id = model.initial_codes(1)[0] + 0.05 * torch.randn(1, cfg.id_dim, generator=g)
    prep = vectorized.prepare_identity(model, z_id)
    print(f"{machine()}; {name}, {cfg.n_types} MLP types, {cfg.n_neighbors} neighbours; "
          f"default threshold {vectorized.TILED_MAX_POINTS} points")
    print(f"{'points':>7s} {'loop ms':>8s} {'tiled ms':>9s} {'loop/tiled':>11s} {'max |diff|':>11s}")
    with torch.no_grad():
        for n in args.sizes:
            q = torch.cat([0.3 * torch.randn(n, 3, generator=g), torch.zeros(n, cfg.n_hyper)], -1)
            bidx = torch.zeros(n, dtype=torch.long)
            loop = lambda: vectorized.identity_chunk(model, prep, q, bidx, tiled=False)  # noqa: E731
            tiled = lambda: vectorized.identity_chunk_tiled(model, prep, q, bidx)  # noqa: E731
            diff = (loop() - tiled()).abs().max().item()
            t_loop = median_time(loop, repeats=args.repeats)
            t_tiled = median_time(tiled, repeats=args.repeats)
            print(f"{n:7d} {1e3 * t_loop:8.2f} {1e3 * t_tiled:9.2f} {t_loop / t_tiled:11.2f} {diff:11.1e}")


if __name__ == "__main__":
    main()
