"""Export one video's annotations: the single function behind ``gopose annotate`` and the app's export action,
so both write the same files (``OUT/<stem>.coco.json``, ``.jsonl``, ``.csv``, ``.annotated.mp4``).

An input's outputs are published together or not at all (:class:`app.sinks.OutputSet`); with ``manifest=True``
(``gopose annotate``) the set is journalled in ``OUT/<stem>.manifest.json`` (``app/manifest.py``), so a run killed
while renaming is completed by the next one and ``skip_existing`` trusts only complete, unchanged sets. No output
ever replaces an input (:func:`guard_inputs`).
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from app.manifest import Manifest, completed, input_identity, input_name, manifest_path, read_manifest
from app.pipeline import Pipeline
from app.sinks import ANNOTATED_SUFFIX, OutputSet, is_disk_full, make_sinks, output_paths, parse_formats
from app.smoothing import PoseSmoother
from app.sources import VIDEO_SUFFIXES, FrameSource, is_url, open_source
from app.tracking import Tracker
from core.errors import InputError
from core.io.files import temp_owner

LOG = logging.getLogger(__name__)

DEFAULT_FORMATS = ("coco", "jsonl", "csv", "video")


class OutputWriteError(InputError):
    """The outputs of an input could not be written (full disk, quota, I/O error); none of them was kept."""


@dataclass
class ExportResult:
    """What one export produced. ``frames_lost`` is the one count of the input's frames that never decoded
    (``frames + frames_lost`` = the frames the container announces, when it announces them)."""

    input: str
    outputs: dict[str, Path] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0
    frames_expected: int | None = None
    frames_lost: int = 0
    frames_damaged: int = 0
    cancelled: bool = False
    skipped: bool = False
    manifest: Path | None = None
    removed: list[Path] = field(default_factory=list)  # an earlier run's outputs of this input it superseded

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def partial(self) -> bool:
        """Frames of the input are missing from the outputs (a damaged or truncated input)."""
        return self.frames_lost > 0

    @property
    def decode_errors(self) -> int:
        """The earlier name of ``frames_lost``."""
        return self.frames_lost

    def as_dict(self) -> dict:
        return {"input": self.input, "outputs": {k: str(v) for k, v in self.outputs.items()}, "frames": self.frames,
                "frames_expected": self.frames_expected, "frames_lost": self.frames_lost,
                "frames_damaged": self.frames_damaged, "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
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
    if path.name in ("", ".", ".."):  # ".", "..", "./": the folder's own name (not "input", nor a hidden "...")
        path = Path(os.path.abspath(text))
    return (path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name) or "input"


def unique_stems(inputs: list[str], out_dir: str | Path | None = None) -> list[str]:
    """The output stem of every input, unique over the whole list (``clip``, then ``clip-2``, ``clip-3`` for
    later inputs of the same name, never a stem another input has; compared case-insensitively). Computed from
    the complete, ordered input list before any sharding, so every shard names every input the same way. With
    ``out_dir``, a stem whose manifest there records another input (an earlier run's) is passed over too, so a
    run never replaces the outputs of a different input of the same name."""
    bases = [output_stem(item) for item in inputs]
    taken = {b.casefold() for b in bases}
    used: set[str] = set()
    out = []
    for item, base in zip(inputs, bases):
        name = input_name(item)
        stem, k = base, 2
        while (stem.casefold() in used or (stem != base and stem.casefold() in taken)
               or _owner(out_dir, stem) not in (None, name)):
            stem = f"{base}-{k}"
            k += 1
        if stem != base and base.casefold() not in used and (other := _owner(out_dir, base)) not in (None, name):
            LOG.warning("%s: %s holds the outputs of %s; writing this input's as %s", item, base, other, stem)
        used.add(stem.casefold())
        out.append(stem)
    return out


def _owner(out_dir: str | Path | None, stem: str) -> str | None:
    """The input whose outputs the manifest of ``stem`` in ``out_dir`` records, None when there is none (or no
    ``out_dir``)."""
    if out_dir is None:
        return None
    data = read_manifest(manifest_path(out_dir, stem))
    owner = data.get("input") if data is not None else None
    return str(owner) if owner is not None else None


def is_own_output(path: str | Path) -> bool:
    """True for a file named like our annotated videos (``*.annotated.mp4``): never taken as an input."""
    return str(path).lower().endswith(ANNOTATED_SUFFIX)


def guard_inputs(outputs: Iterable[Path | None], inputs: Iterable[str | Path],
                 advice: str = "choose another --out") -> None:
    """``InputError`` when an output path is the same file as an input (same device and inode, what
    ``os.path.samefile`` compares: also through links and different spellings of a path); the message ends with
    ``advice``."""
    files: dict[tuple[int, int], str] = {}
    for item in inputs:
        if isinstance(item, FrameSource) or is_url(str(item)):
            continue
        try:
            st = os.stat(item)
        except OSError:
            continue
        files[(st.st_dev, st.st_ino)] = str(item)
    for out in outputs:
        if out is None:
            continue
        try:
            st = os.stat(out)
        except OSError:
            continue
        hit = files.get((st.st_dev, st.st_ino))
        if hit is not None:
            raise InputError(f"refusing to write {out}: it is the input {hit} ({advice})")


def export_video_annotations(input: str | Path | FrameSource, out_dir: str | Path, estimator,
                             formats=DEFAULT_FORMATS, track: bool = True, smooth: bool = True,
                             progress: Callable[[int, int | None], None] | None = None,
                             cancel: threading.Event | None = None, skip_existing: bool = False,
                             batch_size: int | None = None, video_options: dict | None = None,
                             stem: str | None = None, manifest: bool = False,
                             protect: Iterable[str | Path] = (),
                             on_open: Callable[[FrameSource], None] | None = None) -> ExportResult:
    """Run every frame of ``input`` through ``estimator`` and write the chosen formats into ``out_dir``.

    ``progress(done, total)`` is called from a worker thread after each frame (``total`` None when unknown);
    setting ``cancel`` stops the run and leaves no output file. The outputs appear together or not at all; with
    ``manifest`` they are journalled in ``OUT/<stem>.manifest.json`` and ``skip_existing`` skips only an input
    whose complete manifest matches it (else: when all outputs exist). No output may be ``input`` or one of
    ``protect`` (``InputError``). ``on_open(source)`` is called once the input opened. Raises ``InputError`` for
    bad input or an unwritable ``out_dir`` (``OutputWriteError`` when writing failed, e.g. a full disk); a damaged
    video exports what decodes (``frames_lost`` counts the rest).
    """
    fmts = parse_formats(formats)
    name = input.name if isinstance(input, FrameSource) else str(input)
    stem = stem or output_stem(name)
    paths = output_paths(stem, out_dir, fmts)
    mpath = manifest_path(out_dir, stem) if manifest else None
    identity = {"input": name} if isinstance(input, FrameSource) else input_identity(name)
    if callable(getattr(estimator, "fingerprint", None)):  # outputs of another model or settings are not these
        identity["run"] = {**estimator.fingerprint(), "track": bool(track), "smooth": bool(smooth and track)}
    result = ExportResult(name, paths, manifest=mpath)
    if skip_existing and _skip(result, mpath, identity):
        return result
    guard_inputs([*paths.values(), mpath], [input, *protect])
    source = input if isinstance(input, FrameSource) else open_source(input)
    t0 = time.monotonic()
    pipeline: Pipeline | None = None
    try:
        _check_out_dir(Path(out_dir))
        if on_open is not None:
            on_open(source)
        total = source.frame_count

        def on_result(frame, _result) -> None:
            if progress is not None:
                progress(pipeline.stats.frames + 1, total)
            if cancel is not None and cancel.is_set():
                pipeline.stop(discard=True)

        def details() -> dict:
            return {"frames": outputs.frames, "frames_expected": source.frame_count,
                    "frames_lost": source.lost_frames, "frames_damaged": getattr(source, "damaged_frames", 0),
                    "model": getattr(estimator, "name", ""), "formats": fmts, "pid": os.getpid()}

        journal = Manifest(mpath, identity, details) if mpath is not None else None
        outputs = OutputSet(make_sinks(paths, **(video_options or {})), journal)
        spec = estimator.contract.spec
        pipeline = Pipeline(source, estimator, [outputs], policy="exhaustive",
                            tracker=Tracker(spec) if track else None,
                            smoother=PoseSmoother(default_fps=source.fps or 25.0) if (smooth and track) else None,
                            batch_size=batch_size, on_result=on_result)
        if cancel is not None and cancel.is_set():
            result.cancelled, result.outputs = True, {}
            return result
        watcher = _CancelWatcher(cancel, pipeline) if cancel is not None else None
        try:
            stats = pipeline.run()
        except Exception as exc:
            raise _write_error(exc, out_dir) from None
        finally:
            if watcher is not None:
                watcher.done()
        result.cancelled = bool(cancel is not None and cancel.is_set())
        if outputs.error is not None and not result.cancelled:
            raise _write_error(outputs.error, out_dir, always=True) from None
        result.frames = stats.frames
        result.frames_expected = source.frame_count
        result.frames_lost = source.lost_frames
        result.frames_damaged = getattr(source, "damaged_frames", 0)
        result.removed = list(journal.removed) if journal is not None else []
    except BaseException:  # Ctrl-C / SIGTERM may land between creating a temporary file and recording it
        if pipeline is not None:
            pipeline.stop(discard=True)
            pipeline.join(timeout=60)
        _remove_own_temps(Path(out_dir), [*paths.values(), mpath])
        raise
    finally:
        source.close()
        result.seconds = time.monotonic() - t0
    if result.cancelled:
        result.outputs = {}
    return result


def _remove_own_temps(folder: Path, finals: list[Path | None]) -> None:
    """Remove this process's temporary files for ``finals`` (all its threads on them have stopped)."""
    names = {p.name for p in finals if p is not None}
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        owner = temp_owner(entry)
        if owner is not None and owner[1] == os.getpid() and owner[0] in names:
            entry.unlink(missing_ok=True)


def _skip(result: ExportResult, mpath: Path | None, identity: dict) -> bool:
    """Fill ``result`` as skipped when its outputs exist already (with a manifest: a complete, matching one)."""
    paths = list(result.outputs.values())
    if mpath is None:
        result.skipped = all(p.exists() for p in paths)
        return result.skipped
    record = completed(mpath, identity, paths)
    if record is None:
        _say_why_not_skipped(result.input, mpath, identity, paths)
        return False
    result.skipped = True
    result.frames = int(record.get("frames") or 0)
    result.frames_expected = record.get("frames_expected")
    result.frames_lost = int(record.get("frames_lost") or 0)
    result.frames_damaged = int(record.get("frames_damaged") or 0)
    return True


def _say_why_not_skipped(name: str, mpath: Path, identity: dict, paths: list[Path]) -> None:
    """Warn when complete outputs of this very input exist but another model or other settings made them (the
    input is then annotated again, replacing them)."""
    if "run" not in identity:
        return
    record = completed(mpath, {k: v for k, v in identity.items() if k != "run"}, paths)
    if record is None:
        return
    earlier = record.get("run") or {}
    changed = sorted(k for k in set(earlier) | set(identity["run"]) if earlier.get(k) != identity["run"].get(k))
    LOG.warning("%s: annotating again: its outputs in %s were made with %s", name, mpath.parent,
                f"a different {', '.join(changed)} (see its manifest)" if earlier else
                "a GOPose that did not record its model and settings")


def _write_error(exc: BaseException, out_dir: str | Path, always: bool = False) -> BaseException:
    """A full disk (or any failure to write the outputs) as one clear ``OutputWriteError``; other errors as is."""
    if isinstance(exc, InputError):
        return exc
    if is_disk_full(exc) or always:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return OutputWriteError(f"cannot write the outputs in {out_dir}: {reason}; none of them was kept")
    return exc


def _check_out_dir(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output path {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None


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
