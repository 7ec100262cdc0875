"""Fitting objectives as lists of weighted terms, and what a term sees at each step.

A term is a :class:`LossTerm`: a name, a weight, and a function of the step's
:class:`FitContext` returning a scalar. ``fit_points``, ``fit_image`` and ``fit_video`` take their
objective as a list of terms (``terms=``); without one they build the default, which reproduces
the built-in objective: data terms (:func:`default_image_terms`, :func:`default_point_terms`) plus
one term per named code regularizer of the head model (:func:`regularizer_terms`). A user term
plugs in without editing nphmkit::

    def eye_distance(ctx):  # any function of the context returning a scalar
        marks = ctx.model.landmarks(ctx.z_id, ctx.z_ex)
        return ((marks[:, 0] - marks[:, 3]).norm(dim=-1) - 0.4).square().mean()

    terms = [*default_image_terms(cfg), *regularizer_terms(cfg.regularizers), LossTerm("eyes", 1.0, eye_distance)]
    fit_image(model, normals, points, mask, camera, config=cfg, terms=terms)

``kind`` says what a term averages over: ``"data"`` (per-pixel or per-point data, a mean over
the samples of all images) or ``"codes"`` (a function of the codes or the pose, a mean over the
batch). The joint video refinement weights data terms by the number of frames, as the built-in
objective did. Each fit logs every term's unweighted value per step (``FitResult.terms``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch

from nphmkit.fields import sdf_and_gradient
from nphmkit.losses import normal_loss, normal_map_loss, point_map_loss, silhouette_loss, temporal_smoothness
from nphmkit.protocols import Field, HeadModel
from nphmkit.transforms import matrix_to_axis_angle

KINDS = ("data", "codes")


@dataclass(frozen=True)
class PixelTargets:
    """Targets at the pixels sampled this step, each ``(B, M, ...)``: ``normals (B, M, 3)`` (camera frame),
    ``points (B, M, 3)`` canonical or None, ``mask (B, M)`` bool, ``point_valid (B, M)`` bool, ``confidence
    (B, M)`` float or None (a per-pixel weight of the normal and point terms)."""

    normals: torch.Tensor
    points: torch.Tensor | None
    mask: torch.Tensor
    point_valid: torch.Tensor
    confidence: torch.Tensor | None = None


@dataclass
class FitContext:
    """What a term sees at one step. Every fit fills the codes, the pose and the field; image fits fill
    ``camera``, ``pixels``, ``render`` and ``targets``; point fits ``points``, ``target_normals`` and ``sdf``.

    Attributes:
        model: the head model being fitted.
        z_id, z_ex: the codes ``(B, id_dim)``, ``(B, ex_dim)`` (with gradients).
        rotation, translation, scale: the head pose ``(B, 3, 3)``, ``(B, 3)``, ``(B,)`` (x_world = s R x + t).
        field: ``model.field(z_id, z_ex)`` in head space.
        regularizers: ``model.code_regularizers(z_id, z_ex)``.
        frames: ``(B,)`` int64, which of the fit's inputs (images, frames, clouds) the batch rows are.
        step: the step number within the current optimization.
        camera: the camera with the head pose as extrinsics (image fits; world = head space).
        pixels: ``(B, M, 2)`` the pixel coordinates rendered this step (x, y; centres at +0.5).
        render: the :class:`~nphmkit.render.RenderOutput` at ``pixels``, maps ``(B, M, ...)``.
        targets: :class:`PixelTargets` at ``pixels``.
        points: ``(B, M, 3)`` the point-cloud points of this step in head space (point fits).
        target_normals: ``(B, M, 3)`` their normals in head space, or None.
        sdf: ``(B, M)`` the field at ``points`` (head units; times ``scale`` for the cloud's units).
        start: the codes ``(z_id, z_ex)`` the fit started from (image fits), for priors around them.
    """

    model: HeadModel
    z_id: torch.Tensor
    z_ex: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    field: Field
    regularizers: Mapping[str, torch.Tensor]
    frames: torch.Tensor
    step: int = 0
    camera: object | None = None
    pixels: torch.Tensor | None = None
    render: object | None = None
    targets: PixelTargets | None = None
    points: torch.Tensor | None = None
    target_normals: torch.Tensor | None = None
    sdf: torch.Tensor | None = None
    start: tuple[torch.Tensor, torch.Tensor] | None = None
    _gradients: torch.Tensor | None = field(default=None, repr=False)

    @property
    def gradients(self) -> torch.Tensor:
        """``(B, M, 3)`` SDF gradients at ``points`` w.r.t. the points, with a graph (computed on first use)."""
        if self._gradients is None:
            if self.points is None or self.sdf is None:
                raise ValueError("gradients: this context has no point queries (only point fits have them)")
            if self.points.requires_grad:
                (self._gradients,) = torch.autograd.grad(self.sdf.sum(), self.points, create_graph=True)
            else:  # the points were not a graph leaf: a second evaluation with one
                self._gradients = sdf_and_gradient(self.field, self.points, create_graph=True)[1]
        return self._gradients


@dataclass(frozen=True)
class LossTerm:
    """``weight * fn(context)``; ``kind`` is ``"data"`` or ``"codes"`` (see the module notes)."""

    name: str
    weight: float
    fn: Callable[[FitContext], torch.Tensor]
    kind: str = "codes"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if not callable(self.fn):
            raise TypeError(f"fn: expected a callable of a FitContext, got {type(self.fn).__name__}")


def check_terms(terms: Sequence[LossTerm], name: str = "terms") -> tuple[LossTerm, ...]:
    terms = tuple(terms)
    for t in terms:
        if not isinstance(t, LossTerm):
            raise TypeError(f"{name}: expected LossTerm entries, got {type(t).__name__}")
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: term names must be unique, got {names}")
    return terms


def evaluate(terms: Sequence[LossTerm], ctx: FitContext, data_scale: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """``sum(weight * fn(ctx))`` (data terms times ``data_scale``) and every term's unweighted value."""
    total = ctx.z_id.new_zeros(())
    values: dict[str, float] = {}
    for t in terms:
        if t.weight == 0:
            continue
        value = t.fn(ctx)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"loss term {t.name!r}: expected a scalar tensor, got {shape}")
        total = total + (t.weight * (data_scale if t.kind == "data" else 1.0)) * value
        values[t.name] = float(value.detach())
    return total, values


# ---------------------------------------------------------------------- image terms
def _weights(mask: torch.Tensor, confidence: torch.Tensor | None) -> torch.Tensor:
    return mask if confidence is None else mask.to(confidence.dtype) * confidence


def normal_term(ctx: FitContext, robust: str = "huber", frame: str = "camera", delta: float = 0.1) -> torch.Tensor:
    """Robust normal-map error where both the render and the target show the head. ``frame="head"``: the
    targets are head-frame normals (official Pixel3DMM, FLAME-aligned), and the rendered camera-frame
    normals are rotated into the head frame by the current head rotation (``n_head = R^T n_cam``). ``delta``: the
    robust penalty's scale (:func:`~nphmkit.losses.robust`)."""
    both = ctx.render.mask & ctx.targets.mask
    normals = ctx.render.normals
    if frame == "head":
        normals = torch.einsum("bji,bmj->bmi", ctx.rotation, normals)
    return normal_map_loss(normals, ctx.targets.normals, _weights(both, ctx.targets.confidence), robust, delta)


def point_term(ctx: FitContext, robust: str = "huber") -> torch.Tensor:
    """Robust canonical point-map error (0 without a point map or a canonical field)."""
    if ctx.render.canonical is None or ctx.targets.points is None:
        return ctx.z_id.new_zeros(())
    both = ctx.render.mask & ctx.targets.mask & ctx.targets.point_valid
    return point_map_loss(ctx.render.canonical, ctx.targets.points, _weights(both, ctx.targets.confidence), robust)


def silhouette_term(ctx: FitContext) -> torch.Tensor:
    """Cross-entropy between the soft silhouette and the target mask."""
    return silhouette_loss(ctx.render.soft_mask, ctx.targets.mask)


def default_image_terms(config) -> list[LossTerm]:
    """``normals``, ``points``, ``silhouette`` with the weights and robust penalty of an :class:`ImageFitConfig`."""
    return [
        LossTerm("normals", config.w_normals,
                 partial(normal_term, robust=config.robust, frame=getattr(config, "normal_frame", "camera"),
                         delta=getattr(config, "normal_delta", 0.1)), "data"),
        LossTerm("points", config.w_points, partial(point_term, robust=config.robust), "data"),
        LossTerm("silhouette", config.w_silhouette, silhouette_term, "data"),
    ]


# ---------------------------------------------------------------------- point-cloud terms
def surface_term(ctx: FitContext) -> torch.Tensor:
    """Mean ``|sdf|`` at the cloud's points, in the cloud's units."""
    return (ctx.sdf.abs() * ctx.scale[:, None]).mean()


def cloud_normal_term(ctx: FitContext) -> torch.Tensor:
    """Mean distance between the unit SDF gradients and the cloud's normals (0 without normals)."""
    if ctx.target_normals is None:
        return ctx.z_id.new_zeros(())
    return normal_loss(ctx.gradients, ctx.target_normals)


def default_point_terms(config) -> list[LossTerm]:
    """``surface`` and ``normals`` with the weights of a :class:`PointFitConfig`."""
    return [LossTerm("surface", config.surface_weight, surface_term, "data"),
            LossTerm("normals", config.normal_weight, cloud_normal_term, "data")]


# ---------------------------------------------------------------------- code terms
def regularizer_value(ctx: FitContext, name: str) -> torch.Tensor:
    """The head model's regularizer ``name`` (0 if the model has none of that name)."""
    value = ctx.regularizers.get(name)
    return ctx.z_id.new_zeros(()) if value is None else value


def regularizer_terms(weights: Mapping[str, float]) -> list[LossTerm]:
    """One ``codes`` term per named regularizer of the head model, weighted by ``weights[name]``."""
    return [LossTerm(name, float(w), partial(regularizer_value, name=name), "codes") for name, w in weights.items()]


def smooth_expression(ctx: FitContext) -> torch.Tensor:
    """Mean squared second difference over time of ``z_ex`` (the batch is a sequence)."""
    return temporal_smoothness(ctx.z_ex, order=2)


def smooth_rotation(ctx: FitContext) -> torch.Tensor:
    """Same for the rotation (axis-angle, radians)."""
    return temporal_smoothness(matrix_to_axis_angle(ctx.rotation), order=2)


def smooth_translation(ctx: FitContext) -> torch.Tensor:
    """Same for the translation."""
    return temporal_smoothness(ctx.translation, order=2)


def anchor_term(ctx: FitContext) -> torch.Tensor:
    """Squared distance of the codes from where the fit started (summed over code entries, mean over the
    batch; 0 without a start): a prior around a regressor's feed-forward codes."""
    if ctx.start is None:
        return ctx.z_id.new_zeros(())
    z_id0, z_ex0 = ctx.start
    return (ctx.z_id - z_id0).square().sum(-1).mean() + (ctx.z_ex - z_ex0).square().sum(-1).mean()


def temporal_terms(config) -> list[LossTerm]:
    """``smooth_codes``, ``smooth_rotation``, ``smooth_translation`` with the weights of a :class:`VideoFitConfig`."""
    return [LossTerm("smooth_codes", config.smooth_codes, smooth_expression),
            LossTerm("smooth_rotation", config.smooth_rotation, smooth_rotation),
            LossTerm("smooth_translation", config.smooth_translation, smooth_translation)]
