"""Files the window writes besides recordings: annotation exports (the engine's exporter, with a progress dialog),
snapshots of the current frame and screenshots of the window, all written atomically."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable

from PyQt5.QtCore import QObject, pyqtSignal
from PyQt5.QtGui import QImage
from PyQt5.QtWidgets import QFileDialog, QProgressDialog, QWidget

from core.io.files import atomic_path
from ui import backend, pictures
from ui.controls import ModelPanel
from ui.dialogs import ExportDialog
from ui.model_control import ModelController
from ui.player import PlayerController
from ui.settings import ViewerSettings
from ui.workers import Task

logger = logging.getLogger(__name__)


def _request_problem(input_path: str, out_dir: str, formats: list[str]) -> str:
    """What is missing from an export request ("" when complete): an empty path would mean the current folder of
    the process, never what the user wanted."""
    if not input_path.strip():
        return "Choose the video to export."
    if not out_dir.strip():
        return "Choose the output folder."
    if not formats:
        return "Choose at least one output format."
    return ""


class ExportController(QObject):
    """Exports, snapshots and screenshots; ``finished(result)`` ends every export (None when cancelled/failed)."""

    finished = pyqtSignal(object)

    def __init__(self, window: QWidget, player: PlayerController, models: ModelController, panel: ModelPanel,
                 settings: ViewerSettings, report: Callable[[str, str], Any],
                 message: Callable[[str, int], None]) -> None:
        super().__init__(window)
        self._window, self.player, self.models, self.panel, self.settings = window, player, models, panel, settings
        self._report, self._message = report, message
        self.task: Task | None = None
        self.busy = False  # from start until the outcome is delivered (the worker thread may end a moment later)
        self.progress_dialog: QProgressDialog | None = None

    # -- annotation export ------------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        if not self.models.name:
            self._report("Load a model before exporting annotations.", "Export")
            return
        playback = self.player.playback
        current = self.player.source_spec if playback is not None and playback.seekable else ""
        dialog = ExportDialog(current, self.settings.last_dir or str(Path.home()),
                              self.settings.export_formats.split(","), self._window)
        if dialog.exec_() == ExportDialog.Accepted:
            self.start(*dialog.values())

    def start(self, input_path: str, out_dir: str, formats: list[str]) -> Task | None:
        """Export annotations of a file with the engine's exporter (same files as ``gopose annotate``)."""
        if self.busy:
            self._report("An export is already running.", "Export")
            return None
        if not self.models.name:
            self._report("Load a model before exporting annotations.", "Export")
            return None
        problem = _request_problem(input_path, out_dir, formats)
        if problem:
            self._report(problem, "Export")
            return None
        self.settings.export_formats = ",".join(formats)
        settings = dataclasses.replace(self.panel.collect(self.settings))  # a snapshot: the panel may change
        model, threads, builtin = self.models.name, self.models.threads, self.models.builtin
        dialog = QProgressDialog(f"Exporting {Path(input_path).name}…", "Cancel", 0, 0, self._window)
        dialog.setWindowTitle("Export annotations")
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        self.progress_dialog = dialog

        def work(report):
            return backend.export_annotations(input_path, out_dir, model, settings, formats, report,
                                              task.cancel_event, threads, builtin)

        task = Task(work, "export", self)
        dialog.canceled.connect(task.cancel)
        task.progress.connect(self._on_progress)
        task.succeeded.connect(self._on_done)
        task.failed.connect(self._on_failed)
        self.task, self.busy = task, True
        dialog.open()
        task.start()
        return task

    def _on_progress(self, done: int, total: int) -> None:
        dialog = self.progress_dialog
        if dialog is not None:
            if total and dialog.maximum() != total:
                dialog.setMaximum(total)
            dialog.setValue(min(done, total) if total else 0)
            dialog.setLabelText(f"Exporting: {done} / {total or '?'} frames")

    def _close_progress(self) -> None:
        dialog, self.progress_dialog = self.progress_dialog, None
        if dialog is not None:
            dialog.canceled.disconnect()  # closing a QProgressDialog emits canceled
            dialog.close()

    def _on_done(self, result: Any) -> None:
        cancelled = bool(getattr(result, "cancelled", False)
                         or (self.task is not None and self.task.cancel_event.is_set()))
        self.busy = False
        self._close_progress()
        self._message("Export cancelled" if cancelled else "Export finished", 5000)
        self.finished.emit(None if cancelled else result)

    def _on_failed(self, message: str) -> None:
        self.busy = False
        self._close_progress()
        self._report(message, "Export failed")
        self.finished.emit(None)

    def shutdown(self, timeout: float) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task.join(timeout)

    # -- pictures ---------------------------------------------------------------------------------------------
    def snapshot_dialog(self) -> None:
        if self.player.view.frame is None:
            return
        default = str(Path(self.settings.last_dir or Path.home()) / time.strftime("gopose_%Y%m%d_%H%M%S.png"))
        path, chosen = QFileDialog.getSaveFileName(self._window, "Save snapshot", default,
                                                   ";;".join(pictures.dialog_filters()))
        if path:
            if not Path(path).suffix:  # a name typed without a suffix: the one of the chosen file type
                path += pictures.filter_suffix(chosen)
            self.save_snapshot(path)

    def save_snapshot(self, path: str) -> bool:
        """The current frame at full resolution with its overlay, in the format of the file's suffix (PNG when it
        has none)."""
        image = self.player.view.annotated_image()
        if image is None:
            self._report("No frame to save yet.", "Snapshot")
            return False
        return self._save_picture(image, path, "Snapshot")

    def save_screenshot(self, path: str) -> bool:
        """The whole window, in the format of the file's suffix (PNG when it has none)."""
        return self._save_picture(self._window.grab().toImage(), path, "Screenshot")

    def _save_picture(self, image: QImage, path: str, what: str) -> bool:
        """Write ``image`` atomically in the format its suffix names; a dialog says why when it cannot."""
        try:
            target, fmt = pictures.picture_target(path)
            if not target.parent.is_dir():
                raise FileNotFoundError(f"folder does not exist: {target.parent}")
            with atomic_path(target) as tmp:  # the temporary name ends in .part: the format is given explicitly
                if not image.save(str(tmp), fmt):
                    raise OSError(f"cannot write {target} as {fmt.upper()}")
        except (OSError, ValueError) as exc:
            self._report(str(exc), what)
            return False
        logger.info("%s saved to %s (%s)", what, target, fmt.upper())
        self._message(f"{what} saved to {target}", 5000)
        return True
