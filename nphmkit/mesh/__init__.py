"""Meshes from SDFs: marching cubes (dense and coarse-to-fine) and export (PLY, OBJ, GLB)."""

from nphmkit.mesh.extract import NPHM_BOUNDS, extract_mesh
from nphmkit.mesh.io import load_mesh, save_mesh
from nphmkit.mesh.mesh import MM_PER_NPHM_UNIT, Mesh

__all__ = ["MM_PER_NPHM_UNIT", "NPHM_BOUNDS", "Mesh", "extract_mesh", "load_mesh", "save_mesh"]
