"""Interactive playback of a frame source: real-time pacing with a speed factor, pause, single step and seek.

``PlaybackSource`` is itself a frame source, so the engine's live pipeline consumes it like a camera. The player
owns the wrapped source: ``close()`` only ends the current iteration (a pipeline may call it), ``shutdown()``
closes the wrapped source. Not a widget (no Qt): the window drives it from the GUI thread.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from app.sources import Frame, FrameSource


class PlaybackSource(FrameSource):
    """Plays ``inner`` at its timestamps / ``speed``; live inner sources (cameras, streams) pass through unpaced.

    At the end of a seekable file the player pauses on the last frame (``at_end``) instead of ending, so play
    restarts from the beginning and seeking back works; ``on_end`` is called once per end reached.
    """

    def __init__(self, inner: FrameSource, *, speed: float = 1.0, paused: bool = False,
                 on_end: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.name, self.fps, self.size = inner.name, inner.fps, inner.size
        self.frame_count = inner.frame_count
        self.is_live = True  # frames arrive in real time, like a camera
        self.seekable = bool(inner.seekable)
        self.on_end = on_end
        self._speed = max(0.05, float(speed))
        self._cond = threading.Condition()
        self._paused = bool(paused)
        self._steps = 0
        self._seek_to: float | None = None
        self._stopped = False
        self._anchor: tuple[float, float] | None = None  # (wall clock, timestamp) of the pacing origin
        self._iter: Iterator[Frame] | None = None
        self.at_end = False
        self.position = 0.0  # timestamp (s) of the last frame delivered

    # -- controls (any thread) ------------------------------------------------------------------------------
    @property
    def duration(self) -> float | None:
        if self.frame_count and self.fps:
            return self.frame_count / self.fps
        return None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> None:
        with self._cond:
            self._speed = max(0.05, float(speed))
            self._anchor = None
            self._cond.notify_all()

    def set_paused(self, paused: bool) -> None:
        with self._cond:
            if not paused and self.at_end and self.seekable:
                self._seek_to = 0.0  # play after the end starts over
            self._paused = bool(paused)
            self._anchor = None
            self._cond.notify_all()

    def step(self, n: int = 1) -> None:
        """Deliver ``n`` more frames while paused (pauses first when playing)."""
        with self._cond:
            self._paused = True
            if not self.at_end:
                self._steps += max(1, int(n))
            self._cond.notify_all()

    def seek(self, seconds: float) -> None:
        """Jump to ``seconds``; while paused the frame there is shown (one step)."""
        if not self.seekable:
            return
        with self._cond:
            self._seek_to = max(0.0, float(seconds))
            self._cond.notify_all()

    def close(self) -> None:
        """End the current iteration (the wrapped source stays open; see ``shutdown``)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def shutdown(self) -> None:
        self.close()
        self.inner.close()

    def reopen(self) -> "PlaybackSource":
        """A new player over the same source and state, for a new pipeline (call after this one is stopped)."""
        other = PlaybackSource(self.inner, speed=self._speed, paused=self._paused, on_end=self.on_end)
        other.position = self.position
        other._iter = self._iter  # continue the same decoding
        if self._paused and self.seekable and not self.at_end and self._iter is not None:
            other._seek_to = self.position  # paused: show the current frame again (with the new model)
        other.at_end = self.at_end
        return other

    # -- iteration (the pipeline's reader thread) ----------------------------------------------------------
    def _frames(self) -> Iterator[Frame]:
        live = bool(self.inner.is_live)
        while True:
            with self._cond:
                while not self._stopped and self._seek_to is None and self._paused and self._steps == 0:
                    self._cond.wait()
                if self._stopped:
                    return
                if self._seek_to is not None:
                    target, self._seek_to = self._seek_to, None
                    self.inner.seek(target)
                    self.at_end = False
                    self._anchor = None
                    if self._paused:
                        self._steps = max(self._steps, 1)
                stepping = self._paused and self._steps > 0
                if stepping:
                    self._steps -= 1
            if self._iter is None:
                self._iter = iter(self.inner)
            try:
                frame = next(self._iter)
            except StopIteration:
                self._iter = None
                if live or not self.seekable:
                    return
                with self._cond:
                    self.at_end = True
                    self._paused = True
                    self._steps = 0
                if self.on_end is not None:
                    self.on_end()
                continue
            if not live and not stepping and not self._wait_until_due(frame.timestamp):
                continue  # a seek or stop arrived while waiting: this frame is stale
            self.position = frame.timestamp
            yield frame

    def _wait_until_due(self, timestamp: float) -> bool:
        """Sleep until the frame's time at the current speed; False when a seek/stop interrupted the wait."""
        with self._cond:
            now = time.monotonic()
            if self._anchor is None:
                self._anchor = (now, timestamp)
            while True:
                if self._stopped or self._seek_to is not None:
                    return False
                wall, ts0 = self._anchor if self._anchor is not None else (time.monotonic(), timestamp)
                if self._anchor is None:
                    self._anchor = (wall, ts0)
                delay = wall + (timestamp - ts0) / self._speed - time.monotonic()
                if delay <= 0:
                    return True
                if delay > 2.0:  # timestamps jumped (variable frame rate gap): re-anchor
                    self._anchor = None
                    continue
                self._cond.wait(delay)
