"""What the window plays: the source (opened in a worker), the live runner that feeds frames through the model,
and the display of each frame with its poses in the video view."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from PyQt5.QtCore import QObject, pyqtSignal

from ui import backend
from ui.feedback import TaskHost
from ui.model_control import ModelController
from ui.playback import PlaybackSource
from ui.settings import SettingsStore, ViewerSettings
from ui.status import DisplayStats, StatusPanel
from ui.video_view import VideoView
from ui.workers import FrameMailbox, LiveRunner, Task


class PlayerController(QObject):
    """Opens sources and keeps one ``LiveRunner`` playing the current one with the current model.

    ``displayed(frame, poses)`` follows every frame shown (poses None without a model); ``stream_ended`` is
    emitted in the GUI thread when a file reaches its end or a live source stops.
    """

    source_changed = pyqtSignal(str)       # the source now playing ("" after closing it)
    displayed = pyqtSignal(object, object)
    stream_ended = pyqtSignal()
    _end_from_player = pyqtSignal(object)  # (the source that ended) emitted by the player thread; queued

    def __init__(self, view: VideoView, status: StatusPanel, settings: ViewerSettings, store: SettingsStore,
                 models: ModelController, tasks: TaskHost, report: Callable[[str, str], Any],
                 message: Callable[[str, int], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view, self.status, self.settings, self.store = view, status, settings, store
        self.models, self._tasks, self._report, self._message = models, tasks, report, message
        self.source: Any = None
        self.source_spec = ""
        self.playback: PlaybackSource | None = None
        self.runner: LiveRunner | None = None
        self.stats = DisplayStats()
        self._generation = 0
        self._opening = 0                  # the latest open request: only its source is played
        self._end_pending = False          # the end was read; stream_ended waits for its last frame to show
        self._shown_index: int | None = None  # the index of the frame on screen
        self.mailbox = FrameMailbox(self)
        self.mailbox.available.connect(self._drain)
        self.mailbox.error.connect(lambda message: self._report(message, "Playback stopped"))
        self.mailbox.finished.connect(self._on_runner_finished)
        self._end_from_player.connect(self._on_end_read)
        models.changed.connect(self._on_model_changed)

    # -- sources ----------------------------------------------------------------------------------------------
    def open_source(self, spec: str, width: int | None = None, height: int | None = None) -> Task:
        """Open a file, URL or ``webcam:N`` in a worker (the task returned); the current source keeps playing until
        it is ready."""
        self._message(f"Opening {spec}…", 5000)
        self._opening += 1
        request = self._opening

        def failed(message: str) -> None:
            if request == self._opening:  # else a later request replaced this one
                self._report(message, "Cannot open the source")

        return self._tasks.start(lambda _r: backend.open_source(spec, width, height), "open-source",
                                 lambda src, s=spec: self._on_opened(s, src, request), failed)

    def _on_opened(self, spec: str, source: Any, request: int) -> None:
        if request != self._opening:  # a source opened later already replaced it, or will
            self._tasks.start(lambda _r: source.close(), "close-source", lambda _r: None)
            return
        self._message("", 0)
        self._stop_runner(close_source=True)
        self.source, self.source_spec, self._shown_index = source, spec, None
        self.playback = PlaybackSource(source, speed=self.settings.speed,
                                       on_end=lambda: self._end_from_player.emit(source))
        self.status.reset(spec)
        self.status.set_resolution(*source.size)
        self.stats.reset()
        self.view.clear()
        self.view.sample_aspect = float(source.sample_aspect or 1)
        self.store.add_recent(spec)
        self.restart_runner()
        self.mailbox.drop_older_than(self._generation)  # a late frame of the previous source: not shown nor counted
        self.source_changed.emit(spec)

    def close_source(self) -> None:
        self._stop_runner(close_source=True)
        self.source = self.playback = None
        self.source_spec = ""
        self.view.clear()
        self.stats.reset()
        self.status.reset()
        self.source_changed.emit("")

    # -- the runner -------------------------------------------------------------------------------------------
    def restart_runner(self, old_estimator: Any = None) -> None:
        """(Re)start frame delivery with the current source, model and smoothing; ``old_estimator`` (replaced)
        is closed once the previous runner has stopped."""
        previous = self.runner
        end_pending, self._end_pending = self._end_pending, False
        if self.playback is None:
            self.models.close_later(old_estimator, previous)
            return
        self.playback = self.playback.reopen() if previous is not None else self.playback
        self._generation += 1
        self.runner = LiveRunner(self.playback, self.mailbox, self._generation, estimator=self.models.estimator,
                                 smoothing=self.settings.smoothing, previous=previous)
        if previous is not None:
            previous.stop()
        self.runner.start()
        self.models.close_later(old_estimator, previous)
        if end_pending and previous is not None:  # the same source's end was read; its last frame, held by the
            self.stream_ended.emit()             # stopped runner, may never be shown: the end is not lost

    @property
    def running(self) -> bool:
        return self.runner is not None and self.runner.running

    def _on_model_changed(self, estimator: Any, old: Any) -> None:
        self.view.limbs = np.asarray(estimator.contract.spec.skeleton(None), np.int64).reshape(-1, 2)
        self.restart_runner(old_estimator=old)

    def set_smoothing(self, on: bool) -> None:
        self.settings.smoothing = on
        if self.models.estimator is not None and self.playback is not None:
            self.restart_runner()

    def _stop_runner(self, close_source: bool = False) -> None:
        runner, self.runner = self.runner, None
        playback = self.playback
        if runner is not None:
            runner.stop()
        if close_source and playback is not None:
            source = playback.inner

            def close(_report):
                if runner is not None:
                    runner.join()
                source.close()

            self._tasks.start(close, "close-source", lambda _r: None)

    def _on_end_read(self, source: Any) -> None:
        """The reader of ``source`` reached its end: ``stream_ended`` once the last frame it delivered is shown (it
        may still be in the network); nothing when another source replaced it meanwhile."""
        playback = self.playback
        if playback is None or playback.inner is not source:
            return
        if playback.last_index is None or (self._shown_index or 0) >= playback.last_index:
            self.stream_ended.emit()
        else:
            self._end_pending = True

    def _on_runner_finished(self, generation: int) -> None:
        if generation == self._generation and self.runner is not None:
            self.runner.join(1.0)  # past its last step: ``running`` is False from here on
            if self.playback is not None:  # nothing plays (a stream or camera stopped, or an error): paused until
                self.playback.set_paused(True)  # Play reads it again, also after a restart (another model)
            self._message("End of stream", 5000)
            self.stream_ended.emit()

    # -- display ----------------------------------------------------------------------------------------------
    def _drain(self) -> None:
        item = self.mailbox.take()
        if item is None or self.playback is None:  # nothing new, or a frame of the source closed since
            return
        frame, result, _posted, _generation = item
        poses = getattr(result, "poses", None)
        self.view.set_frame(frame.image, poses)
        runner = self.runner
        delivered = runner.delivered_time(frame.index) if runner is not None and result is not None else None
        self.stats.record(poses, delivered, time.monotonic())
        self._shown_index = frame.index
        self.displayed.emit(frame, poses)
        playback = self.playback
        if self._end_pending and playback is not None and frame.index >= (playback.last_index or 0):
            self._end_pending = False
            self.stream_ended.emit()

    def refresh_status(self) -> None:
        """Rates, latency and people count in the status bar."""
        self.stats.show(self.status, self.mailbox.results, self.models.estimator is not None)

    # -- shutdown ---------------------------------------------------------------------------------------------
    def shutdown(self, timeout: float) -> None:
        """Stop the runner (waiting up to ``timeout`` s) and close the source."""
        runner = self.runner
        self._stop_runner()
        if runner is not None:
            runner.join(timeout)
        if self.playback is not None:
            self.playback.shutdown()
            self.playback = None
