"""Atomic file output: write under a temporary name beside the target, rename over it when complete.

An interrupted run never leaves a truncated file behind: the rename is the last step, and a failed or
interrupted write removes its temporary file. Temporary files are created like ``open`` creates files (mode 0666
less the umask), so outputs get the permissions a user expects, and are named ``.NAME.PID.HEX.part`` so that a
later run can recognise (``stale_temp_files``) what a killed process left behind. The one writer of GOPose:
results, checkpoints, exports, snapshots and the annotate outputs all go through ``AtomicFile``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from core.errors import InputError

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<tag>[0-9a-f]{8})\.part$")


def temp_path_for(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (same file system, so ``os.replace`` is atomic)."""
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"


def temp_owner(path: Path) -> tuple[str, int] | None:
    """``(final name, pid)`` when ``path`` is one of our temporary files, else None."""
    m = _TEMP.match(Path(path).name)
    return (m["name"], int(m["pid"])) if m else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Our temporary files in ``folder`` whose writing process no longer runs (left by a kill or a crash)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for entry in folder.iterdir():
        owner = temp_owner(entry)
        if owner is not None and entry.is_file() and not _alive(owner[1]):
            out.append(entry)
    return sorted(out)


class AtomicFile:
    """A file written under a temporary name in the target folder and renamed into place by ``commit``.

    ``mode`` is an ``open`` mode ("w", "wb", ...) for a handle in ``handle``, or "" when another library writes
    ``tmp`` by path (a video muxer, ``torch.save``). ``discard`` (or leaving a ``with`` block by an exception)
    removes the temporary file; ``commit`` flushes, fsyncs and renames.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> None:
        self.path = Path(path)
        if self.path.is_dir():  # found now, not by the rename after all the writing
            raise InputError(f"cannot write {self.path}: it is a folder, not a file")
        folder = self.path.parent
        self.tmp = temp_path_for(self.path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask applies
        except OSError as exc:
            raise InputError(f"cannot write to output folder {folder}: {exc.strerror or exc}") from None
        os.close(fd)
        try:
            self.handle: IO | None = open(self.tmp, mode, **kwargs) if mode else None
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def commit(self) -> Path:
        """Make the written file appear under its final name (removes the temporary file on failure)."""
        try:
            if self.handle is not None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
                self.handle.close()
            else:
                with open(self.tmp, "rb") as fh:
                    os.fsync(fh.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (also when closing its handle fails, as on a full disk)."""
        try:
            if self.handle is not None and not self.handle.closed:
                self.handle.close()
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write by name; it replaces ``path`` when the block succeeds and is removed
    otherwise."""
    with AtomicFile(path, mode="") as f:
        yield f.tmp


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with AtomicFile(path, "wb") as f:
        f.handle.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = None) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent))


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` through a temporary file and a rename."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


@contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``PATH.lock`` (created if needed) for a read-modify-write of ``path`` that other
    processes may do at the same time; where file locks are unavailable (no ``fcntl``), nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(f"{os.fspath(path)}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
