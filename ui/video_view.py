"""The video view: the current frame scaled to fit (aspect ratio kept, letterboxed) with the pose overlay."""
from __future__ import annotations

import time

import numpy as np
from PyQt5.QtCore import QRectF, QSize, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent
from PyQt5.QtWidgets import QSizePolicy, QWidget

from core.poses import Poses
from ui.overlay import OverlayStyle, bgr_to_qimage, paint_poses, render_annotated


def fit_rect(image_w: float, image_h: float, area_w: int, area_h: int) -> QRectF:
    """The largest rectangle of the image's aspect ratio centred in the area."""
    if image_w <= 0 or image_h <= 0 or area_w <= 0 or area_h <= 0:
        return QRectF(0, 0, 0, 0)
    scale = min(area_w / image_w, area_h / image_h)
    w, h = image_w * scale, image_h * scale
    return QRectF((area_w - w) / 2.0, (area_h - h) / 2.0, w, h)


class VideoView(QWidget):
    """Shows one frame and its poses; ``set_frame`` may be called at any rate from the GUI thread.

    ``paint_ms`` keeps the cost of the last overlay paint, ``frames_shown`` counts frames.
    """

    files_dropped = pyqtSignal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(320, 180)
        self.setAcceptDrops(True)
        self.setAttribute(Qt.WA_OpaquePaintEvent, True)
        self.style_options = OverlayStyle()
        self.limbs = np.zeros((0, 2), np.int64)
        self.sample_aspect = 1.0  # how much wider than tall the source's pixels are shown (DV, DVD: 32/27)
        self.placeholder = "Open a video file, a stream or a webcam (File menu), or drop a file here."
        self._frame: np.ndarray | None = None
        self._qimage: QImage | None = None
        self._poses: Poses | None = None
        self.frames_shown = 0
        self.paint_ms = 0.0

    # -- content -------------------------------------------------------------------------------------------
    def set_frame(self, image: np.ndarray, poses: Poses | None = None) -> None:
        """Show a BGR frame (the view keeps a reference; do not modify it afterwards) and its poses."""
        self._frame = image
        self._qimage = bgr_to_qimage(image)
        self._poses = poses
        self.frames_shown += 1
        self.update()

    def clear(self) -> None:
        self._frame = self._qimage = self._poses = None
        self.update()

    @property
    def frame(self) -> np.ndarray | None:
        return self._frame

    @property
    def poses(self) -> Poses | None:
        return self._poses

    def image_rect(self) -> QRectF:
        """Where the frame is drawn in widget coordinates."""
        if self._qimage is None:
            return QRectF()
        return fit_rect(self._qimage.width() * self.sample_aspect, self._qimage.height(), self.width(), self.height())

    def annotated_image(self) -> QImage | None:
        """The current frame at full resolution with the overlay (what a snapshot saves)."""
        if self._frame is None:
            return None
        return render_annotated(self._frame, self._poses, self.limbs, self.style_options)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(960, 540)

    # -- painting --------------------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(18, 18, 20))
        if self._qimage is None:
            painter.setPen(QColor(200, 200, 200))
            font = QFont(painter.font())
            font.setPointSizeF(font.pointSizeF() * 1.2)
            painter.setFont(font)
            painter.drawText(self.rect().adjusted(20, 20, -20, -20), Qt.AlignCenter | Qt.TextWordWrap,
                             self.placeholder)
            painter.end()
            return
        target = self.image_rect()
        painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
        painter.drawImage(target, self._qimage)
        if self._poses is not None and len(self._poses):
            t0 = time.perf_counter()
            scale = (target.width() / self._qimage.width(), target.height() / self._qimage.height())
            paint_poses(painter, self._poses, self.limbs, self.style_options, scale, (target.x(), target.y()))
            self.paint_ms = (time.perf_counter() - t0) * 1e3
        painter.end()

    # -- drag and drop ---------------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt name)
        paths = [u.toLocalFile() or u.toString() for u in event.mimeData().urls()]
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)
