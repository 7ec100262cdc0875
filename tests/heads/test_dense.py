"""The dense predictor: Pixel3DMM layout, official checkpoints read safely and strictly, maps and TTA."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from nphmkit.heads import DenseConfig, DenseMaps, DensePredictor, load_pixel3dmm
from tests.heads.test_vit import _reference_forward
from tests.helpers import assert_close

omegaconf = pytest.importorskip("omegaconf")

UNUSED = {  # modules in the official state dict that its forward never uses
    "dir_norm.norm.weight": (384,), "dir_norm.norm.bias": (384,), "dir_norm.mlp.1.weight": (768, 32),
    "dir_norm.mlp.1.bias": (768,), "dir_norm_uv.norm.weight": (384,), "dir_norm_uv.norm.bias": (384,),
    "dir_norm_uv.mlp.1.weight": (768, 384), "dir_norm_uv.mlp.1.bias": (768,), "uv_enc_mlp.1.weight": (384, 24),
    "uv_enc_mlp.1.bias": (384,), "vol_decoder.norm.weight": (256,), "vol_decoder.norm.bias": (256,),
}


def _official_forward(net: dict, images: torch.Tensor, channels: int) -> torch.Tensor:
    """The official Network.forward for one view, written from its structure (ViT, view embedding,
    VolTransformer of GroupAttBlocks, transposed convolutions, read-out, unpatchify)."""
    from nphmkit.heads.vit import ViTConfig

    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    vit = {k[len("img_encoder.model."):]: v for k, v in net.items() if k.startswith("img_encoder.model.")}
    tokens = _reference_forward(vit, ViTConfig.preset("dino_vits16"), (images - mean) / std)[:, 1:]
    b = images.shape[0]
    feats = torch.einsum("blc->bcl", tokens).reshape(b, 384, 32, 32).reshape(b, 1, 384, 32, 32)
    feats = torch.cat([feats, net["view_embed"][:, :1].repeat(b, 1, 1, 32, 32)], dim=2)
    x = F.linear(feats.permute(0, 1, 3, 4, 2), net["vol_decoder.down_proj.weight"], net["vol_decoder.down_proj.bias"])
    x = x.permute(0, 1, 4, 2, 3)
    for j in range(6):
        p = f"vol_decoder.layers.{j}."
        bb, v, c, h, w = x.shape
        t = x.permute(0, 1, 3, 4, 2).reshape(bb, v * h * w, c)

        def ln(z, name):
            return F.layer_norm(z, (c,), net[p + name + ".weight"], net[p + name + ".bias"])

        def attn(z, name):
            return F.multi_head_attention_forward(
                z.transpose(0, 1), z.transpose(0, 1), z.transpose(0, 1), c, 8, net[p + name + ".in_proj_weight"], None,
                None, None, False, 0.0, net[p + name + ".out_proj.weight"], None, need_weights=False,
            )[0].transpose(0, 1)

        def mlp(z, name):
            z = F.gelu(F.linear(z, net[p + name + ".0.weight"], net[p + name + ".0.bias"]))
            return F.linear(z, net[p + name + ".3.weight"], net[p + name + ".3.bias"])

        t = ln(t, "norm1")
        t = t + attn(t, "self_attn")
        t = t + mlp(ln(t, "norm2"), "mlp")
        t = ln(t, "norm3")
        t = t + attn(t, "self_attn2")
        t = t + mlp(ln(t, "norm4"), "mlp2")
        x = t.reshape(bb, v, h, w, c).permute(0, 1, 4, 2, 3)
    x = x.reshape(-1, 256, 32, 32)
    for i in (1, 2, 3):
        x = F.gelu(F.conv_transpose2d(x, net[f"t_conv{i}.weight"], net[f"t_conv{i}.bias"], stride=2))
    x = x.permute(0, 2, 3, 1).reshape(b, -1, 256)
    x = F.linear(x, net["token_2_patch_content.weight"], net["token_2_patch_content.bias"])
    x = x.reshape(b, 1, 256, 256, 2, 2, channels)
    x = torch.einsum("nvhwpqc->nvchpwq", x)
    return x.reshape(b, 1, channels, 512, 512)[:, 0]


class _Evil:
    def __reduce__(self):
        return (exec, ("import builtins; builtins.EVIL_RAN = True",))


def _write_ckpt(path, net: dict, prediction_type="normals", extra=None):
    cfg = omegaconf.OmegaConf.create({
        "model": {"encoder_backbone": "vit_small_patch16_224.dino", "embedding_dim": 256, "num_layers": 6,
                  "num_heads": 8, "prediction_type": [prediction_type], "view_embed_dim": 16}, "n_views": 2,
    })
    state = {f"net.{k}": v for k, v in net.items()}
    state["vertex_weight_mask"] = torch.ones(1, 5023, 3)
    state.update(extra or {})
    ckpt = {"state_dict": state, "hyper_parameters": {"cfg": cfg, "callback": _Evil()}, "epoch": 3,
            "pytorch-lightning_version": "2.1.0"}
    torch.save(ckpt, path)


@pytest.fixture(scope="module")
def official_net():
    torch.manual_seed(0)
    model = DensePredictor(DenseConfig.pixel3dmm(("normals",)))
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    net = dict(model.state_dict())
    net.update({k: torch.randn(s) for k, s in UNUSED.items()})
    return net


def test_official_checkpoint_loads_strictly_and_reproduces_the_official_forward(tmp_path, official_net):
    _write_ckpt(tmp_path / "normals.ckpt", official_net)
    import builtins

    model, report = load_pixel3dmm(tmp_path / "normals.ckpt", return_report=True)
    assert not getattr(builtins, "EVIL_RAN", False)  # nothing from the pickle was executed
    assert sorted(report.unused) == sorted(UNUSED) and report.config["n_views"] == 2
    assert model.config.channels == 3 and model.config.n_views == 2
    images = torch.rand(1, 3, 512, 512)
    with torch.no_grad():
        ours = model(images)
        ref = _official_forward(official_net, images, 3)
    assert ours.shape == (1, 3, 512, 512)
    assert_close(ours, ref, atol=1e-5)
    with torch.no_grad():  # its normals are FLAME-aligned, and the maps say so
        maps = model.predict_maps(images.permute(0, 2, 3, 1))
    assert maps.frame == "head" and maps.canonical is None and maps.mask is None


def test_checkpoint_mismatches_are_named(tmp_path, official_net):
    net = dict(official_net)
    net.pop("t_conv2.bias")
    _write_ckpt(tmp_path / "a.ckpt", net)
    with pytest.raises(ValueError, match="t_conv2.bias"):
        load_pixel3dmm(tmp_path / "a.ckpt")
    _write_ckpt(tmp_path / "b.ckpt", official_net, extra={"net.surprise.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="surprise.weight"):
        load_pixel3dmm(tmp_path / "b.ckpt")
    _write_ckpt(tmp_path / "c.ckpt", official_net, prediction_type="uv_map")  # 12 read-out outputs for 2 channels
    with pytest.raises(ValueError, match="read-out has 12 outputs"):
        load_pixel3dmm(tmp_path / "c.ckpt")
    with pytest.raises(FileNotFoundError):
        load_pixel3dmm(tmp_path / "missing.ckpt")


def test_unpatchify_places_each_token_value_at_its_pixel():
    model = DensePredictor(DenseConfig.small(("normals", "uv")))
    cfg = model.config
    with torch.no_grad():
        model.token_2_patch_content.weight.zero_()
        bias = torch.arange(cfg.out_patch**2 * cfg.channels, dtype=torch.float32)
        model.token_2_patch_content.bias.copy_(bias)
        out = model(torch.rand(1, 3, 128, 128))
    # value index (2p + q) * P + c lands at pixel (2i + p, 2j + q), channel c
    for p in range(2):
        for q in range(2):
            for c in range(cfg.channels):
                assert torch.all(out[0, c, p::2, q::2] == (2 * p + q) * cfg.channels + c)


def test_predict_maps_and_flip_tta():
    torch.manual_seed(1)
    model = DensePredictor(DenseConfig.small()).eval()
    images = torch.rand(2, 128, 128, 3)  # channels-last, as every map between modules
    with torch.no_grad():
        maps = model.predict_maps(images)
        raw = model.split(model(images.permute(0, 3, 1, 2)))
        tta = model.predict_maps(images, flip_tta=True)
        tta_flipped = model.predict_maps(images.flip(2), flip_tta=True)
    assert isinstance(maps, DenseMaps) and maps.frame == "camera" and maps.confidence is None and maps.uv is None
    assert maps.normals.shape == (2, 128, 128, 3) and maps.mask.dtype == torch.bool
    assert_close(maps.normals.norm(dim=-1), torch.ones(2, 128, 128), atol=1e-5)
    assert_close(maps.canonical, raw["canonical"].permute(0, 2, 3, 1))
    assert torch.equal(maps.mask, raw["mask"][:, 0] > 0)
    # TTA is mirror-equivariant: the prediction of the mirrored image is the mirrored prediction
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    assert_close(tta_flipped.canonical, tta.canonical.flip(2) * mirror, atol=1e-5)
    assert_close(tta_flipped.normals, tta.normals.flip(2) * mirror, atol=1e-5)
    assert torch.equal(tta_flipped.mask, tta.mask.flip(2))
    with pytest.raises(ValueError, match="images: expected shape"):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"images: expected float RGB \(B, H, W, 3\)"):
        model.predict_maps(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match="images: expected finite values"):
        model.predict_maps(torch.full((1, 128, 128, 3), float("nan")))
    with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\].*divide 8-bit values by 255"):
        model.predict_maps(images * 255)
    with torch.no_grad():  # other float dtypes are read as the network's
        assert_close(model.predict_maps(images.double()).canonical, maps.canonical, atol=1e-5)
    with pytest.raises(ValueError, match="frame: expected one of"):
        DenseMaps(None, None, None, frame="world")


@pytest.mark.parametrize("size", [(96, 96), (160, 100)])
def test_predict_maps_resizes_to_the_input(size):
    """Other image sizes: the network sees the image resized to its own size, the maps come back at the
    input's size (bilinear), and the mask and unit normals are taken after resizing."""
    import torch.nn.functional as F

    torch.manual_seed(2)
    model = DensePredictor(DenseConfig.small()).eval()
    images = torch.rand(1, *size, 3)
    with torch.no_grad():
        maps = model.predict_maps(images)
        small = F.interpolate(images.permute(0, 3, 1, 2), size=(128, 128), mode="bilinear", antialias=True)
        raw = F.interpolate(model(small), size=size, mode="bilinear")
    parts = model.split(raw)
    assert maps.normals.shape == (1, *size, 3) and maps.mask.shape == (1, *size)
    assert_close(maps.canonical, parts["canonical"].permute(0, 2, 3, 1), atol=1e-5)
    assert_close(maps.normals, F.normalize(parts["normals"].permute(0, 2, 3, 1), dim=-1), atol=1e-5)
    assert torch.equal(maps.mask, parts["mask"][:, 0] > 0)


def test_weight_folder_round_trip(tmp_path):
    model = DensePredictor(DenseConfig.small())
    folder = model.save(tmp_path / "dense", metadata={"trained_on": "nothing"})
    back = DensePredictor.load(folder)
    assert back.config == model.config and back.metadata["trained_on"] == "nothing"
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_stubs_keep_pickled_state_without_importing(tmp_path):
    from nphmkit._safe_pickle import load_checkpoint, plain

    cfg = omegaconf.OmegaConf.create({"a": {"b": [1, 2, {"c": "x"}]}})
    torch.save({"cfg": cfg, "t": torch.ones(2)}, tmp_path / "x.pt")
    obj = load_checkpoint(tmp_path / "x.pt")
    assert plain(obj["cfg"]) == {"a": {"b": [1, 2, {"c": "x"}]}} and torch.equal(obj["t"], torch.ones(2))
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    with pytest.raises(Exception):  # noqa: B017 - a legacy pickle is refused one way or another, never run
        load_checkpoint(tmp_path / "evil.pt")
    import builtins

    assert not getattr(builtins, "EVIL_RAN", False)


def _perturbed(model: DensePredictor, seed: int) -> DensePredictor:
    """``model`` with every parameter moved (zero-initialized residual branches included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("scales", [1, 2])
def test_head_mix_refiner_and_confidence_start_as_the_plain_head_and_round_trip(tmp_path, scales):
    """The mixing convolutions and the refiner are residual branches that start at zero, so a bigger head
    grown from a trained predictor starts with its outputs; the folder round-trips the new sizes; a
    confidence output is a positive weight per pixel that is mirror-symmetric under flip TTA."""
    from nphmkit.training.predictor import transfer_state

    torch.manual_seed(3)
    plain = _perturbed(DensePredictor(DenseConfig.small()), 0).eval()
    cfg = replace(DenseConfig.small(("normals", "canonical", "mask", "confidence")), head_mix=2, refine=8,
                  refine_scales=scales)
    grown = DensePredictor(cfg).eval()
    grown.load_state_dict(transfer_state(plain, grown))
    images = torch.rand(2, 96, 128, 3)  # not the network's size: resized both ways
    with torch.no_grad():
        a, b = plain.predict_maps(images), grown.predict_maps(images)
    assert_close(b.normals, a.normals, atol=1e-6)
    assert_close(b.canonical, a.canonical, atol=1e-6)
    assert torch.equal(a.mask, b.mask) and a.confidence is None
    assert b.confidence.shape == (2, 96, 128) and bool((b.confidence > 0).all())
    _perturbed(grown, 1)
    with torch.no_grad():
        moved = grown.predict_maps(images)
        tta = grown.predict_maps(images, flip_tta=True)
        tta_flipped = grown.predict_maps(images.flip(2), flip_tta=True)
    assert float((moved.canonical - a.canonical).abs().max()) > 1e-3  # the new layers act
    assert_close(tta_flipped.confidence, tta.confidence.flip(2), rtol=1e-4, atol=1e-6)
    back = DensePredictor.load(grown.save(tmp_path / "grown"))
    assert back.config == grown.config
    with torch.no_grad():
        assert_close(back.predict_maps(images).confidence, moved.confidence)
    with pytest.raises(ValueError, match="head_mix, refine: expected >= 0"):
        replace(DenseConfig.small(), refine=-1)
    with pytest.raises(ValueError, match="refine_scales: expected 1 or 2, got 3"):
        replace(DenseConfig.small(), refine_scales=3)


@pytest.mark.parametrize("row,col", [(20, 20), (21, 34), (63, 7)])
def test_two_scale_refiner_sees_15_pixels(row, col):
    """Each output pixel of the two-scale refiner depends on a window of 13-15 input pixels per side (odd and
    even positions differ by the stride-2 layer) and on nothing further away; the one-scale refiner on 5."""
    from nphmkit.heads.dense import TwoScaleRefiner

    torch.manual_seed(row + col)
    for net, lo, hi in ((TwoScaleRefiner(3, 4), 13, 15), (DensePredictor(replace(DenseConfig.small(("normals",)),
                                                                         refine=4)).refiner, 5, 5)):
        _perturbed(net, 2)
        x = torch.rand(1, 6, 70, 70, requires_grad=True)
        net(x)[0, :, row, col].sum().backward()
        reach = x.grad.abs().sum((0, 1)) > 0
        rows, cols = reach.any(1).nonzero()[:, 0], reach.any(0).nonzero()[:, 0]
        for span in (int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1):
            assert lo <= span <= hi


def test_features_digest_covers_the_features_and_nothing_else():
    """Equal digests <=> equal feature tensors and sizes: the up-sampling head and the outputs may change."""
    from nphmkit.training.predictor import transfer_state

    torch.manual_seed(4)
    base = DensePredictor(DenseConfig.small())
    digest = base.features_sha256()
    head = DensePredictor(replace(DenseConfig.small(("normals", "confidence")), refine=4))
    head.load_state_dict(transfer_state(base, head))
    with torch.no_grad():
        head.t_conv2.weight.add_(1.0)
    assert head.features_sha256() == digest
    images = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(head.features(images), base.features(images))
        base.vol_decoder.layers[1].norm4.bias.add_(1e-6)
    assert base.features_sha256() != digest
    wider = DensePredictor(replace(DenseConfig.small(), num_layers=1))
    assert wider.features_sha256() != digest


@pytest.mark.parametrize("scales,batch,size", [(1, 3, 48), (2, 1, 64), (2, 5, 32)])
def test_channels_last_refiner_matches_the_channels_first_reference(scales, batch, size):
    """The refiner's fast path (channels-last convolutions) gives the reference's outputs and gradients, for
    both refiners, odd batch sizes and image sizes."""
    torch.manual_seed(batch * 7 + size)
    cfg = replace(DenseConfig.small(("normals", "canonical", "mask", "confidence")), image_size=size, head_mix=1,
                  refine=6, refine_scales=scales)
    net = _perturbed(DensePredictor(cfg), batch)
    images = torch.rand(batch, 3, size, size)
    outs, grads = [], []
    for fast in (False, True):
        net.refine_channels_last = fast
        net.zero_grad()
        raw = net(images)
        (raw * torch.linspace(-1, 1, raw.numel()).view(raw.shape)).sum().backward()
        outs.append(raw.detach())
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    assert outs[1].is_contiguous()
    assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    assert set(grads[1]) == set(grads[0]) and any(n.startswith("refiner.") for n in grads[0])
    for name, g in grads[0].items():
        assert_close(grads[1][name], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()) + 1e-7)
    del net.refine_channels_last  # back to the class default
    assert net.refine_channels_last is True


def test_split_gives_the_slices_and_their_gradients_bit_for_bit():
    """``split`` (one ``torch.split``) returns each output's channels and passes back exactly the gradients
    that per-output slices do."""
    torch.manual_seed(0)
    net = DensePredictor(DenseConfig.small(("normals", "canonical", "mask", "confidence")))
    raw = torch.randn(3, net.config.channels, 16, 16, requires_grad=True)
    parts = net.split(raw)
    assert list(parts) == ["normals", "canonical", "mask", "confidence"]
    assert [p.shape[1] for p in parts.values()] == [3, 3, 1, 1]
    starts = {"normals": 0, "canonical": 3, "mask": 6, "confidence": 7}
    slices = {k: raw[:, s : s + v.shape[1]] for (k, v), s in zip(parts.items(), starts.values())}
    for k in parts:
        assert torch.equal(parts[k], slices[k])
    weights = {k: torch.randn(v.shape) for k, v in parts.items()}
    loss = lambda d: sum((d[k] * weights[k]).abs().sum() for k in ("normals", "mask", "confidence"))  # noqa: E731
    (g_split,) = torch.autograd.grad(loss(parts), raw)
    (g_slices,) = torch.autograd.grad(loss(slices), raw)
    assert torch.equal(g_split, g_slices) and bool((g_split[:, 3:6] == 0).all())
