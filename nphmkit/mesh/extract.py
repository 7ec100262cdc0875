"""Marching cubes of an SDF on a grid: dense, or coarse-to-fine with far fewer SDF queries.

Coarse-to-fine evaluates the SDF on a grid of step ``2**levels`` voxels, then halves the step
``levels`` times; at each level it refines only the cells that can hold the surface. Every
point of a cell lies within half a cell diagonal of its nearest corner, so if the corners
share one sign and all have ``|sdf| > margin * diagonal / 2``, and the field's Lipschitz
constant is at most ``margin``, the cell holds no surface. Points of cells that are not
refined take the trilinear interpolation of the corners, which keeps the corners' common
sign, so those cells yield no triangles. Where the field honours the bound the result equals
dense extraction at the same resolution (``margin=1`` suffices for true distances).

Learned SDFs break the bound in places (the shipped small NPHM's gradient reaches 1.45 near its
surface), so the finest grid is then followed along the surface: every cell whose corners
change sign but were not all evaluated gets its corners evaluated, until there is none. A
surface reached anywhere by the refinement is then traced exactly as dense extraction would;
only a component that lies wholly inside cells the bound wrongly ruled out can be missed.

A flagged cell of the two finest levels holds a shell of points, most of them well off the
surface. With ``band``, such a point is evaluated only where its trilinear estimate lies within
``band`` x the new level's cell diagonal of the level set; the others keep the estimate. Marching
cubes reads only signs and the values of crossing cells' corners (which the surface following
evaluates), so the result still equals dense extraction wherever every estimate left in place has
the right sign, i.e. wherever trilinear interpolation errs by less than the band. On the shipped
small NPHM at 128^3 this cuts the queries from ~213k to ~79k with the same triangles.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nphmkit._progress import progress_bar
from nphmkit.fields import UnbatchedField, unbatched
from nphmkit.mesh.mesh import Mesh
from nphmkit.protocols import CanonicalField, GradientField

SdfFn = Callable[[torch.Tensor], torch.Tensor]

#: The reconstruction box of the official MonoNPHM fitting, in NPHM units: (min xyz, max xyz).
NPHM_BOUNDS = ((-0.55, -0.5, -0.95), (0.55, 0.75, 0.4))


def _as_bounds(bounds) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(bounds, dtype=np.float64)
    if arr.shape != (2, 3) or not np.all(arr[1] > arr[0]):
        raise ValueError(f"bounds: expected ((xmin, ymin, zmin), (xmax, ymax, zmax)) with max > min, got {bounds!r}")
    return arr[0], arr[1]


def _as_resolution(resolution) -> tuple[int, int, int]:
    try:  # an integer (numpy and 0-d torch integers too), or three of them; never a float or a bool
        if isinstance(resolution, (bool, str, bytes)):
            raise TypeError
        res = (operator.index(resolution),) * 3 if np.ndim(resolution) == 0 else tuple(operator.index(r) for r in resolution)
    except TypeError:
        res = ()
    if len(res) != 3 or min(res) < 2:
        raise ValueError(f"resolution: expected an int >= 2 or three of them (grid points per axis), got {resolution!r}")
    return res


class _Evaluator:
    """Evaluates ``sdf_fn`` on grid indices, in chunks, counting queries, with a progress bar."""

    def __init__(self, sdf_fn: SdfFn, origin, spacing, chunk: int, device, total_hint: int, progress: bool | None,
                 level: float = 0.0):
        self.sdf_fn = sdf_fn
        self.level = level
        self.origin = torch.as_tensor(origin, dtype=torch.float32, device=device)
        self.spacing = torch.as_tensor(spacing, dtype=torch.float32, device=device)
        self.chunk = chunk
        self.device = device
        self.count = 0
        self.bar = progress_bar(progress=progress, total=total_hint, unit="pt", unit_scale=True, desc="SDF queries",
                                leave=False)

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        """``sdf - level`` at integer grid indices ``(P, 3)`` -> ``(P,)`` float32 on the CPU."""
        out = torch.empty(index.shape[0], dtype=torch.float32)
        with torch.no_grad():
            for s in range(0, index.shape[0], self.chunk):
                idx = index[s : s + self.chunk].to(self.device)
                pts = self.origin + idx.to(torch.float32) * self.spacing
                val = self.sdf_fn(pts)
                if val.shape != (pts.shape[0],):
                    raise ValueError(
                        f"sdf_fn: expected an unbatched field (N, 3) -> (N,) or a batched field (1, N, 3) -> (1, N); "
                        f"for points {tuple(pts.shape)} it returned {tuple(val.shape)}"
                    )
                out[s : s + idx.shape[0]] = val.detach().float().cpu() - self.level
                self.bar.update(idx.shape[0])
        self.count += index.shape[0]
        return out

    def close(self) -> None:
        """End the bar at 100 %: its total was an estimate (coarse-to-fine skips most of the grid)."""
        self.bar.total = self.bar.n
        self.bar.refresh()
        self.bar.close()


def _is_batched(sdf_fn: SdfFn, device) -> bool:
    """Whether ``sdf_fn`` is a batched field: nphmkit's fields with a capability are (unless wrapped by
    :func:`nphmkit.fields.unbatched`); a plain callable is if it maps two points ``(1, 2, 3)`` to
    ``(1, 2)`` (an elementwise function works either way)."""
    if isinstance(sdf_fn, UnbatchedField):
        return False
    if isinstance(sdf_fn, (GradientField, CanonicalField)):
        return True
    probe = torch.zeros(1, 2, 3, device=device)
    try:
        with torch.no_grad():
            out = sdf_fn(probe)
    except Exception:  # an unbatched function refusing (1, 2, 3): the unbatched path reports real errors
        return False
    return isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 2)


def _grid_indices(shape: Sequence[int], step: int) -> torch.Tensor:
    axes = [torch.arange(n) * step for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def _dense_values(ev: _Evaluator, res: Sequence[int]) -> torch.Tensor:
    return ev(_grid_indices(res, 1)).reshape(*res)


#: The finest levels whose flagged cells evaluate only the points near the level set (``band``).
BAND_LEVELS = 2

_CORNERS = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]


def _corner(grid: torch.Tensor, offset) -> torch.Tensor:
    """The view of a grid ``(X, Y, Z)`` at one corner ``offset`` of each cell: ``(X-1, Y-1, Z-1)``."""
    a, b, c = offset
    return grid[a : grid.shape[0] - 1 + a, b : grid.shape[1] - 1 + b, c : grid.shape[2] - 1 + c]


def _cell_reduce(grid: torch.Tensor, op) -> torch.Tensor:
    """``op`` (e.g. ``torch.minimum``, ``torch.logical_or``) over each cell's 8 corners: ``(X, Y, Z)`` ->
    ``(X-1, Y-1, Z-1)``. Elementwise over views: several times faster than ``max_pool3d`` on the CPU."""
    out = _corner(grid, _CORNERS[0]).clone()
    for offset in _CORNERS[1:]:
        out = op(out, _corner(grid, offset), out=out)
    return out


def _crossing_cells(values: torch.Tensor) -> torch.Tensor:
    """Cells whose corners hold both a positive and a non-positive value: ``(X-1, Y-1, Z-1)`` bool."""
    pos = values > 0
    return _cell_reduce(pos, torch.logical_or) & ~_cell_reduce(pos, torch.logical_and)


def _coarse_to_fine_values(
    ev: _Evaluator, res: Sequence[int], spacing, levels: int, margin: float, follow: bool = True,
    band: float | None = None,
) -> torch.Tensor:
    """Values on the fine grid ``res``, evaluated only near the surface.

    Each level evaluates the next level's points inside the cells that can hold the surface
    (a sign change, or a corner closer to it than ``margin`` x the half cell diagonal); elsewhere
    the values are trilinear (same sign as the cell's corners). With ``band``, the
    ``BAND_LEVELS`` finest levels evaluate only the points of those cells whose trilinear
    estimate is within ``band`` x the new cell diagonal of the level set. With ``follow``,
    cells of the final grid whose corners change sign but were not all evaluated get evaluated,
    repeatedly, so the surface is followed wherever the Lipschitz bound ``margin`` (or the band)
    was too tight.
    """
    top = 2**levels
    cells = [math.ceil((r - 1) / top) for r in res]  # cells per axis at the top level
    values = ev(_grid_indices([c + 1 for c in cells], top)).reshape(*[c + 1 for c in cells])
    exact = torch.ones_like(values, dtype=torch.bool)
    spacing = np.asarray(spacing, dtype=np.float64)
    step = top
    while step > 1:
        # flag the cells (of this level) that can hold the surface
        half_diag = 0.5 * float(np.linalg.norm(spacing * step))  # farthest any cell point is from its nearest corner
        flag = (_cell_reduce(values.abs(), torch.minimum) <= margin * half_diag) | _crossing_cells(values)
        # the points of the next level: interpolated everywhere, evaluated inside flagged cells
        fine_shape = [2 * (n - 1) + 1 for n in values.shape]
        fine = F.interpolate(values[None, None], size=fine_shape, mode="trilinear", align_corners=True)[0, 0]
        need = torch.zeros(fine_shape, dtype=torch.bool)
        for a in range(3):  # the 3 x 3 x 3 points of each flagged cell (neighbours share faces)
            for b in range(3):
                for c in range(3):
                    view = need[a : a + 2 * flag.shape[0] : 2, b : b + 2 * flag.shape[1] : 2, c : c + 2 * flag.shape[2] : 2]
                    view |= flag
        need[::2, ::2, ::2] = False  # corners of flagged cells are already exact
        step //= 2
        if band is not None and step < 2**BAND_LEVELS:
            need &= fine.abs() <= band * float(np.linalg.norm(spacing * step))
        idx = torch.nonzero(need)
        fine[need] = ev(idx * step)
        fine_exact = need
        fine_exact[::2, ::2, ::2] |= exact
        values, exact = fine, fine_exact
    values, exact = values[: res[0], : res[1], : res[2]], exact[: res[0], : res[1], : res[2]]
    while follow:
        open_cells = _crossing_cells(values) & ~_cell_reduce(exact, torch.logical_and)
        if not bool(open_cells.any()):
            break
        corners = torch.zeros_like(exact)
        for offset in _CORNERS:
            _corner(corners, offset).logical_or_(open_cells)
        corners &= ~exact
        values[corners] = ev(torch.nonzero(corners))
        exact |= corners
    return values


def extract_mesh(
    sdf_fn: SdfFn,
    bounds: Sequence[Sequence[float]] = NPHM_BOUNDS,
    resolution: int | Sequence[int] = 256,
    method: str = "coarse_to_fine",
    level: float = 0.0,
    *,
    levels: int = 4,
    margin: float = 1.0,
    band: float | None = 0.5,
    follow_surface: bool = True,
    chunk: int = 65536,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
    batched: bool | None = None,
) -> Mesh:
    """Extract the ``level`` set of ``sdf_fn`` inside ``bounds`` with marching cubes.

    Args:
        sdf_fn: a field, negative inside: unbatched ``points (N, 3) float32 -> (N,)``, or batched
            with ``B = 1`` (``(1, N, 3) -> (1, N)``, e.g. ``model.field(z_id, z_ex)``).
        bounds: ``((xmin, ymin, zmin), (xmax, ymax, zmax))`` in the field's units; default: the
            official MonoNPHM reconstruction box.
        resolution: grid points per axis (int or three ints), e.g. 256.
        method: ``"coarse_to_fine"`` (default) or ``"dense"``; the same surface as dense (see the
            module notes on ``margin`` and ``follow_surface``).
        levels: coarse-to-fine levels; the first grid has a step of ``2**levels`` voxels.
        margin: safety factor on the cell diagonal, i.e. the assumed Lipschitz bound (1 is exact
            for true distances).
        band: at the two finest levels, evaluate only the points whose trilinear estimate lies
            within ``band`` x the cell diagonal of the level set (module notes); None evaluates
            every point of the flagged cells (~2.6x the queries of the default 0.5 on a head).
            Ignored with ``follow_surface=False``, on which it relies.
        follow_surface: evaluate the corners of every final cell with a sign change that was not
            fully evaluated, until none is left (costs ~0.5 % of the dense queries on a learned head).
        chunk: points per ``sdf_fn`` call.
        device: where the query points are made (the field's device).
        progress: show a progress bar (None: on an interactive terminal, see ``nphmkit._progress``).
        batched: whether ``sdf_fn`` is batched; None: nphmkit's fields are, a plain callable is
            probed on two points.

    Returns:
        A :class:`Mesh` with outward-facing faces, in the field's units, with the number of
        SDF queries made and the seconds taken. An empty mesh if the level set does not cross
        the grid.
    """
    from skimage import measure

    if method not in ("coarse_to_fine", "dense"):
        raise ValueError(f"method: expected 'coarse_to_fine' or 'dense', got {method!r}")
    if levels < 0 or margin <= 0:
        raise ValueError(f"levels must be >= 0 and margin > 0, got levels={levels}, margin={margin}")
    if band is not None and (isinstance(band, bool) or not isinstance(band, (int, float)) or not band > 0):
        raise ValueError(f"band: expected a positive number of cell diagonals or None, got {band!r}")
    start = time.perf_counter()
    lo, hi = _as_bounds(bounds)
    res = _as_resolution(resolution)
    spacing = (hi - lo) / (np.asarray(res) - 1)
    hint = int(np.prod(res)) if method == "dense" else int(np.prod(res)) // 20
    if batched if batched is not None else _is_batched(sdf_fn, device):
        sdf_fn = unbatched(sdf_fn)
    ev = _Evaluator(sdf_fn, lo, spacing, chunk, device, hint, progress, level)
    try:
        if method == "dense" or levels == 0:
            values = _dense_values(ev, res)
        else:
            # the band leans on the surface following to evaluate the crossing cells' estimated corners
            values = _coarse_to_fine_values(ev, res, spacing, levels, margin, follow_surface,
                                            band if follow_surface else None)
    finally:
        ev.close()
    volume = values.numpy()
    info = {"resolution": res, "bounds": (tuple(lo), tuple(hi)), "method": method}
    if not (volume.min() < 0 < volume.max()):
        vertices, faces_t = torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)
    else:
        verts, faces, _, _ = measure.marching_cubes(volume, level=0.0, spacing=tuple(spacing))
        vertices = torch.from_numpy((verts + lo).astype(np.float32))
        faces_t = torch.from_numpy(faces.astype(np.int64))
    return Mesh(vertices, faces_t, n_queries=ev.count, seconds=time.perf_counter() - start, info=info)
