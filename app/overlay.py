"""Skeleton overlay with OpenCV: limbs and keypoints per person, one stable colour per track id.

Drawing is batched: one ``cv2.polylines`` call per person for its limbs and one for its joints (a zero-length
segment with round caps is a filled disc), so the cost stays well under a millisecond for a crowd.
"""
from __future__ import annotations

import colorsys
from functools import lru_cache

import cv2
import numpy as np

from core.contract import PoseContract
from core.keypoints import KeypointSpec
from core.poses import Poses, keypoint_boxes

_SHIFT = 2  # sub-pixel bits for cv2 drawing
_SCALE = 1 << _SHIFT
_FAR = float(1 << 20)  # pixels: a keypoint farther off the image is not drawn (its fixed point must fit int32)


@lru_cache(maxsize=4096)
def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour for a track id (golden-ratio hue steps)."""
    hue = (0.07 + 0.618033988749895 * (int(track_id) % 10007)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def _spec_and_limbs(contract_or_spec: PoseContract | KeypointSpec, skeleton) -> tuple[KeypointSpec, np.ndarray]:
    spec = contract_or_spec.spec if isinstance(contract_or_spec, PoseContract) else contract_or_spec
    if skeleton is None:
        limbs = spec.skeleton(None)  # the spec's default skeleton reads best, whatever the model was trained with
    elif isinstance(skeleton, str):
        limbs = spec.skeleton(skeleton)
    else:
        limbs = skeleton
    return spec, np.asarray(limbs, dtype=np.int64).reshape(-1, 2)


def draw_poses(image_bgr: np.ndarray, poses: Poses, contract_or_spec: PoseContract | KeypointSpec, *,
               skeleton=None, colors_by_track: bool = True, draw_boxes: bool = False, min_score: float = 0.0,
               thickness: int | None = None, color: tuple[int, int, int] | None = None,
               copy: bool = True) -> np.ndarray:
    """Draw ``poses`` (frame coordinates) on ``image_bgr`` and return the image (a copy unless ``copy=False``).

    ``skeleton``: None (the spec's default limbs), a skeleton name, or a sequence of (start, end) pairs.
    Colours follow ``poses.track_ids`` when ``colors_by_track`` and the person is tracked, else the person's
    index, or are all ``color`` (BGR) when given. Keypoints with score <= ``min_score`` are not drawn, nor limbs
    touching them, nor keypoints without a finite position on or near the image.
    """
    out = image_bgr.copy() if copy else image_bgr
    if len(poses) == 0:
        return out
    _, limbs = _spec_and_limbs(contract_or_spec, skeleton)
    h, w = out.shape[:2]
    t = thickness or max(1, int(round(max(h, w) / 400)))
    radius = t + 1
    xy = poses.keypoints[:, :, :2]
    drawable = (np.abs(xy) < _FAR).all(axis=2)  # False for NaN and infinite positions too
    present = (poses.keypoints[:, :, 2] > min_score) & drawable  # (P, K)
    pts = np.round(np.where(drawable[:, :, None], xy, 0.0) * _SCALE).astype(np.int32)  # (P, K, 2) fixed point
    seg = pts[:, limbs]  # (P, L, 2, 2)
    seg_ok = present[:, limbs[:, 0]] & present[:, limbs[:, 1]]  # (P, L)
    boxes = keypoint_boxes(np.where(present[:, :, None], poses.keypoints, 0.0)) if draw_boxes else None
    for p in range(len(poses)):
        tid = int(poses.track_ids[p])
        tone = color or track_color(tid if colors_by_track and tid >= 0 else p + 100000)
        limbs_p = seg[p][seg_ok[p]]
        if len(limbs_p):
            cv2.polylines(out, limbs_p, False, tone, t, cv2.LINE_AA, _SHIFT)
        joints = pts[p][present[p]]
        if len(joints):
            dots = np.repeat(joints[:, None, :], 2, axis=1)
            cv2.polylines(out, dots, False, (255, 255, 255), 2 * radius + 2, cv2.LINE_AA, _SHIFT)
            cv2.polylines(out, dots, False, tone, 2 * radius, cv2.LINE_AA, _SHIFT)
        if boxes is not None and present[p].any():
            x0, y0, x1, y1 = (int(round(v)) for v in boxes[p])
            cv2.rectangle(out, (x0, y0), (x1, y1), tone, 1, cv2.LINE_AA)
            if tid >= 0:
                cv2.putText(out, str(tid), (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 + 0.1 * t, tone,
                            1, cv2.LINE_AA)
    return out
