"""Preparing photos for the networks: square face crops (Pixel3DMM's x1.42 framing) and their cameras."""

from nphmkit.preprocess.crop import ENLARGE, Crop, crop, crop_transform, square_box

__all__ = ["ENLARGE", "Crop", "crop", "crop_transform", "square_box"]
