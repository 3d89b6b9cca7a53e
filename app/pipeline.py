"""The threaded video pipeline: decode -> infer -> sinks, connected by bounded queues.

Policies:

* ``exhaustive`` (offline): every frame, in order, none dropped; the decoder waits when inference is behind.
* ``live``: inference always takes the newest decoded frame and stale ones are dropped (counted in
  ``stats.dropped``), so latency stays bounded when the camera is faster than the network.

The infer thread runs preprocessing and the network only; the sink thread decodes the maps (the decoder's
grouping is Python-heavy and would otherwise leave a core idle while the network waits), then runs tracking and
smoothing in frame order, every sink and ``on_result``.
Seeking: ``seek()`` only records the target; the decode thread applies it between two frames and stamps every
frame with a *seek epoch* (the number of seeks applied before it was read), so tracking and smoothing restart
exactly at the first frame read after the seek, not at a pre-seek frame still in the queues. A source that applies
seeks itself while the decode thread waits in it (the app's interactive player) counts them in ``seek_count``;
that count, read right after each frame, is added to the frame's epoch. A run also starts with fresh tracks and
smoothing (``Tracker.restart``, ``PoseSmoother.reset``): a tracker reused for the next input carries nothing over.
Shutdown is clean on end of stream, on an error in any stage, on ``stop()`` and on Ctrl-C (``run``): every
sink is closed (``close()``; ``stop(discard=True)`` and errors call ``abort()`` instead, leaving no file).
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from app.sinks import StreamMeta
from app.sources import Frame, FrameSource
from core.errors import InputError

LOG = logging.getLogger(__name__)

_END = object()
POLICIES = ("exhaustive", "live")


@dataclass
class PipelineStats:
    """Counters of a run; ``latency`` is seconds from a frame leaving the decoder to its sinks being done."""

    frames: int = 0
    dropped: int = 0
    decode_errors: int = 0
    started: float = 0.0
    finished: float | None = None
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    done_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=30))
    #: seconds each stage's thread spent working, not waiting on a queue: ``source`` (reading and decoding frames),
    #: ``network`` (letterbox and network; on a GPU, waiting for it too), ``output`` (maps to people, tracking,
    #: smoothing, sinks). A share of ``elapsed`` near 1 marks the stage that limits the run; none near 1 means the
    #: stages wait on each other (queue sizes, batching, locks)
    busy: dict = field(default_factory=lambda: {"source": 0.0, "network": 0.0, "output": 0.0})

    def busy_share(self) -> dict[str, float]:
        """Each stage's busy seconds over the run's elapsed seconds."""
        return {k: round(v / self.elapsed, 3) if self.elapsed > 0 else 0.0 for k, v in self.busy.items()}

    @property
    def elapsed(self) -> float:
        if not self.started:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def recent_fps(self) -> float:
        """Frames/s over the last (up to) 30 frames: what a status bar shows."""
        t = list(self.done_times)
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def latency_ms(self, q: float) -> float:
        lat = list(self.latencies)
        return float(np.quantile(lat, q) * 1000) if lat else 0.0

    @property
    def latency_median_ms(self) -> float:
        return self.latency_ms(0.5)

    @property
    def latency_p95_ms(self) -> float:
        return self.latency_ms(0.95)

    def as_dict(self) -> dict:
        return {"frames": self.frames, "fps": round(self.fps, 2), "dropped": self.dropped,
                "decode_errors": self.decode_errors, "latency_median_ms": round(self.latency_median_ms, 2),
                "latency_p95_ms": round(self.latency_p95_ms, 2), "seconds": round(self.elapsed, 3),
                "busy_share": self.busy_share()}


class _LatestSlot:
    """A one-item mailbox: ``put`` replaces an unread item (counting it as dropped), ``get`` waits. The end marker
    does not replace an unread item (the stream's newest frame is still taken); ``get`` returns it after that."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._has = False
        self._ended = False
        self.dropped = 0

    def put(self, item, stop: threading.Event) -> bool:
        with self._cond:
            if item is _END:
                self._ended = True
            elif not self._ended:
                self.dropped += int(self._has)
                self._item, self._has = item, True
            self._cond.notify_all()
        return True

    def get(self, stop: threading.Event, timeout: float = 0.1):
        with self._cond:
            while not self._has:
                if self._ended or stop.is_set():
                    return _END
                self._cond.wait(timeout)
            item, self._item, self._has = self._item, None, False
            return item


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when ``stop`` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END


class Pipeline:
    """Runs ``source`` through ``estimator`` into ``sinks`` on three threads.

    ``on_result(frame, result)`` is called from the sink thread after tracking/smoothing and the sinks;
    ``on_error(exc)`` from the thread that failed. ``result.poses`` then carries track ids.
    """

    def __init__(self, source: FrameSource, estimator, sinks: Iterable = (), policy: str = "exhaustive",
                 tracker=None, smoother=None, batch_size: int | None = 1,
                 on_result: Callable | None = None, on_error: Callable | None = None,
                 queue_size: int = 8, max_frames: int | None = None, background_nice: int = 0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.source, self.estimator, self.sinks = source, estimator, list(sinks)
        self.policy, self.tracker, self.smoother = policy, tracker, smoother
        if batch_size is None:  # batching pays on a GPU; on a CPU it only adds latency
            on_gpu = getattr(getattr(estimator, "device", None), "type", "") == "cuda"
            batch_size = 8 if policy == "exhaustive" and on_gpu else 1
        self.batch_size = max(1, int(batch_size))
        self.on_result, self.on_error = on_result, on_error
        self.max_frames = max_frames
        self.background_nice = int(background_nice)
        self.stats = PipelineStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._discard = False
        qsize = max(2, queue_size, 2 * self.batch_size)
        self._frames: queue.Queue | _LatestSlot = _LatestSlot() if policy == "live" else queue.Queue(qsize)
        # live: one result in flight, so a slow sink stage pushes back on inference (whose stale input frames
        # are then dropped) instead of building up latency in this queue
        self._results: queue.Queue = queue.Queue(1 if policy == "live" else max(2, qsize // self.batch_size))
        self._split = hasattr(estimator, "infer_maps") and hasattr(estimator, "decode_maps")
        self._threads: list[threading.Thread] = []
        self._opened: list = []
        self._started = False
        self._seek_lock = threading.Lock()
        self._pending_seek: float | None = None
        self._epoch = 0  # seeks applied by the decode thread
        self._delivered_epoch = 0
        self._last_ts: float | None = None

    # -- control ----------------------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        """Open the sinks (errors such as an unwritable folder raise here) and start the threads."""
        if self._started:
            raise RuntimeError("pipeline already started")
        self._started = True
        self._fresh_state()
        meta = StreamMeta(self.source.name, self.source.size, self.source.fps, self.estimator.contract,
                          self.source.frame_count, sample_aspect=getattr(self.source, "sample_aspect", None))
        try:
            for sink in self.sinks:
                sink.open(meta)
                self._opened.append(sink)
        except BaseException:
            for sink in self._opened:
                sink.abort()
            self._opened = []
            raise
        self.stats.started = time.monotonic()
        stages = (("decode", self._decode_loop), ("infer", self._infer_loop), ("sinks", self._sink_loop))
        try:
            for name, target in stages:
                t = threading.Thread(target=target, name=f"gopose-{name}", daemon=True)
                self._threads.append(t)
                t.start()
        except BaseException:  # a signal before the sink stage runs: nothing wrote to the sinks, discard them
            self.stop(discard=True)
            if len(self._launched()) < len(stages):
                for sink in self._opened:
                    sink.abort()
                self._opened = []
            raise
        return self

    def _fresh_state(self) -> None:
        """A run starts with fresh tracks (ids from 0) and smoothing: a tracker or smoother given to several
        pipelines (one per input) never carries the last frames of one input into the first of the next."""
        if self.tracker is not None:
            self.tracker.restart()
        if self.smoother is not None:
            self.smoother.reset()

    def stop(self, discard: bool = False) -> None:
        """Ask every stage to finish; sinks are closed (or aborted with ``discard=True``). Non-blocking."""
        self._discard = self._discard or discard
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads; True when all finished. Does not raise (see :attr:`error`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._launched():
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.running

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _launched(self) -> list[threading.Thread]:
        """The stage threads that were started: a signal (Ctrl-C, SIGTERM) may land in :meth:`start` between
        creating a thread and starting it, and an unstarted thread cannot be joined."""
        return [t for t in self._threads if t.ident is not None]

    def run(self) -> PipelineStats:
        """Start, wait for the end (Ctrl-C stops cleanly, discarding the outputs, and re-raises) and return
        the stats; an error from any stage is re-raised after every sink is finalised."""
        self.start()
        try:
            while not self.join(timeout=0.2):
                pass
        except KeyboardInterrupt:
            self.stop(discard=True)
            self.join()
            raise
        if self.error is not None:
            raise self.error
        return self.stats

    # -- stages -----------------------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
            # reported once by whoever runs the pipeline (run() re-raises, on_error); details at debug level
            LOG.debug("pipeline stopped by %s: %s", type(exc).__name__, exc, exc_info=exc)
            if self.on_error is not None:
                try:
                    self.on_error(exc)
                except Exception:  # noqa: BLE001 - a broken callback must not hide the original error
                    LOG.exception("on_error callback failed")
        self._discard = True
        self._stop.set()

    def _emit_frame(self, item) -> bool:
        if isinstance(self._frames, _LatestSlot):
            return self._frames.put(item, self._stop)
        return _put(self._frames, item, self._stop)

    def _background_priority(self) -> None:
        """Exhaustive runs with ``background_nice > 0``: lower the decode and sink threads' scheduling priority
        (Linux: per-thread nice). Off by default: since the sink thread also decodes the maps, starving it
        measured slower (docs/performance.md)."""
        if self.policy != "exhaustive" or not self.background_nice or not hasattr(os, "setpriority"):
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.background_nice)
        except OSError as exc:
            LOG.debug("cannot lower the priority of %s: %s", threading.current_thread().name, exc)

    def _apply_seek(self) -> int:
        """Seek the source if ``seek()`` asked for it since the last frame; the epoch of the next frame read."""
        with self._seek_lock:
            target, self._pending_seek = self._pending_seek, None
        if target is not None:
            self.source.seek(target)
            self._epoch += 1
        return self._epoch

    def _decode_loop(self) -> None:
        self._background_priority()
        try:
            n = 0
            frames = iter(self.source)
            while not self._stop.is_set():
                epoch = self._apply_seek()
                t0 = time.perf_counter()
                frame = next(frames, None)
                self.stats.busy["source"] += time.perf_counter() - t0
                if frame is None or self._stop.is_set():
                    break
                epoch += int(getattr(self.source, "seek_count", 0))  # seeks the source applied before this frame
                if not self._emit_frame((frame, time.monotonic(), epoch)):
                    break
                n += 1
                if self.max_frames is not None and n >= self.max_frames:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported through self.error
            self._fail(exc)
        finally:
            self.stats.decode_errors = int(getattr(self.source, "lost_frames", 0))  # the one count of lost frames
            self._emit_end()

    def _emit_end(self) -> None:
        if isinstance(self._frames, _LatestSlot):
            self._frames.put(_END, self._stop)
            return
        while True:  # the end marker must arrive even when the queue is full and we are stopping
            try:
                self._frames.put(_END, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    try:
                        self._frames.get_nowait()
                    except queue.Empty:
                        pass

    def _next_batch(self) -> tuple[list, bool]:
        """Up to ``batch_size`` frames (live: just the newest one) and whether the stream ended."""
        if isinstance(self._frames, _LatestSlot):
            item = self._frames.get(self._stop)
            return ([], True) if item is _END else ([item], False)
        batch = []
        item = _get(self._frames, self._stop)
        if item is _END:
            return batch, True
        batch.append(item)
        while len(batch) < self.batch_size:  # take what is already decoded, without waiting for more
            try:
                item = self._frames.get_nowait()
            except queue.Empty:
                break
            if item is _END:
                return batch, True
            batch.append(item)
        return batch, False

    def _infer_loop(self) -> None:
        try:
            ended = False
            while not ended and not self._stop.is_set():
                batch, ended = self._next_batch()
                if not batch:
                    continue
                images = [item[0].image for item in batch]
                t0 = time.perf_counter()
                if self._split:  # network here, decoding on the sink thread (overlaps the next network call)
                    item = (batch, self.estimator.infer_maps(images))
                else:
                    item = (batch, self.estimator.estimate_batch(images))
                self.stats.busy["network"] += time.perf_counter() - t0
                if not _put(self._results, item, self._stop):
                    break
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            if isinstance(self._frames, _LatestSlot):
                self.stats.dropped = self._frames.dropped
            while True:
                try:
                    self._results.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        try:
                            self._results.get_nowait()
                        except queue.Empty:
                            pass

    def _sink_loop(self) -> None:
        self._background_priority()
        try:
            while True:
                item = _get(self._results, self._stop)
                if item is _END:
                    break
                if self._stop.is_set() and self._discard:
                    continue
                batch, out = item
                t1 = time.perf_counter()
                results = self.estimator.decode_maps(out) if self._split else out
                for (frame, t0, epoch), result in zip(batch, results):
                    self._deliver(frame, result, epoch)
                    now = time.monotonic()
                    self.stats.latencies.append(now - t0)
                    self.stats.done_times.append(now)
                    self.stats.frames += 1
                self.stats.busy["output"] += time.perf_counter() - t1
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            self._finalise_sinks()
            self.stats.finished = time.monotonic()
            if isinstance(self._frames, _LatestSlot):
                self.stats.dropped = self._frames.dropped

    def seek(self, seconds: float) -> None:
        """Seek the source (from any thread; applied by the decode thread before its next frame). Tracks and
        smoothing restart at the first frame after the seek; frames decoded before it are still delivered.
        Raises ``InputError`` for a source that cannot seek."""
        if not getattr(self.source, "seekable", False):
            raise InputError(f"source {self.source.name} is not seekable")
        with self._seek_lock:
            self._pending_seek = max(0.0, float(seconds))

    def _deliver(self, frame: Frame, result, epoch: int) -> None:
        last = self._last_ts
        jumped = last is not None and (frame.timestamp < last or frame.timestamp - last > 5.0)
        if epoch != self._delivered_epoch or jumped:  # a seek, or a gap in time (a looped or broken stream)
            self._delivered_epoch = epoch
            if self.tracker is not None:
                self.tracker.reset()
            if self.smoother is not None:
                self.smoother.reset()
        self._last_ts = frame.timestamp
        if self.tracker is not None:
            result.poses = self.tracker.update(result.poses)
        if self.smoother is not None:
            result.poses = self.smoother.update(result.poses, frame.timestamp)
        for sink in self._opened:
            sink.write(frame, result)
        if self.on_result is not None:
            self.on_result(frame, result)

    def _finalise_sinks(self) -> None:
        # wait for the other stages so nothing writes while sinks close
        for t in self._launched():
            if t is not threading.current_thread():
                t.join()
        for sink in self._opened:
            try:
                if self._discard:
                    sink.abort()
                else:
                    sink.close()
            except BaseException as exc:  # noqa: BLE001 - the run's error (reported once); later sinks discarded
                self._fail(exc)
                try:
                    sink.abort()
                except Exception:  # noqa: BLE001
                    pass
        self._opened = []
