"""Pix2NPHM assembled: image preparation, stages, equivalence with fit_image, feed-forward starts, tracks.

An oracle predictor (the exact maps of the shipped demo images) isolates the pipeline's own logic
from the predictor's quality; the synthetic head family is the head model (cheap to query).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch

from nphmkit.data.dataset import ImageDataset
from nphmkit.data.synthetic import SyntheticHeadModel
from nphmkit.fitting import ImageFitConfig, fit_image
from nphmkit.heads.dense import DenseMaps
from nphmkit.pipeline import Pix2NPHM, Reconstruction
from nphmkit.pipeline.pix2nphm import REFINE
from nphmkit.pretrained import ASSETS
from nphmkit.transforms import axis_angle_to_matrix, encode_crop_pose
from tests.helpers import assert_close


@dataclass
class _Size:
    image_size: int


class Oracle:
    """Returns the exact maps of the demo images, whatever it is shown."""

    def __init__(self, items, confidence=None) -> None:
        self.items = items
        self.config = _Size(items[0]["rgb"].shape[0])
        self.seen = []
        self.confidence = confidence  # (H, W) weights given with every image's maps, or None

    def predict_maps(self, images):
        self.seen.append(images)
        idx = [i % len(self.items) for i in range(images.shape[0])]
        stack = lambda k: torch.stack([self.items[i][k] for i in idx])  # noqa: E731
        conf = None if self.confidence is None else self.confidence.expand(len(idx), -1, -1)
        return DenseMaps(stack("normals"), stack("canonical"), stack("mask"), confidence=conf)


class FixedRegressor:
    """A regressor that answers given codes and pose."""

    def __init__(self, z_id, z_ex, R=None, t=None, size=64) -> None:
        self.out = {"z_id": z_id, "z_ex": z_ex}
        if R is not None:
            self.out.update(rotation=R, translation=t)
        self.config = _Size(size)
        self.inputs = []

    def __call__(self, x):
        self.inputs.append(x)
        return {k: v[: x.shape[0]] for k, v in self.out.items()}


@pytest.fixture(scope="module")
def demo():
    ds = ImageDataset(ASSETS / "demo")
    return [ds[i] for i in range(len(ds))]


@pytest.fixture(scope="module")
def model():
    return SyntheticHeadModel()


def test_prepare_resizes_and_rescales_K(demo, model):
    pipe = Pix2NPHM(model, Oracle(demo))
    img = torch.stack([it["rgb"] for it in demo])
    K = torch.stack([it["K"] for it in demo])
    big = torch.nn.functional.interpolate(img.permute(0, 3, 1, 2), size=(256, 256), mode="bilinear").permute(0, 2, 3, 1)
    K_big = K * torch.tensor([2.0, 2.0, 1.0])[:, None]  # the same camera at twice the pixels
    out, K_out = pipe.prepare(big, K_big)
    assert out.shape == img.shape and out.dtype == torch.float32
    assert_close(K_out, K)
    assert float((out - img).abs().mean()) < 0.02  # antialiased down-sampling gives the image back
    as_bytes, K_default = pipe.prepare((img * 255).round().to(torch.uint8))
    assert_close(as_bytes, img, atol=0.5 / 255 + 1e-6)
    assert_close(K_default[0], torch.tensor([[256.0, 0, 64], [0, 256, 64], [0, 0, 1]]))  # focal 2.0 x width
    # odd sizes keep the camera: K scales with the continuous pixel coordinates
    _, K_odd = pipe.prepare(torch.rand(1, 37, 37, 3), torch.tensor([[74.0, 0, 18.5], [0, 74, 18.5], [0, 0, 1]]))
    assert_close(K_odd[0], torch.tensor([[256.0, 0, 64], [0, 256, 64], [0, 0, 1]]), atol=1e-4)


def test_resized_images_get_a_note(demo, model, capsys):
    pipe = Pix2NPHM(model, Oracle(demo))
    img = torch.stack([it["rgb"] for it in demo])
    big = torch.nn.functional.interpolate(img.permute(0, 3, 1, 2), size=(256, 256), mode="bilinear").permute(0, 2, 3, 1)
    pipe.reconstruct(big, refine=False, progress=True)
    assert "note: images of 256x256 resized to the predictor's input 128x128 (K scaled with them)" in capsys.readouterr().err
    pipe.reconstruct(img, refine=False, progress=True)  # the working size: nothing to say
    pipe.reconstruct(big, refine=False, progress=False)  # quiet: nothing said
    assert "note:" not in capsys.readouterr().err


@pytest.mark.parametrize(("images", "K", "message"), [
    (torch.rand(1, 64, 48, 3), None, "expected square crops"),
    (torch.rand(1, 64, 64, 3) * 255, None, "expected values in [0, 1]"),
    (torch.rand(64, 64, 3), None, "pass images[None]"),
    (torch.rand(3, 64, 64), None, "pass images.permute(1, 2, 0)[None]"),
    (torch.rand(2, 64, 64), None, "for grey images pass images[..., None]"),
    (torch.rand(1, 3, 64, 64), None, "looks channels-first"),
    (torch.full((1, 64, 64, 3), float("nan")), None, "expected finite values"),
    (torch.rand(1, 64, 64, 2), None, "images: expected shape"),
    (torch.randint(0, 9, (1, 64, 64, 3)), None, "expected float RGB"),
    (torch.rand(2, 64, 64, 3), torch.eye(3).expand(3, 3, 3), "K: expected shape (3, 3) or (B=2, 3, 3)"),
    (torch.rand(1, 64, 64, 3), torch.eye(2), "K: expected shape"),
    (torch.rand(1, 64, 64, 3), torch.full((3, 3), float("nan")), "K: expected finite intrinsics"),
    (torch.rand(1, 64, 64, 3), -torch.eye(3), "positive focal lengths"),
    (torch.rand(0, 64, 64, 3), None, "empty batch"),
    (torch.rand(1, 64, 64, 3), "fast", "K: expected intrinsics (3, 3) or (B, 3, 3), 'auto' or None, got 'fast'"),
])
def test_bad_images_are_refused_with_their_name(demo, model, images, K, message):
    with pytest.raises((ValueError, TypeError), match="images|K") as err:
        Pix2NPHM(model, Oracle(demo)).reconstruct(images, K, steps=1)
    assert message in str(err.value)


def test_grey_rgba_and_other_float_dtypes_are_handled(demo, model):
    pipe = Pix2NPHM(model, Oracle(demo))
    g = torch.Generator().manual_seed(3)
    rgb = torch.rand(2, 37, 37, 3, generator=g)
    want, K = pipe.prepare(rgb)
    for images in (rgb.double(), rgb.half().float(), torch.cat([rgb, torch.ones(2, 37, 37, 1)], -1)):
        got, K_got = pipe.prepare(images)
        assert got.dtype == torch.float32 and K_got.dtype == torch.float32
        assert_close(got, want, atol=1e-3 if images.shape[-1] == 3 else 1e-6)
        assert_close(K_got, K)
    grey = rgb[..., :1]
    assert_close(pipe.prepare(grey)[0], pipe.prepare(grey.expand(-1, -1, -1, 3).contiguous())[0])
    # alpha composites on white, as load_photo does with files; 8-bit alpha too
    alpha = torch.rand(2, 37, 37, 1, generator=g)
    blended = pipe.prepare(torch.cat([rgb, alpha], -1))[0]
    assert_close(blended, pipe.prepare(rgb * alpha + (1 - alpha))[0], atol=1e-6)
    as_bytes = (torch.cat([rgb, alpha], -1) * 255).round().to(torch.uint8)
    assert_close(pipe.prepare(as_bytes)[0], blended, atol=2.5 / 255)
    clear = pipe.prepare(torch.cat([rgb, torch.zeros(2, 37, 37, 1)], -1))[0]
    assert_close(clear, torch.ones_like(clear), atol=1e-6)


def test_refinement_is_fit_image_on_the_predicted_maps(demo, model):
    item = demo[1]
    pipe = Pix2NPHM(model, Oracle([item]), fit=ImageFitConfig(steps=6, patience=6))
    rec = pipe.reconstruct(item["rgb"][None], item["K"], seed=3)
    assert isinstance(rec, Reconstruction) and rec.stages == ("refine",) and set(rec.timings) == {"maps", "refine"}
    assert rec.steps == (6,)
    ref = fit_image(model, item["normals"][None], item["canonical"][None], item["mask"][None], item["K"][None],
                    config=ImageFitConfig(steps=6, patience=6, seed=3), progress=False)
    for name in ("z_id", "z_ex", "rotation", "translation", "scale"):
        assert_close(getattr(rec, name), getattr(ref, name), atol=1e-6, msg=name)
    assert rec.image_size == (128, 128) and rec.maps.normals.shape == (1, 128, 128, 3)
    # views of the result
    out = rec.render()
    assert out.mask.shape == (1, 128, 128)
    iou = (out.mask & item["mask"]).sum() / (out.mask | item["mask"]).sum()
    assert float(iou) > 0.8, float(iou)  # the fitted head covers the image's head
    head, cam = rec.landmarks(), rec.landmarks("camera")
    assert head.shape == (1, 7, 3)
    assert_close(cam, torch.einsum("bij,bnj->bni", rec.rotation, head) * rec.scale[:, None, None] + rec.translation[:, None])
    with pytest.raises(ValueError, match="kind"):
        rec.mesh(kind="smiling")
    with pytest.raises(IndexError, match="index"):
        rec.mesh(3)


def test_the_refinement_weights_pixels_by_the_predictor_confidence(demo, model):
    """A predictor's confidence reaches fit_image: the refinement is fit_image with those weights, and pixels
    of zero confidence do not count, whatever their normals say."""
    item = demo[0]
    h, w = item["mask"].shape
    conf = torch.ones(h, w)
    conf[:, : w // 2] = 0.0  # the left half says nothing
    fit = ImageFitConfig(steps=5, patience=5)
    rec = Pix2NPHM(model, Oracle([item], conf), fit=fit).reconstruct(item["rgb"][None], item["K"], seed=2)
    ref = fit_image(model, item["normals"][None], item["canonical"][None], item["mask"][None], item["K"][None],
                    config=replace(fit, seed=2), confidence=conf[None], progress=False)
    assert_close(rec.z_id, ref.z_id, atol=1e-6)
    assert_close(rec.translation, ref.translation, atol=1e-6)
    garbled = dict(item, normals=item["normals"].clone())  # (the canonical map also sets the PnP start)
    garbled["normals"][:, : w // 2] = torch.tensor([0.0, 0.0, 1.0])
    same = Pix2NPHM(model, Oracle([garbled], conf), fit=fit).reconstruct(item["rgb"][None], item["K"], seed=2)
    unweighted = Pix2NPHM(model, Oracle([garbled]), fit=fit).reconstruct(item["rgb"][None], item["K"], seed=2)
    assert_close(same.z_id, rec.z_id, atol=1e-6)
    assert float((unweighted.z_id - rec.z_id).abs().max()) > 1e-4


def test_each_image_is_independent(demo, model):
    pipe = Pix2NPHM(model, Oracle(demo), fit=ImageFitConfig(steps=4, patience=4))
    both = pipe.reconstruct(torch.stack([it["rgb"] for it in demo]), torch.stack([it["K"] for it in demo]))
    alone = Pix2NPHM(model, Oracle(demo[1:]), fit=ImageFitConfig(steps=4, patience=4)).reconstruct(
        demo[1]["rgb"][None], demo[1]["K"])
    assert_close(both.z_ex[1:], alone.z_ex, atol=1e-6)
    assert_close(both.translation[1:], alone.translation, atol=1e-6)


def test_feed_forward_codes_and_pose_start_the_refinement(demo, model):
    item = demo[0]
    z_id, z_ex = model.initial_codes(1)
    z_id = z_id + 0.3
    R = torch.tensor([[[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]]) @ axis_angle_to_matrix(torch.tensor([[0.0, 0.2, 0.0]]))
    t = torch.tensor([[0.01, 0.05, 2.0]])
    rel, pos = encode_crop_pose(R, t, item["K"][None], (128, 128))  # what a regressor answers
    reg = FixedRegressor(z_id, z_ex, rel, pos, size=64)
    pipe = Pix2NPHM(model, Oracle([item]), reg, fit=ImageFitConfig(steps=50), refine=replace(REFINE, steps=3, patience=3))
    ff = pipe.reconstruct(item["rgb"][None], item["K"], refine=False)
    assert ff.stages == ("feed_forward",) and "refine" not in ff.timings
    assert_close(ff.z_id, z_id)
    assert_close(ff.rotation, R, atol=1e-5)
    assert_close(ff.translation, t, atol=1e-5)  # decoded with the image's K
    assert reg.inputs[-1].shape == (1, 3, 64, 64)  # resized to the regressor's input, channels-first
    refined = pipe.reconstruct(item["rgb"][None], item["K"])
    assert refined.stages == ("feed_forward", "refine") and refined.steps == (3,)  # REFINE's schedule, not fit's
    # the refinement from feed-forward codes keeps the regressor's pose and moves the codes a little
    assert_close(refined.rotation, R, atol=1e-5)
    assert_close(refined.translation, t, atol=1e-5)
    assert 0 < float((refined.z_id - z_id).abs().max()) < 0.05
    # a regressor without a pose: the refinement's own start pose (PnP on the canonical map)
    no_pose = Pix2NPHM(model, Oracle([item]), FixedRegressor(z_id, z_ex)).reconstruct(item["rgb"][None], item["K"],
                                                                                     refine=False)
    assert float(no_pose.translation[0, 2]) > 1.0 and torch.isfinite(no_pose.rotation).all()


def test_track_shares_one_identity(demo, model):
    from nphmkit.fitting import VideoFitConfig

    video = VideoFitConfig(first_steps=4, frame_steps=2, joint_steps=2, image=ImageFitConfig(patience=100))
    pipe = Pix2NPHM(model, Oracle(demo), video=video)
    frames = torch.stack([it["rgb"] for it in demo])
    rec = pipe.track(frames, demo[0]["K"])
    assert rec.z_id.shape[0] == 2 and torch.equal(rec.z_id[0], rec.z_id[1])
    assert rec.stages == ("refine",)
    with pytest.raises(ValueError, match="needs a regressor"):
        pipe.track(frames, refine=False)


def test_auto_intrinsics_are_estimated_from_the_canonical_maps(demo, model):
    """``K="auto"``: each crop's focal length from its (here exact) canonical map, centred; the estimate is the
    ``K`` the stages use. The demo crops' true focal lengths are 2.18 and 2.13 widths, the default 2.0."""
    true = torch.stack([it["K"][0, 0] / it["rgb"].shape[1] for it in demo])
    z_id, z_ex = model.initial_codes(2)
    R = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]).expand(2, 3, 3)
    rel, pos = encode_crop_pose(R, torch.tensor([[0.0, 0.0, 2.0]] * 2), torch.stack([it["K"] for it in demo]),
                                (128, 128))
    pipe = Pix2NPHM(model, Oracle(demo), FixedRegressor(z_id, z_ex, rel, pos))
    images = torch.stack([it["rgb"] for it in demo])
    rec = pipe.reconstruct(images, K="auto", refine=False)
    focal = rec.K[:, 0, 0] / 128
    assert (focal - true).abs().max() <= 0.1 + 1e-5, (focal, true)
    assert torch.equal(rec.K[:, :2, 2], torch.full((2, 2), 64.0)) and torch.equal(rec.K[:, 0, 0], rec.K[:, 1, 1])
    assert "focal" in rec.timings
    # the feed-forward pose is decoded with the estimate, as with the same K given
    given = Pix2NPHM(model, Oracle(demo), FixedRegressor(z_id, z_ex, rel, pos)).reconstruct(images, rec.K,
                                                                                          refine=False)
    assert_close(rec.translation, given.translation)
    # a video: one focal length for all its frames, from their summed errors
    video = pipe.track(images, K="auto", refine=False)
    assert torch.equal(video.K[0], video.K[1]) and abs(float(video.K[0, 0, 0]) / 128 - 2.15) <= 0.1
    # a predictor without a canonical map cannot estimate it
    with pytest.raises(ValueError, match="K='auto': the predictor gives no canonical point map"):
        Pix2NPHM(model, HeadFrameOracle(demo), mask_predictor=Oracle(demo)).reconstruct(images, K="auto",
                                                                                      refine=False)


class HeadFrameOracle(Oracle):
    """Official-Pixel3DMM-like: head-frame normals (the ground-truth rotation undone) and no mask."""

    def predict_maps(self, images):
        maps = super().predict_maps(images)
        idx = [i % len(self.items) for i in range(images.shape[0])]
        R = torch.stack([self.items[i]["R"] for i in idx])
        head = torch.einsum("bji,bhwj->bhwi", R, maps.normals)
        return DenseMaps(head, None, None, frame="head")


def test_head_frame_normals_are_compared_in_the_head_frame(demo, model):
    """With the ground-truth pose, head-frame targets give the camera-frame objective exactly."""
    from types import SimpleNamespace

    from nphmkit.fitting.terms import normal_term

    g = torch.Generator().manual_seed(0)
    R = axis_angle_to_matrix(torch.randn(2, 3, generator=g))
    n_cam = torch.nn.functional.normalize(torch.randn(2, 50, 3, generator=g), dim=-1)
    target = torch.nn.functional.normalize(n_cam + 0.3 * torch.randn(2, 50, 3, generator=g), dim=-1)
    mask = torch.rand(2, 50, generator=g) > 0.3

    def ctx(targets):
        return SimpleNamespace(rotation=R, render=SimpleNamespace(normals=n_cam, mask=mask),
                               targets=SimpleNamespace(normals=targets, mask=mask, confidence=None))

    cam = normal_term(ctx(target))
    head = normal_term(ctx(torch.einsum("bji,bmj->bmi", R, target)), frame="head")
    assert_close(head, cam, atol=1e-6)
    with pytest.raises(ValueError, match="normal_frame"):
        ImageFitConfig(normal_frame="world")


def test_a_predictor_without_a_mask_borrows_one(demo, model):
    item = demo[0]
    with pytest.raises(ValueError, match="predicts no mask"):
        Pix2NPHM(model, HeadFrameOracle([item])).reconstruct(item["rgb"][None], item["K"], steps=1)
    pipe = Pix2NPHM(model, HeadFrameOracle([item]), mask_predictor=Oracle([item]), fit=ImageFitConfig(steps=8, patience=8))
    rec = pipe.reconstruct(item["rgb"][None], item["K"], seed=1)
    assert rec.maps.frame == "head" and torch.equal(rec.maps.mask, item["mask"][None])
    # the same start and steps on the camera-frame maps: the head-frame fit lands close to it
    ref = Pix2NPHM(model, Oracle([item]), fit=ImageFitConfig(steps=8, patience=8)).reconstruct(
        item["rgb"][None], item["K"], seed=1)
    assert float((rec.translation - ref.translation).norm()) < 0.05
    # a mask given by hand wins (and is resized to the working size)
    big = torch.nn.functional.interpolate(item["mask"][None, None].float(), size=(256, 256))[:, 0] > 0.5
    rec2 = pipe.reconstruct(item["rgb"][None], item["K"], steps=1, masks=big)
    assert torch.equal(rec2.maps.mask, item["mask"][None])
    with pytest.raises(ValueError, match=r"masks: expected \(B=1, H, W\) bool over the images \(128x128"):
        pipe.reconstruct(item["rgb"][None], item["K"], steps=1, masks=big[..., :200])
    with pytest.raises(ValueError, match="masks: expected"):
        pipe.reconstruct(item["rgb"][None], item["K"], steps=1, masks=big.expand(2, -1, -1))
    with pytest.raises(ValueError, match="no head pixels"):
        pipe.reconstruct(item["rgb"][None], item["K"], steps=1, masks=torch.zeros(1, 128, 128, dtype=torch.bool))


def test_a_regressor_of_other_code_sizes_is_refused(model):
    from dataclasses import replace

    from nphmkit.heads.regressor import Pix2NPHMRegressor, RegressorConfig
    from nphmkit.pretrained import load_small_nphm, load_small_predictor

    wrong = Pix2NPHMRegressor(replace(RegressorConfig.small(), lat_dim_loc=16))
    with pytest.raises(ValueError, match=r"regressor: predicts codes of sizes \(identity 1120, expression 100\)"):
        Pix2NPHM(load_small_nphm(), load_small_predictor(), wrong)
