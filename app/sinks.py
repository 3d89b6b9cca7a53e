"""Result sinks: COCO-style JSON, JSON lines, CSV and an annotated H.264 video.

A sink is opened with the stream's :class:`StreamMeta`, receives ``write(frame, result)`` for every frame in
order, and is finalised by ``close()`` (the output appears under its final name by an atomic rename) or
discarded by ``abort()`` (nothing is left behind). Everything is written to a temporary file next to the
target first, so an interrupted run never leaves a truncated output. Memory stays flat: every sink streams
to disk (the COCO sink spools images and annotations to temporary files and joins them at ``close``).
"""
from __future__ import annotations

import csv
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


class Sink(Protocol):
    def open(self, meta: StreamMeta) -> None: ...
    def write(self, frame, result) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def _round(values: np.ndarray, digits: int = 2) -> list:
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


class AtomicFile:
    """A file written under a temporary name in the target folder and renamed into place on ``commit``."""

    def __init__(self, path: str | Path, mode: str = "w", **kwargs) -> None:
        self.path = Path(path)
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=folder)
        except OSError as exc:
            raise InputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None
        os.close(fd)
        self.tmp = Path(tmp)
        self.handle: IO | None = open(self.tmp, mode, **kwargs) if mode else None

    def commit(self) -> Path:
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.close()
        self.tmp.unlink(missing_ok=True)


class _FileSink:
    """Shared plumbing: an output path, an atomic file, ``close``/``abort`` and a frame counter."""

    suffix = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.frames = 0
        self._file: AtomicFile | None = None
        self.meta: StreamMeta | None = None

    def open(self, meta: StreamMeta) -> None:
        self.meta = meta
        self._file = AtomicFile(self.path, "w", encoding="utf-8", newline="")

    def close(self) -> None:
        if self._file is not None:
            self._file.commit()
            self._file = None

    def abort(self) -> None:
        if self._file is not None:
            self._file.discard()
            self._file = None


def person_records(poses: Poses) -> tuple[np.ndarray, np.ndarray]:
    """``(P, 4)`` xywh boxes and ``(P, K, 3)`` keypoints with absent ones zeroed."""
    b = poses.boxes()
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1) if len(b) else b
    kp = np.where(poses.keypoints[:, :, 2:3] > 0, poses.keypoints, 0.0)
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

    def close(self) -> None:
        if self._file is None:
            return
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
        super().close()

    @staticmethod
    def _copy(src: IO, dst: IO) -> None:
        src.flush()
        src.seek(0)
        shutil.copyfileobj(src, dst, 1 << 20)

    def _cleanup(self) -> None:
        for f in (self._images, self._anns):
            if f is not None:
                f.close()
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
        kp_l = np.round(kp.astype(np.float64), 3).tolist()
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
        csv.writer(self._file.handle).writerow(cols)
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

    def open(self, meta: StreamMeta) -> None:
        import av

        self.meta = meta
        self._file = AtomicFile(self.path, mode="")
        w, h = meta.size
        self._even = (w + (w & 1), h + (h & 1))  # yuv420p needs even sizes; odd ones get one padded column/row
        rate = Fraction(meta.fps).limit_denominator(1001) if meta.fps and meta.fps > 0 else Fraction(25)
        try:
            self._container = av.open(str(self._file.tmp), "w", format="mp4")
            stream = self._container.add_stream(self.codec, rate=rate,
                                                options={"preset": self.preset, "crf": str(self.crf)})
        except Exception as exc:  # noqa: BLE001 - report any encoder problem as bad output settings
            self.abort()
            raise InputError(f"cannot create video {self.path}: {exc}") from None
        stream.width, stream.height = self._even
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = self.threads
        stream.codec_context.time_base = Fraction(1, 90000)  # fine clock: variable frame rate survives
        self._stream = stream
        self._last_pts = -1
        self._t0: float | None = None

    def write(self, frame, result) -> None:
        import av

        from app.overlay import draw_poses

        image = draw_poses(frame.image, result.poses, self.meta.contract, draw_boxes=self.draw_boxes)
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

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        self._file.commit()

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the partial file is deleted anyway
                LOG.debug("closing an aborted video failed", exc_info=True)
            self._container = None
        if self._file is not None:
            self._file.discard()
            self._file = None


FORMATS: dict[str, tuple[str, type]] = {
    "coco": (".coco.json", CocoJsonSink),
    "jsonl": (".jsonl", JsonlSink),
    "csv": (".csv", CsvSink),
    "video": (".mp4", VideoSink),
}


def parse_formats(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"coco,jsonl"`` -> ``["coco", "jsonl"]``, validated against :data:`FORMATS`."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in FORMATS]
    if bad or not items:
        raise InputError(f"unknown output format(s) {bad or text!r}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def output_paths(stem: str, out_dir: str | Path, formats: list[str]) -> dict[str, Path]:
    """The output file of each format: ``OUT/<stem>.coco.json``, ``.jsonl``, ``.csv``, ``.mp4``."""
    return {f: Path(out_dir) / f"{stem}{FORMATS[f][0]}" for f in formats}


def make_sinks(paths: dict[str, Path], **video_kwargs) -> list:
    return [FORMATS[f][1](p, **video_kwargs) if f == "video" else FORMATS[f][1](p) for f, p in paths.items()]


__all__ = ["StreamMeta", "Sink", "AtomicFile", "CocoJsonSink", "JsonlSink", "CsvSink", "VideoSink", "FORMATS",
           "parse_formats", "output_paths", "make_sinks"]
