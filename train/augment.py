"""Training augmentation: ONE affine warp per sample to a square crop, plus colour jitter.

The warp (``core.geometry.affine_crop_transform``) combines scale, per-axis stretch, rotation, translation and
horizontal flip; the image, the keypoints and the ignore mask all go through the same matrix under the one pixel
convention of ``core.geometry`` (pixel centres at integers), so no compensating random shift is needed. A flip
mirrors the geometry and swaps left/right keypoints with ``spec.flip_permutation``; limbs follow because the
encoder builds them from the swapped keypoints. Keypoints that leave the crop become absent (``v = 0``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from core.geometry import ImageTransform, affine_crop_transform
from train.config import OCCLUDER_MIN, AugmentationConfig


@dataclass(frozen=True)
class WarpParams:
    """The random draw of one sample's warp (kept for logging and tests)."""

    center: tuple[float, float]
    scale: float
    rotation_deg: float
    stretch: tuple[float, float]
    flip: bool


def fit_params(width: int, height: int, size: int) -> WarpParams:
    """No augmentation: the whole image, long edge fitted to the crop, centred."""
    return WarpParams(((width - 1) / 2.0, (height - 1) / 2.0), size / max(width, height), 0.0, (1.0, 1.0), False)


def sample_params(rng: np.random.Generator, cfg: AugmentationConfig, width: int, height: int,
                  size: int) -> WarpParams:
    """Draw a warp: log-uniform scale around the long-edge fit, rotation, stretch, translation, flip."""
    if not cfg.enabled:
        return fit_params(width, height, size)
    base = size / max(width, height)
    scale = base * math.exp(rng.uniform(math.log(cfg.scale_min), math.log(cfg.scale_max)))
    rotation = float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)) if cfg.rotation_deg > 0 else 0.0
    a = float(rng.uniform(-1.0, 1.0)) * math.log1p(cfg.stretch) if cfg.stretch > 0 else 0.0
    stretch = (math.exp(a), math.exp(-a))
    # the crop centre moves by up to translate * size crop pixels, i.e. that divided by the scale in the image
    shift = rng.uniform(-cfg.translate, cfg.translate, size=2) * size / scale
    center = ((width - 1) / 2.0 + float(shift[0]), (height - 1) / 2.0 + float(shift[1]))
    flip = bool(rng.random() < cfg.flip_prob)
    return WarpParams(center, float(scale), rotation, stretch, flip)


def params_transform(params: WarpParams, width: int, height: int, size: int) -> ImageTransform:
    return affine_crop_transform((width, height), params.center, params.scale, (size, size),
                                 rotation_deg=params.rotation_deg, stretch=params.stretch, flip=params.flip)


def warp_keypoints(keypoints: np.ndarray, transform: ImageTransform, flip_permutation: tuple[int, ...] | None,
                   flip: bool) -> np.ndarray:
    """Map ``(P, K, 3)`` keypoints through ``transform``; swap left/right when ``flip``; mark those outside
    the crop (or unannotated) absent with ``v = 0`` (coordinates kept, never used as a marker)."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    if len(out) == 0:
        return out
    out = out.reshape(len(out), -1, 3)
    out[:, :, :2] = transform.apply(out[:, :, :2])
    if flip:
        out = out[:, list(flip_permutation)]
    w, h = transform.dst_size
    x, y = out[:, :, 0], out[:, :, 1]
    inside = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    out[:, :, 2] = np.where(inside & (out[:, :, 2] > 0), out[:, :, 2], 0.0)
    return out


def warp_mask(mask: np.ndarray, transform: ImageTransform) -> np.ndarray:
    """Warp a boolean ``(H, W)`` mask with the image's matrix (bilinear, then > 0.5)."""
    w, h = transform.dst_size
    warped = cv2.warpAffine(mask.astype(np.float32), transform.matrix, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return warped > 0.5


def warp_image(image: np.ndarray, transform: ImageTransform) -> np.ndarray:
    w, h = transform.dst_size
    return cv2.warpAffine(image, transform.matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def occlude(image: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator, cfg: AugmentationConfig,
            source: np.ndarray | None = None, zoom: float = 1.0) -> np.ndarray:
    """With probability ``cfg.occlusion_prob``, cover part of one person of ``image`` (warped ``(P, K, 3)``
    ``keypoints``) with a rectangle of real texture, as a table or a bystander would cover it: a random window of
    ``source`` (the unwarped photo, so never the warp's black border; default ``image``) at the warp's ``zoom``
    (image pixels per source pixel), so the texture keeps the scale of the scene around it. The rectangle is
    centred on one of that person's keypoints; its side is ``OCCLUDER_MIN`` to ``cfg.occlusion_size`` of the
    person's keypoint box side, its aspect 1:2 to 2:1. The
    keypoints stay labelled (COCO labels an occluded joint where it is), so the network learns to place joints it
    cannot see. Returns a new image, or ``image`` itself when nothing is covered; draws nothing when disabled."""
    if not cfg.enabled or cfg.occlusion_prob <= 0 or rng.random() >= cfg.occlusion_prob:
        return image
    labelled = keypoints[:, :, 2] > 0
    people = np.flatnonzero(labelled.sum(1) >= 2)
    if not len(people):
        return image
    person = people[rng.integers(len(people))]
    xy = keypoints[person, labelled[person], :2]
    side = float((xy.max(0) - xy.min(0)).max()) * rng.uniform(OCCLUDER_MIN, cfg.occlusion_size)
    aspect = math.exp(rng.uniform(-math.log(2.0), math.log(2.0)))
    height, width = image.shape[:2]
    ow = int(np.clip(round(side * math.sqrt(aspect)), 2, width))
    oh = int(np.clip(round(side / math.sqrt(aspect)), 2, height))
    cx, cy = xy[rng.integers(len(xy))]
    x0 = int(np.clip(round(cx - ow / 2), 0, width - ow))
    y0 = int(np.clip(round(cy - oh / 2), 0, height - oh))
    src = image if source is None else source
    sh, sw = src.shape[:2]
    ww, wh = min(sw, max(1, round(ow / zoom))), min(sh, max(1, round(oh / zoom)))
    sx, sy = int(rng.integers(0, sw - ww + 1)), int(rng.integers(0, sh - wh + 1))
    patch = src[sy:sy + wh, sx:sx + ww]
    if patch.shape[:2] != (oh, ow):
        patch = cv2.resize(patch, (ow, oh), interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    out[y0:y0 + oh, x0:x0 + ow] = patch
    return out


def _jitter_factor(rng: np.random.Generator, amplitude: float) -> float:
    """A jitter factor uniform in ``[max(0, 1 - amplitude), 1 + amplitude]`` (torchvision's ColorJitter range): below 0
    a brightness factor would black the image out, a contrast factor turn it into its negative. The same draw as
    ``1 + uniform(-amplitude, amplitude)`` for amplitudes up to 1."""
    return 1.0 + float(rng.uniform(max(-amplitude, -1.0), amplitude))


def colour_jitter(image: np.ndarray, rng: np.random.Generator, cfg: AugmentationConfig) -> np.ndarray:
    """Random brightness, contrast, saturation and hue of a BGR uint8 image (a no-op when disabled)."""
    if not cfg.enabled or (cfg.brightness <= 0 and cfg.contrast <= 0 and cfg.saturation <= 0 and cfg.hue_deg <= 0):
        return image
    b = _jitter_factor(rng, cfg.brightness)
    c = _jitter_factor(rng, cfg.contrast)
    s = _jitter_factor(rng, cfg.saturation)
    hue = rng.uniform(-cfg.hue_deg, cfg.hue_deg)
    img = image
    if abs(hue) > 1e-6 or abs(s - 1.0) > 1e-6:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        if abs(hue) > 1e-6:  # OpenCV 8-bit hue is in [0, 180): degrees / 2
            hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int16) + int(round(hue / 2))) % 180).astype(np.uint8)
        if abs(s - 1.0) > 1e-6:
            hsv[:, :, 1] = cv2.convertScaleAbs(hsv[:, :, 1], alpha=s)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    mean = float(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean())
    # out = b * (c * (x - mean) + mean) = b*c*x + b*(1-c)*mean, clipped to [0, 255] (convertScaleAbs would mirror
    # the negative values of dark pixels back up)
    return cv2.addWeighted(img, b * c, img, 0.0, b * (1.0 - c) * mean)
