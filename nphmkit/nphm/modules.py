"""Parameter containers of the NPHM decoder; the computations live in reference.py and vectorized.py.

The local identity MLPs are stored stacked over their type, ``weights[l] (T, out, in)`` and
``biases[l] (T, out)``, so a fast path can index one MLP without a Python-level module lookup.
The checkpoint loader maps MonoNPHM's per-type ``nn.Linear`` keys onto these stacks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nphmkit.nphm.config import NPHMConfig


def _uniform_(tensor: torch.Tensor, fan_in: int) -> None:
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        tensor.uniform_(-bound, bound)


class IdentityEnsemble(nn.Module):
    """The local identity MLPs, all types stacked.

    Layer ``l`` maps ``dims[l] -> dims[l + 1]`` with ``dims = [id_in, id_hidden x id_layers, 1]``;
    Softplus(beta) follows every layer but the last. Initialization matches ``nn.Linear``
    (uniform in ``+-1/sqrt(fan_in)``), type by type.
    """

    def __init__(self, config: NPHMConfig) -> None:
        super().__init__()
        dims = [config.id_in] + [config.id_hidden] * config.id_layers + [1]
        self.dims = dims
        t = config.n_types
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.empty(t, dims[i + 1], dims[i])) for i in range(len(dims) - 1)]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.empty(t, dims[i + 1])) for i in range(len(dims) - 1)]
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w, b in zip(self.weights, self.biases):
            _uniform_(w, w.shape[-1])
            _uniform_(b, w.shape[-1])


class AnchorMLP(nn.Module):
    """Global code ``(B, G)`` -> anchor offsets ``(B, n_anchors * 3)`` (Linear-ReLU-Linear-ReLU-Linear)."""

    def __init__(self, config: NPHMConfig) -> None:
        super().__init__()
        h = config.pos_mlp_hidden
        self.layers = nn.Sequential(
            nn.Linear(config.lat_dim_glob, h),
            nn.ReLU(),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Linear(h, 3 * config.n_anchors),
        )

    def forward(self, glob: torch.Tensor) -> torch.Tensor:
        return self.layers(glob)


class ExpressionMLP(nn.Module):
    """The backward deformation network's parameters.

    ``compressor``: ``compressor_in -> ex_compress_dim``, applied once per sample to
    ``[z_id, anchors.flatten()]``. ``layers[i]``: ``ex_in -> ex_hidden``, hidden layers,
    ``ex_hidden + ex_in -> ex_hidden`` at ``ex_skip``, and ``ex_hidden -> ex_out`` last.
    """

    def __init__(self, config: NPHMConfig) -> None:
        super().__init__()
        self.compressor = nn.Linear(config.compressor_in, config.ex_compress_dim)
        dims_in = [config.ex_in] + [config.ex_hidden] * config.ex_layers
        dims_out = [config.ex_hidden] * config.ex_layers + [config.ex_out]
        layers = []
        for i, (d_in, d_out) in enumerate(zip(dims_in, dims_out)):
            if i == config.ex_skip:
                d_in = d_in + config.ex_in
            layers.append(nn.Linear(d_in, d_out))
        self.layers = nn.ModuleList(layers)
