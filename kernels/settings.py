"""Kernel settings: one frozen :class:`KernelOptions`, set globally or for a block.

    from nphmkit import kernels
    kernels.set_options(design="registers", precision="fp16")      # from now on
    with kernels.options(precision="tf32"):                          # inside the block only
        model.sdf(x, z_id, z_ex, backend="triton")

Choosing a ``design`` starts from that design's preset (:meth:`KernelOptions.preset`) and keeps
the current precision unless one is given; any other value given in the same call wins. A
refused value changes nothing. Importing this module imports no triton.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace

DESIGNS = ("scratch", "registers")
PRECISIONS = ("ieee", "tf32x3", "tf32", "fp16")
EXPRESSION_PATHS = ("auto", "kernel", "torch")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class KernelOptions:
    """How the fused kernels run. Block sizes, tiles and chunks are powers of two >= 16 (the smallest
    ``tl.dot`` a GPU accepts), warps a power of two."""

    design: str = "scratch"
    """``"scratch"``: activations through a per-program global scratch buffer (measured on an H100);
    ``"registers"``: activations on chip in power-of-two chunks."""
    precision: str = "ieee"
    """Products: ``"ieee"`` (exact float32 FMA), ``"tf32x3"`` (float32 emulated by three TF32 tensor-core
    products), ``"tf32"`` (one TF32 product, ~1e-3 relative) or ``"fp16"`` (registers design only: both
    operands rounded to float16, float32 sums)."""
    block_m: int = 128
    """Rows per program (identity pairs; points of the scratch design's expression kernel)."""
    tile: int = 64
    """``tl.dot`` tile edge of the scratch design."""
    num_warps: int = 8
    block_m_expression: int = 64
    """Points per program of the registers design's expression kernel."""
    programs_per_sm: int = 2
    """Programs per SM of the registers design's persistent backward launches."""
    max_chunk: int = 64
    """Widest activation chunk of the registers design (wider layers: up to 4x this)."""
    num_stages: int = 0
    """Software-pipelining stages of the registers design's identity launch (0: 2 in fp16, else 1)."""
    expression: str = "auto"
    """Registers design: the expression MLP by its kernel (``"kernel"``), by the decoder's torch path
    (``"torch"``), or ``"auto"``: the kernel except on CUDA in the float32-accurate modes, where it does
    not fit in shared memory."""
    chunk_points: int = 0
    """Points per chunk of a triton-path query (0: the model's ``config.chunk_size``)."""

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"design: expected one of {DESIGNS}, got {self.design!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.expression not in EXPRESSION_PATHS:
            raise ValueError(f"expression: expected one of {EXPRESSION_PATHS}, got {self.expression!r}")
        for name in ("block_m", "tile", "num_warps", "block_m_expression", "max_chunk"):
            value, low = getattr(self, name), (1 if name == "num_warps" else 16)
            if not _is_int(value) or value < low or value & (value - 1):
                raise ValueError(f"{name}: expected a power of two >= {low}, got {value!r}")
        if not _is_int(self.programs_per_sm) or self.programs_per_sm < 1:
            raise ValueError(f"programs_per_sm: expected a positive integer, got {self.programs_per_sm!r}")
        if not _is_int(self.num_stages) or self.num_stages < 0:
            raise ValueError(f"num_stages: expected a non-negative integer (0: auto), got {self.num_stages!r}")
        if not _is_int(self.chunk_points) or self.chunk_points < 0:
            raise ValueError(
                f"chunk_points: expected a non-negative integer (0: the model's chunk_size), got {self.chunk_points!r}"
            )
        if self.precision == "fp16" and self.design != "registers":
            raise ValueError("precision 'fp16' runs in the registers design only: use design='registers', or "
                             "precision='tf32' for the scratch design")

    @classmethod
    def preset(cls, design: str, **overrides) -> "KernelOptions":
        """The launch shape chosen for ``design`` (see the notes below), with ``overrides``.

        "scratch": the fastest of 3 shapes tried on an H100; chunks of the model's ``chunk_size``
        (its per-block scratch buffers grow with the chunk: ~6 GB for normals at 65,536 points).
        "registers": chosen by what the sm_90 compiler makes of it (benchmarks/compile_kernels.py,
        RESULTS.md): 64-wide chunks for the identity MLPs, 64 rows and 8 warps spill least;
        65,536-point chunks (each chunk costs ~30 small launches).
        """
        if design not in _PRESETS:
            raise ValueError(f"design: expected one of {DESIGNS}, got {design!r}")
        return cls(**{**_PRESETS[design], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


_PRESETS = {
    "scratch": {"design": "scratch", "block_m": 128, "tile": 64, "num_warps": 8, "chunk_points": 0},
    "registers": {"design": "registers", "block_m": 64, "block_m_expression": 64, "max_chunk": 64, "num_warps": 8,
                  "num_stages": 0, "chunk_points": 1 << 16},
}
_NAMES = tuple(f.name for f in fields(KernelOptions))
_current = KernelOptions()


def get_options() -> KernelOptions:
    """The options in force."""
    return _current


def _derive(base: KernelOptions, changes: dict) -> KernelOptions:
    unknown = sorted(set(changes) - set(_NAMES))
    if unknown:
        raise TypeError(f"unknown kernel option(s) {unknown}; expected some of {list(_NAMES)}")
    if "design" in changes and changes["design"] != base.design:
        keep = {"precision": base.precision} if "precision" not in changes else {}
        return KernelOptions.preset(changes["design"], **keep, **{k: v for k, v in changes.items() if k != "design"})
    return replace(base, **changes)


def set_options(options: KernelOptions | None = None, **changes) -> KernelOptions:
    """Make ``options`` (or the current options with ``changes``) the global setting; returns it."""
    global _current
    if options is not None and not isinstance(options, KernelOptions):
        raise TypeError(f"options: expected a KernelOptions, got {type(options).__name__}")
    _current = _derive(options if options is not None else _current, changes)
    return _current


@contextmanager
def options(options: KernelOptions | None = None, **changes) -> Iterator[KernelOptions]:
    """Use ``options`` (or the current options with ``changes``) inside a ``with`` block, then restore."""
    global _current
    previous = _current
    new = set_options(options, **changes)
    try:
        yield new
    finally:
        _current = previous
