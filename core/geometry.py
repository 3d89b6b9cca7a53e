"""Image geometry with one pixel convention and exact inverses.

Convention: pixel centres sit at integer coordinates, pixel ``i`` covers ``[i - 0.5, i + 0.5)``. Scaling an
image by ``s`` maps ``x -> s * (x + 0.5) - 0.5`` (the convention of ``cv2.resize`` and ``cv2.warpAffine``).
Every transform is a 2x3 affine matrix from original-image to network-input coordinates; ``inverse`` maps
network-input points back exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


def _h(m: np.ndarray) -> np.ndarray:
    """2x3 -> 3x3 homogeneous."""
    out = np.eye(3)
    out[:2] = m
    return out


@dataclass(frozen=True)
class ImageTransform:
    """An affine map from an image of ``src_size`` to a canvas of ``dst_size`` (both ``(width, height)``)."""

    matrix: np.ndarray  # (2, 3) float64, src -> dst
    src_size: tuple[int, int]
    dst_size: tuple[int, int]

    @property
    def inverse_matrix(self) -> np.ndarray:
        return np.linalg.inv(_h(self.matrix))[:2]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` points from the source image to the canvas."""
        return _affine_points(self.matrix, points)

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2)`` canvas points back to the source image."""
        return _affine_points(self.inverse_matrix, points)

    @property
    def zoom(self) -> float:
        """Canvas pixels per source pixel (the geometric mean of the two axes' scales)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def is_axis_aligned(self) -> bool:
        return abs(self.matrix[0, 1]) < 1e-12 and abs(self.matrix[1, 0]) < 1e-12 and self.matrix[0, 0] > 0

    def warp(self, image: np.ndarray, border_value: float | tuple = 0, interpolation: int | None = None) -> np.ndarray:
        """Resample ``image`` (H, W[, C]) onto the canvas."""
        h, w = image.shape[:2]
        if (w, h) != tuple(self.src_size):
            raise ValueError(f"image is {w}x{h}, transform expects {self.src_size[0]}x{self.src_size[1]}")
        dw, dh = self.dst_size
        placement = self._placement()
        if placement is not None:
            return self._resize_and_pad(image, placement, border_value, interpolation)
        flags = cv2.INTER_LINEAR if interpolation is None else interpolation
        return cv2.warpAffine(image, self.matrix, (dw, dh), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=border_value)

    def _placement(self) -> tuple[int, int, int, int] | None:
        """``(rw, rh, px, py)`` when the transform is a resize to whole pixels placed at a whole-pixel offset inside
        the canvas (letterboxing: a resize and a copy do it), else None (an affine warp does)."""
        if not self.is_axis_aligned or self.matrix[1, 1] <= 0:
            return None
        sx, sy = self.matrix[0, 0], self.matrix[1, 1]
        w, h = self.src_size
        exact = (w * sx, h * sy, self.matrix[0, 2] - (sx - 1) / 2, self.matrix[1, 2] - (sy - 1) / 2)
        rw, rh, px, py = (int(round(v)) for v in exact)
        if any(abs(v - r) > 1e-6 for v, r in zip(exact, (rw, rh, px, py))):
            return None
        dw, dh = self.dst_size
        return (rw, rh, px, py) if rw > 0 and rh > 0 and 0 <= px <= dw - rw and 0 <= py <= dh - rh else None

    def _resize_and_pad(self, image: np.ndarray, placement: tuple[int, int, int, int], border_value,
                        interpolation) -> np.ndarray:
        sx, sy = self.matrix[0, 0], self.matrix[1, 1]
        w, h = self.src_size
        rw, rh, px, py = placement
        if interpolation is None:
            interpolation = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
        resized = image if (rw, rh) == (w, h) else cv2.resize(image, (rw, rh), interpolation=interpolation)
        dw, dh = self.dst_size
        out = np.empty((dh, dw) + image.shape[2:], dtype=image.dtype)
        out[...] = border_value if np.isscalar(border_value) else np.asarray(border_value, dtype=image.dtype)
        out[py:py + rh, px:px + rw] = resized
        return out


def _affine_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    out = pts @ m[:, :2].T + m[:, 2]
    return out.astype(np.float32) if np.asarray(points).dtype == np.float32 else out


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be at least 1x1, got {width}x{height}")


def _scale_pad_matrix(sx: float, sy: float, px: float, py: float) -> np.ndarray:
    """Scale by (sx, sy) under the pixel-centre convention, then shift by (px, py)."""
    return np.array([[sx, 0.0, (sx - 1) / 2 + px], [0.0, sy, (sy - 1) / 2 + py]])


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


MIN_LONG_EDGE = 32
MAX_LONG_EDGE = 4096  # a 4096 x 4096 network canvas: past 4K video's long edge (3840); beyond it only memory grows


def long_edge_problem(value: int) -> str | None:
    """Why ``value`` is no network input long edge (pixels), or None: the one check of the engine, the app's
    settings and every ``--long-edge`` option. The canvas is ``value`` x ``value``: 100000 would ask for tens of GB."""
    if value < MIN_LONG_EDGE:
        return f"must be at least {MIN_LONG_EDGE}, got {value}"
    if value > MAX_LONG_EDGE:
        return (f"must be at most {MAX_LONG_EDGE} (pixels of the network's square input; a larger one needs "
                f"gigabytes of memory and finds nothing more), got {value}")
    return None



def long_edge_transform(width: int, height: int, long_edge: int = 640, multiple: int = 128) -> ImageTransform:
    """Resize so the long edge is ``long_edge`` and centre it on a square canvas (side rounded up to ``multiple``)."""
    _check_size(width, height)
    if long_edge < 1:
        raise ValueError(f"long edge must be positive, got {long_edge}")
    s = long_edge / max(width, height)
    rw, rh = max(1, int(round(width * s))), max(1, int(round(height * s)))
    side = round_up(long_edge, multiple)
    px, py = (side - rw) // 2, (side - rh) // 2
    return ImageTransform(_scale_pad_matrix(rw / width, rh / height, px, py), (width, height), (side, side))


def fixed_height_transform(width: int, height: int, target_height: int = 640, multiple: int = 128) -> ImageTransform:
    """Resize to ``target_height``, keep the aspect ratio and pad right/bottom to a multiple of ``multiple``."""
    _check_size(width, height)
    if target_height < 1:
        raise ValueError(f"height must be positive, got {target_height}")
    s = target_height / height
    rw = max(1, int(round(width * s)))
    dst = (round_up(rw, multiple), round_up(target_height, multiple))
    return ImageTransform(_scale_pad_matrix(rw / width, target_height / height, 0, 0), (width, height), dst)


def hflip_transform(width: int, height: int) -> ImageTransform:
    """Horizontal mirror of a ``width`` x ``height`` canvas: ``x -> width - 1 - x``."""
    return ImageTransform(np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]]), (width, height), (width, height))


def affine_crop_transform(
    src_size: tuple[int, int],
    center: tuple[float, float],
    scale: float,
    out_size: tuple[int, int],
    rotation_deg: float = 0.0,
    stretch: tuple[float, float] = (1.0, 1.0),
    flip: bool = False,
) -> ImageTransform:
    """The training warp: ``center`` (source pixels) goes to the crop centre, scaled by ``scale`` (times per-axis
    ``stretch``), rotated counter-clockwise by ``rotation_deg`` and optionally mirrored, in one affine map."""
    _check_size(*src_size)
    ow, oh = out_size
    cx, cy = center
    t_src = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    a = math.radians(rotation_deg)
    rot = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1.0]])
    sc = np.diag([scale * stretch[0], scale * stretch[1], 1.0])
    fl = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
    t_dst = np.array([[1, 0, (ow - 1) / 2], [0, 1, (oh - 1) / 2], [0, 0, 1.0]])
    m = t_dst @ fl @ sc @ rot @ t_src
    return ImageTransform(m[:2], tuple(src_size), tuple(out_size))


def compose(first: ImageTransform, second: ImageTransform) -> ImageTransform:
    """The transform that applies ``first`` then ``second``."""
    if tuple(first.dst_size) != tuple(second.src_size):
        raise ValueError(f"cannot compose: {first.dst_size} canvas into a transform for {second.src_size}")
    return ImageTransform((_h(second.matrix) @ _h(first.matrix))[:2], first.src_size, second.dst_size)
