"""Differentiable rendering of implicit surfaces: cameras, sphere tracing, maps, shading."""

from nphmkit.render.camera import (
    DEFAULT_FOCAL,
    Camera,
    default_crop_pose,
    default_intrinsics,
    nphm_to_world,
    world_to_nphm,
)
from nphmkit.render.render import RenderConfig, RenderOutput, render
from nphmkit.render.shading import canonical_map_rgb, lambert, normal_map_rgb, overlay
from nphmkit.render.trace import TraceConfig, TraceResult, sphere_trace

__all__ = [
    "DEFAULT_FOCAL", "Camera", "RenderConfig", "RenderOutput", "TraceConfig", "TraceResult", "canonical_map_rgb",
    "default_crop_pose", "default_intrinsics", "lambert", "normal_map_rgb", "nphm_to_world", "overlay", "render",
    "sphere_trace", "world_to_nphm",
]
