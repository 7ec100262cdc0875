"""Weight packs: the network weights the kernels run, as plain tensors (no model class).

The decoder builds a pack from its parameters and hands it to a kernel entry point
(:mod:`nphmkit.kernels.dispatch`); the kernels never see the model. ``owner`` is the module the
tensors belong to: the kernels key their cached weight layouts on it (``weight_cache``), so a
layout is rebuilt whenever any of its parameters changes. Importing this module imports no triton.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EnsembleWeights:
    """A stack of ``T`` same-shaped MLPs (the identity ensemble), Softplus(beta) between layers.

    ``weights[l] (T, out_l, in_l)``, ``biases[l] (T, out_l)``; the last layer has one output. The
    first layer's inputs are ``[code (code_dim) | query (query_dim)]``: the kernels take the code part
    already multiplied out (a per-row table), and multiply the query part themselves.
    """

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    code_dim: int
    softplus_beta: float
    owner: torch.nn.Module

    @property
    def n_types(self) -> int:
        return self.weights[0].shape[0]

    @property
    def hidden(self) -> int:
        return self.weights[0].shape[1]

    @property
    def query_dim(self) -> int:
        return self.weights[0].shape[2] - self.code_dim

    @property
    def n_hidden_layers(self) -> int:
        """Hidden-to-hidden layers (all but the first and the last)."""
        return len(self.weights) - 2


@dataclass(frozen=True)
class ExpressionWeights:
    """A dense MLP over ``[x (3) | per-sample part]`` with one skip layer (the expression deformation).

    ``layers[i] = (weight (out, in), bias (out,))``; layer ``skip`` takes ``[h (hidden) | x (3) | ...]``
    and its output is divided by sqrt(2) (MonoNPHM's skip). The per-sample parts of the first and the
    skip layer are precomputed by the caller (``first``, ``skip`` tables of the entry point).
    """

    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    skip: int
    softplus_beta: float
    owner: torch.nn.Module

    @property
    def hidden(self) -> int:
        return self.layers[0][0].shape[0]

    @property
    def out_dim(self) -> int:
        return self.layers[-1][0].shape[0]

    @property
    def n_hidden_layers(self) -> int:
        return len(self.layers) - 2
