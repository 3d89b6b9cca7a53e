"""Recording what the window shows (frames with their skeletons) to an H.264 MP4, encoded in a worker thread."""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from PyQt5.QtCore import QObject, pyqtSignal
from PyQt5.QtWidgets import QFileDialog, QWidget

from ui import backend
from ui.model_control import ModelController
from ui.player import PlayerController
from ui.settings import ViewerSettings
from ui.workers import describe_error

LOG = logging.getLogger(__name__)

#: a longer step between two frames shown is a jump (a seek, another source): the recording goes on one frame later
MAX_GAP_S = 1.0


class Recorder:
    """Writes the annotated stream to a video in a worker thread (the engine's video sink draws the overlay).

    The file appears under its name only when ``close`` finishes it; nothing is left when no frame was written.
    Every frame shown is written, in the order shown: a seek back, a replay or another source continue the
    recording's time one frame after the last (a source of another size is letterboxed onto the first one's).
    """

    def __init__(self, path: str, size: tuple[int, int], fps: float, contract: Any, name: str,
                 sample_aspect: Fraction | None = None) -> None:
        from app.sinks import StreamMeta, VideoSink

        self.path = path
        self.sink = VideoSink(path)
        self.fps = fps or 25.0
        self.sink.open(StreamMeta(name=name, size=size, fps=self.fps, contract=contract, sample_aspect=sample_aspect))
        self.contract = contract
        self.frames = 0
        self.dropped = 0
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._main, name="gopose-recorder", daemon=True)
        self._thread.start()

    def write(self, frame: Any, poses: Any, contract: Any = None) -> None:
        """Queue a frame (dropped, and counted, when the encoder falls behind); ``contract`` is that of the model
        whose ``poses`` these are (default: the one the recording started with)."""
        try:
            self._queue.put_nowait((frame, poses, contract or self.contract))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 30.0) -> str | None:
        """Finish the file; returns an error message or None."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            return f"the recording {self.path} did not finish within {timeout:g} s"
        return self.error

    def _main(self) -> None:
        from core.poses import Poses

        ok = True
        last_ts: float | None = None
        clock = 0.0  # the recording's own time: it runs on through seeks, restarts and other sources
        while True:
            item = self._queue.get()
            if item is None:
                break
            if not ok:
                continue
            frame, poses, contract = item
            if last_ts is not None:
                step = frame.timestamp - last_ts
                clock += step if 0 < step <= MAX_GAP_S else 1.0 / self.fps  # a jump: one frame on
            last_ts = frame.timestamp
            frame = dataclasses.replace(frame, timestamp=clock)
            if poses is None:
                poses = Poses.empty(contract.n_keypoints)
            try:
                self.sink.write(frame, _Result(poses, contract))
                self.frames += 1
                if self.frames == 1:
                    LOG.info("recording %s: first frame written", self.path)
            except BaseException as exc:  # noqa: BLE001 - reported when recording stops
                self.error = describe_error(exc)
                ok = False
        if ok and not self.frames:
            self.error = f"nothing recorded to {self.path}: no frame was shown while recording"
            ok = False
        try:
            if ok:
                self.sink.close()
            else:
                self.sink.abort()
        except BaseException as exc:  # noqa: BLE001
            self.error = describe_error(exc)


class _Result:
    """What the video sink draws: people and the contract (skeleton) of the model that found them."""

    def __init__(self, poses: Any, contract: Any) -> None:
        self.poses, self.contract = poses, contract


class RecordingController(QObject):
    """Starts and stops the recording of what the player displays; ``active`` follows the state."""

    active = pyqtSignal(bool)

    def __init__(self, window: QWidget, player: PlayerController, models: ModelController,
                 settings: ViewerSettings, report: Callable[[str, str], Any],
                 message: Callable[[str, int], None]) -> None:
        super().__init__(window)
        self._window, self.player, self.models, self.settings = window, player, models, settings
        self._report, self._message = report, message
        self.recorder: Recorder | None = None
        player.displayed.connect(self._on_displayed)

    def toggle(self, _checked: bool = False) -> None:
        """Stop the recording, or ask for a file and start one."""
        if self.recorder is not None:
            self.stop()
            return
        default = str(Path(self.settings.last_dir or Path.home()) / time.strftime("gopose_%Y%m%d_%H%M%S.mp4"))
        path, _ = QFileDialog.getSaveFileName(self._window, "Record annotated video", default, "MP4 video (*.mp4)")
        if path:
            self.start(path)
        self.active.emit(self.recorder is not None)

    def start(self, path: str) -> bool:
        """Record from the next frame shown on; False (and a dialog) when it cannot start, also when ``path`` is
        the file being played (the finished recording would replace it)."""
        from app.exports import guard_inputs

        playback = self.player.playback
        if playback is None:
            self._report("Open a source before recording.", "Record")
            return False
        contract = self._contract()
        try:
            guard_inputs([Path(path)], [self.player.source_spec], advice="choose another file")
            self.recorder = Recorder(path, playback.size, playback.fps, contract, self.player.source_spec,
                                     playback.sample_aspect)
        except Exception as exc:  # noqa: BLE001 - an unwritable file or a missing encoder becomes a dialog
            self._report(describe_error(exc), "Record")
            self.recorder = None
        self.active.emit(self.recorder is not None)
        if self.recorder is not None:
            self._message(f"Recording to {path}", 3000)
        return self.recorder is not None

    def stop(self) -> str | None:
        """Finish the recording; returns the file written (None if none or failed)."""
        recorder, self.recorder = self.recorder, None
        self.active.emit(False)
        if recorder is None:
            return None
        error = recorder.close()
        if error:
            self._report(error, "Record")
            return None
        dropped = f" ({recorder.dropped} dropped: the encoder fell behind)" if recorder.dropped else ""
        self._message(f"Recorded {recorder.frames} frames to {recorder.path}{dropped}", 5000)
        return recorder.path

    def _contract(self) -> Any:
        """The current model's output contract (a model loaded while recording draws its own skeleton)."""
        estimator = self.models.estimator
        return estimator.contract if estimator is not None else backend.default_contract()

    def _on_displayed(self, frame: Any, poses: Any) -> None:
        if self.recorder is not None:
            self.recorder.write(frame, poses, self._contract())
