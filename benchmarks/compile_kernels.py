"""What the GPU compiler makes of each Triton kernel, without a GPU: shared memory, registers, spills.

Compiles every kernel of both designs at the official sizes for a CUDA target (default sm_90,
an H100) with the ptxas that ships with triton, and prints per kernel and mode: compile time,
shared memory per program, registers per thread, bytes spilled per thread, and the matrix
instructions used (wgmma, mma.sync, or plain FMA). No timing: these are the compiler's own
figures, the first thing to look at before (and instead of) spending GPU minutes on a design that
cannot fit. Run it without ``TRITON_INTERPRET``.

    python benchmarks/compile_kernels.py [--arch 90] [--designs registers,scratch] [--precision tf32,tf32x3,ieee,fp16]
                                         [--config mononphm|small|tiny] [--shape 128,64,16 ...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings

from _args import launch_shape, subset
from _timing import ROOT  # noqa: F401  (puts the repository on sys.path)
from nphmkit import NPHMConfig

SCALARS = {"n_blocks": "i32", "n_points": "i32", "H": "i32", "E": "i32", "P": "i32", "beta": "fp32"}
INT_POINTERS = {"rows", "sorted_ids", "block_type", "bidx"}


def _kernels(cfg: NPHMConfig, design: str, precision: str, launch):
    """``(name, jit function, constexprs, num_warps, num_stages)`` of every launch the design makes
    (``launch``: the design's ``KernelOptions``)."""
    from dataclasses import replace

    from nphmkit.kernels import registers_ops, scratch_ops

    nh_id, nh_ex, d = cfg.id_layers - 1, cfg.ex_layers - 1, cfg.query_dim
    op = max(16, 1 << (cfg.ex_out - 1).bit_length())
    warps = launch.num_warps
    if design == "scratch":
        from nphmkit.kernels.scratch_expression import expression_backward_kernel, expression_forward_kernel
        from nphmkit.kernels.scratch_identity import ensemble_backward_kernel, ensemble_forward_kernel

        hp, ep = scratch_ops._pad(cfg.id_hidden), scratch_ops._pad(cfg.ex_hidden)
        bm, tile = launch.block_m, launch.tile
        ident = dict(N_HIDDEN=nh_id, D=d, HP=hp, BM=bm, BN=min(tile, hp), BK=min(tile, hp), PRECISION=precision)
        expr = dict(NH=nh_ex, SKIP=cfg.ex_skip - 1, OUT=cfg.ex_out, HP=ep, OP=op, BM=bm, BN=min(tile, ep),
                    BK=min(tile, ep), PRECISION=precision)
        return [
            ("identity forward", ensemble_forward_kernel, ident, warps, 3),
            ("identity backward", ensemble_backward_kernel, ident, warps, 3),
            ("expression forward", expression_forward_kernel, expr, warps, 3),
            ("expression backward", expression_backward_kernel, expr, warps, 3),
        ]
    from nphmkit.kernels.registers_expression import expression_chunked_kernel
    from nphmkit.kernels.registers_identity import ensemble_chunked_kernel

    c0, c1, c2, c3, nc, p = registers_ops.chunk_widths(cfg.id_hidden, launch.max_chunk)
    ident = dict(NH=nh_id, D=d, P=p, C0=c0, C1=c1, C2=c2, C3=c3, NC=nc, BM=launch.block_m, PRECISION=precision)
    c0, c1, c2, c3, nc, p = registers_ops.chunk_widths(cfg.ex_hidden, launch.max_chunk)
    expr = dict(NH=nh_ex, SKIP=cfg.ex_skip - 1, OUT=cfg.ex_out, OP=op, P=p, C0=c0, C1=c1, C2=c2, C3=c3, NC=nc,
                BM=launch.block_m_expression, PRECISION=precision)
    stages = registers_ops.identity_stages(replace(launch, precision=precision))
    return [
        ("identity forward", ensemble_chunked_kernel, {**ident, "GRAD": False, "PRE0": False}, warps, stages),
        ("identity fwd+bwd", ensemble_chunked_kernel, {**ident, "GRAD": True, "PRE0": True}, warps, stages),
        ("expression forward", expression_chunked_kernel, {**expr, "BACKWARD": False}, warps, 1),
        ("expression backward", expression_chunked_kernel, {**expr, "BACKWARD": True}, warps, 1),
    ]


def _ptxas(arch: int) -> str:
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(arch).path
    except (ImportError, AttributeError):
        from triton import knobs

        return knobs.nvidia.ptxas.path


def compile_report(fn, constexprs: dict, num_warps: int, num_stages: int, arch: int) -> dict:
    """Compile one kernel for ``sm_<arch>`` and read the compiler's resource figures."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {}
    for param in fn.params:
        name = param.name
        if param.is_constexpr:
            signature[name] = "constexpr"
        else:
            signature[name] = SCALARS.get(name, "*i32" if name in INT_POINTERS else "*fp32")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = triton.compile(
            ASTSource(fn=fn, signature=signature, constexprs=constexprs),
            target=GPUTarget("cuda", arch, 32),
            options={"num_warps": num_warps, "num_stages": num_stages},
        )
    seconds = time.perf_counter() - start
    ptx = compiled.asm["ptx"]
    suffix = "a" if arch >= 90 else ""
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    try:
        info = subprocess.run(
            [_ptxas(arch), "-v", f"--gpu-name=sm_{arch}{suffix}", f.name, "-o", os.devnull],
            capture_output=True, text=True, check=True,
        ).stderr
    finally:
        os.unlink(f.name)
    regs = re.search(r"Used (\d+) registers", info)
    spill = re.search(r"(\d+) bytes spill stores", info)
    mma = "wgmma" if "wgmma" in ptx else "mma.sync" if "mma.sync" in ptx else "fma"
    return {
        "seconds": seconds,
        "shared_kib": compiled.metadata.shared / 1024,
        "registers": int(regs.group(1)) if regs else -1,
        "spill_bytes": int(spill.group(1)) if spill else -1,
        "mma": mma,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x 10 (90: H100)")
    parser.add_argument("--designs", type=subset(("registers", "scratch")), default=["registers", "scratch"])
    parser.add_argument("--precision", type=subset(("tf32", "tf32x3", "ieee", "fp16")),
                        default=["tf32", "tf32x3", "ieee", "fp16"])
    parser.add_argument("--config", choices=("mononphm", "small", "tiny"), default="mononphm")
    parser.add_argument(
        "--shape", type=launch_shape, action="append",
        help="launch shapes instead of the presets, repeatable: block_m,tile,num_warps (scratch) or "
        "block_m,block_m_expression,num_warps (registers), as bench_kernels.py --sweep tries them",
    )
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("unset TRITON_INTERPRET: this compiles the kernels for a GPU")
    os.environ["TRITON_ALWAYS_COMPILE"] = "1"  # honest compile times: no cache hits
    import triton

    from nphmkit.kernels import KernelOptions

    cfg = getattr(NPHMConfig, args.config)()
    print(f"triton {triton.__version__}, target sm_{args.arch}, {args.config} sizes; per kernel: compile time, "
          "shared memory per program, registers and spilled bytes per thread, matrix instructions")
    print(f"{'design':9s} {'prec':6s} {'kernel':20s} {'launch':32s} {'compile':>8s} {'smem KiB':>8s} "
          f"{'regs':>4s} {'spill B':>7s}  mma")
    for design, given in ((d, g) for d in args.designs for g in args.shape or [None]):
        launch = KernelOptions.preset(design)
        if given is not None:
            names = ("block_m", "tile", "num_warps") if design == "scratch" else (
                "block_m", "block_m_expression", "num_warps")
            try:
                launch = KernelOptions.preset(design, **dict(zip(names, given)))
            except ValueError as err:
                parser.error(f"--shape {','.join(map(str, given))}: {err}")
        shape = (f"BM {launch.block_m}/{launch.block_m_expression}, chunk<={launch.max_chunk}"
                 if design == "registers" else f"BM {launch.block_m}, tile {launch.tile}")
        for precision in args.precision:
            if design == "scratch" and precision == "fp16":
                continue  # the registers design's mode
            for name, fn, constexprs, warps, stages in _kernels(cfg, design, precision, launch):
                try:
                    r = compile_report(fn, constexprs, warps, stages, args.arch)
                except Exception as err:  # noqa: BLE001 - a shape the compiler rejects is reported, not fatal
                    first = str(err).strip().splitlines()[0][:100] if str(err).strip() else ""
                    print(f"{design:9s} {precision:6s} {name:20s} {shape + f', {warps} warps':32s} "
                          f"failed ({type(err).__name__}: {first})", flush=True)
                    continue
                print(f"{design:9s} {precision:6s} {name:20s} {shape + f', {warps} warps':32s} "
                      f"{r['seconds']:7.1f}s {r['shared_kib']:8.1f} {r['registers']:4d} {r['spill_bytes']:7d}  "
                      f"{r['mma']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
