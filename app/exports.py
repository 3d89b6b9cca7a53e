"""Export one video's annotations: the single function behind ``gopose annotate`` and the app's export action,
so both write the same files (``OUT/<stem>.coco.json``, ``.jsonl``, ``.csv``, ``.mp4``)."""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from app.pipeline import Pipeline
from app.sinks import make_sinks, output_paths, parse_formats
from app.smoothing import PoseSmoother
from app.sources import VIDEO_SUFFIXES, FrameSource, is_url, open_source
from app.tracking import Tracker
from core.errors import InputError

LOG = logging.getLogger(__name__)

DEFAULT_FORMATS = ("coco", "jsonl", "csv", "video")


@dataclass
class ExportResult:
    """What one export produced."""

    input: str
    outputs: dict[str, Path] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0
    decode_errors: int = 0
    cancelled: bool = False
    skipped: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"input": self.input, "outputs": {k: str(v) for k, v in self.outputs.items()}, "frames": self.frames,
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 2), "decode_errors": self.decode_errors,
                "cancelled": self.cancelled, "skipped": self.skipped}


def output_stem(spec: str | Path) -> str:
    """``clip`` for ``/videos/clip.mp4``; a URL gives its last path part without a video suffix (or its host),
    with characters that are unsafe in file names replaced by ``_``."""
    text = str(spec)
    if is_url(text):
        tail = text.split("?")[0].split("#")[0].rstrip("/").rsplit("/", 1)[-1]
        path = Path(tail)
        stem = path.stem if path.suffix.lower() in VIDEO_SUFFIXES else tail
        return re.sub(r"[^A-Za-z0-9._-]", "_", stem) or "stream"
    path = Path(text)
    return (path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name) or "input"


def export_video_annotations(input: str | Path | FrameSource, out_dir: str | Path, estimator,
                             formats=DEFAULT_FORMATS, track: bool = True, smooth: bool = True,
                             progress: Callable[[int, int | None], None] | None = None,
                             cancel: threading.Event | None = None, skip_existing: bool = False,
                             batch_size: int | None = None, video_options: dict | None = None,
                             stem: str | None = None) -> ExportResult:
    """Run every frame of ``input`` through ``estimator`` and write the chosen formats into ``out_dir``.

    ``progress(done, total)`` is called from a worker thread after each frame (``total`` None when unknown);
    setting ``cancel`` stops the run and leaves no output file. Raises ``InputError`` for bad input or an
    unwritable ``out_dir``; a damaged video exports what decodes (``decode_errors`` counts the rest).
    """
    fmts = parse_formats(formats)
    name = input.name if isinstance(input, FrameSource) else str(input)
    paths = output_paths(stem or output_stem(name), out_dir, fmts)
    result = ExportResult(name, paths)
    if skip_existing and all(p.exists() for p in paths.values()):
        result.skipped = True
        return result
    _check_out_dir(Path(out_dir))
    source = input if isinstance(input, FrameSource) else open_source(input)
    t0 = time.monotonic()
    try:
        total = source.frame_count

        def on_result(frame, _result) -> None:
            if progress is not None:
                progress(pipeline.stats.frames + 1, total)
            if cancel is not None and cancel.is_set():
                pipeline.stop(discard=True)

        spec = estimator.contract.spec
        pipeline = Pipeline(source, estimator, make_sinks(paths, **(video_options or {})), policy="exhaustive",
                            tracker=Tracker(spec) if track else None,
                            smoother=PoseSmoother(default_fps=source.fps or 25.0) if (smooth and track) else None,
                            batch_size=batch_size, on_result=on_result)
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            return result
        watcher = _CancelWatcher(cancel, pipeline) if cancel is not None else None
        try:
            stats = pipeline.run()
        finally:
            if watcher is not None:
                watcher.done()
        result.frames = stats.frames
        result.decode_errors = stats.decode_errors
        result.cancelled = bool(cancel is not None and cancel.is_set())
    finally:
        source.close()
        result.seconds = time.monotonic() - t0
    if result.cancelled:
        result.outputs = {}
    return result


def _check_out_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise InputError(f"output path {folder} is not a folder")


class _CancelWatcher:
    """Stops a pipeline (discarding its outputs) as soon as ``cancel`` is set, even between frames."""

    def __init__(self, cancel: threading.Event, pipeline: Pipeline) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(cancel, pipeline), daemon=True,
                                        name="gopose-cancel")
        self._thread.start()

    def _watch(self, cancel: threading.Event, pipeline: Pipeline) -> None:
        while not self._done.is_set():
            if cancel.wait(0.05):
                pipeline.stop(discard=True)
                return

    def done(self) -> None:
        self._done.set()
        self._thread.join()
