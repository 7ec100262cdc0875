"""Training: one runner (configs, torchrun/DDP, checkpoints and resume) with the dense-predictor task, and the
NPHM auto-decoder on synthetic shapes (and its sample generation).

The runner and the predictor task are imported from their modules (``nphmkit.training.runner``,
``nphmkit.training.predictor``); importing this package stays light.
"""

from nphmkit.training.autodecoder import AutoDecoderConfig, LossWeights, TrainResult, train_autodecoder
from nphmkit.training.samples import ShapeSamples, build_samples

__all__ = ["AutoDecoderConfig", "LossWeights", "ShapeSamples", "TrainResult", "build_samples", "train_autodecoder"]
