"""The NPHM decoder: MonoNPHM's identity SDF and backward expression deformation (geometry only).

Frames and units: points are in NPHM space (FLAME x 4, 1 unit = 25 cm, y up, z forward). Codes:
``z_id (B, id_dim)`` = [global | (n_anchors + 1) x local], ``z_ex (B, lat_dim_ex)``.

Memory: without an autograd graph (``torch.no_grad()``, or nothing requires grad) every query
runs in chunks of ``config.chunk_size`` points, so peak memory is bounded by the chunk
(about ``chunk_size * (n_neighbors + 1) * id_hidden * 4`` floats, ~170 MB at the official sizes
and the default 4096) whatever N is. With a graph, memory grows with N like any autograd call.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from nphmkit._backend import resolve_backend
from nphmkit._checks import check_tensor
from nphmkit.nphm import reference, vectorized
from nphmkit.nphm.anchors import default_mean_anchors
from nphmkit.nphm.config import NPHMConfig
from nphmkit.nphm.field import NPHMField
from nphmkit.nphm.layout import slot_flips, slot_types
from nphmkit.nphm.modules import AnchorMLP, ExpressionMLP, IdentityEnsemble
from nphmkit.weights import WeightFolderMixin


class NPHM(WeightFolderMixin, nn.Module):
    """MonoNPHM geometry decoder with interchangeable query backends.

    Args:
        config: sizes; defaults to :meth:`NPHMConfig.mononphm`.
        mean_anchors: ``(n_anchors, 3)`` mean anchor positions in NPHM units; defaults to a
            deterministic placeholder layout (:func:`default_mean_anchors`).

    Every query method takes ``backend="auto" | "reference" | "torch" | "triton"`` (docs/contracts.md).
    """

    _folder_kind = "NPHM"
    _config_class = NPHMConfig

    def __init__(self, config: NPHMConfig | None = None, mean_anchors: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config = config or NPHMConfig.mononphm()
        if mean_anchors is None:
            mean_anchors = default_mean_anchors(config)
        check_tensor("mean_anchors", torch.as_tensor(mean_anchors), (config.n_anchors, 3), finite=True)
        self.register_buffer("mean_anchors", torch.as_tensor(mean_anchors, dtype=torch.float32).clone())
        self.register_buffer("slot_types", slot_types(config), persistent=False)
        self.register_buffer("slot_flips", slot_flips(config), persistent=False)
        self.ensemble = IdentityEnsemble(config)
        self.anchor_mlp = AnchorMLP(config)
        self.expression = ExpressionMLP(config)
        self.metadata: dict[str, Any] = {}
        """Free-form facts about the weights (e.g. what they were trained on), saved with them."""

    # ------------------------------------------------------------------ checks / helpers
    def _param(self) -> torch.Tensor:
        return self.ensemble.weights[0]

    def _check_codes(self, z_id: torch.Tensor, z_ex: torch.Tensor | None, batch: int | None = None) -> int:
        cfg = self.config
        check_tensor("z_id", z_id, ("B", cfg.id_dim), finite=True)
        b = z_id.shape[0] if batch is None else batch
        if z_id.shape[0] != b:
            raise ValueError(f"z_id: expected batch size {b} (the batch of points), got {z_id.shape[0]}")
        if z_ex is not None:
            check_tensor("z_ex", z_ex, ("B", cfg.lat_dim_ex), finite=True)
            if z_ex.shape[0] != b:
                raise ValueError(f"z_ex: expected batch size {b} (the batch of z_id/points), got {z_ex.shape[0]}")
        ref = self._param()
        for name, t in (("z_id", z_id), ("z_ex", z_ex)):
            if t is not None and (t.dtype != ref.dtype or t.device != ref.device):
                raise TypeError(
                    f"{name}: expected dtype {ref.dtype} on {ref.device} (the model's), got {t.dtype} on {t.device}"
                )
        return b

    def _check_points(self, name: str, points: torch.Tensor, last: int) -> None:
        check_tensor(name, points, ("B", "N", last), finite=True)
        ref = self._param()
        if points.dtype != ref.dtype or points.device != ref.device:
            raise TypeError(
                f"{name}: expected dtype {ref.dtype} on {ref.device} (the model's), got {points.dtype} on {points.device}"
            )

    def _needs_graph(self, *tensors: torch.Tensor | None) -> bool:
        if not torch.is_grad_enabled():
            return False
        if any(t is not None and t.requires_grad for t in tensors):
            return True
        return any(p.requires_grad for p in self.parameters())

    def _backend(self, backend: str, points: torch.Tensor, double_backward: bool = False,
                 graph_wanted: bool = True) -> str:
        """Resolve ``backend`` for queries ``points``. The Triton kernels compute in float32 and give
        gradients w.r.t. points and codes only: for other dtypes, with grad mode on and weights that
        require grad (unless ``graph_wanted=False``: the caller returns no graph), or when a double
        backward is needed, "auto" uses the torch path and an explicit "triton" is an error."""
        device = points.device
        name = resolve_backend(backend, is_cuda=device.type == "cuda", needs_double_backward=double_backward)
        if name != "triton":
            return name
        if points.dtype != torch.float32:  # the points have the weights' dtype (_check_points)
            if backend == "auto":
                return "torch"
            raise ValueError(
                f"backend='triton' computes in float32, got a model and points of {points.dtype}; use "
                "backend='torch' (or 'reference') for other dtypes, or convert with model.float() and points.float()"
            )
        weight_grads = graph_wanted and torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if weight_grads or double_backward:
            if backend == "auto":
                return "torch"
            why = "a double backward (create_graph=True)" if double_backward else "gradients w.r.t. the weights"
            raise ValueError(
                f"backend='triton' cannot give {why}; use backend='torch', or freeze the weights "
                "(model.requires_grad_(False)) / run under torch.no_grad() when you only need point or code gradients"
            )
        from nphmkit.kernels import require_kernels

        require_kernels()
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(
                f"backend='triton' runs on CUDA tensors, got points on {device}; move the model and inputs to a "
                "GPU (model.cuda(), x.cuda()), use backend='torch', or set TRITON_INTERPRET=1 to run the kernels "
                "on the CPU interpreter"
            )
        return name

    def _neutral(self, points: torch.Tensor) -> torch.Tensor:
        zeros = points.new_zeros(*points.shape[:-1], self.config.n_hyper)
        return torch.cat([points, zeros], dim=-1)

    # ------------------------------------------------------------------ queries
    def anchors(self, z_id: torch.Tensor) -> torch.Tensor:
        """Predicted anchor positions ``(B, n_anchors, 3)`` (NPHM units) for ``z_id (B, id_dim)``."""
        self._check_codes(z_id, None)
        return reference.anchors(self, z_id)

    def canonical(
        self, points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor, backend: str = "auto"
    ) -> torch.Tensor:
        """Canonical queries ``(B, N, 3 + n_hyper)`` = [x + offset, hyper] of posed ``points (B, N, 3)``."""
        self._check_points("points", points, 3)
        self._check_codes(z_id, z_ex, points.shape[0])
        name = self._backend(backend, points)
        if name == "reference":
            return reference.canonical(self, points, z_id, z_ex)
        if name == "triton":
            from nphmkit.nphm import fused

            return fused.canonical(self, points, z_id, z_ex)
        graph = self._needs_graph(points, z_id, z_ex)
        with torch.set_grad_enabled(graph):
            prep = vectorized.prepare_expression(self, z_id, z_ex)

            def run(x: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
                d = vectorized.expression_chunk(self, prep, x, bidx)
                return torch.cat([x + d[:, :3], d[:, 3:]], dim=-1)

            return self._chunked(points, run, self.config.query_dim, graph)

    def identity_sdf(self, canonical_points: torch.Tensor, z_id: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """Identity SDF ``(B, N, 1)`` of canonical queries ``(B, N, 3 + n_hyper)``.

        A last dimension of 3 means hyper coordinates 0 (the closed-mouth neutral).
        """
        cfg = self.config
        neutral = isinstance(canonical_points, torch.Tensor) and canonical_points.shape[-1:] == (3,)
        self._check_points("canonical_points", canonical_points, 3 if neutral else cfg.query_dim)
        if neutral:
            canonical_points = self._neutral(canonical_points)
        self._check_codes(z_id, None, canonical_points.shape[0])
        name = self._backend(backend, canonical_points)
        if name == "reference":
            return reference.identity_sdf(self, canonical_points, z_id)
        if name == "triton":
            from nphmkit.nphm import fused

            return fused.identity_sdf(self, canonical_points, z_id)
        graph = self._needs_graph(canonical_points, z_id)
        with torch.set_grad_enabled(graph):
            prep = vectorized.prepare_identity(self, z_id)
            run = lambda q, bidx: vectorized.identity_chunk(self, prep, q, bidx)[:, None]  # noqa: E731
            return self._chunked(canonical_points, run, 1, graph)

    def sdf(
        self, points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor | None, backend: str = "auto"
    ) -> torch.Tensor:
        """Signed distance ``(B, N, 1)`` (NPHM units) of posed ``points (B, N, 3)``.

        ``z_ex=None`` gives the neutral head (identity SDF at hyper coordinates 0).
        """
        if z_ex is None:
            return self.identity_sdf(points, z_id, backend=backend)
        self._check_points("points", points, 3)
        self._check_codes(z_id, z_ex, points.shape[0])
        name = self._backend(backend, points)
        if name == "reference":
            return reference.sdf(self, points, z_id, z_ex)
        if name == "triton":
            from nphmkit.nphm import fused

            return fused.sdf(self, points, z_id, z_ex)
        graph = self._needs_graph(points, z_id, z_ex)
        with torch.set_grad_enabled(graph):
            return self._sdf_prepared(points, *self._prepare(z_id, z_ex), graph)

    def _prepare(self, z_id: torch.Tensor, z_ex: torch.Tensor) -> tuple[vectorized.IdentityPrep, vectorized.ExpressionPrep]:
        """The per-sample constants of the torch path (anchors, code parts of the first layers)."""
        anc = reference.anchors(self, z_id)
        return vectorized.prepare_identity(self, z_id, anc), vectorized.prepare_expression(self, z_id, z_ex, anc)

    def _sdf_prepared(self, points: torch.Tensor, id_prep: vectorized.IdentityPrep,
                      ex_prep: vectorized.ExpressionPrep, graph: bool) -> torch.Tensor:
        """``sdf`` on the torch path from :meth:`_prepare`'s constants (inputs already checked)."""

        def run(x: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
            d = vectorized.expression_chunk(self, ex_prep, x, bidx)
            q = torch.cat([x + d[:, :3], d[:, 3:]], dim=-1)
            return vectorized.identity_chunk(self, id_prep, q, bidx)[:, None]

        return self._chunked(points, run, 1, graph)

    def sdf_and_normals(
        self,
        points: torch.Tensor,
        z_id: torch.Tensor,
        z_ex: torch.Tensor | None,
        backend: str = "auto",
        create_graph: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SDF ``(B, N, 1)`` and unit normals ``(B, N, 3)`` (normalized SDF gradient) of ``points (B, N, 3)``.

        ``create_graph`` follows ``torch.autograd.grad``: ``False`` (default): neither output
        carries a graph, whatever requires grad; the "torch" backend then computes the gradient by
        an explicit backward pass (no autograd), in chunks of bounded memory, and the "triton"
        backend by its backward kernels. ``True``: both outputs keep a graph to the points, codes
        and weights (normal or eikonal losses; a double backward; memory grows with N).
        """
        sdf, grad = self.sdf_and_gradient(points, z_id, z_ex, backend=backend, create_graph=create_graph)
        return sdf, grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def sdf_and_gradient(
        self,
        points: torch.Tensor,
        z_id: torch.Tensor,
        z_ex: torch.Tensor | None,
        backend: str = "auto",
        create_graph: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`sdf_and_normals` but the gradient ``(B, N, 3)`` is not normalized (eikonal losses)."""
        self._check_points("points", points, 3)
        self._check_codes(z_id, z_ex, points.shape[0])
        if not isinstance(create_graph, bool):
            raise TypeError(f"create_graph: expected True or False, got {create_graph!r}")
        name = self._backend(backend, points, double_backward=create_graph, graph_wanted=create_graph)
        if name == "torch" and not create_graph:
            return self._sdf_and_grad_explicit(points, z_id, z_ex)
        if name == "triton" and not create_graph:
            return self._sdf_and_grad_chunked(points, z_id, z_ex)
        return self._sdf_and_grad_autograd(points, z_id, z_ex, name, create_graph)

    def _sdf_and_grad_chunked(self, points, z_id, z_ex):
        """No graph wanted: the kernels' backward one chunk of points at a time (bounded memory)."""
        from nphmkit.nphm import fused

        b, n, _ = points.shape
        step = max(1, fused.chunk_points(self) // b)
        sdf, grad = points.new_empty(b, n, 1), points.new_empty(b, n, 3)
        z_id = z_id.detach()
        z_ex = None if z_ex is None else z_ex.detach()
        with torch.enable_grad():
            for s in range(0, n, step):
                x = points[:, s : s + step].detach().requires_grad_(True)
                f = fused.identity_sdf(self, self._neutral(x), z_id) if z_ex is None else fused.sdf(self, x, z_id, z_ex)
                (g,) = torch.autograd.grad(f.sum(), x)
                sdf[:, s : s + step], grad[:, s : s + step] = f.detach(), g
        return sdf, grad

    def _sdf_and_grad_autograd(self, points, z_id, z_ex, backend, create_graph):
        with torch.enable_grad():
            x = points if (points.requires_grad and create_graph) else points.detach().requires_grad_(True)
            sdf = self.sdf(x, z_id, z_ex, backend=backend)
            (grad,) = torch.autograd.grad(sdf.sum(), x, create_graph=create_graph)
        if not create_graph:
            sdf, grad = sdf.detach(), grad.detach()
        return sdf, grad

    @torch.no_grad()
    def _sdf_and_grad_explicit(self, points, z_id, z_ex):
        anc = reference.anchors(self, z_id)
        id_prep = vectorized.prepare_identity(self, z_id, anc)
        if z_ex is None:

            def run(x: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
                value, g = vectorized.identity_chunk_with_grad(self, id_prep, self._neutral(x), bidx)
                return torch.cat([value[:, None], g[:, :3]], dim=-1)

        else:
            ex_prep = vectorized.prepare_expression(self, z_id, z_ex, anc)

            def run(x: torch.Tensor, bidx: torch.Tensor) -> torch.Tensor:
                grad_fn = lambda q: vectorized.identity_chunk_with_grad(self, id_prep, q, bidx)  # noqa: E731
                value, g = vectorized.expression_chunk_vjp(self, ex_prep, x, bidx, grad_fn)
                return torch.cat([value[:, None], g], dim=-1)

        out = self._chunked(points, run, 4, graph=False)
        return out[..., :1], out[..., 1:]

    def _chunked(self, points: torch.Tensor, run, width: int, graph: bool, step: int | None = None) -> torch.Tensor:
        """Apply ``run(flat_points (P, C), sample_index (P,)) -> (P, width)`` in chunks of ``step`` points
        (default ``config.chunk_size``)."""
        b, n, c = points.shape
        flat = points.reshape(b * n, c)
        bidx = torch.arange(b, device=points.device).repeat_interleave(n)
        step = step or self.config.chunk_size
        if graph:
            outs = [run(flat[s : s + step], bidx[s : s + step]) for s in range(0, b * n, step)]
            out = torch.cat(outs) if outs else flat.new_zeros(0, width)
            return out.reshape(b, n, width)
        out = flat.new_empty(b * n, width)
        for s in range(0, b * n, step):
            out[s : s + step] = run(flat[s : s + step], bidx[s : s + step])
        return out.reshape(b, n, width)

    def field(self, z_id: torch.Tensor, z_ex: torch.Tensor | None = None, backend: str = "auto") -> NPHMField:
        """A batched field ``points (B, N, 3) -> (B, N)`` for these codes (:class:`nphmkit.protocols.Field`).

        ``z_ex=None`` gives the neutral head. The codes are captured, not copied: gradients flow
        into them when the caller's graph needs it. The field has both optional capabilities:
        ``sdf_and_gradient(points, create_graph=False)`` (without a graph: the fast explicit
        backward) and ``canonical(points)``.
        """
        self._check_codes(z_id, z_ex)
        return NPHMField(self, z_id, z_ex, backend)

    # ------------------------------------------------------------------ HeadModel (nphmkit.protocols)
    @property
    def id_dim(self) -> int:
        """Identity code size (``config.id_dim``: 2176 at the official sizes)."""
        return self.config.id_dim

    @property
    def ex_dim(self) -> int:
        """Expression code size (``config.lat_dim_ex``: 100)."""
        return self.config.lat_dim_ex

    def initial_codes(self, batch: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero codes ``z_id (batch, id_dim)``, ``z_ex (batch, ex_dim)`` (the mean of the codes the model was
        trained with), on the model's device and dtype unless given."""
        ref = self._param()
        device, dtype = device or ref.device, dtype or ref.dtype
        return (torch.zeros(batch, self.id_dim, device=device, dtype=dtype),
                torch.zeros(batch, self.ex_dim, device=device, dtype=dtype))

    def code_regularizers(self, z_id: torch.Tensor, z_ex: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Named priors on the codes (scalars): ``id_global`` and ``id_local`` (mean squared norms of the
        global and of the local codes), ``ex`` (of ``z_ex``; 0 for None) and ``symmetry`` (mean distance
        between the local codes of mirrored anchor pairs)."""
        from nphmkit.losses.layout import CodeLayout
        from nphmkit.losses.regularizers import code_norms, expression_norm, symmetry_loss

        layout = CodeLayout.of(self.config)
        glob, local = code_norms(z_id, layout)
        ex = z_id.new_zeros(()) if z_ex is None else expression_norm(z_ex)
        return {"id_global": glob, "id_local": local, "ex": ex, "symmetry": symmetry_loss(z_id, layout)}

    @property
    def landmark_anchors(self) -> tuple[int, ...] | None:
        """The anchors that mark the 7 NoW landmarks (NoW order), or None: a property of the weights,
        stored in their metadata (the shipped small NPHM has one; official weights have none)."""
        value = self.metadata.get("landmark_anchors")
        return None if value is None else tuple(int(i) for i in value)

    @landmark_anchors.setter
    def landmark_anchors(self, value) -> None:
        n = self.config.n_anchors
        ids = list(value) if value is not None else None
        if ids is not None and (len(ids) != 7 or not all(isinstance(i, int) and 0 <= i < n for i in ids)):
            raise ValueError(f"landmark_anchors: expected 7 anchor indices in [0, {n}) in NoW order, got {value!r}")
        if ids is None:
            self.metadata.pop("landmark_anchors", None)
        else:
            self.metadata["landmark_anchors"] = ids

    def landmarks(self, z_id: torch.Tensor, z_ex: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
        """The 7 NoW landmarks ``(B, 7, 3)`` on the posed (``z_ex``) or neutral (None) surface, NPHM units.

        Each is the surface point whose canonical position is its landmark anchor
        (:attr:`landmark_anchors`; ``NotImplementedError`` without one), see :mod:`nphmkit.nphm.landmarks`.
        """
        from nphmkit.nphm.landmarks import landmarks_from_anchors

        if self.landmark_anchors is None:
            raise NotImplementedError(
                "these NPHM weights have no anchor-to-landmark mapping (official MonoNPHM weights have none): set "
                "model.landmark_anchors = [7 anchor indices in NoW order] first"
            )
        self._check_codes(z_id, z_ex)
        return landmarks_from_anchors(self, z_id, z_ex, self.landmark_anchors, backend)
