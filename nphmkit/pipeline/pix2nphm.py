"""Pix2NPHM: a dense predictor's maps, a regressor's feed-forward codes and pose, and their refinement.

For each image (a face crop framed as docs/contracts.md "Crops" says):

1. **maps**: the dense predictor's normals, canonical points and mask (``predict_maps``);
2. **feed-forward** (with a regressor): codes and pose in one forward pass;
3. **refine**: :func:`~nphmkit.fitting.fit_image` from those codes and pose (without a regressor:
   from the head model's initial codes and the PnP pose of the canonical map, else the default crop
   pose) against the predicted maps, weighted per pixel by the predictor's confidence when it has one.

Images of another size than the predictor's input are resized to it and their intrinsics scaled
with them; without ``K`` the default crop intrinsics (focal length 2.0 x the width). The head model
can be any :class:`~nphmkit.protocols.HeadModel`; only the maps of a predictor with a camera-frame
normal output are used here (official Pixel3DMM normals are head-frame: see the photo pipeline).
"""

from __future__ import annotations

import numbers
import sys
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from nphmkit._checks import check_tensor
from nphmkit._progress import progress_bar, show_progress
from nphmkit.fitting import FitResult, ImageFitConfig, VideoFitConfig, fit_image, fit_video
from nphmkit.fitting.image import start_pose
from nphmkit.heads.dense import DenseMaps
from nphmkit.pipeline.reconstruction import Reconstruction
from nphmkit.protocols import check_head_model
from nphmkit.render import default_intrinsics
from nphmkit.transforms import decode_crop_pose

REFINE = ImageFitConfig(steps=50, patience=50, lr_codes=1e-3, fit_pose=False, anchor=0.05, w_points=10.0,
                        w_silhouette=0.0, warm_start=True, robust="cauchy", normal_delta=0.05)
"""Refinement from a regressor's codes and pose: the codes only (the regressor's pose is kept: on the shipped
models it beats where the predicted maps pull it), at a fifth of the default learning rate, held near their
start by an anchor (weight 0.05), with the canonical point term down-weighted (the predicted point map carries
millimetres of error), no silhouette term (with the pose held where the regressor put it, millimetres off in
depth, matching the outline would resize the head instead of correcting it), 50 steps with warm-started
tracing, and a Cauchy penalty on the map terms, the normals' at a scale of 0.05 (~2.9 degrees): a predictor's
normals are off by 2 degrees in most pixels and by tens in a few, and the Cauchy penalty lets the few pull less
than the Huber penalty does. Chosen by ``benchmarks/bench_refine_variants.py`` on held-out synthetic images and
checked on validation renders that chose nothing. With the shipped models it cuts the feed-forward NoW error by
27.5 % on the 20 held-out images it was chosen on (22 % with the Huber penalty, an anchor of 0.1 and the silhouette
term), by 20.9 % on 100 held-out images and by 19.5 % on the 80 of them that chose nothing; against the exact maps,
by 44 % on the 100. It takes ~14-20 s per image (the default refinement from the same start made it 77 % worse;
benchmarks/RESULTS.md, "Reconstruction, stage by stage")."""


def _as_rgb(images: torch.Tensor) -> torch.Tensor:
    """``images`` as ``(B, H, W, 3)``: grey repeated, RGBA composited on white (uint8 or float in [0, 1], dtype kept);
    the layouts people pass by mistake refused with the fix."""
    if isinstance(images, torch.Tensor):
        shape = tuple(images.shape)
        if images.dim() == 4 and shape[1] in (1, 3, 4) and shape[-1] not in (1, 3, 4):
            raise ValueError(f"images: expected channels-last (B, H, W, 3), got {shape}, which looks channels-first; "
                             "pass images.permute(0, 2, 3, 1)")
        if images.dim() == 3 and (shape[-1] in (1, 3, 4) or shape[0] in (3, 4)):
            fix = "images[None]" if shape[-1] in (1, 3, 4) else "images.permute(1, 2, 0)[None]"
            raise ValueError(f"images: expected shape (B, H, W, 3), got {shape}, one image without its batch "
                             f"dimension; pass {fix}")
        if images.dim() == 3:
            raise ValueError(f"images: expected shape (B, H, W, 3), got {shape}; for grey images pass "
                             "images[..., None] (repeated to RGB)")
        if images.dim() == 4 and shape[-1] == 1:
            return images.expand(-1, -1, -1, 3)
        if images.dim() == 4 and shape[-1] == 4:
            top = 255.0 if images.dtype == torch.uint8 else 1.0
            rgb, alpha = images[..., :3].float(), images[..., 3:].float() / top
            out = rgb * alpha + top * (1 - alpha)
            return out.round().to(torch.uint8) if images.dtype == torch.uint8 else out.to(images.dtype)
    return check_tensor("images", images, ("B", "H", "W", 3), floating=False)


class Pix2NPHM:
    """Reconstruct heads from face crops (see the module notes).

    Args:
        model: the head model (a :class:`~nphmkit.protocols.HeadModel`, e.g. an NPHM).
        predictor: a dense predictor (``predict_maps(images) -> DenseMaps`` with camera-frame normals and a
            mask; canonical points when the head model has a canonical field).
        regressor: a code regressor (``forward(images (B, 3, S, S)) -> {"z_id", "z_ex"[, "rotation",
            "translation"]}``, the pose as :func:`~nphmkit.transforms.encode_crop_pose` codes it), or None
            (refinement from the initial codes).
        fit: the :class:`~nphmkit.fitting.ImageFitConfig` of a refinement without feed-forward codes (from the
            initial codes and the PnP pose; ``steps`` overridable per call).
        refine: the config of a refinement from a regressor's codes and pose (default :data:`REFINE`: the codes
            only, slowly, near their start; see there).
        video: the :class:`~nphmkit.fitting.VideoFitConfig` of :meth:`track`.
        mask_predictor: a second dense predictor whose mask is used when ``predictor`` predicts none (the
            official Pixel3DMM normal network); masks given to :meth:`reconstruct` win over both.
    """

    def __init__(self, model, predictor, regressor=None, fit: ImageFitConfig | None = None,
                 video: VideoFitConfig | None = None, mask_predictor=None,
                 refine: ImageFitConfig | None = None) -> None:
        self.model = check_head_model(model)
        if not hasattr(predictor, "predict_maps"):
            raise TypeError(f"predictor: expected a dense predictor with predict_maps, got {type(predictor).__name__}")
        self.predictor = predictor
        if regressor is not None:
            z_id, z_ex = self.model.initial_codes(1, "cpu", torch.float32)
            cfg = regressor.config
            sizes = (getattr(cfg, "id_dim", None), getattr(cfg, "lat_dim_ex", None))
            if None not in sizes and sizes != (z_id.shape[-1], z_ex.shape[-1]):
                raise ValueError(f"regressor: predicts codes of sizes (identity {cfg.id_dim}, expression {cfg.lat_dim_ex}), "
                                 f"but the head model takes ({z_id.shape[-1]}, {z_ex.shape[-1]})")
        self.regressor = regressor
        if mask_predictor is not None and not hasattr(mask_predictor, "predict_maps"):
            raise TypeError(f"mask_predictor: expected a dense predictor, got {type(mask_predictor).__name__}")
        self.mask_predictor = mask_predictor
        self.fit = fit or ImageFitConfig(steps=100, patience=100)
        self.refine = refine or REFINE
        self.video = video or VideoFitConfig()

    @classmethod
    def small(cls, **kwargs) -> "Pix2NPHM":
        """The shipped small models (synthetic head family only; see their ``quality.json``)."""
        from nphmkit import pretrained

        regressor = pretrained.load_small_regressor() if pretrained.has_weights("small_regressor") else None
        return cls(pretrained.load_small_nphm(), pretrained.load_small_predictor(), regressor, **kwargs)

    @property
    def image_size(self) -> int:
        """The working size: the predictor's input (square)."""
        return int(self.predictor.config.image_size)

    # ------------------------------------------------------------------ stages
    def prepare(self, images: torch.Tensor, K: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, H, W, 3)`` (float in [0, 1] or uint8) and ``K`` (None, ``(3, 3)`` or ``(B, 3, 3)``, pixels)
        -> float32 images ``(B, n, n, 3)`` at the working size and their intrinsics ``(B, 3, 3)``.

        Grey ``(B, H, W, 1)`` images are repeated to RGB and RGBA ``(B, H, W, 4)`` ones composited on white (as
        :func:`~nphmkit.preprocess.load_photo` does with files); other floating dtypes are cast to float32.
        Channels-first or batch-less tensors and non-finite values are refused with what to do instead."""
        images = _as_rgb(images)
        if images.shape[0] == 0:
            raise ValueError(f"images: expected at least one image, got an empty batch {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255
        elif not images.is_floating_point():
            raise ValueError(f"images: expected float RGB in [0, 1] or uint8, got {images.dtype}")
        else:
            images = images.float()
            if not bool(torch.isfinite(images).all()):
                raise ValueError("images: expected finite values, got NaN or inf")
        if float(images.min()) < -1e-3 or float(images.max()) > 1 + 1e-3:
            raise ValueError(f"images: expected values in [0, 1], got [{float(images.min()):.3g}, {float(images.max()):.3g}]"
                             " (divide 8-bit values by 255)")
        b, h, w, _ = images.shape
        n = self.image_size
        if K is None:
            K = default_intrinsics((h, w), batch=b, dtype=images.dtype, device=images.device)
        else:
            if not isinstance(K, torch.Tensor) or tuple(K.shape) not in ((3, 3), (b, 3, 3)):
                got = tuple(K.shape) if isinstance(K, torch.Tensor) else type(K).__name__
                raise ValueError(f"K: expected shape (3, 3) or (B={b}, 3, 3), got {got}")
            K = K.to(images.dtype)
            if not bool(torch.isfinite(K).all()) or not bool((K[..., 0, 0] > 0).all() and (K[..., 1, 1] > 0).all()):
                raise ValueError("K: expected finite intrinsics with positive focal lengths (pixels)")
            K = K.expand(b, 3, 3)
        if (h, w) != (n, n):
            if h != w:
                raise ValueError(f"images: expected square crops (docs/contracts.md 'Crops'), got {h}x{w}; crop them "
                                 "with nphmkit.preprocess.crop")
            x = F.interpolate(images.permute(0, 3, 1, 2), size=(n, n), mode="bilinear", align_corners=False,
                              antialias=True)
            images = x.permute(0, 2, 3, 1).clamp(0, 1)
            scale = torch.tensor([n / w, n / h, 1.0], dtype=K.dtype, device=K.device)
            K = scale[None, :, None] * K  # continuous pixel coordinates scale with the image
        return images.contiguous(), K.contiguous()

    def maps(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> DenseMaps:
        """The predictor's maps of working-size images ``(B, n, n, 3)``; the mask from ``masks (B, n, n)`` bool
        when given, else the predictor's, else the mask predictor's. Normals may be camera-frame or head-frame
        (``maps.frame``; the refinement compares in that frame)."""
        with torch.no_grad():
            maps = self.predictor.predict_maps(images)
        if maps.normals is None:
            raise ValueError("predictor: expected a normal output")
        if masks is not None:
            check_tensor("masks", masks, tuple(images.shape[:3]), floating=False)
            if masks.dtype != torch.bool:
                raise TypeError(f"masks: expected a bool tensor, got {masks.dtype}")
            maps = replace(maps, mask=masks)
        elif maps.mask is None:
            if self.mask_predictor is None:
                raise ValueError("predictor: predicts no mask (e.g. official Pixel3DMM normals); give mask_predictor= "
                                 "(the shipped predictor) or masks")
            with torch.no_grad():
                maps = replace(maps, mask=self.mask_predictor.predict_maps(images).mask)
        if not bool(maps.mask.flatten(1).any(1).all()):
            raise ValueError("mask: an image has no head pixels (nothing to fit)")
        return maps

    def estimate_intrinsics(self, maps: DenseMaps, shared: bool = False, frames: int = 5, seed: int = 0,
                            progress: bool | None = None) -> torch.Tensor:
        """``(B, 3, 3)`` intrinsics (working-size pixels, principal point at the centre) with the focal length
        estimated from the canonical maps of ``maps`` (:func:`~nphmkit.fitting.focal.estimate_focal`: the
        candidate of 1.4 to 5 crop widths whose PnP pose reprojects the map best, searched coarse to fine with
        ``step=3``), for crops whose camera is
        unknown. ``shared``: one focal length for all (the frames of one video), scored on up to ``frames``
        evenly spaced maps. ``progress``: a bar over the images (None: on a terminal). Raises ValueError when the
        predictor gives no canonical map.

        On the shipped predictor's maps of 20 held-out synthetic crops the estimate is off by 0.37 crop widths
        on average, against 0.98 for the default 2 widths (``benchmarks/RESULTS.md``)."""
        from nphmkit.fitting.focal import PIPELINE_STEP, centred_intrinsics, estimate_focal, estimate_shared_focal, spread_picks

        if maps.canonical is None:
            raise ValueError("K='auto': the predictor gives no canonical point map to estimate the focal length "
                             "from; pass K (or None for the default crop intrinsics)")
        canonical, mask = maps.canonical.detach().cpu().float(), maps.mask.cpu()  # PnP runs on the CPU
        b, size = canonical.shape[0], canonical.shape[2]
        candidates = centred_intrinsics(size)
        if shared:
            picks = spread_picks(b, frames)
            K = estimate_shared_focal(canonical[picks], mask[picks], candidates, seed=seed, step=PIPELINE_STEP).K
            K = K.expand(b, 3, 3)
        else:
            bar = progress_bar(range(b), progress=progress, desc="focal lengths", unit="img")
            K = torch.stack([estimate_focal(canonical[i], mask[i], candidates, seed=seed, step=PIPELINE_STEP).K
                             for i in bar])
        return K.to(device=maps.mask.device, dtype=maps.canonical.dtype).contiguous()

    def feed_forward(self, images: torch.Tensor, K: torch.Tensor) -> FitResult | None:
        """The regressor's codes and pose of working-size images ``(B, n, n, 3)`` with intrinsics ``K (B, 3, 3)``
        (None without a regressor). The regressor's pose output is the crop-relative code of
        :func:`nphmkit.transforms.encode_crop_pose`, decoded here with ``K``."""
        if self.regressor is None:
            return None
        size = int(self.regressor.config.image_size)
        x = images.permute(0, 3, 1, 2)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            out = self.regressor(x)
        b = images.shape[0]
        R = t = None
        if out.get("rotation") is not None:
            R, t = decode_crop_pose(out["rotation"], out["translation"], K, tuple(images.shape[1:3]))
        return FitResult(out["z_id"], out["z_ex"], R, t, torch.ones(b, dtype=images.dtype, device=images.device))

    # ------------------------------------------------------------------ the whole
    def reconstruct(self, images: torch.Tensor, K: torch.Tensor | None = None, refine: bool = True,
                    steps: int | None = None, seed: int = 0, progress: bool | None = None,
                    masks: torch.Tensor | None = None) -> Reconstruction:
        """Reconstruct each image independently.

        Args:
            images: ``(B, H, W, 3)`` square face crops, float RGB in [0, 1] or uint8.
            K: intrinsics in the images' pixels, ``(3, 3)`` or ``(B, 3, 3)``; None: the default crop
                intrinsics (focal 2.0 x width, centred); ``"auto"``: each image's focal length estimated from
                its predicted canonical map, principal point at the centre (:meth:`estimate_intrinsics`;
                ``Reconstruction.K`` holds the estimates).
            refine: run the inference-time optimization (else: the feed-forward result, or without a
                regressor the initial codes at the start pose).
            steps: refinement steps (default: ``fit.steps``).
            seed: seeds the pixel sampling of the refinement and the PnP start.
            progress: a bar over the images and a one-line summary per image (None: on a terminal).
            masks: ``(B, H, W)`` bool head masks over the images (their pixels, or another resolution of the same
                aspect), used instead of predicted ones.
        """
        if steps is not None and (not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1):
            raise ValueError(f"steps: expected a positive int, got {steps!r}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        size = tuple(images.shape[1:3]) if isinstance(images, torch.Tensor) else None
        auto = _is_auto(K)
        images, K = self.prepare(images, None if auto else K)
        _note_resize(size, images, progress)
        maps = self.maps(images, self._resize_masks(masks, images, size))
        timings["maps"] = time.perf_counter() - t0
        if auto:
            t0 = time.perf_counter()
            K = self.estimate_intrinsics(maps, seed=seed, progress=progress)
            timings["focal"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        init = self.feed_forward(images, K)
        if init is not None:
            timings["feed_forward"] = time.perf_counter() - t0
        stages = ("feed_forward",) * (init is not None) + ("refine",) * refine
        b = images.shape[0]
        if not refine:
            result = init if init is not None else self._start(maps, K, seed)
            if result.rotation is None:  # a regressor without a pose token: the start pose
                R, t, _ = start_pose(self.model, None, maps.canonical, maps.mask, None, K, seed)
                result = replace(result, rotation=R, translation=t)
            return self._result(result, maps, K, timings, stages)
        base = self.fit if init is None else self.refine
        config = replace(base, steps=int(steps) if steps else base.steps, seed=seed, normal_frame=maps.frame)
        t0 = time.perf_counter()
        parts = []
        bar = progress_bar(range(b), progress=progress, desc="refining", unit="img")
        for i in bar:
            one = None if init is None else _row(init, i)
            res = fit_image(self.model, maps.normals[i : i + 1], _pick(maps.canonical, i), maps.mask[i : i + 1],
                            K[i : i + 1], init=one, config=config, progress=False,
                            confidence=_pick(maps.confidence, i))
            parts.append(res)
            if show_progress(progress):
                bar.write(f"image {i}: refined in {res.steps} steps ({res.seconds:.1f} s), final loss {res.history[-1]:.4g}")
        timings["refine"] = time.perf_counter() - t0
        cat = lambda k: torch.cat([getattr(p, k) for p in parts])  # noqa: E731
        result = FitResult(cat("z_id"), cat("z_ex"), cat("rotation"), cat("translation"), cat("scale"))
        return self._result(result, maps, K, timings, stages, tuple(p.steps for p in parts))

    def track(self, frames: torch.Tensor, K: torch.Tensor | None = None, refine: bool = True,
              seed: int = 0, progress: bool | None = None, video: VideoFitConfig | None = None) -> Reconstruction:
        """Reconstruct the ``T`` frames ``(T, H, W, 3)`` of one video: one identity, expression and pose per
        frame, smooth over time (:func:`~nphmkit.fitting.fit_video` on the predicted maps, started from the
        regressor's per-frame codes and poses when there is a regressor). ``K`` as in :meth:`reconstruct`,
        one camera for all frames (``"auto"``: one focal length estimated from up to 5 of the frames).
        ``refine=False``: per-frame feed-forward results with their mean identity. ``video``: the schedule
        (default: the pipeline's ``video``)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        auto = _is_auto(K)
        size = tuple(frames.shape[1:3]) if isinstance(frames, torch.Tensor) else None
        frames, K = self.prepare(frames, None if auto else K)
        _note_resize(size, frames, progress)
        maps = self.maps(frames)
        timings["maps"] = time.perf_counter() - t0
        if auto:
            t0 = time.perf_counter()
            K = self.estimate_intrinsics(maps, shared=True, seed=seed, progress=progress)
            timings["focal"] = time.perf_counter() - t0
        if not refine:
            t0 = time.perf_counter()
            init = self.feed_forward(frames, K)
            if init is None:
                raise ValueError("refine: track without refinement needs a regressor")
            timings["feed_forward"] = time.perf_counter() - t0
            if init.rotation is None:
                R, t, _ = start_pose(self.model, None, maps.canonical, maps.mask, None, K, seed)
                init = replace(init, rotation=R, translation=t)
            init = replace(init, z_id=init.z_id.mean(0, keepdim=True).expand_as(init.z_id).clone())
            return self._result(init, maps, K, timings, ("feed_forward",))
        t0 = time.perf_counter()
        init = self.feed_forward(frames, K)
        if init is not None:
            timings["feed_forward"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        video = video or self.video
        video = replace(video, image=replace(video.image, seed=seed, normal_frame=maps.frame))
        res = fit_video(self.model, maps.normals, maps.canonical, maps.mask, K[0], config=video, progress=progress,
                        confidence=maps.confidence, init=init)
        timings["refine"] = time.perf_counter() - t0
        stages = ("feed_forward",) * (init is not None) + ("refine",)
        return self._result(res, maps, K, timings, stages, (res.steps,))

    # ------------------------------------------------------------------ helpers
    def _resize_masks(self, masks: torch.Tensor | None, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
        """User masks ``(B, H', W')`` over the input images (``size = (H, W)``; any resolution of their aspect)
        -> the working size of ``images`` (nearest)."""
        if masks is None:
            return None
        b, (h, w) = images.shape[0], size
        if (not isinstance(masks, torch.Tensor) or masks.dim() != 3 or masks.shape[0] != b
                or masks.shape[1] * w != masks.shape[2] * h):
            got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise ValueError(f"masks: expected (B={b}, H, W) bool over the images ({h}x{w} pixels, or any size of "
                             f"that aspect), got {got}")
        n = images.shape[1]
        if tuple(masks.shape[1:]) != (n, n):
            masks = F.interpolate(masks[:, None].float(), size=(n, n), mode="nearest")[:, 0] > 0.5
        return masks.bool()

    def _start(self, maps: DenseMaps, K: torch.Tensor, seed: int) -> FitResult:
        b = maps.mask.shape[0]
        z_id, z_ex = self.model.initial_codes(b, maps.mask.device, K.dtype)
        R, t, _ = start_pose(self.model, None, maps.canonical, maps.mask, None, K, seed)
        return FitResult(z_id, z_ex, R, t, torch.ones(b, dtype=K.dtype, device=K.device))

    def _result(self, res: FitResult, maps: DenseMaps, K: torch.Tensor, timings: dict, stages,
                steps: tuple[int, ...] = ()) -> Reconstruction:
        scale = res.scale if res.scale is not None else torch.ones(res.z_id.shape[0], dtype=K.dtype, device=K.device)
        return Reconstruction(res.z_id.detach(), res.z_ex.detach(), res.rotation.detach(), res.translation.detach(),
                              scale.detach(), maps, K, tuple(maps.mask.shape[1:3]), self.model, timings, tuple(stages),
                              steps)


def _note_resize(size: tuple[int, int] | None, images: torch.Tensor, progress: bool | None) -> None:
    """One line on stderr (when progress is shown) that the images were resized to the working size."""
    n = images.shape[1]
    if size is not None and tuple(size) != (n, n) and show_progress(progress):
        print(f"note: images of {size[0]}x{size[1]} resized to the predictor's input {n}x{n} (K scaled with them)",
              file=sys.stderr)


def _is_auto(K) -> bool:
    """Whether ``K`` asks for estimated intrinsics; another string is refused by name."""
    if isinstance(K, str):
        if K != "auto":
            raise ValueError(f"K: expected intrinsics (3, 3) or (B, 3, 3), 'auto' or None, got {K!r}")
        return True
    return False


def _pick(x: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return None if x is None else x[i : i + 1]


def _row(res: FitResult, i: int) -> FitResult:
    pick = lambda x: None if x is None else x[i : i + 1]  # noqa: E731
    return FitResult(pick(res.z_id), pick(res.z_ex), pick(res.rotation), pick(res.translation), pick(res.scale))
