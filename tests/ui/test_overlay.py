"""The QPainter overlay on known poses: pixels of the rendered image, colours by track id, confidence as opacity."""
from __future__ import annotations

import numpy as np
import pytest
from PyQt5.QtGui import QColor, QImage, QPainter

from core.keypoints import COCO
from core.poses import Poses
from ui.overlay import (OverlayStyle, bgr_to_qimage, paint_poses, qimage_to_bgr, render_annotated,
                        track_color)

pytestmark = pytest.mark.gui

LIMBS = np.asarray(COCO.skeleton(), np.int64)


def _person(x: float, y: float, score: float = 1.0) -> np.ndarray:
    """A standing person of height ~200 px with the nose at (x, y); all 17 keypoints present."""
    rel = np.array([[0, 0], [5, -5], [-5, -5], [10, 0], [-10, 0], [30, 40], [-30, 40], [40, 80], [-40, 80],
                    [45, 120], [-45, 120], [20, 120], [-20, 120], [22, 170], [-22, 170], [24, 220], [-24, 220]],
                   np.float32)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = x + rel[:, 0]
    kp[:, 1] = y + rel[:, 1]
    kp[:, 2] = score
    return kp


def _canvas(w: int = 400, h: int = 300) -> QImage:
    img = QImage(w, h, QImage.Format_RGB32)
    img.fill(QColor(0, 0, 0))
    return img


def _paint(img: QImage, poses: Poses, style: OverlayStyle | None = None, scale=1.0, offset=(0.0, 0.0)) -> None:
    painter = QPainter(img)
    paint_poses(painter, poses, LIMBS, style or OverlayStyle(line_width=4.0), scale, offset)
    painter.end()


def _rgb(img: QImage, x: float, y: float) -> tuple[int, int, int]:
    c = QColor(img.pixel(int(round(x)), int(round(y))))
    return c.red(), c.green(), c.blue()


def test_limb_and_keypoint_pixels_have_the_track_colour(qapp):
    kp = _person(200, 30)
    poses = Poses(kp[None], np.ones(1), np.array([7]))
    img = _canvas()
    _paint(img, poses)
    want = track_color(7)
    # midpoint of the left thigh (11 -> 13) and a keypoint centre (left knee)
    mid = (kp[11, :2] + kp[13, :2]) / 2
    for x, y in (mid, kp[13, :2]):
        r, g, b = _rgb(img, x, y)
        assert abs(r - want.red()) <= 3 and abs(g - want.green()) <= 3 and abs(b - want.blue()) <= 3
    # far from the person nothing is drawn
    assert _rgb(img, 5, 290) == (0, 0, 0)
    assert _rgb(img, 390, 5) == (0, 0, 0)


def test_absent_keypoint_removes_its_limbs(qapp):
    kp = _person(200, 30)
    kp[15, 2] = 0.0  # left ankle absent: limb 13 -> 15 must not be drawn (its mid point stays black)
    img = _canvas()
    _paint(img, Poses(kp[None], np.ones(1), np.array([1])), OverlayStyle(line_width=4.0))
    mid = (kp[13, :2] + kp[15, :2]) / 2
    assert _rgb(img, *mid) == (0, 0, 0)
    assert _rgb(img, *kp[15, :2]) == (0, 0, 0)
    mid_ok = (kp[14, :2] + kp[16, :2]) / 2
    assert sum(_rgb(img, *mid_ok)) > 200


def test_confidence_is_opacity(qapp):
    strong = _person(100, 30, score=1.0)
    weak = _person(300, 30, score=0.1)
    poses = Poses(np.stack([strong, weak]), np.ones(2), np.array([3, 3]))  # same colour for both
    img = _canvas()
    _paint(img, poses)
    s = sum(_rgb(img, *((strong[11, :2] + strong[13, :2]) / 2)))
    w = sum(_rgb(img, *((weak[11, :2] + weak[13, :2]) / 2)))
    assert w > 0 and s > 1.8 * w


def test_colours_stable_by_track_id_and_distinct(qapp):
    assert track_color(4).rgb() == track_color(4).rgb()
    colours = {track_color(i).rgb() for i in range(20)}
    assert len(colours) == 20
    kp = _person(200, 30)
    a, b = _canvas(), _canvas()
    # the same track id is drawn with the same colour whatever its position in the list
    _paint(a, Poses(np.stack([_person(60, 30), kp]), np.ones(2), np.array([11, 5])))
    _paint(b, Poses(kp[None], np.ones(1), np.array([5])))
    assert _rgb(a, *kp[13, :2]) == _rgb(b, *kp[13, :2])


def _near(img: QImage, x: float, y: float) -> int:
    """Brightest channel sum in the 3x3 pixels around (x, y) (thin antialiased lines straddle pixels)."""
    return max(sum(_rgb(img, x + dx, y + dy)) for dx in (-1, 0, 1) for dy in (-1, 0, 1))


def test_boxes_and_scaled_mapping(qapp):
    kp = _person(100, 20)
    poses = Poses(kp[None], np.ones(1), np.array([2]))
    img = _canvas()
    _paint(img, poses, OverlayStyle(show_limbs=False, show_keypoints=False, show_boxes=True, show_ids=True,
                                    line_width=2.0), scale=0.5, offset=(100.0, 50.0))
    x0, y0, x1, y1 = (poses.boxes()[0] + 0.5) * 0.5 + np.array([100, 50, 100, 50]) - 0.5  # pixel centres
    assert _near(img, x0, (y0 + y1) / 2) > 200  # left edge of the box
    assert _near(img, (x0 + x1) / 2, y1) > 200  # bottom edge
    assert _rgb(img, (x0 + x1) / 2, (y0 + y1) / 2) == (0, 0, 0)  # inside: empty


def test_empty_poses_draw_nothing_and_render_annotated_keeps_size(qapp):
    img = _canvas()
    _paint(img, Poses.empty(17))
    arr = qimage_to_bgr(img)
    assert arr.max() == 0
    frame = np.full((120, 160, 3), (10, 20, 30), np.uint8)
    out = render_annotated(frame, Poses(_person(80, 5)[None] * np.array([0.4, 0.4, 1], np.float32), np.ones(1)),
                           LIMBS)
    assert (out.width(), out.height()) == (160, 120)
    back = qimage_to_bgr(out)
    assert tuple(back[2, 2]) == (10, 20, 30)
    assert (back != frame).any()


def test_bgr_qimage_roundtrip(qapp):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(qimage_to_bgr(bgr_to_qimage(frame)), frame)
    with pytest.raises(ValueError):
        bgr_to_qimage(np.zeros((4, 4), np.uint8))
