"""Losses: SDF-space, surface (point clouds, eikonal), image (normals, point maps, silhouette), regularizers.

Pure functions on tensors and field callables; no head model is imported, so a new model
plugs in with its fields and a :class:`CodeLayout`.
"""

from nphmkit.losses.image import normal_map_loss, point_map_loss, robust, silhouette_loss
from nphmkit.losses.layout import CodeLayout
from nphmkit.losses.regularizers import code_norms, expression_norm, symmetry_loss, temporal_smoothness
from nphmkit.losses.sdf_space import sample_sdf_space_points, sdf_space_loss
from nphmkit.losses.surface import eikonal_loss, free_space_loss, normal_loss, surface_sdf_loss

__all__ = [
    "CodeLayout", "code_norms", "eikonal_loss", "expression_norm", "free_space_loss", "normal_loss",
    "normal_map_loss", "point_map_loss", "robust", "sample_sdf_space_points", "sdf_space_loss", "silhouette_loss",
    "surface_sdf_loss", "symmetry_loss", "temporal_smoothness",
]
