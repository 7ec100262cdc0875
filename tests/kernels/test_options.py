"""KernelOptions: one frozen setting, global or per block; no triton needed."""

from __future__ import annotations

import threading

import pytest

from nphmkit import kernels
from nphmkit.kernels import KernelOptions


def test_presets_and_design_switches():
    assert KernelOptions.preset("scratch").block_m == 128 and KernelOptions.preset("scratch").chunk_points == 0
    reg = KernelOptions.preset("registers")
    assert (reg.block_m, reg.max_chunk, reg.chunk_points) == (64, 64, 1 << 16)
    with kernels.options(precision="tf32"):
        with kernels.options(design="registers") as opts:  # the preset, keeping the precision in force
            assert opts.block_m == 64 and opts.precision == "tf32" and opts.chunk_points == 1 << 16
            with kernels.options(design="scratch", block_m=32) as back:  # a value given in the same call wins
                assert back.block_m == 32 and back.tile == 64 and back.precision == "tf32"
        assert kernels.get_options().design == "scratch" and kernels.get_options().precision == "tf32"
    assert kernels.get_options() == KernelOptions()


def test_set_options_is_global_and_a_block_restores_it():
    before = kernels.get_options()
    try:
        kernels.set_options(design="registers", precision="fp16")
        with kernels.options(precision="tf32"):
            assert kernels.get_options().precision == "tf32"
        assert kernels.get_options().precision == "fp16"
        seen = []
        t = threading.Thread(target=lambda: seen.append(kernels.get_options().precision))  # global, not per thread
        t.start()
        t.join()
        assert seen == ["fp16"]
        kernels.set_options(KernelOptions.preset("scratch", tile=32))
        assert kernels.get_options().tile == 32
    finally:
        kernels.set_options(before)
    with pytest.raises(RuntimeError), kernels.options(block_m=32):
        raise RuntimeError("an error inside the block")
    assert kernels.get_options() == before  # restored on the way out of a failing block too


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"design": "shared"}, "design: expected one of"),
        ({"precision": "fp8"}, "precision: expected one of"),
        ({"block_m_expression": 24}, "block_m_expression: expected a power of two >= 16, got 24"),
        ({"block_m": 48}, "block_m: expected a power of two >= 16, got 48"),
        ({"num_warps": 3}, "num_warps: expected a power of two >= 1, got 3"),
        ({"programs_per_sm": 0}, "programs_per_sm: expected a positive integer, got 0"),
        ({"num_stages": -1}, r"num_stages: expected a non-negative integer \(0: auto\), got -1"),
        ({"expression": "cuda"}, "expression: expected one of"),
        ({"chunk_points": -1}, "chunk_points: expected a non-negative integer"),
        ({"precision": "fp16"}, "precision 'fp16' runs in the registers design only"),
        ({"design": "scratch", "block_m": 48}, "block_m: expected a power of two"),
    ],
)
def test_bad_values_are_named_and_change_nothing(changes, message):
    before = kernels.get_options()
    with pytest.raises(ValueError, match=message):
        kernels.set_options(**changes)
    with pytest.raises(ValueError, match=message), kernels.options(**changes):
        pass
    assert kernels.get_options() == before


def test_unknown_option_and_wrong_type():
    with pytest.raises(TypeError, match=r"unknown kernel option\(s\) \['blockm'\]"):
        kernels.set_options(blockm=16)
    with pytest.raises(TypeError, match="options: expected a KernelOptions, got dict"):
        kernels.set_options({"design": "registers"})
    with pytest.raises(ValueError, match="block_m: expected a power of two >= 16, got True"):
        KernelOptions(block_m=True)
