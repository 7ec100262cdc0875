"""Image networks: ViT backbones, the dense geometry predictor (Pixel3DMM-compatible), the Pix2NPHM regressor."""

from nphmkit.heads.dense import DenseConfig, DenseMaps, DensePredictor
from nphmkit.heads.pixel3dmm import load_pixel3dmm
from nphmkit.heads.regressor import Pix2NPHMRegressor, RegressorConfig
from nphmkit.heads.vit import ViT, ViTConfig

__all__ = [
    "DenseConfig", "DenseMaps", "DensePredictor", "Pix2NPHMRegressor", "RegressorConfig", "ViT", "ViTConfig",
    "load_pixel3dmm",
]
