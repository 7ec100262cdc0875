"""Load official Pixel3DMM networks (``normals.ckpt``, ``uv.ckpt``) into :class:`DensePredictor`.

The Lightning checkpoint pickles its training config as OmegaConf objects; it is read without
executing any of its code (:mod:`nphmkit._safe_pickle`). The architecture comes from the stored
config, cross-checked against the tensor shapes; every ``net.*`` tensor is either loaded
(strictly) or reported as one of the modules the official forward never uses.

The loaded network returns the official raw prediction. Its normals are in Pixel3DMM's own
FLAME-aligned frame, not nphmkit's camera frame: to use them as a fitting target, rotate them
into the camera frame with the rotation of the tracked FLAME head (``n_cam = R_head @ n``)
and normalize, or fine-tune a camera-frame head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from nphmkit._safe_pickle import load_checkpoint, plain
from nphmkit.heads.dense import DenseConfig, DensePredictor
from nphmkit.heads.vit import ViTConfig
from nphmkit.weights import load_state_strict

_UNUSED_PREFIXES = ("dir_norm.", "dir_norm_uv.", "uv_enc_mlp.", "vol_decoder.norm.")
_BACKBONES = {
    "vit_small_patch16_224.dino": "dino_vits16",
    "vit_base_patch16_224.dino": "dino_vitb16",
    "vit_small_patch14_dinov2.lvd142m": "dinov2_vits14",
    "vit_base_patch14_dinov2.lvd142m": "dinov2_vitb14",
}
_OUTPUT_NAMES = {"normals": "normals", "uv_map": "uv", "pos_map": "canonical"}


@dataclass(frozen=True)
class LoadReport:
    """What loading found: the config read from the file and the tensors that were not used."""

    config: dict
    unused: tuple[str, ...]


def config_from_checkpoint(cfg: dict, state: dict[str, torch.Tensor]) -> DenseConfig:
    """A :class:`DenseConfig` from the stored training config, checked against tensor shapes."""
    model = cfg.get("model", {}) if isinstance(cfg, dict) else {}
    backbone_name = model.get("encoder_backbone", "vit_small_patch16_224.dino")
    if backbone_name not in _BACKBONES:
        raise ValueError(f"checkpoint: unsupported backbone {backbone_name!r}; known: {sorted(_BACKBONES)}")
    backbone = ViTConfig.preset(_BACKBONES[backbone_name])
    width = state["net.img_encoder.model.patch_embed.proj.weight"].shape[0]
    depth = len({k.split(".")[4] for k in state if k.startswith("net.img_encoder.model.blocks.")})
    if (width, depth) != (backbone.embed_dim, backbone.depth):
        raise ValueError(
            f"checkpoint: backbone {backbone_name} should have width {backbone.embed_dim} and {backbone.depth} blocks, "
            f"the tensors have {width} and {depth}"
        )
    embed = state["net.vol_decoder.down_proj.weight"].shape[0]
    layers = len({k.split(".")[3] for k in state if k.startswith("net.vol_decoder.layers.")})
    views = state["net.view_embed"].shape[1] if "net.view_embed" in state else 1
    view_dim = state["net.view_embed"].shape[2] if "net.view_embed" in state else 16
    if model.get("embedding_dim", embed) != embed or model.get("num_layers", layers) != layers:
        raise ValueError(
            f"checkpoint: config says embedding_dim={model.get('embedding_dim')}, num_layers={model.get('num_layers')}; "
            f"tensors say {embed}, {layers}"
        )
    kinds = model.get("prediction_type", ["normals"])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    outputs = tuple(_OUTPUT_NAMES[k] for k in ("pos_map", "uv_map", "normals") if k in kinds)
    head = state["net.token_2_patch_content.weight"].shape[0]
    image_size = 512
    cfg_out = DenseConfig(
        backbone=backbone, image_size=image_size, embed_dim=embed, num_layers=layers,
        num_heads=int(model.get("num_heads", 8)), n_views=views, view_embed_dim=view_dim, outputs=outputs,
        patch_pos_enc="net.patch_pos_enc" in state,
    )
    if head != cfg_out.out_patch**2 * cfg_out.channels:
        raise ValueError(
            f"checkpoint: read-out has {head} outputs, config predicts {list(outputs)} "
            f"({cfg_out.out_patch**2 * cfg_out.channels} outputs)"
        )
    return cfg_out


def load_pixel3dmm(path: str | os.PathLike, return_report: bool = False):
    """An official Pixel3DMM ``.ckpt`` as a :class:`DensePredictor` in eval mode (float32, CPU).

    ``model(images)`` with ``images (B, 3, 512, 512)`` RGB in [0, 1] returns the official raw
    prediction ``(B, P, 512, 512)``. With ``return_report=True`` returns ``(model, LoadReport)``.
    """
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"path: {path} is not a Lightning checkpoint (no 'state_dict')")
    state = {k: v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    hyper = plain(ckpt.get("hyper_parameters", {})) or {}
    cfg = hyper.get("cfg", hyper) if isinstance(hyper, dict) else {}
    config = config_from_checkpoint(cfg or {}, state)
    net = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    unused = tuple(sorted(k for k in net if k.startswith(_UNUSED_PREFIXES)))
    used = {k: v.float() for k, v in net.items() if not k.startswith(_UNUSED_PREFIXES)}
    model = DensePredictor(config)
    load_state_strict(model, used, f"{path} (net.*)")
    model.metadata = {
        "source": "official Pixel3DMM checkpoint", "unused_tensors": list(unused),
        "normal_frame": "head",  # FLAME-aligned normals (DenseMaps.frame)
    }
    model = model.eval()
    return (model, LoadReport(cfg or {}, unused)) if return_report else model
