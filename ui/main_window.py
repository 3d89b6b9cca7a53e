"""The GOPose main window: a thin composition of widgets, actions and the controllers that do the work.

- ``models`` (``ModelController``): the model list (built-in and installed), the default at start, loading in a
  worker, which model is in use and why, the no-model banner, the input size and decoder thresholds (the model's
  own unless the user set them; *Model defaults* forgets the user's);
- ``player`` (``PlayerController``): the source, the live runner (the engine's live pipeline), the display;
- ``transport`` (``TransportController``): play/pause, step, seek, speed and the seek bar;
- ``sources`` (``SourceChooser``): the file, URL and webcam dialogs and the recent sources;
- ``recording`` (``RecordingController``): the annotated video of what is shown;
- ``exports`` (``ExportController``): annotation exports, snapshots, screenshots;
- ``error_dialogs`` / ``tasks`` (``ui/feedback.py``): non-modal error dialogs (every message kept in ``errors``)
  and worker tasks. The window keeps running after any error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PyQt5.QtCore import QByteArray, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QCloseEvent, QIcon
from PyQt5.QtWidgets import QDockWidget, QMainWindow, QMessageBox, QVBoxLayout, QWidget

from ui import backend
from ui.controls import ModelPanel, PlaybackBar
from ui.exporting import ExportController
from ui.feedback import ErrorDialogs, TaskHost
from ui.model_banner import ModelBanner
from ui.model_control import ModelController
from ui.player import PlayerController
from ui.recording import RecordingController
from ui.settings import SettingsStore, ViewerSettings
from ui.source_chooser import SourceChooser
from ui.status import StatusPanel
from ui.transport import TransportController
from ui.video_view import VideoView
from ui.window_actions import build_menus, make_action, shortcut_lines

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


class MainWindow(QMainWindow):
    """The desktop application window. ``settings``: a ``SettingsStore`` (tests pass one on a temporary INI);
    ``builtin_model``: where the built-in model is looked for (default: the package's ``resources/models/default.pt``;
    tests pass their own)."""

    frame_shown = pyqtSignal(int)          # frames displayed so far
    model_ready = pyqtSignal(str)          # the model now in use
    source_ready = pyqtSignal(str)         # the source now playing
    export_finished = pyqtSignal(object)   # the exporter's result (or None when cancelled/failed)
    error_shown = pyqtSignal(str)
    end_reached = pyqtSignal()             # a file reached its end, or a live source stopped

    def __init__(self, settings: SettingsStore | None = None, *, threads: int | None = None,
                 builtin_model: str | Path | None = None) -> None:
        super().__init__()
        self.setWindowTitle("GOPose")
        self.store = settings or SettingsStore()
        self.settings: ViewerSettings = self.store.load()
        self.error_dialogs = ErrorDialogs(self)
        self.errors, self.dialogs = self.error_dialogs.messages, self.error_dialogs.open_dialogs
        self.tasks = TaskHost(self.show_error, self)
        self.setWindowIcon(QIcon(str(RESOURCES / "icons" / "gopose.svg")))
        style = RESOURCES / "styles" / "app.qss"
        if style.is_file():
            self.setStyleSheet(style.read_text(encoding="utf-8"))
        self._build_widgets()
        message = self.statusBar().showMessage
        self.models = ModelController(self, self.panel, self.banner, self.settings, self.tasks, self.show_error,
                                      message, threads, builtin_model)
        self.player = PlayerController(self.view, self.status, self.settings, self.store, self.models, self.tasks,
                                       self.show_error, message, self)
        self.transport = TransportController(self.player, self.playbar, self.settings, message, self)
        self.sources = SourceChooser(self, self.player, self.settings, self.store, self.tasks, message)
        self.recording = RecordingController(self, self.player, self.models, self.settings, self.show_error,
                                             message)
        self.exports = ExportController(self, self.player, self.models, self.panel, self.settings,
                                        self.show_error, message)
        self._build_actions()
        self._build_menus()
        self._connect()
        self.panel.apply(self.settings)
        self._apply_style()
        self.models.refresh_list()
        self.models.update_banner()
        self._status_timer = QTimer(self)
        self._status_timer.timeout.connect(self.refresh_status)
        self._status_timer.start(500)
        geometry = self.store.geometry()
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1200, 720)

    # ------------------------------------------------------------------------------------------ construction
    def _build_widgets(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.banner = ModelBanner(backend.model_help_url(), central)
        layout.addWidget(self.banner)
        self.view = VideoView(central)
        layout.addWidget(self.view, 1)
        self.playbar = PlaybackBar(central)
        layout.addWidget(self.playbar)
        self.setCentralWidget(central)
        self.panel = ModelPanel(self)
        self.panel.setMaximumWidth(max(330, self.panel.sizeHint().width()))  # wider only for big fonts
        self.dock = QDockWidget("Model", self)
        self.dock.setObjectName("model_dock")
        self.dock.setWidget(self.panel)
        self.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.status = StatusPanel(self.statusBar(), self)
        self.setAcceptDrops(True)

    def _build_actions(self) -> None:
        def a(text: str, slot: Callable, shortcut: str, checkable: bool = False, tip: str = ""):
            return make_action(self, text, slot, shortcut, checkable, tip)

        models, transport, exports, sources = self.models, self.transport, self.exports, self.sources
        self.act_open = a("&Open video…", sources.open_file_dialog, "Ctrl+O")
        self.act_url = a("Open &URL…", sources.open_url_dialog, "Ctrl+U")
        self.act_webcam = a("Open &webcam…", sources.open_webcam_dialog, "Ctrl+Shift+W")
        self.act_close_source = a("&Close source", self.close_source, "Ctrl+F4")
        self.act_quit = a("&Quit", self.close, "Ctrl+Q")
        self.act_play = a("Play", transport.toggle_play, "Space", tip="Play / pause")
        self.act_step = a("Step", transport.step, ".", tip="Next frame")
        self.act_back = a("Back 5 s", lambda: transport.seek_relative(-5.0), "Left")
        self.act_forward = a("Forward 5 s", lambda: transport.seek_relative(5.0), "Right")
        self.act_start = a("Go to start", lambda: transport.seek(0.0), "Home")
        self.act_slower = a("Slower", lambda: transport.change_speed(-1), "[")
        self.act_faster = a("Faster", lambda: transport.change_speed(+1), "]")
        self.act_checkpoint = a("Open &checkpoint…", models.open_checkpoint_dialog, "Ctrl+M")
        self.act_add_model = a("&Add to my models…", models.add_model_dialog, "Ctrl+Shift+A")
        self.act_reload = a("&Reload model", models.reload, "Ctrl+Shift+M")
        self.act_defaults = a("Model &defaults", models.use_model_defaults, "Ctrl+Shift+D",
                              tip="Run at the input size and thresholds the model was tuned for")
        self.act_record = a("&Record annotated video…", self.recording.toggle, "Ctrl+R", checkable=True)
        self.act_export = a("&Export annotations…", exports.export_dialog, "Ctrl+E")
        self.act_snapshot = a("&Snapshot…", exports.snapshot_dialog, "Ctrl+S")
        self.act_fullscreen = a("&Full screen", self.toggle_fullscreen, "F11", checkable=True)
        self.act_panel = a("Model &panel", self.dock.setVisible, "F9", checkable=True)
        self.act_boxes = a("Show &boxes", self.panel.show_boxes.setChecked, "B", checkable=True)
        self.act_ids = a("Show track &ids", self.panel.show_ids.setChecked, "I", checkable=True)
        self.act_smooth = a("&Smoothing", self.panel.smoothing.setChecked, "S", checkable=True)
        self.act_shortcuts = a("&Keyboard shortcuts", self.show_shortcuts, "F1")
        self.playbar.set_actions(self.act_play, self.act_step)
        self.transport.bind_actions(
            self.act_play, (self.act_play, self.act_close_source, self.act_snapshot, self.act_record),
            (self.act_step, self.act_back, self.act_forward, self.act_start, self.act_slower, self.act_faster))

    def _build_menus(self) -> None:
        menus = build_menus(self, {
            "&File": [self.act_open, self.act_url, self.act_webcam, "Open &recent", self.act_close_source, None,
                      self.act_record, self.act_export, self.act_snapshot, None, self.act_quit],
            "&Playback": [self.act_play, self.act_step, self.act_back, self.act_forward, self.act_start,
                          self.act_slower, self.act_faster],
            "&Model": [self.act_checkpoint, self.act_add_model, self.act_reload, self.act_defaults, self.act_smooth],
            "&View": [self.act_fullscreen, self.act_panel, self.act_boxes, self.act_ids],
            "&Help": [self.act_shortcuts],
        })
        self.sources.set_recent_menu(menus["Open &recent"])

    def _connect(self) -> None:
        self.error_dialogs.shown.connect(self.error_shown)
        self.exports.finished.connect(self.export_finished)
        self.models.ready.connect(self.model_ready)
        self.models.described.connect(self.status.set_model)
        self.player.displayed.connect(lambda *_: self.frame_shown.emit(self.frames_displayed))
        self.player.stream_ended.connect(self.end_reached)
        self.player.source_changed.connect(self._on_source_changed)
        self.recording.active.connect(self.act_record.setChecked)
        self.view.files_dropped.connect(lambda paths: self.open_source(str(paths[0])) if paths else None)
        self.panel.open_checkpoint.connect(self.act_checkpoint.trigger)
        self.panel.smoothing_changed.connect(self._on_smoothing_changed)
        self.panel.style_changed.connect(self._apply_style)
        self.dock.visibilityChanged.connect(self.act_panel.setChecked)

    # ------------------------------------------------------------------------------------------ window parts
    def _on_source_changed(self, spec: str) -> None:
        self.setWindowTitle(f"GOPose — {Path(spec).name if '://' not in spec else spec}" if spec else "GOPose")
        if spec:
            self.source_ready.emit(spec)

    def _on_smoothing_changed(self, on: bool) -> None:
        self.act_smooth.setChecked(on)
        self.player.set_smoothing(on)

    def _apply_style(self) -> None:
        self.panel.collect(self.settings)
        self.view.style_options.show_boxes = self.settings.show_boxes
        self.view.style_options.show_ids = self.settings.show_ids
        self.act_boxes.setChecked(self.settings.show_boxes)
        self.act_ids.setChecked(self.settings.show_ids)
        self.act_smooth.setChecked(self.settings.smoothing)
        self.view.update()

    def show_error(self, message: str, title: str = "GOPose") -> QMessageBox:
        """A non-modal warning dialog (the window keeps running); the message is kept in ``errors``."""
        return self.error_dialogs.show(message, title)

    def refresh_status(self) -> None:
        """Update the status bar's rates, latency and people count (every 500 ms, and on demand)."""
        self.player.refresh_status()

    def toggle_fullscreen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
            self.menuBar().show()
            self.statusBar().show()
        else:
            self.showFullScreen()
        self.act_fullscreen.setChecked(self.isFullScreen())

    def show_shortcuts(self) -> None:
        box = QMessageBox(QMessageBox.Information, "Keyboard shortcuts", "\n".join(shortcut_lines(self)),
                          QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose, True)
        box.open()

    # ------------------------------------------------------------------------------------------ drops
    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.view.dropEvent(event)

    # ------------------------------------------------------------------------------------------ the window's API
    # (what scripted runs, benchmarks and tests drive; each one delegates to its controller)
    def open_source(self, spec: str, width: int | None = None, height: int | None = None) -> None:
        self.player.open_source(spec, width, height)

    def close_source(self) -> None:
        self.recording.stop()
        self.player.close_source()

    def load_model(self, spec: str, then: Callable[[], None] | None = None, reason: str = "--model") -> None:
        self.models.load(spec, then, reason)

    def load_default_model(self, then: Callable[[], None] | None = None) -> None:
        self.models.load_default(then)

    def seek(self, seconds: float) -> None:
        self.transport.seek(seconds)

    def set_speed(self, speed: float) -> None:
        self.transport.set_speed(speed)

    def start_recording(self, path: str) -> bool:
        return self.recording.start(path)

    def stop_recording(self) -> str | None:
        return self.recording.stop()

    def save_snapshot(self, path: str) -> bool:
        return self.exports.save_snapshot(path)

    def save_screenshot(self, path: str) -> bool:
        return self.exports.save_screenshot(path)

    def start_export(self, input_path: str, out_dir: str, formats: list[str]):
        return self.exports.start(input_path, out_dir, formats)

    @property
    def estimator(self) -> Any:
        return self.models.estimator

    @property
    def model_name(self) -> str:
        return self.models.name

    @property
    def playback(self):
        return self.player.playback

    @property
    def runner(self):
        return self.player.runner

    @property
    def source_spec(self) -> str:
        return self.player.source_spec

    @property
    def frames_displayed(self) -> int:
        return self.player.stats.frames

    @property
    def results_displayed(self) -> int:
        return self.player.stats.results

    @property
    def latency_ms(self) -> float | None:
        """Release by the source to display with poses, of the last frame shown with poses."""
        return self.player.stats.latency_ms

    @property
    def progress_dialog(self):
        return self.exports.progress_dialog

    # ------------------------------------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = 10.0) -> str | None:
        """Finish a recording, stop every worker, close the source and model (idempotent); returns the recording
        finished now, if any."""
        recorded = self.recording.stop()
        self.exports.shutdown(timeout)
        self.player.shutdown(timeout)
        self.models.shutdown()
        self.tasks.shutdown(timeout)
        return recorded

    def save_settings(self) -> None:
        self.panel.collect(self.settings)
        self.settings.model = self.models.name or self.settings.model
        self.store.save(self.settings)
        self.store.save_geometry(self.saveGeometry())

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)
