"""Choosing what to play: file, URL and webcam dialogs and the recent-sources menu."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PyQt5.QtCore import QObject
from PyQt5.QtWidgets import QFileDialog, QInputDialog, QMenu, QWidget

from ui import backend
from ui.dialogs import WebcamDialog
from ui.feedback import TaskHost
from ui.player import PlayerController
from ui.settings import SettingsStore, ViewerSettings

VIDEO_FILTER = "Videos (*.mp4 *.mov *.avi *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv *.ts);;All files (*)"


class SourceChooser(QObject):
    """Asks for a source and hands it to ``player.open_source``; ``recent_menu`` is filled when shown."""

    def __init__(self, window: QWidget, player: PlayerController, settings: ViewerSettings, store: SettingsStore,
                 tasks: TaskHost, message: Callable[[str, int], None]) -> None:
        super().__init__(window)
        self._window, self.player, self.settings, self.store = window, player, settings, store
        self._tasks, self._message = tasks, message
        self.recent_menu: QMenu | None = None

    def open_file_dialog(self) -> None:
        path = QFileDialog.getOpenFileName(self._window, "Open video", self.settings.last_dir, VIDEO_FILTER)[0]
        if path:
            self.settings.last_dir = str(Path(path).parent)
            self.player.open_source(path)

    def open_url_dialog(self) -> None:
        url, ok = QInputDialog.getText(self._window, "Open URL", "Stream or video URL (rtsp://, http://, …):")
        if ok and url.strip():
            self.player.open_source(url.strip())

    def open_webcam_dialog(self) -> None:
        """Probe the cameras in a worker, then let the user pick one and a resolution."""
        self._message("Looking for cameras…", 3000)
        self._tasks.start(lambda _r: backend.probe_cameras(), "probe-cameras", self._pick_webcam)

    def _pick_webcam(self, cameras: list) -> None:
        dialog = WebcamDialog(cameras, self._window)
        if dialog.exec_() == WebcamDialog.Accepted:
            index, w, h = dialog.choice()
            self.player.open_source(f"webcam:{index}", w, h)

    def set_recent_menu(self, menu: QMenu) -> None:
        self.recent_menu = menu
        menu.aboutToShow.connect(self.fill_recent)

    def fill_recent(self) -> None:
        menu = self.recent_menu
        menu.clear()
        for spec in self.store.recent_files():
            menu.addAction(spec, lambda s=spec: self.player.open_source(s))
        if menu.isEmpty():
            menu.addAction("(none)").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear list", self.store.clear_recent)
