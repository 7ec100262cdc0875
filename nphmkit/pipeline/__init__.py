"""Pix2NPHM assembled: image -> dense maps -> (feed-forward codes) -> refinement -> a reconstruction."""

from nphmkit.pipeline.pix2nphm import Pix2NPHM
from nphmkit.pipeline.reconstruction import Reconstruction

__all__ = ["Pix2NPHM", "Reconstruction"]
