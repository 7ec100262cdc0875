"""Command-line value parsers shared by the kernel scripts (bench_kernels.py, compile_kernels.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence


def subset(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """Parser of a comma-separated, non-empty subset of ``choices`` ("registers,scratch")."""

    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        if not names or any(v not in choices for v in names):
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {tuple(choices)}, got {text!r}")
        return names

    return parse


def launch_shape(text: str) -> tuple[int, int, int]:
    """Three comma-separated integers: block_m,tile,num_warps (scratch design) or
    block_m,block_m_expression,num_warps (registers design)."""
    try:
        a, b, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three integers, e.g. 64,64,8, got {text!r}") from None
    return a, b, c
