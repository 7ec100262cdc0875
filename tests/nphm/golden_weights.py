"""Deterministic weights, anchors, codes and points for the golden test against the official code.

Pure numpy and integer hashing, so the official MonoNPHM code (run outside this repository,
see tests/nphm/data/README.md) and nphmkit's tests build bit-identical inputs from the same
recipe without sharing a random generator. Tensors are laid out with the official key names.
"""

from __future__ import annotations

import numpy as np

OFFICIAL = dict(
    n_anchors=65,
    n_pairs=30,
    glob=64,
    loc=32,
    ex=100,
    id_hidden=200,
    id_layers=4,
    pos_hidden=64,
    ex_hidden=400,
    ex_layers=6,
    compress=16,
    n_hyper=2,
    app_hidden=200,
)


def hashed_uniform(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Values in [-1, 1) from an integer hash of (index, seed); float64, platform-independent."""
    n = int(np.prod(shape)) if shape else 1
    k = np.arange(n, dtype=np.uint64)
    mask = np.uint64(0xFFFFFFFF)
    x = (k * np.uint64(2654435761) + np.uint64(seed) * np.uint64(40503) + np.uint64(12345)) & mask
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(2246822519)) & mask
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(3266489917)) & mask
    x ^= x >> np.uint64(16)
    return (x.astype(np.float64) / 2.0**32 * 2.0 - 1.0).reshape(shape)


class _Seeds:
    def __init__(self) -> None:
        self.next = 1

    def __call__(self) -> int:
        self.next += 1
        return self.next


def _linear(prefix: str, d_in: int, d_out: int, seeds: _Seeds, out: dict) -> None:
    bound = 1.0 / np.sqrt(d_in)
    out[f"{prefix}.weight"] = (hashed_uniform((d_out, d_in), seeds()) * bound).astype(np.float32)
    out[f"{prefix}.bias"] = (hashed_uniform((d_out,), seeds()) * bound).astype(np.float32)


def official_state(s: dict = OFFICIAL) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(id_decoder, ex_decoder)`` state dicts in the official layout, colour branch included."""
    seeds = _Seeds()
    n_types = s["n_anchors"] - s["n_pairs"] + 1
    id_state: dict[str, np.ndarray] = {}
    d_in = s["glob"] + s["loc"] + 3 + s["n_hyper"]
    dims = [d_in] + [s["id_hidden"]] * s["id_layers"] + [1]
    for t in range(n_types):
        for i in range(len(dims) - 1):
            _linear(f"deepSDFensemble.layers.{t}.layers.{2 * i}", dims[i], dims[i + 1], seeds, id_state)
    # colour branch (ignored by nphmkit, needed by the official model)
    app_dims = [16 + s["glob"] + s["loc"]] + [s["app_hidden"]] * 4 + [3]
    for t in range(n_types):
        for i in range(len(app_dims) - 1):
            _linear(f"aggr_app.layers.{t}.layers.{2 * i}", app_dims[i], app_dims[i + 1], seeds, id_state)
    _linear("communcation_bottleneck1", s["id_hidden"], 16, seeds, id_state)
    _linear("communcation_bottleneck2", 16, 16, seeds, id_state)
    _linear("mlp_pos.0", s["glob"], s["pos_hidden"], seeds, id_state)
    _linear("mlp_pos.2", s["pos_hidden"], s["pos_hidden"], seeds, id_state)
    _linear("mlp_pos.4", s["pos_hidden"], 3 * s["n_anchors"], seeds, id_state)
    # small anchor offsets, as in a trained model
    id_state["mlp_pos.4.weight"] *= np.float32(0.1)
    id_state["mlp_pos.4.bias"] *= np.float32(0.1)

    ex_state: dict[str, np.ndarray] = {}
    id_dim = s["glob"] + (s["n_anchors"] + 1) * s["loc"]
    _linear("compressor.0", id_dim + 3 * s["n_anchors"], s["compress"], seeds, ex_state)
    ex_in = 3 + s["compress"] + s["ex"]
    e = s["ex_hidden"]
    ins = [ex_in] + [e] * s["ex_layers"]
    outs = [e] * s["ex_layers"] + [3 + s["n_hyper"]]
    for i in range(len(ins)):
        d = ins[i] + (ex_in if i == s["ex_layers"] // 2 else 0)
        _linear(f"defDeepSDF.lin{i}", d, outs[i], seeds, ex_state)
    # small deformations, as in a trained model
    ex_state[f"defDeepSDF.lin{len(ins) - 1}.weight"] *= np.float32(0.1)
    return id_state, ex_state


def mean_anchors(s: dict = OFFICIAL) -> np.ndarray:
    """Mirror-symmetric mean anchors ``(n_anchors, 3)`` (pairs: even index at x < 0)."""
    pairs = s["n_pairs"]
    u = hashed_uniform((pairs, 3), 7)
    left = np.stack([-0.02 - 0.3 * (u[:, 0] + 1) / 2, 0.4 * u[:, 1], 0.05 + 0.3 * u[:, 2]], axis=1)
    right = left * np.array([-1.0, 1.0, 1.0])
    paired = np.stack([left, right], axis=1).reshape(-1, 3)
    m = s["n_anchors"] - 2 * pairs
    mid = np.stack([np.zeros(m), np.linspace(-0.4, 0.35, m), 0.2 + 0.1 * hashed_uniform((m,), 8)], axis=1)
    return np.concatenate([paired, mid]).astype(np.float32)


def inputs(batch: int = 2, n_points: int = 61, s: dict = OFFICIAL) -> dict[str, np.ndarray]:
    """Points ``(B, N, 3)`` in a head-sized box, identity/appearance ``(B, id_dim)`` and expression ``(B, ex)`` codes."""
    id_dim = s["glob"] + (s["n_anchors"] + 1) * s["loc"]
    return {
        "points": (hashed_uniform((batch, n_points, 3), 101) * np.array([0.45, 0.55, 0.5])).astype(np.float32),
        "z_id": (0.1 * hashed_uniform((batch, id_dim), 102)).astype(np.float32),
        "z_app": (0.1 * hashed_uniform((batch, id_dim), 103)).astype(np.float32),
        "z_ex": (0.2 * hashed_uniform((batch, s["ex"]), 104)).astype(np.float32),
    }
