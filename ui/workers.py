"""Background work for the window: one-shot tasks (model loading, opening sources, export) and the live runner
(playback + the engine's live pipeline). Results reach the GUI thread through Qt signals."""
from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any, Callable

from PyQt5.QtCore import QObject, pyqtSignal

from ui.playback import PlaybackSource

LOG = logging.getLogger(__name__)


def describe_error(exc: BaseException) -> str:
    """One readable line for a dialog: the message of input errors, type + message otherwise."""
    from core.errors import InputError

    text = str(exc).strip()
    if isinstance(exc, (InputError, FileNotFoundError, PermissionError, IsADirectoryError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Task(QObject):
    """Runs ``fn(report)`` in a daemon thread; ``report(done, total)`` emits ``progress``.

    Exactly one of ``succeeded(result)`` / ``failed(message)`` is emitted, then ``ended``. Connect to bound
    methods of objects living in the GUI thread so the slots run there.
    """

    succeeded = pyqtSignal(object)
    failed = pyqtSignal(str)
    progress = pyqtSignal(int, int)
    ended = pyqtSignal()

    def __init__(self, fn: Callable[[Callable[[int, int], None]], Any], name: str = "task",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._fn = fn
        self.name = name
        self.cancel_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gopose-{name}", daemon=True)

    def start(self) -> "Task":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            result = self._fn(lambda done, total: self.progress.emit(int(done), int(total or 0)))
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI as a message
            LOG.debug("%s failed:\n%s", self.name, traceback.format_exc())
            self.failed.emit(describe_error(exc))
        else:
            self.succeeded.emit(result)
        self.ended.emit()


class FrameMailbox(QObject):
    """Holds only the newest (frame, result) for the GUI: a slow GUI sees fewer frames, never a growing queue.

    Producers (any thread) call ``post`` with the generation of the runner that made the item; ``available`` is
    emitted once per batch of posts, and the GUI slot calls ``take`` (``(frame, result, posted, generation)``).
    """

    available = pyqtSignal()
    error = pyqtSignal(str)
    finished = pyqtSignal(int)  # the runner generation that ended

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: tuple[Any, Any, float, int] | None = None
        self._pending = False
        self.posted = 0
        self.results = 0
        self.last_result_at: list[float] = []
        self._oldest_generation = 0

    def drop_older_than(self, generation: int) -> None:
        """Ignore posts of runners older than ``generation`` from now on (late frames of a replaced source:
        not shown, not counted in the status bar's rates), and any such item still waiting."""
        with self._lock:
            self._oldest_generation = generation
            if self._latest is not None and self._latest[3] < generation:
                self._latest = None

    def post(self, frame: Any, result: Any, generation: int) -> None:
        now = time.monotonic()
        with self._lock:
            if generation < self._oldest_generation:
                return
            self._latest = (frame, result, now, generation)
            self.posted += 1
            if result is not None:
                self.results += 1
            notify = not self._pending
            self._pending = True
        if notify:
            self.available.emit()

    @property
    def pending(self) -> bool:
        """True while a posted item waits to be taken."""
        with self._lock:
            return self._latest is not None

    def take(self) -> tuple[Any, Any, float, int] | None:
        with self._lock:
            item, self._latest = self._latest, None
            self._pending = False
        return item


class LiveRunner:
    """Plays a ``PlaybackSource`` into a ``FrameMailbox``: through the engine's live pipeline when an estimator
    is given (tracking and optional smoothing), else frames only. Starts after ``previous`` has stopped."""

    def __init__(self, playback: PlaybackSource, mailbox: FrameMailbox, generation: int, *,
                 estimator: Any = None, smoothing: bool = True, previous: "LiveRunner | None" = None) -> None:
        self.playback = playback
        self.mailbox = mailbox
        self.generation = generation
        self.estimator = estimator
        self.smoothing = smoothing
        self.previous = previous
        self.pipeline = None
        self.delivered_at: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"gopose-live-{generation}", daemon=True)

    def start(self) -> "LiveRunner":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask everything to end (non-blocking)."""
        self._stop.set()
        self.playback.close()
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.stop()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _frames(self):
        for frame in self.playback:
            with self._lock:
                self.delivered_at[frame.index] = time.monotonic()
                while len(self.delivered_at) > 512:
                    self.delivered_at.popitem(last=False)
            yield frame

    def post(self, frame: Any, result: Any) -> None:
        """Hand a frame (and its result) to the GUI, tagged with this runner's generation."""
        self.mailbox.post(frame, result, self.generation)

    def delivered_time(self, index: int) -> float | None:
        """Wall time (monotonic) at which the player released frame ``index`` (for the latency)."""
        with self._lock:
            return self.delivered_at.get(index)

    def _main(self) -> None:
        try:
            if self.previous is not None:
                self.previous.stop()
                self.previous.join()
                self.previous = None
            if self._stop.is_set():
                return
            if self.estimator is None:
                for frame in self._frames():
                    if self._stop.is_set():
                        break
                    self.post(frame, None)
            else:
                self._run_pipeline()
        except BaseException as exc:  # noqa: BLE001 - shown as a dialog, the window keeps running
            LOG.debug("live runner failed:\n%s", traceback.format_exc())
            self.mailbox.error.emit(describe_error(exc))
        finally:
            self.mailbox.finished.emit(self.generation)

    def _run_pipeline(self) -> None:
        from app.pipeline import Pipeline
        from app.smoothing import PoseSmoother
        from app.tracking import Tracker

        spec = self.estimator.contract.spec
        errors: list[BaseException] = []
        source = _IterSource(self.playback, self._frames)
        self.pipeline = Pipeline(source, self.estimator, [], policy="live", tracker=Tracker(spec),
                                 smoother=PoseSmoother() if self.smoothing else None,
                                 on_result=self.post, on_error=errors.append)
        if self._stop.is_set():
            return
        self.pipeline.start()
        self.pipeline.join()
        if errors and not self._stop.is_set():
            raise errors[0]


class _IterSource:
    """The playback source seen through ``frames()`` (to time-stamp deliveries), with its attributes."""

    def __init__(self, playback: PlaybackSource, frames: Callable) -> None:
        self._playback = playback
        self._frames = frames

    def __iter__(self):
        return self._frames()

    def __getattr__(self, name: str):
        return getattr(self._playback, name)
