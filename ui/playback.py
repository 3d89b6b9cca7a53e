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
    restarts from the beginning and seeking back works; ``on_end`` is called once per end reached. When the
    end is reached by reading (not by seeking past it), ``end_time`` holds the last frame's timestamp: a damaged
    or truncated file may end long before the duration its container announces (``duration`` then shrinks).
    ``seek_count`` counts the seeks applied, by the reading thread, before the frame it just delivered: the engine's
    pipeline adds it to the frame's seek epoch, so tracking and smoothing restart at the first frame after a seek.
    """

    def __init__(self, inner: FrameSource, *, speed: float = 1.0, paused: bool = False,
                 on_end: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.name, self.fps, self.size = inner.name, inner.fps, inner.size
        self.sample_aspect = inner.sample_aspect
        self.frame_count = inner.frame_count
        self.is_live = True  # frames arrive in real time, like a camera
        self.seekable = bool(inner.seekable)
        self.on_end = on_end
        self._speed = max(0.05, float(speed))
        self._cond = threading.Condition()
        self._paused = bool(paused)
        self._steps = 0
        self._seek_to: float | None = None
        self.seek_count = 0  # written by the reading thread only
        self._stopped = False
        self._anchor: tuple[float, float] | None = None  # (wall clock, timestamp) of the pacing origin
        self._iter: Iterator[Frame] | None = None
        self.at_end = False
        self.position = 0.0  # timestamp (s) of the last frame delivered
        self.last_index: int | None = None  # index of the last frame delivered
        self.end_time: float | None = None  # timestamp of the stream's real last frame, once read up to it
        self._last_read: float | None = None  # last timestamp read since the latest seek
        self._seeked = False  # the wrapped source was sought: its own lost-frame count no longer holds
        self._lost_exact: int | None = None
        self._idle = False

    # -- controls (any thread) ------------------------------------------------------------------------------
    @property
    def announced_duration(self) -> float | None:
        """The length the container announces (``frame_count / fps``), None when unknown."""
        if self.frame_count and self.fps:
            return self.frame_count / self.fps
        return None

    @property
    def duration(self) -> float | None:
        """The playable length: the announced one (the source's own when it announces no frame count, as MKV
        and WebM do), or less once the stream was found to end early."""
        if self.ended_early:
            return self.end_time + 1.0 / self.fps
        return self.announced_duration or self.inner.duration

    @property
    def ended_early(self) -> bool:
        """True when reading reached the end more than a frame before the announced duration."""
        announced = self.announced_duration
        return (self.end_time is not None and bool(self.fps) and announced is not None
                and self.end_time + 1.5 / self.fps < announced)

    @property
    def lost_frames(self) -> int:
        """Announced frames that never decoded, once the stream was found to end early (else 0): the source's
        own count when it was read from its start without a seek (``lost_frames_exact``), else an estimate from
        the last timestamp."""
        if not self.ended_early:
            return 0
        if self._lost_exact is not None:
            return self._lost_exact
        return max(0, int(self.frame_count) - (int(round(self.end_time * self.fps)) + 1))

    @property
    def lost_frames_exact(self) -> bool:
        return self._lost_exact is not None

    def _source_lost_frames(self) -> int | None:
        """The wrapped source's count of frames that never came out, valid after one read from the start."""
        return None if self._seeked else int(self.inner.lost_frames)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def idle(self) -> bool:
        """True while the reader waits for a control (paused with no step or seek pending): no frame can come
        until one arrives. Every frame delivered before is already out of the iteration."""
        with self._cond:
            return self._idle

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
        with self._cond:  # a seek or steps asked for but not yet applied by this player's reader carry over
            seek_to, steps = self._seek_to, self._steps
        other = PlaybackSource(self.inner, speed=self._speed, paused=self._paused, on_end=self.on_end)
        other.position, other.last_index, other._steps = self.position, self.last_index, steps
        other._iter = self._iter  # continue the same decoding
        if seek_to is not None:
            other._seek_to = seek_to
        elif self._paused and self.seekable and not self.at_end and self._iter is not None:
            other._seek_to = self.position  # paused: show the current frame again (with the new model)
        other.at_end = self.at_end and seek_to is None
        other.end_time, other._seeked, other._lost_exact = self.end_time, self._seeked, self._lost_exact
        other._last_read = None if other._seek_to is not None else self._last_read
        return other

    # -- iteration (the pipeline's reader thread) ----------------------------------------------------------
    def _frames(self) -> Iterator[Frame]:
        live = bool(self.inner.is_live)
        while True:
            with self._cond:
                while not self._stopped and self._seek_to is None and self._paused and self._steps == 0:
                    self._idle = True
                    self._cond.wait()
                self._idle = False
                if self._stopped:
                    return
                if self._seek_to is not None:
                    target, self._seek_to = self._seek_to, None
                    self.inner.seek(target)
                    self.seek_count += 1
                    self.at_end = False
                    self._last_read = None
                    self._seeked = True
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
                    if self._last_read is not None:  # read up to the end: the stream's real last frame
                        self.end_time = self._last_read
                        if self._lost_exact is None:
                            self._lost_exact = self._source_lost_frames()
                    self.at_end = True
                    self._paused = True
                    self._steps = 0
                if self.on_end is not None:
                    self.on_end()
                continue
            self._last_read = frame.timestamp
            if not live and not stepping and not self._wait_until_due(frame.timestamp):
                continue  # a seek or stop arrived while waiting: this frame is stale
            self.position, self.last_index = frame.timestamp, frame.index
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
