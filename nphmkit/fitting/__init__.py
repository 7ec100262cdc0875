"""Inference-time optimization: fit NPHM codes and pose to point clouds, images and videos."""

from nphmkit.fitting.image import ImageFitConfig, fit_image
from nphmkit.fitting.points import PointFitConfig, fit_points, surface_distance
from nphmkit.fitting.pose import PoseEstimate, pose_from_point_map, solve_pose
from nphmkit.fitting.result import FitResult
from nphmkit.fitting.video import VideoFitConfig, fit_video

__all__ = [
    "FitResult", "ImageFitConfig", "PointFitConfig", "PoseEstimate", "VideoFitConfig", "fit_image", "fit_points",
    "fit_video", "pose_from_point_map", "solve_pose", "surface_distance",
]
