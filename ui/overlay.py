"""Skeleton overlay drawn with QPainter: per-track colours, keypoint confidence as opacity, boxes and ids.

Geometry is computed with NumPy for all people at once; Qt calls are batched by person and by one of
``ALPHA_LEVELS`` opacity levels, so a frame with many people costs a few dozen painter calls.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PyQt5.QtCore import QLineF, QPointF, QRectF, Qt
from PyQt5.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF

from app.overlay import track_color as app_track_color
from core.poses import Poses

ALPHA_LEVELS = 6
MIN_ALPHA = 0.25  # a keypoint with score -> 0 is still faintly visible; score 1 is opaque


@dataclass
class OverlayStyle:
    """What the overlay draws; ``line_width`` None = scaled to the drawn image size."""

    show_limbs: bool = True
    show_keypoints: bool = True
    show_boxes: bool = False
    show_ids: bool = False
    line_width: float | None = None


def track_color(key: int) -> QColor:
    """The colour of a track id (or person key): the same colour the exported annotated videos use."""
    b, g, r = app_track_color(int(key))
    return QColor(r, g, b)


def colour_keys(poses: Poses) -> np.ndarray:
    """The colour key of each person: its track id, or for untracked people a key from their index."""
    ids = poses.track_ids if poses.track_ids is not None else np.full(len(poses), -1)
    return np.where(ids >= 0, ids, 100_000 + np.arange(len(poses)))


def confidence_alpha(scores: np.ndarray) -> np.ndarray:
    """Opacity in [MIN_ALPHA, 1] from a keypoint score in [0, 1] (clipped)."""
    return MIN_ALPHA + (1.0 - MIN_ALPHA) * np.clip(scores, 0.0, 1.0)


def _levels(alpha: np.ndarray) -> np.ndarray:
    return np.rint((alpha - MIN_ALPHA) / (1.0 - MIN_ALPHA) * (ALPHA_LEVELS - 1)).astype(np.int64)


def _level_alpha(level: int) -> float:
    return MIN_ALPHA + (1.0 - MIN_ALPHA) * level / (ALPHA_LEVELS - 1)


def _groups(ok: np.ndarray, levels: np.ndarray, rows: np.ndarray):
    """Yield ``(person, level, rows)`` for the ``ok`` items of ``(P, N)`` grouped by person and opacity level."""
    idx = np.flatnonzero(ok.reshape(-1))
    if len(idx) == 0:
        return
    n = ok.shape[1]
    keys = (idx // n) * ALPHA_LEVELS + levels.reshape(-1)[idx]
    order = np.argsort(keys, kind="stable")
    idx, keys = idx[order], keys[order]
    cuts = np.flatnonzero(np.diff(keys)) + 1
    starts = [0] + cuts.tolist()
    stops = cuts.tolist() + [len(idx)]
    data = rows[idx].tolist()
    for lo, hi in zip(starts, stops):
        key = int(keys[lo])
        yield key // ALPHA_LEVELS, key % ALPHA_LEVELS, data[lo:hi]


def _set_pen(painter: QPainter, pen: QPen, colour: QColor, level: int) -> None:
    c = QColor(colour)
    c.setAlphaF(_level_alpha(level))
    pen.setColor(c)
    painter.setPen(pen)


def paint_poses(painter: QPainter, poses: Poses, limbs: np.ndarray, style: OverlayStyle | None = None,
                scale: float | tuple[float, float] = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> None:
    """Draw ``poses`` (frame pixel coordinates) onto ``painter``, mapped by ``(xy + 0.5) * scale + offset``
    (``scale``: one factor, or ``(sx, sy)`` for pixels that are not square).

    ``limbs`` is ``(L, 2)`` keypoint index pairs (the drawing skeleton). The painter state is restored.
    """
    style = style or OverlayStyle()
    if poses is None or len(poses) == 0:
        return
    kp = poses.keypoints
    # project pixel centres are integers; QPainter's pixel i spans [i, i+1): shift by half a source pixel
    sxy = np.broadcast_to(np.asarray(scale, np.float32), (2,))
    xy = (kp[:, :, :2] + np.float32(0.5)) * sxy + np.asarray(offset, np.float32)
    score = kp[:, :, 2]
    present = score > 0
    device = painter.device()
    short = min(device.width(), device.height()) if device is not None else 480
    width = style.line_width or max(1.5, short / 220.0)
    radius = width * 1.25
    keys = colour_keys(poses)

    painter.save()
    painter.setRenderHint(QPainter.Antialiasing, True)
    pen = QPen()
    pen.setCapStyle(Qt.RoundCap)
    pen.setJoinStyle(Qt.RoundJoin)
    limbs = np.asarray(limbs, np.int64).reshape(-1, 2)

    colours = [track_color(int(k)) for k in keys.tolist()]
    if style.show_limbs and len(limbs):
        a, b = limbs[:, 0], limbs[:, 1]
        ok = present[:, a] & present[:, b]  # (P, L)
        levels = _levels(confidence_alpha(np.minimum(score[:, a], score[:, b])))
        seg = np.concatenate([xy[:, a], xy[:, b]], axis=2).reshape(-1, 4)  # (P*L, 4) x0 y0 x1 y1
        pen.setWidthF(width)
        pen.setCapStyle(Qt.FlatCap)  # joints are covered by the keypoint dots; flat caps stroke faster
        for p, level, rows in _groups(ok, levels, seg):
            _set_pen(painter, pen, colours[p], level)
            painter.drawLines([QLineF(*r) for r in rows])
    if style.show_keypoints:
        levels = _levels(confidence_alpha(score))
        pen.setWidthF(2.0 * radius)
        pen.setCapStyle(Qt.RoundCap)  # a round-capped point is a disc
        for p, level, rows in _groups(present, levels, xy.reshape(-1, 2)):
            _set_pen(painter, pen, colours[p], level)
            painter.drawPoints(QPolygonF([QPointF(*r) for r in rows]))

    if style.show_boxes or style.show_ids:
        boxes = (poses.boxes() + np.float32(0.5)) * np.tile(sxy, 2)
        boxes[:, [0, 2]] += offset[0]
        boxes[:, [1, 3]] += offset[1]
        has = present.any(axis=1)
        font = QFont(painter.font())
        font.setPixelSize(max(10, int(round(width * 6))))
        font.setBold(True)
        painter.setFont(font)
        painter.setBrush(Qt.NoBrush)
        for p in np.flatnonzero(has).tolist():
            colour = colours[p]
            x0, y0, x1, y1 = boxes[p].tolist()
            pen.setWidthF(max(1.0, width * 0.6))
            pen.setColor(colour)
            painter.setPen(pen)
            if style.show_boxes:
                painter.drawRect(QRectF(x0, y0, x1 - x0, y1 - y0))
            if style.show_ids and poses.track_ids[p] >= 0:
                painter.drawText(QPointF(x0, y0 - 3), f"#{int(poses.track_ids[p])}")
    painter.restore()


def bgr_to_qimage(image: np.ndarray) -> QImage:
    """A QImage sharing memory with a contiguous ``(H, W, 3)`` uint8 BGR array (keep the array alive)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image.shape} {image.dtype}")
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    qimg = QImage(image.data, w, h, image.strides[0], QImage.Format_BGR888)
    qimg.ndarray = image  # keep the buffer alive as long as the QImage
    return qimg


def qimage_to_bgr(image: QImage) -> np.ndarray:
    """A copy of a QImage as an ``(H, W, 3)`` uint8 BGR array."""
    img = image.convertToFormat(QImage.Format_BGR888)
    w, h = img.width(), img.height()
    ptr = img.constBits()
    ptr.setsize(img.bytesPerLine() * h)
    arr = np.frombuffer(ptr, np.uint8).reshape(h, img.bytesPerLine())[:, : w * 3]
    return arr.reshape(h, w, 3).copy()


def render_annotated(image: np.ndarray, poses: Poses | None, limbs: np.ndarray,
                     style: OverlayStyle | None = None) -> QImage:
    """The frame at full resolution with the overlay drawn on it (for snapshots and recording)."""
    out = bgr_to_qimage(image).convertToFormat(QImage.Format_RGB32)
    if poses is not None and len(poses):
        painter = QPainter(out)
        try:
            paint_poses(painter, poses, limbs, style)
        finally:
            painter.end()
    return out
