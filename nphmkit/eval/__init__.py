"""Evaluation: exact point-to-mesh distances, landmark + ICP alignment, the NoW protocol and surface figures (mm),
and bootstrap intervals of a benchmark's ratios over its images."""

from nphmkit.eval.align import ICPResult, Similarity, icp, umeyama
from nphmkit.eval.distance import Closest, closest_points, point_mesh_distance_reference
from nphmkit.eval.metrics import MM_PER_NPHM, NowResult, face_region, now_errors, sample_surface, surface_metrics
from nphmkit.eval.stats import Interval, ratio_interval

__all__ = [
    "MM_PER_NPHM", "Closest", "ICPResult", "Interval", "NowResult", "Similarity", "closest_points", "face_region", "icp",
    "now_errors", "point_mesh_distance_reference", "ratio_interval", "sample_surface", "surface_metrics", "umeyama",
]
