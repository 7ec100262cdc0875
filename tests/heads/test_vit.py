"""The ViT: timm's parameter layout, position-embedding resampling, intermediate tokens."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from nphmkit.heads.vit import ViT, ViTConfig, resample_pos_embed
from tests.helpers import assert_close


def timm_layout(depth: int, dim: int, patch: int, pos_tokens: int, mlp: int, layer_scale=False, reg=0) -> dict:
    """Key -> shape of timm's VisionTransformer state dict, written out by hand."""
    keys = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, pos_tokens, dim),
        "patch_embed.proj.weight": (dim, 3, patch, patch),
        "patch_embed.proj.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    if reg:
        keys["reg_token"] = (1, reg, dim)
    for i in range(depth):
        p = f"blocks.{i}."
        keys.update({
            p + "norm1.weight": (dim,), p + "norm1.bias": (dim,),
            p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,),
            p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
            p + "norm2.weight": (dim,), p + "norm2.bias": (dim,),
            p + "mlp.fc1.weight": (mlp, dim), p + "mlp.fc1.bias": (mlp,),
            p + "mlp.fc2.weight": (dim, mlp), p + "mlp.fc2.bias": (dim,),
        })
        if layer_scale:
            keys[p + "ls1.gamma"] = (dim,)
            keys[p + "ls2.gamma"] = (dim,)
    return keys


@pytest.mark.parametrize(
    "name, layout",
    [
        ("dino_vits16", dict(depth=12, dim=384, patch=16, pos_tokens=197, mlp=1536)),
        ("dino_vitb16", dict(depth=12, dim=768, patch=16, pos_tokens=197, mlp=3072)),
        ("dinov2_vits14", dict(depth=12, dim=384, patch=14, pos_tokens=1370, mlp=1536, layer_scale=True)),
        ("dinov2_vits14_reg4", dict(depth=12, dim=384, patch=14, pos_tokens=1369, mlp=1536, layer_scale=True, reg=4)),
    ],
)
def test_state_dict_has_timms_names_and_shapes(name, layout):
    model = ViT(ViTConfig.preset(name))
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == timm_layout(**layout)
    # a state dict laid out that way loads strictly and runs
    tensors = {k: torch.randn(s) * 0.02 for k, s in timm_layout(**layout).items()}
    model.load_state_dict(tensors, strict=True)


def _reference_forward(sd: dict, cfg: ViTConfig, images: torch.Tensor) -> torch.Tensor:
    """An independent ViT forward written from the definition (no nphmkit modules)."""
    x = F.conv2d(images, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size)
    h, w = x.shape[2:]
    x = x.flatten(2).transpose(1, 2)
    pos = sd["pos_embed"]
    grid = pos[:, 1:].reshape(1, cfg.pos_grid, cfg.pos_grid, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True).permute(0, 2, 3, 1).reshape(1, h * w, -1)
    x = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), x], 1) + torch.cat([pos[:, :1], grid], 1)
    d, nh = cfg.embed_dim, cfg.num_heads
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        y = F.layer_norm(x, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], cfg.norm_eps)
        q, k, v = F.linear(y, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).chunk(3, dim=-1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], nh, d // nh).transpose(1, 2)  # noqa: E731
        att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (d // nh) ** 0.5, dim=-1) @ split(v)
        x = x + F.linear(att.transpose(1, 2).reshape(x.shape), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        y = F.layer_norm(x, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], cfg.norm_eps)
        y = F.gelu(F.linear(y, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"]))
        y = F.linear(y, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
        x = x + y
    return F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], cfg.norm_eps)


@given(st.integers(1, 2), st.sampled_from([32, 48, 80]), st.integers(0, 99))
def test_forward_matches_an_independent_reference(batch, size, seed):
    torch.manual_seed(seed)
    cfg = ViTConfig.preset("tiny")
    model = ViT(cfg)
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    images = torch.randn(batch, 3, size, size)
    ref = _reference_forward(model.state_dict(), cfg, images)
    assert_close(model.forward_features(images), ref, atol=2e-5)
    (prefix, patches), = model.forward_tokens(images)
    assert prefix.shape == (batch, 1, 64) and patches.shape == (batch, (size // 16) ** 2, 64)
    grids = model.forward_grids(images, layers=(0, -1))
    assert len(grids) == 2 and grids[1].shape == (batch, 64, size // 16, size // 16)
    assert_close(grids[1].flatten(2).transpose(1, 2), ref[:, 1:], atol=2e-5)


def test_position_embedding_resampling():
    pos = torch.randn(1, 1 + 16, 8)
    assert torch.equal(resample_pos_embed(pos, (4, 4), (4, 4), 1), pos)
    out = resample_pos_embed(pos, (6, 3), (4, 4), 1)
    assert out.shape == (1, 1 + 18, 8) and torch.equal(out[:, :1], pos[:, :1])


def test_registers_and_bad_inputs():
    model = ViT(ViTConfig.preset("tiny").__class__(embed_dim=32, depth=1, num_heads=2, pos_grid=2, reg_tokens=2,
                                                    no_embed_class=True))
    (prefix, patches), = model.forward_tokens(torch.randn(1, 3, 32, 64))
    assert prefix.shape == (1, 3, 32) and patches.shape == (1, 8, 32)
    with pytest.raises(ValueError, match="multiples of the patch size"):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="expected one of"):
        ViTConfig.preset("resnet50")


def test_matches_timm_when_available():
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_small_patch16_224.dino", pretrained=False, dynamic_img_size=True).eval()
    model = ViT(ViTConfig.preset("dino_vits16")).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert_close(model.forward_features(x), ref.forward_features(x), atol=1e-4)


def test_attention_backend_is_a_config_argument():
    from nphmkit._optional import available

    with pytest.raises(ValueError, match=r"attention: expected one of \('sdpa', 'xformers'\), got 'flash'"):
        ViTConfig(embed_dim=32, depth=1, num_heads=2, pos_grid=2, attention="flash")
    if available("xformers"):
        pytest.skip("xformers is installed here; the missing-extra message cannot be checked")
    with pytest.raises(ImportError, match="xformers"):
        ViT(ViTConfig(embed_dim=32, depth=1, num_heads=2, pos_grid=2, attention="xformers"))
