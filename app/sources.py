"""Frame sources: video files and network streams (PyAV), webcams (OpenCV), image folders.

Every source is an iterable of :class:`Frame` (BGR uint8 image, running index, timestamp in seconds) with
``fps``, ``size`` (width, height), ``frame_count`` (None when unknown), ``is_live``, ``seekable``,
``seek(seconds)`` and ``close()``; sources are context managers. Bad input raises
:class:`core.errors.InputError` naming the input; a damaged video yields every frame that decodes, and
``lost_frames`` is the one count of frames that never came out (the warning, the pipeline's stats and the
annotate summary all report it).
"""
from __future__ import annotations

import heapq
import logging
import re
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from core.errors import InputError

LOG = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                            ".ts", ".mts", ".m2ts", ".vob", ".mxf", ".3gp", ".3g2", ".f4v", ".asf", ".ogv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
URL_SCHEMES = ("http://", "https://", "rtsp://", "rtmp://", "udp://", "tcp://", "srt://", "rtp://")
LIVE_SCHEMES = ("rtsp://", "rtmp://", "udp://", "tcp://", "srt://", "rtp://")


@dataclass
class Frame:
    """One decoded frame: ``image`` BGR uint8 (H, W, 3), ``index`` in the source, ``timestamp`` seconds."""

    image: np.ndarray
    index: int
    timestamp: float
    name: str | None = None  # the image file of an image-folder frame


class FrameSource:
    """Base class: subclasses implement ``_frames()`` and set the attributes below."""

    name: str = ""
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)
    frame_count: int | None = None
    is_live: bool = False
    seekable: bool = False
    sample_aspect: Fraction | None = None  # pixels shown wider or narrower than square (DV, DVD: 32:27), else None

    def __init__(self) -> None:
        self._decode_errors = 0
        self._closed = False

    @property
    def decode_errors(self) -> int:
        """Packets or images that could not be decoded and were skipped."""
        return self._decode_errors

    @property
    def lost_frames(self) -> int:
        """Frames of the source that never came out (unreadable images; a video's undecodable or missing
        frames): the one count reported everywhere."""
        return self._decode_errors

    @property
    def duration(self) -> float | None:
        """Seconds of the source when known (``frame_count / fps``), else None (live sources)."""
        if self.is_live or not self.frame_count or not self.fps:
            return None
        return self.frame_count / self.fps

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        return self._frames()

    def seek(self, seconds: float) -> None:
        """Jump to ``seconds``; the next frame iterated is the one shown nearest to it."""
        raise InputError(f"source {self.name} is not seekable")

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.size
        return f"{type(self).__name__}({self.name!r}, {w}x{h}, {self.fps:.2f} fps)"


def _rotate(image: np.ndarray, rotation: float) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, FFmpeg's convention) to an image."""
    k = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _orient(image: np.ndarray, matrix: np.ndarray) -> np.ndarray | None:
    """Show ``image`` as its display matrix (FFmpeg's 3x3 int32, 16.16 fixed point) says: a point ``(x, y)`` of
    the decoded picture is shown at ``(a x + c y, b x + d y)`` (shifted into view), so a negative determinant is a
    mirror, which a rotation angle cannot express. None for a matrix that is not a multiple of 90 degrees."""
    a, b, c, d = (int(round(float(v) / 65536.0)) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    if a == d == 0 and abs(b) == abs(c) == 1:  # axes swapped: x' follows y, y' follows x
        image, flip_x, flip_y = image.transpose(1, 0, 2), c < 0, b < 0
    elif b == c == 0 and abs(a) == abs(d) == 1:
        flip_x, flip_y = a < 0, d < 0
    else:
        return None
    return np.ascontiguousarray(image[::-1 if flip_y else 1, ::-1 if flip_x else 1])  # no copy when unchanged


class VideoSource(FrameSource):
    """A video file or network stream decoded by PyAV; timestamps come from each frame's pts."""

    def __init__(self, spec: str, *, timeout: float = 10.0, live: bool | None = None) -> None:
        super().__init__()
        import av  # local: importing PyAV is slow-ish and optional for image folders/webcams

        self._av = av
        self.name = spec
        is_url = spec.startswith(URL_SCHEMES)
        if not is_url:
            path = Path(spec)
            if not path.exists():
                raise InputError(f"video file not found: {spec}")
            if path.is_dir():
                raise InputError(f"{spec} is a folder, not a video file")
        try:
            self._container = av.open(spec, timeout=(timeout, timeout), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError) as exc:
            what = "cannot open stream" if is_url else "not a readable video"
            raise InputError(f"{what}: {spec} ({_short(exc)})") from None
        try:
            self._stream = _moving_video(self._container, spec)
            cc = self._stream.codec_context
            if (cc.width or 0) * (cc.height or 0) > 1280 * 720:  # threads pay for large frames; small ones
                self._stream.thread_type = "AUTO"  # decode in ~1 ms and extra threads only compete with the net
            rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
            self.fps = float(rate) if rate else 0.0
            self._time_base = self._stream.time_base
            start = self._stream.start_time
            self._start = float(start * self._time_base) if start is not None and self._time_base else 0.0
            if live is None:  # a stream protocol, or a URL without a known duration (HLS/DASH live, ...)
                live = spec.startswith(LIVE_SCHEMES) or (is_url and self._container.duration is None)
            self.is_live = bool(live)
            seconds = self._container.duration  # microseconds; MKV/WebM announce it, not a frame count
            self._container_seconds = seconds / 1e6 if seconds and seconds > 0 and not self.is_live else None
            # a raw elementary stream (.h264 from a camera) has no timestamps to seek by
            no_timestamps = int(self._container.format.flags) & av.format.Flags.no_timestamps.value
            self.seekable = not self.is_live and not no_timestamps
            frames = int(self._stream.frames or 0)
            self.frame_count = frames if frames > 0 and not self.is_live else None
            self._announced = self.frame_count or 0  # samples of the track, the pre-roll below included
            # no frame count (MKV/WebM): the video track's announced length, to notice a file that ends early;
            # without one, the container's length, but only when the file is shorter than its header declares
            self._track_seconds = None if self.frame_count else _track_duration(self._stream)
            self._cut = None if is_url or self.frame_count else matroska_cut(spec, self._container)
            self._end_seconds = self._track_seconds
            if self._end_seconds is None and self._cut is not None:
                self._end_seconds = self._container_seconds
            self._packet_span: list[float] = []  # [first pts, last end] of the demuxed packets, seconds
            self._packets_timed = 0
            self._start_pts: int | None = None if start is None else int(start)
            self._preroll = 0  # packets before the stream's start: hidden by an edit list (a cut), never shown
            self._lock = threading.Lock()
            self._pending_seek: float | None = None
            self._index = 0
            self._packet_pts: list[int] = []   # pts of demuxed packets not yet passed by a decoded frame
            self._pts_everywhere = True        # False once a packet without pts is seen (number frames as read)
            # AVI: pts count the packets in decode order, so reordered (B-) frames come out with the wrong ones;
            # while packet pts only rise, the pts not yet given to a frame (see _reorder_pts)
            self._rising_pts, self._last_packet_pts, self._unshown = True, None, []
            # packets up to this pts are pre-roll, not frames of the stream: before its start (edit lists), or after
            # a seek, before the first frame shown (None: that frame's, still to come)
            self._first_pts: int | None = None if start is None else int(start) - 1
            self._frames_read = 0
            self._seeked = False
            self._packets = self._container.demux(self._stream)
            self._decoded: list = []
            self._damaged = 0
            self._demux_error: str | None = None
            first = self._next_av_frame()
            if first is None:
                raise InputError(self._no_frame_message(spec, is_url))
            self._first = first
            if self.frame_count:
                self.frame_count = max(1, self._announced - self._preroll)
            image = self._to_bgr(first)
            self.size = (image.shape[1], image.shape[0])
            self.sample_aspect = _sample_aspect(self._stream, turned=self.size != (first.width, first.height))
            if not self.fps:
                self.fps = 25.0
        except InputError:
            self._container.close()
            raise

    def _no_frame_message(self, spec: str, is_url: bool) -> str:
        fmt = getattr(getattr(self._container, "format", None), "name", "") or ""
        if is_url and self._demux_error and "mp4" in fmt:
            return (f"cannot read {spec}: reading failed before the first frame ({self._demux_error}); this MP4 "
                    f"keeps its index (moov) at the end and the server does not serve byte ranges - download it "
                    f"first, or remux it with the index first (ffmpeg -i IN -c copy -movflags +faststart OUT)")
        if self._demux_error:
            return f"cannot read {spec}: reading failed before the first frame ({self._demux_error})"
        return f"no decodable video frames in {spec}"

    # -- decoding -------------------------------------------------------------------------------------
    def _next_av_frame(self):
        """Next decoded PyAV frame, or None at the end; undecodable packets are counted and skipped."""
        av = self._av
        while not self._decoded:
            try:
                packet = next(self._packets)
            except StopIteration:
                return None
            except (av.error.FFmpegError, OSError) as exc:
                self._decode_errors += 1
                self._demux_error = _short(exc)
                LOG.debug("%s: stopped reading after a demux error (%s)", self.name, self._demux_error)
                return None
            if packet.size:
                if packet.pts is None:
                    self._pts_everywhere = False
                else:
                    heapq.heappush(self._packet_pts, packet.pts)
                    self._note_rising(packet)
                    if self._end_seconds is not None:  # only MKV/WebM check their end against it
                        self._note_packet_time(packet)
                    if not self._seeked and self._start_pts is not None and packet.pts < self._start_pts:
                        self._preroll += 1
            try:
                self._decoded = list(packet.decode())
                self._reorder_pts(self._decoded)
            except (av.error.FFmpegError, ValueError) as exc:
                self._decode_errors += 1
                LOG.debug("%s: skipped an undecodable packet (%s)", self.name, _short(exc))
                continue
            if packet.size == 0 and not self._decoded:  # flush packet at the end of the stream
                return None
        return self._decoded.pop(0)

    def _note_rising(self, packet) -> None:
        """Keep the packet's pts for :meth:`_reorder_pts` while the packets' pts rise in decode order, from the
        first key frame on (packets before it never decode: a stream cut in the middle of a group of pictures)."""
        pts = packet.pts
        if not self._rising_pts or (self._last_packet_pts is None and not packet.is_keyframe):
            return
        if self._last_packet_pts is not None and pts <= self._last_packet_pts:
            self._rising_pts, self._unshown = False, []  # real presentation times: B-frames show as a step back
            return
        heapq.heappush(self._unshown, pts)
        self._last_packet_pts = pts

    def _reorder_pts(self, frames: list) -> None:
        """While every packet's pts rose in decode order although the codec reorders frames (H.264 with B-frames
        in AVI, whose pts just count packets), give each decoded frame, in the display order the decoder hands
        them, the earliest pts not yet given: the times a player shows."""
        reorders = bool(self._stream.codec_context.has_b_frames)
        for frame in frames:
            if self._rising_pts and frame.pts is not None and self._unshown:
                earliest = heapq.heappop(self._unshown)
                if reorders:
                    frame.pts = earliest

    def _note_packet_time(self, packet) -> None:
        """Widen the span of the demuxed packets' times (seconds) by this packet's (its pts to its end)."""
        start = float(packet.pts * self._time_base)
        end = start + float(max(packet.duration or 0, 0) * self._time_base)
        span = self._packet_span
        self._packet_span = [min(span[0], start), max(span[1], end)] if span else [start, end]
        self._packets_timed += 1

    def _to_bgr(self, frame) -> np.ndarray:
        image = frame.to_ndarray(format="bgr24")
        for side in getattr(frame, "side_data", ()):
            if getattr(side.type, "name", "") == "DISPLAYMATRIX":
                shown = _orient(image, np.frombuffer(bytes(side), "<i4"))
                if shown is not None:
                    return shown
        return _rotate(image, getattr(frame, "rotation", 0) or 0)

    def _frame_index(self, frame) -> int:
        """The frame's number in the stream. Every packet demuxed with an earlier pts than this frame's is a frame
        shown before it, also one that never decoded, so frames after a damaged stretch keep their numbers; without
        pts on every packet, frames are numbered as they are read."""
        heap = self._packet_pts
        if frame.pts is None or not self._pts_everywhere:
            return self._index
        if self._first_pts is None:  # the first frame after a seek (or of a stream without a start time)
            self._first_pts = frame.pts
        passed = 0
        while heap and heap[0] < frame.pts:
            passed += heapq.heappop(heap) > self._first_pts
        if heap and heap[0] == frame.pts:
            heapq.heappop(heap)
        return self._index + passed

    def _timestamp(self, frame, fallback_index: int) -> float:
        if frame.pts is not None and frame.time_base:
            return float(frame.pts * frame.time_base) - self._start
        return fallback_index / self.fps

    def _frames(self) -> Iterator[Frame]:
        while not self._closed:
            with self._lock:
                target, self._pending_seek = self._pending_seek, None
                if target is not None:
                    self._do_seek(target)
                if self._first is not None:
                    frame, self._first = self._first, None
                else:
                    frame = self._next_av_frame()
                if frame is None:
                    self._report_end()
                    return
                self._frames_read += 1
                if getattr(frame, "is_corrupt", False):
                    self._decode_errors += 1
                    self._damaged += 1
                index = self._frame_index(frame)
                ts = self._timestamp(frame, index)
                self._index = index + 1
            yield Frame(self._to_bgr(frame), index, ts)

    @property
    def duration(self) -> float | None:
        """Seconds of the video: ``frame_count / fps``, else the length the container announces (MKV and WebM
        give no frame count), None for live streams."""
        from_frames = super().duration
        return from_frames if from_frames is not None else self._container_seconds

    def _unread(self) -> int | None:
        """Frames the container announces (less the pre-roll an edit list hides) that were not read, once read
        from the start to the end; None before that or when it announces none."""
        if self.frame_count is None or self._seeked or not getattr(self, "_ended", False):
            return None
        return max(0, self._announced - self._preroll - self._frames_read)

    def _missing_end(self) -> float:
        """Seconds of the video track's announced length (MKV/WebM, which announce no frame count; without a
        ``DURATION`` tag, the container's length when the file is cut short) after its last packet, once read from
        the start to the end: a file cut short; 0 within 1.5 frame intervals."""
        if (self._end_seconds is None or self._seeked or not getattr(self, "_ended", False)
                or not self._packet_span):
            return 0.0
        missing = self._end_seconds - self._packet_span[1]
        return missing if missing > 1.5 * self._packet_interval() else 0.0

    def _packet_interval(self) -> float:
        """Mean seconds per packet read (so also of a variable frame rate, whatever the rate announced)."""
        first, last = self._packet_span
        return (last - first) / self._packets_timed if last > first else 1.0 / self.fps

    def _missing_end_frames(self) -> int:
        """Frames of :meth:`_missing_end`, at the packets' mean interval."""
        missing = self._missing_end()
        return max(1, int(round(missing / self._packet_interval()))) if missing else 0

    @property
    def missing_frames(self) -> int:
        """Frames the container announces but that never decoded (a truncated file), once read to the end; for
        MKV/WebM, the frames of the announced length missing at the end."""
        return self._unread() or self._missing_end_frames()

    @property
    def damaged_frames(self) -> int:
        """Frames that decoded with errors (delivered, possibly with artefacts)."""
        return self._damaged

    @property
    def lost_frames(self) -> int:
        """Frames that never decoded: announced minus decoded once read to the end (when the container
        announces a count), else the undecodable packets."""
        unread = self._unread()
        if unread is None:
            return self._decode_errors - self._damaged + self._missing_end_frames()
        return unread

    def _report_end(self) -> None:
        self._ended = True
        if self._cut is not None and not self.lost_frames and not self._seeked:
            LOG.warning("%s is cut short: it holds %d of the %d bytes its header declares; %s", self.name, *self._cut,
                        "frames may be missing, but it announces no length to count them by"
                        if self._end_seconds is None else
                        "its frames reach the length it announces (the part missing held no frames, e.g. its index)")
        if self.lost_frames or self.damaged_frames:
            total = f" of {self._announced - self._preroll}" if self.frame_count and not self._seeked else ""
            why = f"; reading stopped at: {self._demux_error}" if self._demux_error else ""
            missing = self._missing_end()
            if missing:
                what = "its video track" if self._track_seconds is not None else "the file"
                size = f"; it holds {self._cut[0]} of its {self._cut[1]} bytes" if self._cut is not None else ""
                why += (f"; the file ends {missing:.1f} s before the length {what} announces "
                        f"({self._end_seconds:.1f} s{size})")
            LOG.warning("%s is damaged or truncated: decoded %d%s frames (%d lost, %d damaged)%s", self.name,
                        self._frames_read, total, self.lost_frames, self.damaged_frames, why)

    def seek(self, seconds: float) -> None:
        if not self.seekable:
            why = "is live" if self.is_live else "has no timestamps (a raw stream)"
            raise InputError(f"cannot seek {self.name}: it {why}")
        with self._lock:
            self._pending_seek = max(0.0, float(seconds))
            self._seeked = True

    def _do_seek(self, seconds: float) -> None:
        """Seek to the key frame before ``seconds`` and decode forward to the frame nearest to it (the earlier one
        on a tie; past the last frame, that frame if ``seconds`` is within half a frame of it). Where the seek
        lands too late (MPEG-TS/PS have no index: decoding then starts at a later key frame, or not at all), it
        is repeated 1, 2, 4, ... s earlier, down to the start."""
        back = 0.0
        while True:
            self._seek_container(max(0.0, seconds - back))
            first = self._next_av_frame()
            if first is None and self.duration is not None and seconds > self.duration + 1.0:
                break  # past the end
            if seconds - back <= 0 or (first is not None and
                                       self._timestamp(first, 0) <= seconds + 0.5 / max(self.fps, 1.0)):
                break
            back = max(1.0, 2 * back)
        if first is not None:
            self._decoded.insert(0, first)
        self._first = self._nearest_frame(seconds)
        ts = self._timestamp(self._first, 0) if self._first is not None else seconds
        self._index = int(round(ts * self.fps))

    def _seek_container(self, seconds: float) -> None:
        """Seek the container to the key frame before ``seconds`` (the very start for 0) and forget what was
        queued."""
        av = self._av
        self._first = None
        self._decoded = []
        self._packet_pts, self._first_pts = [], None
        self._last_packet_pts, self._unshown = None, []
        offset = int((seconds + self._start) / self._time_base)
        if seconds <= 0:  # before the start (where an index-less seek to the first pts may land later)
            offset = min(offset, 0)
        try:
            self._container.seek(offset, stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot seek {self.name} to {seconds:.3f}s ({_short(exc)})") from None
        self._packets = self._container.demux(self._stream)

    def _nearest_frame(self, seconds: float):
        """Decode forward to the frame shown nearest to ``seconds`` (by the frames' own timestamps, so also in a
        variable frame rate video); the frame after it stays queued. None past the end."""
        prev, prev_ts = None, 0.0
        while (frame := self._next_av_frame()) is not None:
            ts = self._timestamp(frame, 0)
            if ts >= seconds:
                if prev is not None and seconds - prev_ts <= ts - seconds:
                    self._decoded.insert(0, frame)
                    return prev
                return frame
            prev, prev_ts = frame, ts
        return prev if prev is not None and prev_ts >= seconds - 0.5 / max(self.fps, 1.0) else None

    def close(self) -> None:
        if not self._closed:
            super().close()
            with self._lock:
                self._container.close()


def _open_camera(index: int) -> cv2.VideoCapture:
    """``cv2.VideoCapture(index)`` without OpenCV's own warnings on stderr about a camera it cannot open (the
    caller reports that in one line); OpenCV's log level is restored afterwards."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.VideoCapture(index)
    finally:
        cv2.utils.logging.setLogLevel(level)


class WebcamSource(FrameSource):
    """A camera opened by OpenCV; timestamps are seconds since the source opened."""

    def __init__(self, index: int, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        super().__init__()
        self.name = f"webcam:{index}"
        self.is_live = True
        self._cap = _open_camera(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(f"no webcam at index {index} (camera absent, busy or not permitted)")
        if width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        ok, image = self._cap.read()
        if not ok or image is None:
            self._cap.release()
            raise InputError(f"webcam {index} opened but delivered no frame")
        self._first: np.ndarray | None = image
        self.size = (image.shape[1], image.shape[0])
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or fps or 30.0)
        self._t0 = time.monotonic()

    def _frames(self) -> Iterator[Frame]:
        index = 0
        while not self._closed:
            if self._first is not None:
                image, self._first = self._first, None
            else:
                ok, image = self._cap.read()
                if not ok or image is None:
                    LOG.warning("%s stopped delivering frames", self.name)
                    return
            yield Frame(image, index, time.monotonic() - self._t0)
            index += 1

    def close(self) -> None:
        if not self._closed:
            super().close()
            self._cap.release()


class ImageFolderSource(FrameSource):
    """The images of a folder in name order (numbers by value: ``frame2`` before ``frame10``; hidden files left
    out), played at ``fps`` (timestamps ``index / fps``). Images may differ in size; ``size`` is the first readable
    image's. Unreadable images are skipped and counted in ``lost_frames``."""

    def __init__(self, folder: Path, *, fps: float | None = None) -> None:
        super().__init__()
        self.name = str(folder)
        self._files = sorted((p for p in folder.iterdir() if is_frame_image(p)), key=_natural_key)
        if not self._files:
            raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
        self.fps = float(fps or 25.0)
        self.frame_count = len(self._files)
        self.seekable = True
        self._position = 0
        self._lock = threading.Lock()
        first = next((im for im in map(self._load, range(len(self._files))) if im is not None), None)
        if first is None:
            raise InputError(f"no readable image in folder {folder}: all {len(self._files)} are unreadable")
        self.size = (first.shape[1], first.shape[0])

    def _load(self, i: int) -> np.ndarray | None:
        return cv2.imread(str(self._files[i]), cv2.IMREAD_COLOR)

    def _read(self, i: int) -> np.ndarray | None:
        image = self._load(i)
        if image is None:
            self._decode_errors += 1
            LOG.warning("skipped unreadable image %s", self._files[i])
        return image

    def _frames(self) -> Iterator[Frame]:
        while not self._closed:
            with self._lock:
                i = self._position
                if i >= len(self._files):
                    return
                self._position += 1
            image = self._read(i)
            if image is not None:
                yield Frame(image, i, i / self.fps, self._files[i].name)

    def seek(self, seconds: float) -> None:
        with self._lock:
            self._position = min(len(self._files), max(0, int(round(seconds * self.fps))))


class PacedSource(FrameSource):
    """Replays another source in real time (optionally ``speed`` times faster) as a live source: frames are
    released at their timestamps, as a camera would deliver them. Used for live-mode tests and benchmarks."""

    def __init__(self, inner: FrameSource, speed: float = 1.0) -> None:
        super().__init__()
        self.inner = inner
        self.speed = float(speed)
        self.name, self.fps, self.size = inner.name, inner.fps * self.speed, inner.size
        self.sample_aspect = inner.sample_aspect
        self.frame_count = inner.frame_count
        self.is_live = True

    def _frames(self) -> Iterator[Frame]:
        t0 = time.monotonic()
        first_ts = None
        for frame in self.inner:
            if self._closed:
                return
            first_ts = frame.timestamp if first_ts is None else first_ts
            due = t0 + (frame.timestamp - first_ts) / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield Frame(frame.image, frame.index, time.monotonic() - t0)

    @property
    def decode_errors(self) -> int:
        return self.inner.decode_errors

    @property
    def missing_frames(self) -> int:
        return getattr(self.inner, "missing_frames", 0)

    @property
    def lost_frames(self) -> int:
        return self.inner.lost_frames

    def close(self) -> None:
        super().close()
        self.inner.close()


def parse_webcam(spec: str | int | Path) -> int | None:
    """The camera index of ``3``, ``"3"`` or ``"webcam:3"``, else None."""
    if isinstance(spec, bool):
        return None
    if isinstance(spec, int):
        return spec
    text = str(spec)
    if text.startswith("webcam:"):
        text = text[len("webcam:"):]
    elif isinstance(spec, Path):
        return None
    return int(text) if text.isdigit() else None


def is_url(spec: str | int | Path) -> bool:
    return isinstance(spec, str) and spec.startswith(URL_SCHEMES)


def open_source(spec: str | int | Path, *, width: int | None = None, height: int | None = None,
                fps: float | None = None) -> FrameSource:
    """Open a video file, URL, webcam (``int`` or ``"webcam:N"``) or image folder.

    ``width``/``height``/``fps`` request a camera mode (webcams) or set the frame rate of an image folder.
    """
    cam = parse_webcam(spec)
    if cam is not None and not (isinstance(spec, str) and Path(spec).exists()):
        return WebcamSource(cam, width=width, height=height, fps=fps)
    if is_url(spec):
        return VideoSource(str(spec))
    path = Path(spec)
    if not path.exists():
        raise InputError(f"input not found: {spec}")
    if path.is_dir():
        return ImageFolderSource(path, fps=fps)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{spec} is a single image; give its folder to process images as frames")
    return VideoSource(str(path))


def is_frame_image(path: Path) -> bool:
    """An image of a folder's sequence: an image suffix (any case), not a hidden file (macOS's ``._name``)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _natural_key(path: Path) -> tuple:
    """Sort key putting ``frame2`` before ``frame10``: digit runs compare as numbers, text case-insensitively,
    the name itself breaks ties."""
    parts = re.split(r"(\d+)", path.name)
    return tuple(int(t) if i % 2 else t.casefold() for i, t in enumerate(parts)), path.name


def _sample_aspect(stream, turned: bool) -> Fraction | None:
    """The stream's sample aspect ratio (of the frames as shown: inverted when the display matrix turns them), None
    for square pixels or none given."""
    sar = stream.codec_context.sample_aspect_ratio or stream.sample_aspect_ratio
    if not sar or sar == 1:
        return None
    return 1 / Fraction(sar) if turned else Fraction(sar)


def _moving_video(container, spec: str):
    """The first video stream that is not a cover picture (disposition ``attached_pic``: the art that music and
    podcast files carry as a one-picture stream); ``InputError`` when there is none."""
    from av.stream import Disposition

    streams = container.streams.video
    video = next((s for s in streams if not s.disposition & Disposition.attached_pic), None)
    if video is None:
        why = " (only a cover picture: an audio file)" if streams else ""
        raise InputError(f"no video stream in {spec}{why}")
    return video


EBML_ID = b"\x1a\x45\xdf\xa3"
SEGMENT_ID = b"\x18\x53\x80\x67"


def _ebml_size(data: bytes, pos: int) -> tuple[int | None, int]:
    """The EBML element size (a variable-length integer) at ``pos`` of ``data`` and the bytes it takes; the size is
    None when it is "unknown" (all value bits set: a file written as a stream, or whose writer never finished)."""
    if pos >= len(data) or data[pos] == 0:
        raise ValueError("not an EBML size")
    length = 9 - data[pos].bit_length()
    if pos + length > len(data):
        raise ValueError("EBML size past the data")
    value = data[pos] & (0xFF >> length)
    for byte in data[pos + 1: pos + length]:
        value = (value << 8) | byte
    return (None if value == (1 << (7 * length)) - 1 else value), length


def matroska_segment_end(path: str | Path) -> int | None:
    """The byte offset at which a Matroska/WebM file's Segment ends, as its header declares it; None when the file
    is no Matroska file or the size is unknown (written live, or by a writer that never finished: nothing tells
    how long it should be)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if not head.startswith(EBML_ID):
            return None
        size, n = _ebml_size(head, 4)
        pos = 4 + n + (size or 0)
        if size is None or head[pos: pos + 4] != SEGMENT_ID:
            return None
        size, n = _ebml_size(head, pos + 4)
    except (OSError, ValueError):
        return None
    return None if size is None else pos + 4 + n + size


def matroska_cut(spec: str, container) -> tuple[int, int] | None:
    """``(file size, declared size)`` of a Matroska/WebM file shorter than its header declares (a copy or download
    cut short), else None: the one sure sign of truncation in a file without a ``DURATION`` tag."""
    if "matroska" not in (getattr(container.format, "name", "") or ""):
        return None
    end = matroska_segment_end(spec)
    try:
        size = Path(spec).stat().st_size
    except OSError:
        return None
    return (size, end) if end is not None and size < end else None


def _track_duration(stream) -> float | None:
    """Seconds of a stream's ``DURATION`` tag (``00:00:12.000000000``, what FFmpeg and mkvmerge write in
    MKV/WebM), None without one."""
    tag = next((v for k, v in (stream.metadata or {}).items() if k.upper() == "DURATION"), None)
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d*)?)", str(tag or "").strip())
    if not match:
        return None
    hours, minutes, secs = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
