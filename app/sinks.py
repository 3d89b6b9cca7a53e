"""Result sinks: COCO-style JSON, JSON lines, CSV and an annotated H.264 video.

A sink is opened with the stream's :class:`StreamMeta`, receives ``write(frame, result)`` for every frame in
order, and is finalised by ``close()`` (the output appears under its final name by an atomic rename) or
discarded by ``abort()`` (nothing is left behind). ``close()`` is ``finish()`` (complete and fsync the temporary
file: where a full disk shows) then the rename. Everything is written through ``core.io.files.AtomicFile`` to a
temporary file next to the target first, so an interrupted run never leaves a truncated output. Memory stays
flat: every sink streams to disk (the COCO sink spools images and annotations to anonymous temporary files and
joins them in ``finish``).

:class:`OutputSet` groups the sinks of one input so that their outputs are published together or not at all:
every sink finishes first, then all are renamed; a failure at any point removes them all.
"""
from __future__ import annotations

import csv
import errno
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from core.contract import PoseContract
from core.errors import InputError
from core.io.files import AtomicFile
from core.poses import Poses

LOG = logging.getLogger(__name__)


@dataclass
class StreamMeta:
    """What a sink needs to know about the stream before the first frame."""

    name: str  # the input (path, URL or webcam)
    size: tuple[int, int]  # (width, height)
    fps: float
    contract: PoseContract
    frame_count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sample_aspect: Fraction | None = None  # non-square pixels of the input, kept by the annotated video


class Sink(Protocol):
    def open(self, meta: StreamMeta) -> None: ...
    def write(self, frame, result) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def _discard(file: AtomicFile) -> None:
    """Remove an unfinished output even when closing it fails (its buffered data cannot reach a full disk)."""
    try:
        file.discard()
    except OSError:
        LOG.debug("closing %s failed; removing it", file.tmp, exc_info=True)
        file.tmp.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    """fsync a file written by another library (a full disk may only show here)."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _utf8(text: str) -> str:
    """``text`` encodable as UTF-8 (what FFmpeg's metadata needs): a file name in another encoding, read by Python
    with surrogate escapes, shows its odd bytes as Python prints them (``caf\\udce9``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _round(values: np.ndarray, digits: int = 2) -> list:
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


class _FileSink:
    """Shared plumbing: an output path, an atomic file, ``finish``/``close``/``abort`` and a frame counter."""

    suffix = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.frames = 0
        self._file: AtomicFile | None = None
        self._finished = False
        self.meta: StreamMeta | None = None

    @property
    def tmp(self) -> Path | None:
        """The temporary file while the output is open (None before ``open`` and after ``close``/``abort``)."""
        return self._file.tmp if self._file is not None else None

    def open(self, meta: StreamMeta) -> None:
        self.meta = meta
        self._finished = False
        self._file = AtomicFile(self.path, "w", encoding="utf-8", newline="")

    def _complete(self) -> None:
        """Write what only the end of the stream gives (subclasses)."""

    def finish(self) -> None:
        """Complete the temporary file and make it durable; the final name is untouched."""
        if self._file is None or self._finished:
            return
        self._complete()
        self._file.handle.flush()
        os.fsync(self._file.handle.fileno())
        self._finished = True

    def close(self) -> None:
        if self._file is not None:
            try:
                self.finish()
            except BaseException:
                self.abort()
                raise
            self._file.commit()
            self._file = None

    def abort(self) -> None:
        if self._file is not None:
            _discard(self._file)
            self._file = None


MIN_SCORE = 1e-4  # the smallest keypoint score written (4 decimals): a present keypoint never reads as absent


def person_records(poses: Poses) -> tuple[np.ndarray, np.ndarray]:
    """``(P, 4)`` xywh boxes and ``(P, K, 3)`` float64 keypoints with absent ones zeroed and present ones scored at
    least :data:`MIN_SCORE`, so that rounding to 4 decimals keeps them present in every format."""
    b = poses.boxes()
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1) if len(b) else b
    present = poses.keypoints[:, :, 2:3] > 0
    kp = np.where(present, poses.keypoints, 0.0).astype(np.float64)
    kp[:, :, 2] = np.where(present[:, :, 0], np.maximum(kp[:, :, 2], MIN_SCORE), 0.0)
    return xywh, kp


class CocoJsonSink(_FileSink):
    """One COCO-style JSON per video: ``images`` are frames (with ``frame_index`` and ``timestamp``),
    ``annotations`` carry ``keypoints`` (x, y, v with v = 2 present, 0 absent), ``keypoint_scores``, ``score``,
    ``bbox``, ``area``, ``num_keypoints`` and ``track_id``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._images: IO | None = None
        self._anns: IO | None = None
        self._n_ann = 0

    def open(self, meta: StreamMeta) -> None:
        super().open(meta)
        self._images = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.path.parent)
        self._anns = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.path.parent)

    def write(self, frame, result) -> None:
        poses: Poses = result.poses
        image_id = frame.index + 1
        h, w = frame.image.shape[:2]
        sep = "," if self.frames else ""
        name = frame.name if getattr(frame, "name", None) else f"{Path(self.meta.name).name}#{frame.index}"
        self._images.write(sep + json.dumps({
            "id": image_id, "file_name": name, "width": w, "height": h,
            "frame_index": frame.index, "timestamp": round(float(frame.timestamp), 6)}))
        self.frames += 1
        if not len(poses):
            return
        xywh, kp = person_records(poses)
        flags = np.where(poses.keypoints[:, :, 2] > 0, 2, 0)
        coords = np.round(kp[:, :, :2].astype(np.float64), 2)
        kscores = np.round(kp[:, :, 2].astype(np.float64), 4).tolist()
        boxes = _round(xywh)
        parts = []
        for p in range(len(poses)):
            flat = np.concatenate([coords[p], flags[p][:, None]], axis=1).reshape(-1).tolist()
            self._n_ann += 1
            parts.append(json.dumps({
                "id": self._n_ann, "image_id": image_id, "category_id": 1,
                "keypoints": [int(v) if i % 3 == 2 else v for i, v in enumerate(flat)],
                "keypoint_scores": kscores[p], "score": round(float(poses.scores[p]), 5), "bbox": boxes[p],
                "area": round(float(xywh[p, 2] * xywh[p, 3]), 2), "num_keypoints": int(flags[p].astype(bool).sum()),
                "track_id": int(poses.track_ids[p]), "iscrowd": 0}))
        self._anns.write(("," if self._n_ann > len(poses) else "") + ",".join(parts))

    def _complete(self) -> None:
        spec = self.meta.contract.spec
        out = self._file.handle
        head = {"info": {"description": f"GOPose annotations of {self.meta.name}", "source": self.meta.name,
                         "fps": self.meta.fps, "width": self.meta.size[0], "height": self.meta.size[1],
                         "frames": self.frames, "contract": self.meta.contract.to_dict(), **self.meta.extra},
                "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(spec.keypoints),
                                "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton(None)]}]}
        text = json.dumps(head)
        out.write(text[:-1] + ', "images": [')
        self._copy(self._images, out)
        out.write('], "annotations": [')
        self._copy(self._anns, out)
        out.write("]}\n")
        self._cleanup()

    @staticmethod
    def _copy(src: IO, dst: IO) -> None:
        src.flush()
        src.seek(0)
        shutil.copyfileobj(src, dst, 1 << 20)

    def _cleanup(self) -> None:
        for f in (self._images, self._anns):
            if f is not None:
                try:
                    f.close()  # anonymous files: nothing stays on disk, even when this close fails
                except OSError:
                    LOG.debug("closing a COCO spool file failed", exc_info=True)
        self._images = self._anns = None

    def abort(self) -> None:
        self._cleanup()
        super().abort()


class JsonlSink(_FileSink):
    """One JSON object per line and frame: ``frame``, ``timestamp``, ``people`` (``track_id``, ``score``,
    ``bbox`` xywh, ``keypoints`` as K ``[x, y, score]`` triples, absent ones ``[0, 0, 0]``)."""

    def write(self, frame, result) -> None:
        poses: Poses = result.poses
        xywh, kp = person_records(poses)
        kp[:, :, :2] = np.round(kp[:, :, :2], 3)
        kp[:, :, 2] = np.round(kp[:, :, 2], 4)
        kp_l = kp.tolist()
        boxes = _round(xywh)
        people = [{"track_id": int(poses.track_ids[p]), "score": round(float(poses.scores[p]), 5),
                   "bbox": boxes[p], "keypoints": kp_l[p]} for p in range(len(poses))]
        self._file.handle.write(json.dumps({"frame": frame.index, "timestamp": round(float(frame.timestamp), 6),
                                            "people": people}) + "\n")
        self.frames += 1


class CsvSink(_FileSink):
    """One row per person per frame: ``frame, timestamp, track_id, score, bbox_x, bbox_y, bbox_w, bbox_h``
    then ``<keypoint>_x, <keypoint>_y, <keypoint>_score`` for every keypoint (absent: empty x/y, score 0)."""

    def open(self, meta: StreamMeta) -> None:
        super().open(meta)
        cols = ["frame", "timestamp", "track_id", "score", "bbox_x", "bbox_y", "bbox_w", "bbox_h"]
        for name in meta.contract.spec.keypoints:
            cols += [f"{name}_x", f"{name}_y", f"{name}_score"]
        csv.writer(self._file.handle, lineterminator="\n").writerow(cols)  # every line ends as the rows do
        k = meta.contract.n_keypoints
        self._row = "%d,%.6f,%d,%.5f,%.2f,%.2f,%.2f,%.2f" + ",%.2f,%.2f,%.4f" * k + "\n"

    def write(self, frame, result) -> None:
        poses: Poses = result.poses
        self.frames += 1
        if not len(poses):
            return
        xywh, kp = person_records(poses)
        kp = kp.astype(np.float64)
        kp[:, :, :2][poses.keypoints[:, :, 2] <= 0] = np.nan  # absent: empty cells (formatted 'nan', removed)
        n = len(poses)
        table = np.concatenate([np.full((n, 1), frame.index), np.full((n, 1), frame.timestamp),
                                poses.track_ids[:, None], poses.scores[:, None], xywh, kp.reshape(n, -1)],
                               axis=1).astype(np.float64)
        text = "".join(self._row % tuple(row) for row in table.tolist())
        self._file.handle.write(text.replace("nan", ""))


class VideoSink:
    """The input video with the skeleton overlay (per-track colours): same size and frame rate, H.264 (MP4).

    Frames are stamped with their source timestamps (relative to the first frame), so variable frame rate and
    the gaps of a live recording survive.
    """

    def __init__(self, path: str | Path, *, codec: str = "libx264", preset: str = "ultrafast", crf: int = 23,
                 draw_boxes: bool = False, threads: int = 1) -> None:
        self.path = Path(path)
        self.codec, self.preset, self.crf, self.draw_boxes, self.threads = codec, preset, crf, draw_boxes, threads
        self.frames = 0
        self._file: AtomicFile | None = None
        self._container = None
        self._finished = False

    @property
    def tmp(self) -> Path | None:
        return self._file.tmp if self._file is not None else None

    def open(self, meta: StreamMeta) -> None:
        import av

        self.meta = meta
        self._finished = False
        self._file = AtomicFile(self.path, mode="")
        w, h = meta.size
        self._even = (w + (w & 1), h + (h & 1))  # yuv420p needs even sizes; odd ones get one padded column/row
        rate = Fraction(meta.fps).limit_denominator(1001) if meta.fps and meta.fps > 0 else Fraction(25)
        try:
            self._container = av.open(str(self._file.tmp), "w", format="mp4")
            self._container.metadata["comment"] = f"{ANNOTATED_MARK} of {_utf8(meta.name)}"
            stream = self._container.add_stream(self.codec, rate=rate,
                                                options={"preset": self.preset, "crf": str(self.crf)})
        except Exception as exc:  # noqa: BLE001 - report any encoder problem as bad output settings
            self.abort()
            raise InputError(f"cannot create video {self.path}: {exc}") from None
        stream.width, stream.height = self._even
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = self.threads
        stream.codec_context.time_base = Fraction(1, 90000)  # fine clock: variable frame rate survives
        if meta.sample_aspect:  # shown as wide as the input (DV, DVD: 720x480 pixels of a 16:9 picture)
            stream.codec_context.sample_aspect_ratio = meta.sample_aspect
        self._stream = stream
        self._last_pts = -1
        self._t0: float | None = None

    def write(self, frame, result) -> None:
        import av

        from app.overlay import draw_poses

        contract = getattr(result, "contract", None) or self.meta.contract  # a recording across a model change
        image = draw_poses(frame.image, result.poses, contract, draw_boxes=self.draw_boxes)
        if image.shape[1] != self._even[0] or image.shape[0] != self._even[1]:
            image = self._fit(image)
        vf = av.VideoFrame.from_ndarray(image, format="bgr24")
        tb = self._stream.codec_context.time_base
        if self._t0 is None:  # the video starts at its first frame (a camera's clock does not start at 0)
            self._t0 = float(frame.timestamp or 0.0)
        pts = int(round((frame.timestamp - self._t0) / tb)) if frame.timestamp is not None else self.frames
        pts = max(pts, self._last_pts + 1)  # strictly increasing, whatever the source timestamps do
        vf.pts, vf.time_base = pts, tb
        self._last_pts = pts
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """A frame of another size (odd stream sizes, mixed image folders) letterboxed onto the video's size."""
        from core.geometry import ImageTransform

        w, h = self.meta.size
        ih, iw = image.shape[:2]
        if (iw, ih) != (w, h):
            s = min(w / iw, h / ih)
            rw, rh = max(1, round(iw * s)), max(1, round(ih * s))
            sx, sy = rw / iw, rh / ih
            m = np.array([[sx, 0, (sx - 1) / 2 + (w - rw) // 2], [0, sy, (sy - 1) / 2 + (h - rh) // 2]])
            image = ImageTransform(m, (iw, ih), (w, h)).warp(image)
        ew, eh = self._even
        return np.pad(image, ((0, eh - h), (0, ew - w), (0, 0)))

    def finish(self) -> None:
        """Flush the encoder, write the index and fsync; the final name is untouched."""
        if self._container is None or self._finished:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        _sync(self._file.tmp)
        self._finished = True

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self.finish()
        except BaseException:
            self.abort()
            raise
        self._file.commit()
        self._file = None

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the partial file is deleted anyway
                LOG.debug("closing an aborted video failed", exc_info=True)
            self._container = None
        if self._file is not None:
            _discard(self._file)
            self._file = None


class Journal(Protocol):
    """Records a set's pending renames so a run killed while renaming can be completed later (app/manifest.py)."""

    def begin(self, pending: dict[Path, Path]) -> None: ...
    def commit(self) -> None: ...
    def discard(self) -> None: ...


class OutputSet:
    """The sinks of one input, published together or not at all (itself a sink, for the pipeline).

    ``close()`` first finishes every sink (complete and fsync each temporary file: where a full disk fails), then
    records the pending renames in ``journal`` when one is given, then renames every output into place. A failure
    at any step removes every output of the set, including those already renamed, and is kept in ``error``:
    ``close()`` does not raise, so whoever runs the set reports one error. ``published`` tells the outcome.
    """

    def __init__(self, sinks: list, journal: Journal | None = None) -> None:
        self.sinks = list(sinks)
        self.journal = journal
        self.frames = 0
        self.error: BaseException | None = None
        self.published = False

    @property
    def paths(self) -> list[Path]:
        return [s.path for s in self.sinks]

    def open(self, meta: StreamMeta) -> None:
        self.error, self.published, self.frames = None, False, 0
        try:
            for sink in self.sinks:
                sink.open(meta)
        except BaseException:  # also the sink that failed half-open (abort is safe on any state)
            self.abort()
            raise

    def write(self, frame, result) -> None:
        for sink in self.sinks:
            sink.write(frame, result)
        self.frames += 1

    def close(self) -> None:
        try:
            for sink in self.sinks:
                sink.finish()
            if self.journal is not None:
                self.journal.begin({s.path: s.tmp for s in self.sinks})
        except Exception as exc:  # noqa: BLE001 - kept in self.error for the caller
            self.abort()
            self.error = exc
            return
        renamed: list[Path] = []
        try:
            for sink in self.sinks:
                sink.close()
                renamed.append(sink.path)
            if self.journal is not None:
                self.journal.commit()
        except Exception as exc:  # noqa: BLE001
            LOG.debug("publishing %s failed; removing the set", self.paths, exc_info=True)
            for path in renamed:
                path.unlink(missing_ok=True)
            self.abort()
            self.error = exc
            return
        self.published = True

    def abort(self) -> None:
        for sink in self.sinks:
            try:
                sink.abort()
            except Exception:  # noqa: BLE001 - remove what can be removed
                LOG.debug("aborting %s failed", type(sink).__name__, exc_info=True)
        if self.journal is not None:
            self.journal.discard()


def is_disk_full(exc: BaseException) -> bool:
    """True for the errors of a full disk or quota (also FFmpeg's, which carry ``errno``)."""
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


ANNOTATED_SUFFIX = ".annotated.mp4"  # never a plain "<stem>.mp4": an output must not look like (or be) an input
ANNOTATED_MARK = "GOPose annotated video"  # container comment of our annotated videos

FORMATS: dict[str, tuple[str, type]] = {
    "coco": (".coco.json", CocoJsonSink),
    "jsonl": (".jsonl", JsonlSink),
    "csv": (".csv", CsvSink),
    "video": (ANNOTATED_SUFFIX, VideoSink),
}


def parse_formats(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"coco,jsonl"`` -> ``["coco", "jsonl"]``, validated against :data:`FORMATS`."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in FORMATS]
    if bad or not items:
        raise InputError(f"unknown output format(s) {bad or text!r}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def output_paths(stem: str, out_dir: str | Path, formats: list[str]) -> dict[str, Path]:
    """The output file of each format: ``OUT/<stem>.coco.json``, ``.jsonl``, ``.csv``, ``.annotated.mp4``."""
    return {f: Path(out_dir) / f"{stem}{FORMATS[f][0]}" for f in formats}


def make_sinks(paths: dict[str, Path], **video_kwargs) -> list:
    return [FORMATS[f][1](p, **video_kwargs) if f == "video" else FORMATS[f][1](p) for f, p in paths.items()]


__all__ = ["StreamMeta", "Sink", "CocoJsonSink", "JsonlSink", "CsvSink", "VideoSink", "OutputSet", "FORMATS",
           "ANNOTATED_SUFFIX", "parse_formats", "output_paths", "make_sinks", "is_disk_full"]
