"""Torch glue of the Triton kernels: layouts, autograd Functions, and the NPHM query entry points.

Gradients: w.r.t. points and latent codes (through the per-sample tables) by backward kernels;
not w.r.t. the network weights, and no double backward (``NPHM`` routes those cases to the
torch path, see ``NPHM._backend``).
"""

from __future__ import annotations

import math

import torch
import triton

from nphmkit.nphm import fast, reference

from . import ops_chunked
from .expression import expression_backward_kernel, expression_forward_kernel
from .identity import ensemble_backward_kernel, ensemble_forward_kernel
from .weight_cache import cached

_precision = {"mode": "ieee"}
PRECISIONS = ("ieee", "tf32x3", "tf32", "fp16")
# design "scratch": activations through a per-program global scratch buffer (measured on an H100, see
# benchmarks/RESULTS.md); "registers": activations on chip in power-of-two chunks (kernels/chunked.py)
_PRESETS = {
    # the fastest of 3 shapes tried on an H100; chunks: the model's chunk_size (its per-block scratch
    # buffers grow with the chunk: ~6 GB for normals at 65,536 points)
    "scratch": {"block_m": 128, "tile": 64, "num_warps": 8, "chunk_points": 0},
    # Not yet timed on a GPU; chosen by what the sm_90 compiler makes of it (benchmarks/compile_kernels.py,
    # RESULTS.md): 64-wide chunks for the identity MLPs (200 -> 3 x 64 + 16; the expression's 400 then
    # takes 3 x 128 + 16), 64 rows and 8 warps spill least; num_stages 1: no software pipelining of
    # the many weight tiles per layer (buffers for several stages would not fit in shared memory), except
    # in fp16: 0 = auto (ops_chunked.identity_stages).
    "registers": {"block_m": 64, "block_m_expression": 64, "max_chunk": 64, "num_warps": 8, "num_stages": 0,
                  "chunk_points": 1 << 16},
}
_launch = {
    "design": "scratch",
    "block_m": 128,  # rows per program (identity pairs; points of the scratch expression)
    "tile": 64,  # tl.dot tile edge of the scratch design
    "num_warps": 8,
    "block_m_expression": 64,  # points per program of the registers design's expression kernel
    "programs_per_sm": 2,  # persistent grid of the registers design's backward kernels
    "max_chunk": 64,  # widest activation chunk of the registers design (wider layers: up to 4x this)
    "num_stages": 0,  # software-pipelining stages of the registers design's identity launch (0: auto)
    "expression": "auto",  # registers design: expression MLP by its kernel, the torch path, or auto
    # points per chunk of the triton path (0: the model's config.chunk_size). The registers design's
    # preset is larger than the torch path's 4096: without code gradients its temporaries are a few KB
    # per point, and each chunk costs ~30 small launches, which at 4096 points would take longer to
    # issue than the kernels take to run
    "chunk_points": 0,
}
_EXPRESSION = ("auto", "kernel", "torch")
_DESIGNS = tuple(_PRESETS)


def configure(
    block_m: int | None = None,
    tile: int | None = None,
    num_warps: int | None = None,
    *,
    design: str | None = None,
    block_m_expression: int | None = None,
    programs_per_sm: int | None = None,
    max_chunk: int | None = None,
    num_stages: int | None = None,
    expression: str | None = None,
    chunk_points: int | None = None,
) -> dict:
    """Set the kernels' design and launch shape; returns the whole setting (a dict ``configure(**d)`` takes).

    ``design``: ``"scratch"`` (default) or ``"registers"``; choosing one also sets its preset
    (``_PRESETS``) except for values given in the same call. ``block_m``: rows per program;
    ``tile``: the ``tl.dot`` tile edge (scratch design); ``num_warps``: warps per program;
    ``block_m_expression``: points per program of the registers design's expression kernel;
    ``programs_per_sm``: programs per SM of its persistent backward launches; ``max_chunk``: its
    widest activation chunk (``ops_chunked.chunk_widths``); ``num_stages``: software-pipelining
    stages of its identity launch (1: none; 0, the preset: 2 in "fp16", else 1, see
    ``ops_chunked.identity_stages``); ``expression``: ``"auto"`` (its expression kernel, except on
    CUDA in the float32-accurate modes, where the kernel does not fit and the torch path runs),
    ``"kernel"`` or ``"torch"``; ``chunk_points``: points per chunk of a triton-path query (0: the
    model's ``config.chunk_size``, the scratch preset; registers preset: 65536). Block sizes, tiles
    and chunks are powers of two >= 16 (the smallest ``tl.dot`` a GPU accepts), warps a power of
    two. Nothing changes when a value is refused.
    """
    if design is not None and design not in _DESIGNS:
        raise ValueError(f"design: expected one of {_DESIGNS}, got {design!r}")
    if expression is not None and expression not in _EXPRESSION:
        raise ValueError(f"expression: expected one of {_EXPRESSION}, got {expression!r}")
    given = {"block_m": block_m, "tile": tile, "num_warps": num_warps, "block_m_expression": block_m_expression,
             "max_chunk": max_chunk}
    for name, value in given.items():
        low = 1 if name == "num_warps" else 16
        if value is not None and (value < low or value & (value - 1)):
            raise ValueError(f"{name}: expected a power of two >= {low}, got {value}")
    if programs_per_sm is not None and (not isinstance(programs_per_sm, int) or programs_per_sm < 1):
        raise ValueError(f"programs_per_sm: expected a positive integer, got {programs_per_sm}")
    if num_stages is not None and (not isinstance(num_stages, int) or num_stages < 0):
        raise ValueError(f"num_stages: expected a non-negative integer (0: auto), got {num_stages}")
    if chunk_points is not None and (not isinstance(chunk_points, int) or chunk_points < 0):
        raise ValueError(f"chunk_points: expected a non-negative integer (0: the model's chunk_size), got {chunk_points}")
    if design is not None:
        _launch.update(design=design, **_PRESETS[design])
    _launch.update({k: v for k, v in given.items() if v is not None})
    _launch.update({k: v for k, v in (("programs_per_sm", programs_per_sm), ("num_stages", num_stages),
                                      ("expression", expression), ("chunk_points", chunk_points)) if v is not None})
    return dict(_launch)


def chunk_points(model) -> int:
    """Points per chunk of a triton-path query of ``model`` (``configure(chunk_points=...)``)."""
    return _launch["chunk_points"] or model.config.chunk_size


def set_precision(mode: str) -> None:
    """Products in the kernels: ``"ieee"`` (exact float32 FMA, the default), ``"tf32x3"`` (float32 emulated
    by three TF32 tensor-core products), ``"tf32"`` (one TF32 product, ~1e-3 relative) or ``"fp16"``
    (registers design only: weights and activations rounded to float16 for the products, float32
    sums; the mantissa of TF32 at twice its tensor-core rate, half the shared memory per weight tile)."""
    if mode not in PRECISIONS:
        raise ValueError(f"mode: expected one of {PRECISIONS}, got {mode!r}")
    _precision["mode"] = mode


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _tiles(hp: int) -> tuple[int, int]:
    t = min(_launch["tile"], hp)
    return t, t


# ---------------------------------------------------------------------------------- identity ensemble
def block_layout(types: torch.Tensor, n_types: int, bm: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows grouped by type in blocks of ``bm`` (fused-MoE layout), without a host sync.

    Returns ``sorted_ids (n_blocks * bm,)`` (row ids, -1 for padding) and ``block_type (n_blocks,)``
    (-1 for unused blocks), with ``n_blocks = ceil(rows / bm) + n_types`` (an upper bound).
    """
    bm = bm or _launch["block_m"]
    n = types.numel()
    dev = types.device
    counts = torch.zeros(n_types, dtype=torch.long, device=dev).index_add_(0, types, torch.ones_like(types))  # no sync
    blocks = (counts + bm - 1) // bm
    first_block = torch.cumsum(blocks, 0) - blocks
    type_start = torch.cumsum(counts, 0) - counts
    order = fast.order_by_type(types, n_types)
    sorted_types = types[order]
    pos = torch.arange(n, device=dev) - type_start[sorted_types]
    slot = first_block[sorted_types] * bm + pos
    n_blocks = (n + bm - 1) // bm + n_types
    sorted_ids = torch.full((n_blocks * bm,), -1, dtype=torch.int32, device=dev)
    sorted_ids[slot] = order.to(torch.int32)
    # block b belongs to the first type whose blocks end after b (searchsorted: no host sync, unlike
    # repeat_interleave, whose output size the host must learn); past the last type's blocks: -1
    owner = torch.searchsorted(torch.cumsum(blocks, 0), torch.arange(n_blocks, device=dev), right=True)
    block_type = torch.where(owner < n_types, owner, -1).to(torch.int32)
    return sorted_ids, block_type


def _ensemble_weights(model):
    ens, cfg = model.ensemble, model.config
    d0 = cfg.lat_dim_glob + cfg.lat_dim_loc
    w0d = ens.weights[0][:, :, d0:].detach().contiguous()
    wh = torch.stack([w.detach() for w in ens.weights[1:-1]], dim=1).contiguous()  # (T, NH, H, H)
    bh = torch.stack([b.detach() for b in ens.biases[1:-1]], dim=1).contiguous()
    wout = ens.weights[-1][:, 0, :].detach().contiguous()
    bout = ens.biases[-1][:, 0].detach().contiguous()
    return w0d, wh, bh, wout, bout


class _Ensemble(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, delta, rows, types, model):
        cfg = model.config
        h, d, nh = cfg.id_hidden, cfg.query_dim, cfg.id_layers - 1
        hp = _pad(h)
        bn, bk = _tiles(hp)
        weights = cached(model, ("scratch identity",), model.ensemble, lambda: _ensemble_weights(model))
        bm = _launch["block_m"]
        sorted_ids, block_type = block_layout(types, cfg.n_types, bm)
        n_blocks = block_type.numel()
        out = torch.zeros(rows.numel(), dtype=table.dtype, device=table.device)
        scratch = torch.empty(n_blocks * 2 * bm * hp, dtype=table.dtype, device=table.device)
        table_c, delta_c = table.detach().contiguous(), delta.detach().contiguous()
        launch = {"BN": bn, "BK": bk, "PRECISION": _scratch_precision(), "num_warps": _launch["num_warps"]}
        ensemble_forward_kernel[(n_blocks,)](
            table_c, rows, delta_c, sorted_ids, block_type, *weights, out, scratch, h, nh, d, cfg.softplus_beta,
            HP=hp, BM=bm, **launch,
        )
        ctx.save_for_backward(table_c, delta_c, rows, sorted_ids, block_type)
        ctx.model, ctx.weights, ctx.bm, ctx.launch = model, weights, bm, launch  # the backward runs as the forward did
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        table, delta, rows, sorted_ids, block_type = ctx.saved_tensors
        cfg = ctx.model.config
        h, d, nh = cfg.id_hidden, cfg.query_dim, cfg.id_layers - 1
        hp = _pad(h)
        w0d, wh, bh, wout, _ = ctx.weights
        bm = ctx.bm
        n_blocks = block_type.numel()
        grad_pre0 = torch.zeros(rows.numel(), h, dtype=table.dtype, device=table.device)
        grad_delta = torch.zeros_like(delta)
        scratch = torch.empty(n_blocks * 2 * bm * hp, dtype=table.dtype, device=table.device)
        pres = torch.empty(n_blocks * (nh + 1) * bm * hp, dtype=table.dtype, device=table.device)
        ensemble_backward_kernel[(n_blocks,)](
            table, rows, delta, sorted_ids, block_type, w0d, wh, bh, wout, grad_out.contiguous(), grad_pre0,
            grad_delta, scratch, pres, h, nh, d, cfg.softplus_beta, HP=hp, BM=bm, **ctx.launch,
        )
        grad_table = torch.zeros_like(table).index_add_(0, rows.long(), grad_pre0)
        return grad_table, grad_delta, None, None, None


def identity_chunk(model, prep: fast.IdentityPrep, q: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
    """Identity SDF ``(P,)`` of flat canonical queries (the kernel runs the MLPs, torch the blending)."""
    cfg = model.config
    slots, delta, w, _ = fast._neighbourhood(model, prep, q, bidx)
    types = model.slot_types[slots].reshape(-1)
    rows = (bidx[:, None] * (cfg.n_anchors + 1) + slots).reshape(-1).to(torch.int32)
    delta = delta.reshape(-1, cfg.query_dim)
    if _launch["design"] == "registers":
        sorted_ids, block_type = block_layout(types, cfg.n_types, _launch["block_m"])
        f = ops_chunked.EnsembleChunked.apply(
            prep.first_layer, delta, rows, sorted_ids, block_type, model, dict(_launch), _precision["mode"]
        )
    else:
        f = _Ensemble.apply(prep.first_layer, delta, rows, types, model)
    return (w * f.view(w.shape)).sum(-1)


# ---------------------------------------------------------------------------------- expression MLP
def _expression_weights(model):
    cfg, layers = model.config, model.expression.layers
    e = cfg.ex_hidden
    skip = cfg.ex_skip
    s2 = math.sqrt(2.0)
    w0x = layers[0].weight[:, :3].detach().contiguous()
    hidden, biases = [], []
    for i in range(1, len(layers) - 1):
        if i == skip:
            hidden.append(layers[i].weight[:, :e].detach() / s2)
            biases.append(torch.zeros_like(layers[i].bias))
        else:
            hidden.append(layers[i].weight.detach())
            biases.append(layers[i].bias.detach())
    wsx = (layers[skip].weight[:, e : e + 3].detach() / s2).contiguous()
    wh, bh = torch.stack(hidden).contiguous(), torch.stack(biases).detach().contiguous()
    wout, bout = layers[-1].weight.detach().contiguous(), layers[-1].bias.detach().contiguous()
    return w0x, wh, bh, wsx, wout, bout


class _Expression(torch.autograd.Function):
    @staticmethod
    def forward(ctx, first, skip, x, bidx, model):
        cfg = model.config
        e, nh, out_dim = cfg.ex_hidden, cfg.ex_layers - 1, cfg.ex_out
        hp = _pad(e)
        bn, bk = _tiles(hp)
        w0x, wh, bh, wsx, wout, bout = cached(model, ("scratch expression",), model.expression,
                                              lambda: _expression_weights(model))
        p = x.shape[0]
        bm = _launch["block_m"]
        launch = {"BM": bm, "BN": bn, "BK": bk, "PRECISION": _scratch_precision(), "num_warps": _launch["num_warps"]}
        n_blocks = max(triton.cdiv(p, bm), 1)
        out = torch.zeros(p, out_dim, dtype=x.dtype, device=x.device)
        scratch = torch.empty(n_blocks * 2 * bm * hp, dtype=x.dtype, device=x.device)
        first_c, skip_c, x_c = first.detach().contiguous(), skip.detach().contiguous(), x.detach().contiguous()
        bidx32 = bidx.to(torch.int32)
        expression_forward_kernel[(n_blocks,)](
            x_c, bidx32, first_c, skip_c, w0x, wh, bh, wsx, wout, bout, out, scratch, p, e, nh, cfg.ex_skip - 1,
            out_dim, cfg.softplus_beta, HP=hp, OP=_pad(out_dim), **launch,
        )
        ctx.save_for_backward(first_c, skip_c, x_c, bidx32)
        ctx.model, ctx.weights, ctx.launch = model, (w0x, wh, bh, wsx, wout, bout), launch
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        first, skip, x, bidx = ctx.saved_tensors
        cfg = ctx.model.config
        e, nh, out_dim = cfg.ex_hidden, cfg.ex_layers - 1, cfg.ex_out
        hp = _pad(e)
        w0x, wh, bh, wsx, wout, _ = ctx.weights
        p = x.shape[0]
        bm = ctx.launch["BM"]
        n_blocks = max(triton.cdiv(p, bm), 1)
        grad_x = torch.zeros_like(x)
        grad_first_rows = torch.zeros(p, e, dtype=x.dtype, device=x.device)
        grad_skip_rows = torch.zeros(p, e, dtype=x.dtype, device=x.device)
        scratch = torch.empty(n_blocks * 2 * bm * hp, dtype=x.dtype, device=x.device)
        pres = torch.empty(n_blocks * (nh + 1) * bm * hp, dtype=x.dtype, device=x.device)
        expression_backward_kernel[(n_blocks,)](
            x, bidx, first, skip, w0x, wh, bh, wsx, wout, grad_out.contiguous(), grad_x, grad_first_rows,
            grad_skip_rows, scratch, pres, p, e, nh, cfg.ex_skip - 1, out_dim, cfg.softplus_beta,
            HP=hp, OP=_pad(out_dim), **ctx.launch,
        )
        idx = bidx.long()
        grad_first = torch.zeros_like(first).index_add_(0, idx, grad_first_rows)
        grad_skip = torch.zeros_like(skip).index_add_(0, idx, grad_skip_rows)
        return grad_first, grad_skip, grad_x, None, None


def _expression_on_torch(x: torch.Tensor) -> bool:
    """The registers design's expression kernel fits an H100 only in TF32 and fp16 (sm_90 compiler:
    164 / 82 KiB of shared memory; tf32x3 needs 328 KiB of the 227, ieee compiles to FMA code
    spilling 149 KiB per thread, benchmarks/RESULTS.md): on CUDA in the float32-accurate modes this
    dense MLP runs on the torch path (cuBLAS) unless ``configure(expression="kernel")``. The
    interpreter always runs the kernel."""
    mode = _launch["expression"]
    if mode == "auto":
        return x.is_cuda and _precision["mode"] not in ("tf32", "fp16")
    return mode == "torch"


def _scratch_precision() -> str:
    """The scratch design's kernels take ``tl.dot``'s input precisions only."""
    mode = _precision["mode"]
    if mode == "fp16":
        raise ValueError(
            "precision 'fp16' runs in the registers design only: configure(design='registers'), or "
            "set_precision('tf32') for the scratch design"
        )
    return mode


def expression_chunk(model, prep: fast.ExpressionPrep, x: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
    """Expression MLP output ``(P, 3 + n_hyper)`` of flat points ``x (P, 3)``."""
    if _launch["design"] == "registers" and _expression_on_torch(x):
        return fast.expression_chunk(model, prep, x, bidx)
    if _launch["design"] == "registers":
        return ops_chunked.ExpressionChunked.apply(
            prep.first, prep.skip, x, bidx, model, dict(_launch), _precision["mode"]
        )
    return _Expression.apply(prep.first, prep.skip, x, bidx, model)


# ---------------------------------------------------------------------------------- NPHM entry points
def _graph(model, *tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def identity_sdf(model, canonical_points: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
    graph = _graph(model, canonical_points, z_id)
    with torch.set_grad_enabled(graph):
        prep = fast.prepare_identity(model, z_id)
        return model._chunked(canonical_points, lambda q, b: identity_chunk(model, prep, q, b)[:, None], 1, graph,
                              chunk_points(model))


def canonical(model, points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor) -> torch.Tensor:
    graph = _graph(model, points, z_id, z_ex)
    with torch.set_grad_enabled(graph):
        prep = fast.prepare_expression(model, z_id, z_ex)

        def run(x, b):
            d = expression_chunk(model, prep, x, b)
            return torch.cat([x + d[:, :3], d[:, 3:]], dim=-1)

        return model._chunked(points, run, model.config.query_dim, graph, chunk_points(model))


def sdf(model, points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor) -> torch.Tensor:
    graph = _graph(model, points, z_id, z_ex)
    with torch.set_grad_enabled(graph):
        anc = reference.anchors(model, z_id)
        id_prep = fast.prepare_identity(model, z_id, anc)
        ex_prep = fast.prepare_expression(model, z_id, z_ex, anc)

        def run(x, b):
            d = expression_chunk(model, ex_prep, x, b)
            q = torch.cat([x + d[:, :3], d[:, 3:]], dim=-1)
            return identity_chunk(model, id_prep, q, b)[:, None]

        return model._chunked(points, run, 1, graph, chunk_points(model))
