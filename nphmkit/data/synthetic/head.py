"""The synthetic head family: an analytic, parameterized head SDF in NPHM space.

A head is a smooth union of exact primitives (spheres, capsules, round cones, discs) placed
by identity parameters; expressions move parts rigidly (the jaw rotates about its hinge, the
upper lids about the eye centres, the mouth corners about the ends of the middle lip, brows,
cheeks and lips translate) and open a mouth cavity. Rigid motions keep every part an exact
distance and the smooth unions keep the Lipschitz constant at most 1, so sphere tracing is
safe; away from blends the field is the true distance.

Frames: NPHM space (FLAME x 4; 1 unit = 25 cm), y up, z forward (the face looks along +z),
x = 0 the mirror plane; x < 0 is the subject's right. Batched: a :class:`SyntheticHead`
holds ``B`` heads; fields take points ``(B, N, 3)``.

The canonical map sends a posed point to where it sits on the same head with the neutral
expression: each part's inverse motion, blended with the same weights as the smooth union.
Points on the mouth-cavity walls have no neutral counterpart and are marked invalid. Where a
part that moves blends into one that does not (the jaw's seam with the cheeks), the blended
inverse motion lands within millimetres of the neutral surface rather than on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nphmkit.data.synthetic import params as P
from nphmkit.data.synthetic import primitives as prim
from nphmkit.data.synthetic.primitives import Vec3, coordinate, offset, rigid_inverse
from nphmkit.transforms import rotation_about

# part groups for colouring
SKIN, LIPS, EYE, BROW, MOUTH = 0, 1, 2, 3, 4
NECK_CUT_Y = -0.47
BOUNDS = ((-0.45, -0.5, -0.62), (0.45, 0.62, 0.42))
"""A box in NPHM units that holds every head of the family."""


def _vec(b: int, ref: torch.Tensor, x, y, z) -> torch.Tensor:
    """Stack per-sample (B,) tensors or floats into ``(B, 3)``."""
    cols = [c if isinstance(c, torch.Tensor) else ref.new_full((b,), float(c)) for c in (x, y, z)]
    return torch.stack(cols, dim=-1)


@dataclass
class _Field:
    """Running state of the composition: value, canonical point, group, carve weight.

    With ``full=False`` only the value is kept (what sphere tracing and meshing need; the other three
    stay None): the same values, bit for bit, at about three quarters of the cost (a render batch's SDF calls:
    5.1 -> 4.0 s on one thread)."""

    value: torch.Tensor  # (B, N)
    canonical: torch.Tensor | Vec3 | None  # (B, N, 3), or planes
    group: torch.Tensor | None  # (B, N) float weights are overkill; the dominant group id
    carved: torch.Tensor | None  # (B, N) in [0, 1]: weight of the mouth-cavity carving
    full: bool = True

    def union(self, value, canonical, group: int, k: float) -> None:
        v, h = prim.smooth_union_weight(self.value, value, k)
        self.value = v
        if not self.full:
            return
        if isinstance(canonical, Vec3):
            self.canonical = self.canonical.scale(h) + canonical.scale(1 - h)
        else:
            self.canonical = h[..., None] * self.canonical + (1 - h[..., None]) * canonical
        self.group = torch.where(h >= 0.5, self.group, torch.full_like(self.group, group))
        self.carved = h * self.carved

    def union_pair(self, parts, group: int, k: float) -> None:
        """Smooth-union a mirrored pair as one part (hard minimum inside the pair keeps the mirror symmetry)."""
        (va, ca), (vb, cb) = parts
        canonical = None
        if self.full and isinstance(ca, Vec3):
            first = va <= vb
            canonical = Vec3(*(torch.where(first, a, b) for a, b in ((ca.x, cb.x), (ca.y, cb.y), (ca.z, cb.z))))
        elif self.full:
            canonical = torch.where((va <= vb)[..., None], ca, cb)
        self.union(torch.minimum(va, vb), canonical, group, k)

    def subtract(self, value, k: float, group: int | None = None, cavity: bool = False) -> None:
        v, w = prim.smooth_subtract(self.value, value, k)
        if not self.full:
            self.value = v
            return
        if cavity:
            self.carved = torch.maximum(self.carved, w)
        if group is not None:
            self.group = torch.where(w > 0.5, torch.full_like(self.group, group), self.group)
        self.value = v


class SyntheticHead:
    """``B`` synthetic heads: ``identity (B, n_identity)``, ``expression (B, n_expression)``.

    Parameters are differentiable tensors (columns: :data:`params.IDENTITY_NAMES`,
    :data:`params.EXPRESSION_NAMES`).
    """

    n_identity = len(P.IDENTITY)
    n_expression = len(P.EXPRESSION)

    def __init__(self, identity: torch.Tensor, expression: torch.Tensor | None = None,
                 coordinate_planes: bool | None = None) -> None:
        if identity.dim() != 2 or identity.shape[1] != self.n_identity:
            raise ValueError(f"identity: expected shape (B, {self.n_identity}), got {tuple(identity.shape)}")
        if expression is None:
            expression = P.neutral_expression(identity.shape[0]).to(identity)
        if expression.shape != (identity.shape[0], self.n_expression):
            raise ValueError(
                f"expression: expected shape ({identity.shape[0]}, {self.n_expression}), got {tuple(expression.shape)}"
            )
        self.identity = identity
        self.expression = expression
        if coordinate_planes is not None:  # else the class default
            self.coordinate_planes = bool(coordinate_planes)

    @classmethod
    def sample(cls, batch: int, seed: int, expressive: bool = True) -> "SyntheticHead":
        """``batch`` random heads (and expressions, unless ``expressive=False``) from ``seed``."""
        ident = P.sample_identity(batch, seed)
        expr = P.sample_expression(batch, seed + 1) if expressive else P.neutral_expression(batch)
        return cls(ident, expr)

    @property
    def batch(self) -> int:
        return self.identity.shape[0]

    def neutral(self) -> "SyntheticHead":
        """The same identities with the neutral expression."""
        return SyntheticHead(self.identity, P.neutral_expression(self.batch).to(self.identity), self.coordinate_planes)

    def with_expression(self, expression: torch.Tensor) -> "SyntheticHead":
        return SyntheticHead(self.identity, expression, self.coordinate_planes)

    # ------------------------------------------------------------------ fields
    coordinate_planes: bool = True
    """:meth:`sdf`, :meth:`canonical` and :meth:`groups` on three ``(B, N)`` coordinate planes
    (:class:`~.primitives.Vec3`): 1.5-2.5x as fast on the CPU as on the ``(B, N, 3)`` points from a few hundred
    points per head up (a render batch: 1.8x); ``False`` runs the reference. The two agree to float rounding
    (values and gradients). Fitting the parameters themselves to a few thousand points or fewer is up to 30 %
    slower on planes (three times the autograd nodes); set ``False`` there (per head:
    ``SyntheticHead(..., coordinate_planes=False)``; :class:`~.model.SyntheticHeadModel` does so by default)."""

    def _points(self, points: torch.Tensor) -> torch.Tensor | Vec3:
        """``points (B, N, 3)`` checked, as planes where :attr:`coordinate_planes` says so. (Always, whatever
        ``N``: a point's value must not depend on how many others come with it, so that a rendered image does
        not depend on its batch; a few dozen points per head cost about as much either way.)"""
        self._check_points(points)
        return Vec3.of(points) if self.coordinate_planes else points

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """Signed distance ``(B, N)`` (NPHM units) of ``points (B, N, 3)``."""
        return self._compose(self._points(points), full=False).value

    def canonical(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical (neutral-expression) positions ``(B, N, 3)`` and validity ``(B, N)`` bool."""
        f = self._compose(self._points(points))
        canonical = f.canonical.stack() if isinstance(f.canonical, Vec3) else f.canonical
        return canonical, f.carved < 0.5

    def groups(self, points: torch.Tensor) -> torch.Tensor:
        """Dominant part group ``(B, N)`` int64 (SKIN, LIPS, EYE, BROW, MOUTH) for colouring."""
        return self._compose(self._points(points)).group.long()

    # ------------------------------------------------------------------ geometry
    def _layout(self) -> dict[str, torch.Tensor]:
        """Every part position/size for the current parameters, ``(B, ...)`` tensors."""
        ident, expr = self.identity, self.expression
        b = self.batch
        v = lambda x, y, z: _vec(b, ident, x, y, z)  # noqa: E731
        (w, length, height, nose_len, nose_w, bridge, jaw_w, chin, cheeks, ear_size, ear_angle, brow,
         eye_sp, lips, neck, asym) = ident.unbind(-1)
        jaw_open, smile, brow_raise, closure, pucker = expr.unbind(-1)
        one = torch.ones_like(w)
        lay: dict[str, torch.Tensor] = {}
        # cranium
        lay["cr_back"] = v(0.0, 0.17, -0.24 * length)
        lay["cr_front"] = v(0.0, 0.2, -0.055 + 0.04 * (length - 1))
        lay["cr_side"] = v(0.07 * w, 0.12, -0.13)
        lay["cr_side_r"] = 0.25 * (0.6 + 0.4 * w)
        lay["cr_top"] = v(0.0, 0.17 + 0.07 * height, -0.12)
        # face, cheeks (cheeks rise with a smile)
        lay["uf_a"], lay["uf_b"] = v(0.0, 0.06, 0.02), v(0.0, -0.1, 0.065)
        lay["cheekbone"] = v(0.17 * (0.8 + 0.2 * w), 0.02, 0.03)
        lay["cheek"] = v(0.11 + 0.012 * (cheeks - 1), -0.1 + 0.015 * smile, 0.07 + 0.02 * (cheeks - 1))
        lay["cheek_r"] = 0.085 * (0.7 + 0.3 * cheeks)
        lay["cheek_lift"] = v(0.0, 0.015 * smile, 0.0)
        # jaw (in the jaw frame; rotated about the hinge by jaw_open)
        lay["hinge"] = v(0.0, -0.02, -0.06)
        lay["jaw_rot"] = rotation_about(ident.new_tensor([1.0, 0.0, 0.0]), 0.32 * jaw_open)
        lay["lf_chin"] = v(0.0, -0.29, 0.085)
        lay["gonion"] = v(0.16 * jaw_w, -0.19, -0.06)
        lay["chin"] = v(0.0, -0.335, 0.1 + 0.025 * chin)
        lay["chin_r"] = 0.062 * (0.8 + 0.2 * chin)
        # nose
        lay["bridge"] = v(0.004 * asym, 0.08, 0.16)
        lay["nose_base"] = v(0.0, -0.01, 0.17)
        lay["tip"] = v(0.01 * asym, -0.035, 0.235 + 0.045 * nose_len)
        lay["bridge_r"] = 0.026 * bridge
        lay["ala"] = v(0.03 * nose_w, -0.05, 0.215 + 0.012 * nose_len)
        lay["ala_r"] = 0.02 * (0.8 + 0.2 * nose_w)
        # eyes and lids (upper lid rotates about the eye centre with eye_closure)
        lay["eye"] = v(0.064 * eye_sp, 0.07, 0.128)
        lay["lid_rot"] = rotation_about(ident.new_tensor([1.0, 0.0, 0.0]), 1.45 * closure)
        # brows (move with brow_raise; the asymmetry lifts the left brow)
        lay["brow_in"] = v(0.028, 0.122 + 0.02 * brow_raise, 0.188)
        lay["brow_out"] = v(0.112, 0.127 + 0.02 * brow_raise, 0.152)
        lay["brow_lift_left"] = 0.006 * asym
        lay["brow_r"] = 0.017 * brow
        # lips (upper in the head frame, lower in the jaw frame); pucker pushes them forward
        push = v(0.0, 0.0, 0.012 * pucker)
        lay["push"] = push
        lay["ul_c"] = v(0.018 * (1 - 0.3 * pucker), -0.128, 0.218)
        lay["ul_corner"] = v(0.056 * (1 - 0.25 * pucker), -0.14, 0.19)
        lay["ll_c"] = v(0.018 * (1 - 0.3 * pucker), -0.158, 0.205)
        lay["ll_corner"] = v(0.056 * (1 - 0.25 * pucker), -0.147, 0.184)
        lay["lip_r_up"] = 0.0135 * lips
        lay["lip_r_low"] = 0.016 * lips
        lay["corner_angle"] = 0.38 * smile
        # ears and neck
        lay["ear"] = v(0.285, 0.03, -0.09)
        lay["ear_lift_left"] = 0.012 * asym
        lay["ear_r"] = 0.078 * ear_size
        lay["ear_angle"] = 0.3 + ear_angle
        lay["neck_a"], lay["neck_b"] = v(0.0, -0.2, -0.16), v(0.0, -0.7, -0.2)
        lay["neck_r"] = 0.125 * neck
        lay["jaw_open"] = jaw_open
        lay["one"] = one
        return lay

    def _check_points(self, p: torch.Tensor) -> None:
        if p.dim() != 3 or p.shape[0] != self.batch or p.shape[-1] != 3:
            raise ValueError(f"points: expected shape ({self.batch}, N, 3), got {tuple(p.shape)}")

    def _compose(self, p: torch.Tensor | Vec3, full: bool = True) -> _Field:
        """The composed field at points ``p``: ``(B, N, 3)``, or a :class:`Vec3` of ``(B, N)`` planes."""
        if not isinstance(p, Vec3):
            self._check_points(p)
        lay = self._layout()
        one = lay["one"]
        ref = p.x if isinstance(p, Vec3) else p
        mirror = ref.new_tensor([-1.0, 1.0, 1.0])
        sides = (1.0, -1.0)  # +x (subject's left), -x (subject's right)

        def m(vec: torch.Tensor, side: float) -> torch.Tensor:
            return vec if side > 0 else vec * mirror

        # ---- cranium (static) --------------------------------------------------------
        start = prim.sphere(p, lay["cr_back"], 0.29 * one)
        if full:
            zero_group = torch.zeros(ref.shape[:2], dtype=ref.dtype, device=ref.device)
            f = _Field(start, p, zero_group, torch.zeros_like(zero_group))
        else:
            f = _Field(start, None, None, None, full=False)
        f.union(prim.sphere(p, lay["cr_front"], 0.25 * one), p, SKIN, 0.1)
        f.union_pair([(prim.sphere(p, m(lay["cr_side"], s), lay["cr_side_r"]), p) for s in sides], SKIN, 0.1)
        f.union(prim.sphere(p, lay["cr_top"], 0.25 * one), p, SKIN, 0.1)
        # ---- upper face ----------------------------------------------------------------
        f.union(prim.round_cone(p, lay["uf_a"], lay["uf_b"], 0.17 * one, 0.145 * one), p, SKIN, 0.06)
        f.union_pair([(prim.sphere(p, m(lay["cheekbone"], s), 0.085 * one), p) for s in sides], SKIN, 0.08)
        # cheeks move up with a smile: their canonical point undoes that shift
        pc_cheek = offset(p, lay["cheek_lift"]) if full else None
        f.union_pair([(prim.sphere(p, m(lay["cheek"], s), lay["cheek_r"]), pc_cheek) for s in sides], SKIN, 0.05)
        # ---- jaw frame: lower face, jaw lines, chin --------------------------------------
        rot, hinge = lay["jaw_rot"], lay["hinge"]
        pj = rigid_inverse(p, rot, hinge)  # jaw parts are evaluated in their neutral frame
        jaw = [(prim.round_cone(pj, lay["lf_chin"], m(lay["gonion"], s), 0.1 * one, 0.09 * one), pj) for s in sides]
        f.union_pair(jaw, SKIN, 0.08)
        f.union(prim.sphere(pj, lay["chin"], lay["chin_r"]), pj, SKIN, 0.05)
        # ---- nose --------------------------------------------------------------------------
        f.union(prim.round_cone(p, lay["bridge"], lay["tip"], lay["bridge_r"], 0.032 * one), p, SKIN, 0.03)
        f.union(prim.round_cone(p, lay["nose_base"], lay["tip"], 0.04 * one, 0.03 * one), p, SKIN, 0.03)
        f.union_pair([(prim.sphere(p, m(lay["ala"], s), lay["ala_r"]), p) for s in sides], SKIN, 0.015)
        # ---- brows (translated by brow_raise; canonical undoes it) ------------------------
        raise_ = _vec(self.batch, one, 0.0, lay["brow_in"][:, 1] - 0.122, 0.0)
        brows = []
        for s in sides:
            lift = _vec(self.batch, one, 0.0, lay["brow_lift_left"] if s > 0 else 0.0 * one, 0.0)
            a, b_ = m(lay["brow_in"], s) + lift, m(lay["brow_out"], s) + lift
            brows.append((prim.capsule(p, a, b_, lay["brow_r"]), offset(p, raise_) if full else None))
        f.union_pair(brows, BROW, 0.025)
        # ---- eyes: sockets, eyeballs, lids ------------------------------------------------
        socket = [prim.sphere(p, m(lay["eye"], s) + _vec(self.batch, one, 0.0, 0.0, 0.028), 0.043 * one) for s in sides]
        f.subtract(torch.minimum(*socket), 0.02)
        balls, uppers, lowers = [], [], []
        up = _vec(self.batch, one, 0.0, math.cos(0.35), math.sin(0.35))
        down = _vec(self.batch, one, 0.0, -0.9, 0.44)
        down = down / down.norm(dim=-1, keepdim=True)
        for s in sides:
            eye = m(lay["eye"], s)
            balls.append((prim.sphere(p, eye, 0.032 * one), p))
            # upper lid: the shell above a plane through the eye centre, rotated by eye_closure
            pl = rigid_inverse(p, lay["lid_rot"], eye)
            upper = torch.maximum(prim.sphere(pl, eye, 0.0355 * one), -prim.half_space(pl, eye + 0.012 * up, up))
            uppers.append((upper, pl))
            lower = torch.maximum(prim.sphere(p, eye, 0.0355 * one), -prim.half_space(p, eye + 0.02 * down, down))
            lowers.append((lower, p))
        f.union_pair(balls, EYE, 0.004)
        f.union_pair(uppers, SKIN, 0.004)
        f.union_pair(lowers, SKIN, 0.004)
        # ---- lips: middle segments translate (pucker), corners also rotate (smile) --------
        push = lay["push"]
        pu = offset(p, push)
        f.union(prim.capsule(pu, lay["ul_c"] * mirror, lay["ul_c"], lay["lip_r_up"]), pu, LIPS, 0.008)
        pjl = offset(pj, push)
        f.union(prim.capsule(pjl, lay["ll_c"] * mirror, lay["ll_c"], lay["lip_r_low"]), pjl, LIPS, 0.008)
        corners_up, corners_low = [], []
        for s in sides:
            turn = rotation_about(ref.new_tensor([0.0, 0.0, 1.0]), s * lay["corner_angle"])
            joint_u = m(lay["ul_c"], s)
            pc = rigid_inverse(pu, turn, joint_u)
            corners_up.append((prim.capsule(pc, joint_u, m(lay["ul_corner"], s), lay["lip_r_up"]), pc))
            joint_l = m(lay["ll_c"], s)
            pcl = rigid_inverse(pjl, turn, joint_l)
            corners_low.append((prim.capsule(pcl, joint_l, m(lay["ll_corner"], s), lay["lip_r_low"]), pcl))
        f.union_pair(corners_up, LIPS, 0.008)
        f.union_pair(corners_low, LIPS, 0.008)
        # ---- mouth cavity (posed space), opens with the jaw --------------------------------
        low_mid = torch.einsum("bij,bj->bi", rot, lay["ll_c"] * ref.new_tensor([0.0, 1.0, 1.0]) - lay["hinge"]) + lay["hinge"]
        y_mid = 0.5 * (lay["ul_c"][:, 1] + low_mid[:, 1])
        z_mid = 0.5 * (lay["ul_c"][:, 2] + low_mid[:, 2]) + push[:, 2]
        radius = 0.05 * lay["jaw_open"] - 0.012
        front = _vec(self.batch, one, 0.0, y_mid, z_mid - 0.005)
        back = _vec(self.batch, one, 0.0, y_mid - 0.01, z_mid - 0.1)
        half_width = _vec(self.batch, one, 0.03, 0.0, 0.0)
        cavity = torch.minimum(
            prim.capsule(p, front - half_width, front + half_width, radius),
            prim.round_cone(p, front, back, radius, 0.8 * radius),
        )
        f.subtract(cavity, 0.01, group=MOUTH, cavity=True)
        # ---- ears and neck (static) ------------------------------------------------------
        ears = []
        for s in sides:
            ear = m(lay["ear"], s) + _vec(self.batch, one, 0.0, lay["ear_lift_left"] if s > 0 else 0.0 * one, 0.0)
            frame = rotation_about(ref.new_tensor([0.0, 1.0, 0.0]), -s * lay["ear_angle"])
            # rows of the frame: local u, v, axis; the ear's axis starts along x
            local = torch.stack([frame[:, :, 2], frame[:, :, 1], frame[:, :, 0]], dim=1)
            ears.append((prim.disc(p, ear, local, lay["ear_r"], 0.012 * one, 0.01 * one), p))
        f.union_pair(ears, SKIN, 0.015)
        f.union(prim.capsule(p, lay["neck_a"], lay["neck_b"], lay["neck_r"]), p, SKIN, 0.05)
        cut = -(coordinate(p, 1) - NECK_CUT_Y)  # positive below the cut
        f.value = torch.maximum(f.value, cut)
        return f

    def mesh(self, index: int = 0, resolution: int = 128, neutral: bool = False):
        """Reference mesh of head ``index`` (coarse-to-fine marching cubes over :data:`BOUNDS`)."""
        from nphmkit.mesh import extract_mesh

        head = self.neutral() if neutral else self
        one = SyntheticHead(head.identity[index : index + 1], head.expression[index : index + 1])
        with torch.no_grad():
            return extract_mesh(one.sdf, BOUNDS, resolution, margin=1.0)

    # ------------------------------------------------------------------ field protocol (nphmkit.protocols)
    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """The heads are a :class:`nphmkit.protocols.CanonicalField`: ``points (B, N, 3) -> (B, N)``."""
        return self.sdf(points)

    def field(self) -> "SyntheticHead":
        """Batched field ``points (B, N, 3) -> (B, N)`` (the heads themselves, with ``canonical``)."""
        return self

    def canonical_field(self):
        """Canonical field ``canonical_fn(points (B, N, 3)) -> ((B, N, 3), valid (B, N))``."""
        return self.canonical
