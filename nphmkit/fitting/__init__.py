"""Inference-time optimization: fit any head model's codes and pose to point clouds, images and videos.

Objectives are lists of weighted terms (:mod:`nphmkit.fitting.terms`); the defaults reproduce the
built-in losses, and a user term plugs in without editing nphmkit.
"""

from nphmkit.fitting.image import ImageFitConfig, fit_image
from nphmkit.fitting.points import PointFitConfig, fit_points, surface_distance
from nphmkit.fitting.pose import PoseEstimate, pose_from_point_map, solve_pose
from nphmkit.fitting.result import FitResult
from nphmkit.fitting.terms import (
    FitContext,
    LossTerm,
    PixelTargets,
    default_image_terms,
    default_point_terms,
    regularizer_terms,
    temporal_terms,
)
from nphmkit.fitting.video import VideoFitConfig, fit_video

__all__ = [
    "FitContext", "FitResult", "ImageFitConfig", "LossTerm", "PixelTargets", "PointFitConfig", "PoseEstimate",
    "VideoFitConfig", "default_image_terms", "default_point_terms", "fit_image", "fit_points", "fit_video",
    "pose_from_point_map", "regularizer_terms", "solve_pose", "surface_distance", "temporal_terms",
]
