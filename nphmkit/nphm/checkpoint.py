"""Load official MonoNPHM checkpoints (``checkpoint_epoch_*.tar``) without executing pickled code.

The file is a ``torch.save`` dict with ``id_decoder`` and ``ex_decoder`` state dicts (and
latent-code embeddings and optimizer states, which are ignored). The mean anchors are not in
it: they come from the 65 x 3 asset ``anchors_65.npy``. The geometry part is loaded strictly;
the colour branch (``aggr_app.*``, ``communcation_bottleneck*``), which nphmkit does not
compute, is recognized and skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from nphmkit.nphm.config import NPHMConfig
from nphmkit.nphm.model import NPHM

_ENSEMBLE = re.compile(r"deepSDFensemble\.layers\.(\d+)\.layers\.(\d+)\.(weight|bias)")
_COLOUR = re.compile(r"(aggr_app\.|communcation_bottleneck\d\.)")
_DEFORM = re.compile(r"defDeepSDF\.lin(\d+)\.(weight|bias)")


def _read_checkpoint(checkpoint: str | os.PathLike | Mapping) -> Mapping:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler refuses anything that is not plain tensors/containers
        raise ValueError(
            f"checkpoint: {path} could not be read as a plain tensor checkpoint "
            f"(weights_only=True refuses pickled code): {_first_line(err)}"
        ) from err


def _first_line(err: Exception, limit: int = 200) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_anchors(anchors: str | os.PathLike | np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(anchors, (str, os.PathLike)):
        path = Path(anchors)
        if not path.is_file():
            raise FileNotFoundError(f"anchors: file not found: {path}")
        anchors = np.load(path, allow_pickle=False)
    arr = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
    arr = arr.reshape(-1, 3) if arr.dim() > 2 and arr.shape[-1] == 3 and arr.numel() % 3 == 0 else arr
    if arr.dim() != 2 or arr.shape[1] != 3:
        raise ValueError(f"anchors: expected an (n_anchors, 3) array, got shape {tuple(arr.shape)}")
    if not bool(torch.isfinite(arr).all()):
        raise ValueError("anchors: holds NaN or Inf values")
    return arr


def _require(state: Mapping[str, torch.Tensor], part: str, keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"checkpoint: {part} is missing tensor(s) {', '.join(repr(k) for k in missing)}")


def infer_config(id_state: Mapping[str, torch.Tensor], ex_state: Mapping[str, torch.Tensor]) -> NPHMConfig:
    """Read every size of the decoder off the tensor shapes of an official checkpoint."""
    types = set()
    layers = set()
    for key in id_state:
        m = _ENSEMBLE.fullmatch(key)
        if m:
            types.add(int(m.group(1)))
            layers.add(int(m.group(2)))
    if not types or "mlp_pos.4.weight" not in id_state:
        raise ValueError(
            "checkpoint: id_decoder holds no 'deepSDFensemble.layers.*' / 'mlp_pos.*' tensors; "
            "is this a MonoNPHM checkpoint?"
        )
    n_types = max(types) + 1
    n_linear = len(layers)
    _require(id_state, "id_decoder", ("deepSDFensemble.layers.0.layers.0.weight", "mlp_pos.0.weight"))
    w0 = id_state["deepSDFensemble.layers.0.layers.0.weight"]
    pos0 = id_state["mlp_pos.0.weight"]
    pos4 = id_state["mlp_pos.4.weight"]
    n_anchors = pos4.shape[0] // 3
    glob = pos0.shape[1]
    lin_keys = sorted(int(_DEFORM.fullmatch(k).group(1)) for k in ex_state if _DEFORM.fullmatch(k) and k.endswith("weight"))
    if not lin_keys or "compressor.0.weight" not in ex_state:
        raise ValueError("checkpoint: ex_decoder holds no 'defDeepSDF.lin*' / 'compressor.0.*' tensors")
    _require(ex_state, "ex_decoder", ("defDeepSDF.lin0.weight",))
    lin0 = ex_state["defDeepSDF.lin0.weight"]
    lin_last = ex_state[f"defDeepSDF.lin{lin_keys[-1]}.weight"]
    comp = ex_state["compressor.0.weight"]
    n_hyper = lin_last.shape[0] - 3
    lat_loc = w0.shape[1] - glob - 3 - n_hyper
    return NPHMConfig(
        n_anchors=n_anchors,
        n_symmetric_pairs=n_anchors + 1 - n_types,
        lat_dim_glob=glob,
        lat_dim_loc=lat_loc,
        lat_dim_ex=lin0.shape[1] - 3 - comp.shape[0],
        id_hidden=w0.shape[0],
        id_layers=n_linear - 1,
        pos_mlp_hidden=pos0.shape[0],
        ex_hidden=lin0.shape[0],
        ex_layers=len(lin_keys) - 1,
        ex_compress_dim=comp.shape[0],
        n_hyper=n_hyper,
    )


def official_to_nphmkit(
    id_state: Mapping[str, torch.Tensor], ex_state: Mapping[str, torch.Tensor], config: NPHMConfig
) -> dict[str, torch.Tensor]:
    """Map official key names onto nphmkit's (stacked ensemble) names. Unknown keys are errors."""
    out: dict[str, torch.Tensor] = {}
    n_linear = config.id_layers + 1
    per_layer: dict[tuple[str, int], dict[int, torch.Tensor]] = {}
    unexpected = []
    for key, value in id_state.items():
        m = _ENSEMBLE.fullmatch(key)
        if m:
            t, sub, kind = int(m.group(1)), int(m.group(2)), m.group(3)
            if sub % 2 or sub // 2 >= n_linear or t >= config.n_types:
                unexpected.append(f"id_decoder.{key}")
                continue
            per_layer.setdefault((kind, sub // 2), {})[t] = value
        elif key.startswith("mlp_pos."):
            out["anchor_mlp.layers." + key[len("mlp_pos.") :]] = value
        elif _COLOUR.match(key):
            continue  # colour branch: not part of the geometry model
        else:
            unexpected.append(f"id_decoder.{key}")
    missing = []
    for (kind, layer), by_type in sorted(per_layer.items()):
        absent = [t for t in range(config.n_types) if t not in by_type]
        missing += [f"id_decoder.deepSDFensemble.layers.{t}.layers.{2 * layer}.{kind}" for t in absent]
        if not absent:
            name = "weights" if kind == "weight" else "biases"
            out[f"ensemble.{name}.{layer}"] = torch.stack([by_type[t] for t in range(config.n_types)])
    for key, value in ex_state.items():
        m = _DEFORM.fullmatch(key)
        if m:
            out[f"expression.layers.{m.group(1)}.{m.group(2)}"] = value
        elif key.startswith("compressor.0."):
            out["expression.compressor." + key[len("compressor.0.") :]] = value
        else:
            unexpected.append(f"ex_decoder.{key}")
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"unexpected tensors {sorted(unexpected)}")
        if missing:
            parts.append(f"missing tensors {sorted(missing)}")
        raise ValueError("checkpoint: not a MonoNPHM geometry layout: " + "; ".join(parts))
    return out


def load_mononphm(
    checkpoint: str | os.PathLike | Mapping,
    anchors: str | os.PathLike | np.ndarray | torch.Tensor,
    config: NPHMConfig | None = None,
    landmark_anchors: Sequence[int] | None = None,
) -> NPHM:
    """Build an :class:`NPHM` from an official MonoNPHM checkpoint and its mean anchors.

    Args:
        checkpoint: path of ``checkpoint_epoch_*.tar`` (read with ``weights_only=True``) or an
            already-loaded dict with ``id_decoder`` and ``ex_decoder``.
        anchors: path of ``anchors_65.npy`` (or an array) with the ``(n_anchors, 3)`` mean anchors.
        config: expected sizes; default: read off the tensor shapes. A config that disagrees
            with the file is an error naming the tensors.
        landmark_anchors: the 7 anchors that mark the NoW landmarks (NoW order), if you know them;
            official checkpoints carry none, so without it :meth:`NPHM.landmarks` raises.

    Returns:
        An NPHM in eval mode, float32, on the CPU.
    """
    ckpt = _read_checkpoint(checkpoint)
    for key in ("id_decoder", "ex_decoder"):
        if key not in ckpt:
            raise ValueError(f"checkpoint: expected key {key!r} (MonoNPHM layout), found keys {sorted(ckpt)}")
    id_state, ex_state = ckpt["id_decoder"], ckpt["ex_decoder"]
    config = config or infer_config(id_state, ex_state)
    mean = _read_anchors(anchors)
    if mean.shape[0] != config.n_anchors:
        raise ValueError(
            f"anchors: expected {config.n_anchors} anchors (the checkpoint predicts {config.n_anchors}), "
            f"got {mean.shape[0]}"
        )
    state = official_to_nphmkit(id_state, ex_state, config)
    state["mean_anchors"] = mean
    model = NPHM(config, mean_anchors=mean)
    from nphmkit.weights import load_state_strict

    load_state_strict(model, {k: v.float() for k, v in state.items()}, "checkpoint")
    model.metadata = {"source": "official MonoNPHM checkpoint"}
    if landmark_anchors is not None:
        model.landmark_anchors = landmark_anchors
    return model.eval()


def nphmkit_to_official(model: NPHM) -> dict[str, dict[str, torch.Tensor]]:
    """The geometry weights of ``model`` in the official key layout (``id_decoder``, ``ex_decoder``).

    The inverse of :func:`official_to_nphmkit`; the mean anchors are not part of it.
    """
    id_state: dict[str, torch.Tensor] = {}
    for layer, (w, b) in enumerate(zip(model.ensemble.weights, model.ensemble.biases)):
        for t in range(model.config.n_types):
            id_state[f"deepSDFensemble.layers.{t}.layers.{2 * layer}.weight"] = w[t].detach().clone()
            id_state[f"deepSDFensemble.layers.{t}.layers.{2 * layer}.bias"] = b[t].detach().clone()
    for key, value in model.anchor_mlp.layers.state_dict().items():
        id_state[f"mlp_pos.{key}"] = value.clone()
    ex_state = {f"compressor.0.{k}": v.clone() for k, v in model.expression.compressor.state_dict().items()}
    for i, lin in enumerate(model.expression.layers):
        ex_state[f"defDeepSDF.lin{i}.weight"] = lin.weight.detach().clone()
        ex_state[f"defDeepSDF.lin{i}.bias"] = lin.bias.detach().clone()
    return {"id_decoder": id_state, "ex_decoder": ex_state}
