"""Training: the NPHM auto-decoder on synthetic shapes (and its sample generation)."""

from nphmkit.training.autodecoder import AutoDecoderConfig, LossWeights, TrainResult, train_autodecoder
from nphmkit.training.samples import ShapeSamples, build_samples

__all__ = ["AutoDecoderConfig", "LossWeights", "ShapeSamples", "TrainResult", "build_samples", "train_autodecoder"]
