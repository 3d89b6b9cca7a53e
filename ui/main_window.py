"""The GOPose main window: video view with the live skeleton overlay, sources, model options and actions.

Threads: sources open, models load and exports run in ``Task`` workers; frames flow through a ``LiveRunner``
(the engine's live pipeline) into a ``FrameMailbox`` that the GUI drains. Errors become non-modal dialogs
(``show_error``; every message is kept in ``errors``) and the window keeps running.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PyQt5.QtCore import QByteArray, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QCloseEvent, QIcon, QKeySequence
from PyQt5.QtWidgets import (QAction, QDockWidget, QFileDialog, QHBoxLayout, QInputDialog, QLabel, QMainWindow,
                             QMessageBox, QProgressDialog, QPushButton, QVBoxLayout, QWidget)

from core.io.files import atomic_path
from ui import backend
from ui.controls import SPEEDS, ModelPanel, PlaybackBar
from ui.dialogs import ExportDialog, WebcamDialog
from ui.playback import PlaybackSource
from ui.settings import SettingsStore, ViewerSettings
from ui.status import RateMeter, StatusPanel
from ui.video_view import VideoView
from ui.workers import FrameMailbox, LiveRunner, Recorder, Task

LOG = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
VIDEO_FILTER = "Videos (*.mp4 *.mov *.avi *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv *.ts);;All files (*)"


class MainWindow(QMainWindow):
    """The desktop application window. ``settings``: a ``SettingsStore`` (tests pass one on a temporary INI)."""

    frame_shown = pyqtSignal(int)          # frames displayed so far
    model_ready = pyqtSignal(str)          # the model now in use ("" = none)
    source_ready = pyqtSignal(str)         # the source now playing
    export_finished = pyqtSignal(object)   # the exporter's result (or None when cancelled/failed)
    error_shown = pyqtSignal(str)
    end_reached = pyqtSignal()

    def __init__(self, settings: SettingsStore | None = None, *, threads: int | None = None) -> None:
        super().__init__()
        self.setWindowTitle("GOPose")
        self.store = settings or SettingsStore()
        self.settings: ViewerSettings = self.store.load()
        self.threads = threads
        self.errors: list[str] = []
        self.dialogs: list[QMessageBox] = []
        self.estimator: Any = None
        self.model_name = ""
        self.source: Any = None
        self.source_spec = ""
        self.playback: PlaybackSource | None = None
        self.runner: LiveRunner | None = None
        self.recorder: Recorder | None = None
        self.export_task: Task | None = None
        self.progress_dialog: QProgressDialog | None = None
        self._generation = 0
        self._tasks: set[Task] = set()
        self._model_task: Task | None = None
        self._model_request = 0
        self._after_model: Callable[[], None] | None = None
        self._display_rate = RateMeter()
        self._result_samples: collections.deque[tuple[float, int]] = collections.deque()
        self._latency_ms: float | None = None
        self._people: int | None = None
        self.frames_displayed = 0
        self.results_displayed = 0

        self.mailbox = FrameMailbox(self)
        self.mailbox.available.connect(self._drain)
        self.mailbox.error.connect(self._on_runner_error)
        self.mailbox.finished.connect(self._on_runner_finished)
        self.end_reached.connect(self._update_actions)  # emitted by the player thread: queued to the GUI

        self.setWindowIcon(QIcon(str(RESOURCES / "icons" / "gopose.svg")))
        style = RESOURCES / "styles" / "app.qss"
        if style.is_file():
            self.setStyleSheet(style.read_text(encoding="utf-8"))
        self._build_actions()
        self._build_ui()
        self._build_menus()
        self.panel.apply(self.settings)
        self._apply_style()
        self.refresh_models()
        self._update_banner()
        self._update_actions()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh_status)
        self._timer.start(500)
        geometry = self.store.geometry()
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1200, 720)

    # ------------------------------------------------------------------------------------------ construction
    def _action(self, text: str, slot: Callable, shortcut: str | QKeySequence.StandardKey | None = None,
                checkable: bool = False, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        action.setToolTip(f"{tip or text.replace('&', '').rstrip('…')} ({action.shortcut().toString()})"
                          if shortcut is not None else tip or text)
        action.setShortcutContext(Qt.WindowShortcut)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work in full screen, when menus are hidden
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.act_open = a("&Open video…", self.open_file_dialog, "Ctrl+O")
        self.act_url = a("Open &URL…", self.open_url_dialog, "Ctrl+U")
        self.act_webcam = a("Open &webcam…", self.open_webcam_dialog, "Ctrl+Shift+W")
        self.act_close_source = a("&Close source", self.close_source, "Ctrl+F4")
        self.act_quit = a("&Quit", self.close, "Ctrl+Q")
        self.act_play = a("Play", self.toggle_play, "Space", tip="Play / pause")
        self.act_step = a("Step", self.step_frame, ".", tip="Next frame")
        self.act_back = a("Back 5 s", lambda: self.seek_relative(-5.0), "Left")
        self.act_forward = a("Forward 5 s", lambda: self.seek_relative(5.0), "Right")
        self.act_start = a("Go to start", lambda: self.seek(0.0), "Home")
        self.act_slower = a("Slower", lambda: self.change_speed(-1), "[")
        self.act_faster = a("Faster", lambda: self.change_speed(+1), "]")
        self.act_checkpoint = a("Open &checkpoint…", self.open_checkpoint_dialog, "Ctrl+M")
        self.act_reload = a("&Reload model", self.reload_model, "Ctrl+Shift+M")
        self.act_record = a("&Record annotated video…", self.toggle_recording, "Ctrl+R", checkable=True)
        self.act_export = a("&Export annotations…", self.export_dialog, "Ctrl+E")
        self.act_snapshot = a("&Snapshot…", self.snapshot_dialog, "Ctrl+S")
        self.act_fullscreen = a("&Full screen", self.toggle_fullscreen, "F11", checkable=True)
        self.act_panel = a("Model &panel", self._toggle_panel, "F9", checkable=True)
        self.act_boxes = a("Show &boxes", lambda b: self.panel.show_boxes.setChecked(b), "B", checkable=True)
        self.act_ids = a("Show track &ids", lambda b: self.panel.show_ids.setChecked(b), "I", checkable=True)
        self.act_smooth = a("&Smoothing", lambda b: self.panel.smoothing.setChecked(b), "S", checkable=True)
        self.act_shortcuts = a("&Keyboard shortcuts", self.show_shortcuts, "F1")

    def _build_ui(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.banner = QWidget(central)
        self.banner.setObjectName("model_banner")
        row = QHBoxLayout(self.banner)
        self.banner_text = QLabel(self.banner)
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        row.addWidget(self.banner_text, 1)
        button = QPushButton("Open checkpoint…", self.banner)
        button.clicked.connect(self.act_checkpoint.trigger)
        row.addWidget(button)
        self.banner.setAttribute(Qt.WA_StyledBackground, True)
        layout.addWidget(self.banner)
        self.view = VideoView(central)
        self.view.files_dropped.connect(self._on_dropped)
        layout.addWidget(self.view, 1)
        self.playbar = PlaybackBar(self.act_play, self.act_step, central)
        self.playbar.seek_requested.connect(self.seek)
        self.playbar.speed_changed.connect(self.set_speed)
        self.playbar.set_speed(self.settings.speed)
        layout.addWidget(self.playbar)
        self.setCentralWidget(central)

        self.panel = ModelPanel(self.act_checkpoint, self)
        self.panel.model_chosen.connect(self.load_model)
        self.panel.engine_changed.connect(self.reload_model)
        self.panel.decoder_changed.connect(self._on_decoder_changed)
        self.panel.smoothing_changed.connect(self._on_smoothing_changed)
        self.panel.style_changed.connect(self._apply_style)
        self.dock = QDockWidget("Model", self)
        self.dock.setObjectName("model_dock")
        self.dock.setWidget(self.panel)
        self.panel.setMaximumWidth(330)
        self.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.visibilityChanged.connect(self.act_panel.setChecked)
        self.status = StatusPanel(self.statusBar(), self)
        self.setAcceptDrops(True)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        m = bar.addMenu("&File")
        for act in (self.act_open, self.act_url, self.act_webcam):
            m.addAction(act)
        self.recent_menu = m.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        m.addAction(self.act_close_source)
        m.addSeparator()
        for act in (self.act_record, self.act_export, self.act_snapshot):
            m.addAction(act)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = bar.addMenu("&Playback")
        for act in (self.act_play, self.act_step, self.act_back, self.act_forward, self.act_start, self.act_slower,
                    self.act_faster):
            m.addAction(act)
        m = bar.addMenu("&Model")
        for act in (self.act_checkpoint, self.act_reload, self.act_smooth):
            m.addAction(act)
        m = bar.addMenu("&View")
        for act in (self.act_fullscreen, self.act_panel, self.act_boxes, self.act_ids):
            m.addAction(act)
        m = bar.addMenu("&Help")
        m.addAction(self.act_shortcuts)

    # ------------------------------------------------------------------------------------------ errors
    def show_error(self, message: str, title: str = "GOPose") -> QMessageBox:
        """A non-modal warning dialog (the window keeps running); the message is kept in ``errors``."""
        LOG.warning("%s: %s", title, message)
        self.errors.append(message)
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose, True)
        box.finished.connect(lambda _r, b=box: self.dialogs.remove(b) if b in self.dialogs else None)
        self.dialogs.append(box)
        box.open()
        self.error_shown.emit(message)
        return box

    def _start_task(self, fn: Callable, name: str, on_done: Callable[[Any], None],
                    on_fail: Callable[[str], None] | None = None) -> Task:
        task = Task(fn, name, self)
        task.succeeded.connect(on_done)
        task.failed.connect(on_fail or self.show_error)
        task.ended.connect(lambda t=task: self._tasks.discard(t))
        self._tasks.add(task)
        return task.start()

    # ------------------------------------------------------------------------------------------ models
    def refresh_models(self) -> None:
        models = backend.installed_models()
        current = self.model_name or self.settings.model
        if current and current not in [v for _, v in models]:
            models.append((Path(current).name, current))
        self.panel.set_models(models, current)

    def open_checkpoint_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", self.settings.last_dir,
                                              "Checkpoints (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.settings.last_dir = str(Path(path).parent)
            self.load_model(path)

    def load_model(self, spec: str, then: Callable[[], None] | None = None) -> None:
        """Load an installed model name or checkpoint file in a worker; the current one runs until it is ready.

        Only the latest request counts: a load that finishes after a newer one was asked for is discarded.
        ``then`` runs after the load succeeded or failed (e.g. open the start-up source).
        """
        if not spec:
            self._update_banner()
            return
        settings = dataclasses.replace(self.panel.collect(self.settings))
        self._model_request += 1
        request = self._model_request
        self._after_model = then
        self.panel.info.setText(f"Loading {Path(spec).name}…")
        threads = self.threads
        self._model_task = self._start_task(
            lambda _r: backend.load_estimator(spec, settings, threads), "load-model",
            lambda est, s=spec, r=request: self._on_model_loaded(s, est, r),
            lambda msg, r=request: self._on_model_failed(msg, r))

    def load_default_model(self, then: Callable[[], None] | None = None) -> None:
        """Load the model used last time if it still exists, else an installed one; else only run ``then``."""
        installed = [v for _, v in backend.installed_models()]
        remembered = self.settings.model
        if remembered and (remembered in installed or Path(remembered).is_file()):
            self.load_model(remembered, then)
        elif installed:
            self.load_model(installed[0], then)
        else:
            self._update_banner()
            if then is not None:
                then()

    def reload_model(self) -> None:
        """Rebuild the estimator after an engine option changed (device, precision, input size, flip)."""
        self.panel.collect(self.settings)
        if self.model_name:
            self.load_model(self.model_name)

    def _on_model_loaded(self, spec: str, estimator: Any, request: int) -> None:
        if request != self._model_request:  # a newer load was requested meanwhile
            self._close_estimator_later(estimator, None)
            return
        old, self.estimator = self.estimator, estimator
        self.model_name = spec
        self.settings.model = spec
        self.view.limbs = np.asarray(estimator.contract.spec.skeleton(None), np.int64).reshape(-1, 2)
        device = getattr(estimator, "device", "")
        self.panel.info.setText(f"{Path(spec).name}\n{estimator.contract.spec.name}, "
                                f"{estimator.contract.n_limbs} limbs {('on ' + str(device)) if device else ''}")
        self.refresh_models()
        self._update_banner()
        self._restart_runner(old_estimator=old)
        self.model_ready.emit(spec)
        self._run_after_model()

    def _on_model_failed(self, message: str, request: int) -> None:
        if request != self._model_request:
            return
        self.panel.info.setText("")
        self._update_banner()
        self.show_error(message, "Cannot load the model")
        self._run_after_model()

    def _run_after_model(self) -> None:
        then, self._after_model = self._after_model, None
        if then is not None:
            then()

    def _update_banner(self) -> None:
        if self.estimator is not None:
            self.banner.hide()
            return
        if backend.installed_models() or (self._model_task is not None and self._model_task.running):
            self.banner_text.setText("No model loaded: pick one in the Model panel or open a checkpoint "
                                     "(Ctrl+M). The video plays without poses.")
        else:
            self.banner_text.setText(backend.no_model_text())
        self.banner.show()

    def _on_decoder_changed(self, fields: dict) -> None:
        self.panel.collect(self.settings)
        if self.estimator is not None:
            try:
                self.estimator.update_decoder(**fields)
            except Exception as exc:  # noqa: BLE001
                self.show_error(str(exc), "Decoder settings")

    def _on_smoothing_changed(self, on: bool) -> None:
        self.settings.smoothing = on
        self.act_smooth.setChecked(on)
        if self.estimator is not None and self.playback is not None:
            self._restart_runner()

    def _apply_style(self) -> None:
        self.panel.collect(self.settings)
        self.view.style_options.show_boxes = self.settings.show_boxes
        self.view.style_options.show_ids = self.settings.show_ids
        self.act_boxes.setChecked(self.settings.show_boxes)
        self.act_ids.setChecked(self.settings.show_ids)
        self.act_smooth.setChecked(self.settings.smoothing)
        self.view.update()

    # ------------------------------------------------------------------------------------------ sources
    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", self.settings.last_dir, VIDEO_FILTER)
        if path:
            self.settings.last_dir = str(Path(path).parent)
            self.open_source(path)

    def open_url_dialog(self) -> None:
        url, ok = QInputDialog.getText(self, "Open URL", "Stream or video URL (rtsp://, http://, …):")
        if ok and url.strip():
            self.open_source(url.strip())

    def open_webcam_dialog(self) -> None:
        self.statusBar().showMessage("Looking for cameras…", 3000)
        self._start_task(lambda _r: backend.probe_cameras(), "probe-cameras", self._pick_webcam)

    def _pick_webcam(self, cameras: list) -> None:
        dialog = WebcamDialog(cameras, self)
        if dialog.exec_() == WebcamDialog.Accepted:
            index, w, h = dialog.choice()
            self.open_source(f"webcam:{index}", w, h)

    def _on_dropped(self, paths: list) -> None:
        if paths:
            self.open_source(str(paths[0]))

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.view.dropEvent(event)

    def open_source(self, spec: str, width: int | None = None, height: int | None = None) -> None:
        """Open a file, URL or ``webcam:N`` in a worker; the current source keeps playing until it is ready."""
        self.statusBar().showMessage(f"Opening {spec}…", 5000)
        self._start_task(lambda _r: backend.open_source(spec, width, height), "open-source",
                         lambda src, s=spec: self._on_source_opened(s, src),
                         lambda msg, s=spec: self.show_error(msg, "Cannot open the source"))

    def _on_source_opened(self, spec: str, source: Any) -> None:
        self.statusBar().clearMessage()
        self._stop_runner(shutdown=True)
        self.source, self.source_spec = source, spec
        self.playback = PlaybackSource(source, speed=self.settings.speed, on_end=self.end_reached.emit)
        self.status.reset(spec)
        self.status.set_resolution(*source.size)
        self.playbar.set_duration(self.playback.duration if self.playback.seekable else None,
                                  live=not self.playback.seekable)
        self._display_rate.reset()
        self.view.clear()
        self.setWindowTitle(f"GOPose — {Path(spec).name if '://' not in spec else spec}")
        self.store.add_recent(spec)
        self._restart_runner()
        self._update_actions()
        self.source_ready.emit(spec)

    def close_source(self) -> None:
        self.stop_recording()
        self._stop_runner(shutdown=True)
        self.source = self.playback = None
        self.source_spec = ""
        self.view.clear()
        self.status.reset()
        self.playbar.set_duration(None)
        self._update_actions()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for spec in self.store.recent_files():
            self.recent_menu.addAction(spec, lambda s=spec: self.open_source(s))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.store.clear_recent)

    # ------------------------------------------------------------------------------------------ runner
    def _restart_runner(self, old_estimator: Any = None) -> None:
        """(Re)start frame delivery with the current source, estimator and smoothing."""
        previous = self.runner
        if self.playback is None:
            self._close_estimator_later(old_estimator, previous)
            return
        playback = self.playback.reopen() if previous is not None else self.playback
        self.playback = playback
        self._generation += 1
        self.runner = LiveRunner(playback, self.mailbox, self._generation, estimator=self.estimator,
                                 smoothing=self.settings.smoothing, previous=previous)
        if previous is not None:
            previous.stop()
        self.runner.start()
        self._close_estimator_later(old_estimator, previous)
        self._update_actions()

    def _close_estimator_later(self, estimator: Any, runner: LiveRunner | None) -> None:
        """Close a replaced estimator once the runner using it has stopped (in a worker, never blocking)."""
        if estimator is None or estimator is self.estimator:
            return

        def close(_report):
            if runner is not None:
                runner.join()
            closer = getattr(estimator, "close", None)
            if closer is not None:
                closer()

        self._start_task(close, "close-model", lambda _r: None)

    def _stop_runner(self, shutdown: bool = False) -> None:
        runner, self.runner = self.runner, None
        playback = self.playback
        if runner is not None:
            runner.stop()
        if shutdown and playback is not None:
            source = playback.inner

            def close(_report):
                if runner is not None:
                    runner.join()
                source.close()

            self._start_task(close, "close-source", lambda _r: None)

    def _on_runner_error(self, message: str) -> None:
        self.show_error(message, "Playback stopped")

    def _on_runner_finished(self, generation: int) -> None:
        if generation == self._generation and self.runner is not None:
            self.statusBar().showMessage("End of stream", 5000)
            self._update_actions()
            self.end_reached.emit()

    def _drain(self) -> None:
        item = self.mailbox.take()
        if item is None:
            return
        frame, result, _posted = item
        now = time.monotonic()
        poses = getattr(result, "poses", None)
        self.view.set_frame(frame.image, poses)
        self.frames_displayed += 1
        self._display_rate.tick(now)
        if result is not None:
            self.results_displayed += 1
            self._people = len(poses)
            runner = self.runner
            t0 = runner.delivered_time(frame.index) if runner is not None else None
            if t0 is not None:
                self._latency_ms = (now - t0) * 1e3
        else:
            self._people = None
            self._latency_ms = None
        if self.playback is not None and self.playback.seekable:
            self.playbar.set_position(frame.timestamp)
        if self.recorder is not None:
            self.recorder.write(frame, poses)
        self.frame_shown.emit(self.frames_displayed)

    def refresh_status(self) -> None:
        """Update the status bar's rates, latency and people count (every 500 ms, and on demand)."""
        now = time.monotonic()
        rate = self._inference_rate(now)
        self.status.update(self._display_rate.rate(now), rate if self.estimator is not None else None,
                           self._latency_ms, self._people)

    def _inference_rate(self, now: float) -> float:
        """Results per second produced by the pipeline over the last ~2 s (including results not displayed)."""
        samples = self._result_samples
        samples.append((now, self.mailbox.results))
        while len(samples) > 2 and now - samples[0][0] > 2.0:
            samples.popleft()
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 - t0 > 0.2 else 0.0

    # ------------------------------------------------------------------------------------------ playback
    def _update_actions(self) -> None:
        has_source = self.playback is not None
        seekable = bool(has_source and self.playback.seekable)
        paused = bool(has_source and self.playback.paused)
        self.act_play.setText("Play" if paused or not has_source else "Pause")
        for act in (self.act_play, self.act_close_source, self.act_snapshot, self.act_record):
            act.setEnabled(has_source)
        for act in (self.act_step, self.act_back, self.act_forward, self.act_start, self.act_slower,
                    self.act_faster):
            act.setEnabled(seekable)
        self.playbar.speed.setEnabled(seekable)

    def toggle_play(self) -> None:
        if self.playback is None:
            return
        self.set_paused(not self.playback.paused)

    def set_paused(self, paused: bool) -> None:
        if self.playback is None:
            return
        self.playback.set_paused(paused)
        if not paused and (self.runner is None or not self.runner.running):
            self._restart_runner()  # a live source that ended, or after an error
        self._update_actions()

    def step_frame(self) -> None:
        if self.playback is not None:
            self.playback.step()
            self._update_actions()

    def seek(self, seconds: float) -> None:
        if self.playback is not None and self.playback.seekable:
            duration = self.playback.duration
            if duration:
                seconds = min(seconds, max(0.0, duration - 1.0 / max(self.playback.fps, 1.0)))
            self.playback.seek(max(0.0, seconds))
            self.playbar.set_position(max(0.0, seconds))

    def seek_relative(self, delta: float) -> None:
        if self.playback is not None:
            self.seek(self.playback.position + delta)

    def set_speed(self, speed: float) -> None:
        self.settings.speed = float(speed)
        if self.playback is not None:
            self.playback.set_speed(speed)

    def change_speed(self, direction: int) -> None:
        index = min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - self.settings.speed))
        index = max(0, min(len(SPEEDS) - 1, index + direction))
        self.playbar.set_speed(SPEEDS[index])

    # ------------------------------------------------------------------------------------------ actions
    def snapshot_dialog(self) -> None:
        if self.view.frame is None:
            return
        default = str(Path(self.settings.last_dir or Path.home()) / time.strftime("gopose_%Y%m%d_%H%M%S.png"))
        path, _ = QFileDialog.getSaveFileName(self, "Save snapshot", default, "PNG images (*.png)")
        if path:
            self.save_snapshot(path)

    def save_snapshot(self, path: str) -> bool:
        """The current frame at full resolution with its overlay, as PNG (atomic write)."""
        image = self.view.annotated_image()
        if image is None:
            self.show_error("No frame to save yet.", "Snapshot")
            return False
        return self._save_image_atomic(image, path, "Snapshot")

    def save_screenshot(self, path: str) -> bool:
        """The whole window as PNG (atomic write)."""
        return self._save_image_atomic(self.grab().toImage(), path, "Screenshot")

    def _save_image_atomic(self, image, path: str, what: str) -> bool:
        target = Path(path)
        try:
            if not target.parent.is_dir():
                raise FileNotFoundError(f"folder does not exist: {target.parent}")
            with atomic_path(target) as tmp:
                if not image.save(str(tmp), "PNG"):
                    raise OSError(f"cannot write {target}")
        except OSError as exc:
            self.show_error(str(exc), what)
            return False
        self.statusBar().showMessage(f"{what} saved to {target}", 5000)
        return True

    def toggle_recording(self, checked: bool = False) -> None:
        if self.recorder is not None:
            self.stop_recording()
            return
        default = str(Path(self.settings.last_dir or Path.home()) / time.strftime("gopose_%Y%m%d_%H%M%S.mp4"))
        path, _ = QFileDialog.getSaveFileName(self, "Record annotated video", default, "MP4 video (*.mp4)")
        if path:
            self.start_recording(path)
        self.act_record.setChecked(self.recorder is not None)

    def start_recording(self, path: str) -> bool:
        if self.playback is None:
            self.show_error("Open a source before recording.", "Record")
            return False
        contract = self.estimator.contract if self.estimator is not None else backend.default_contract()
        try:
            self.recorder = Recorder(path, self.playback.size, self.playback.fps, contract, self.source_spec)
        except Exception as exc:  # noqa: BLE001
            self.show_error(str(exc), "Record")
            self.recorder = None
        self.act_record.setChecked(self.recorder is not None)
        return self.recorder is not None

    def stop_recording(self) -> str | None:
        """Finish the recording; returns the file written (None if none or failed)."""
        recorder, self.recorder = self.recorder, None
        self.act_record.setChecked(False)
        if recorder is None:
            return None
        error = recorder.close()
        if error:
            self.show_error(error, "Record")
            return None
        self.statusBar().showMessage(f"Recorded {recorder.frames} frames to {recorder.path}", 5000)
        return recorder.path

    def export_dialog(self) -> None:
        if not self.model_name:
            self.show_error("Load a model before exporting annotations.", "Export")
            return
        current = self.source_spec if self.playback is not None and self.playback.seekable else ""
        out = self.settings.last_dir or str(Path.home())
        dialog = ExportDialog(current, out, self.settings.export_formats.split(","), self)
        if dialog.exec_() == ExportDialog.Accepted:
            path, out_dir, formats = dialog.values()
            self.start_export(path, out_dir, formats)

    def start_export(self, input_path: str, out_dir: str, formats: list[str]) -> Task | None:
        """Export annotations of a file with the engine's exporter (same files as ``gopose annotate``)."""
        if self.export_task is not None and self.export_task.running:
            self.show_error("An export is already running.", "Export")
            return None
        if not self.model_name:
            self.show_error("Load a model before exporting annotations.", "Export")
            return None
        if not formats:
            self.show_error("Choose at least one output format.", "Export")
            return None
        self.settings.export_formats = ",".join(formats)
        settings = self.panel.collect(self.settings)
        model, threads = self.model_name, self.threads
        dialog = QProgressDialog(f"Exporting {Path(input_path).name}…", "Cancel", 0, 0, self)
        dialog.setWindowTitle("Export annotations")
        dialog.setMinimumDuration(0)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        self.progress_dialog = dialog

        def work(report):
            return backend.export_annotations(input_path, out_dir, model, settings, formats, report,
                                              task.cancel_event, threads)

        task = Task(work, "export", self)
        dialog.canceled.connect(task.cancel)
        task.progress.connect(self._on_export_progress)
        task.succeeded.connect(self._on_export_done)
        task.failed.connect(self._on_export_failed)
        self.export_task = task
        dialog.open()
        task.start()
        return task

    def _on_export_progress(self, done: int, total: int) -> None:
        if self.progress_dialog is not None:
            if total and self.progress_dialog.maximum() != total:
                self.progress_dialog.setMaximum(total)
            self.progress_dialog.setValue(min(done, total) if total else 0)
            self.progress_dialog.setLabelText(f"Exporting: {done} / {total or '?'} frames")

    def _close_progress(self) -> None:
        dialog, self.progress_dialog = self.progress_dialog, None
        if dialog is not None:
            dialog.canceled.disconnect()  # closing a QProgressDialog emits canceled
            dialog.close()

    def _on_export_done(self, result: Any) -> None:
        cancelled = bool(getattr(result, "cancelled", False)
                         or (self.export_task is not None and self.export_task.cancel_event.is_set()))
        self._close_progress()
        self.statusBar().showMessage("Export cancelled" if cancelled else "Export finished", 5000)
        self.export_finished.emit(None if cancelled else result)

    def _on_export_failed(self, message: str) -> None:
        self._close_progress()
        self.show_error(message, "Export failed")
        self.export_finished.emit(None)

    def toggle_fullscreen(self) -> None:
        if self.isFullScreen():
            self.showNormal()
            self.menuBar().show()
            self.statusBar().show()
        else:
            self.showFullScreen()
        self.act_fullscreen.setChecked(self.isFullScreen())

    def _toggle_panel(self, checked: bool) -> None:
        self.dock.setVisible(checked)

    def show_shortcuts(self) -> None:
        lines = [f"{a.shortcut().toString():>14}   {a.text().replace('&', '').rstrip('…')}"
                 for a in self.actions() if not a.shortcut().isEmpty()]
        box = QMessageBox(QMessageBox.Information, "Keyboard shortcuts", "\n".join(lines), QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose, True)
        box.open()

    # ------------------------------------------------------------------------------------------ shutdown
    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every worker, finish a recording and close the source and model (idempotent)."""
        self.stop_recording()
        if self.export_task is not None:
            self.export_task.cancel()
            self.export_task.join(timeout)
        runner = self.runner
        self._stop_runner()
        if runner is not None:
            runner.join(timeout)
        if self.playback is not None:
            self.playback.shutdown()
            self.playback = None
        if self.estimator is not None:
            closer = getattr(self.estimator, "close", None)
            if closer is not None:
                closer()
            self.estimator = None
        for task in list(self._tasks):
            task.cancel()
            task.join(timeout)

    def save_settings(self) -> None:
        self.panel.collect(self.settings)
        self.settings.model = self.model_name or self.settings.model
        self.store.save(self.settings)
        self.store.save_geometry(self.saveGeometry())

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)

