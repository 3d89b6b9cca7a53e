"""The manifest of one input's outputs, ``OUT/<stem>.manifest.json``: the commit record of ``gopose annotate``.

An :class:`app.sinks.OutputSet` finishes (completes and fsyncs) every output under its temporary name, then
:class:`Manifest` records ``"state": "publishing"`` with the pending renames (final name -> temporary name), then
the outputs are renamed into place, then the manifest says ``"state": "complete"``. A run killed between the two
manifest writes is completed by the next run in that folder (:func:`recover`): every pending temporary file was
already complete, so finishing the renames is safe (roll forward). ``--skip-existing`` trusts only a complete
manifest whose input is unchanged and whose outputs are all present with their recorded sizes (:func:`completed`).

The manifest lists exactly the input's outputs in the folder: the outputs an earlier run of the same input wrote
that a new set does not replace (it was run with fewer ``--formats``) are *superseded* (recorded while publishing,
removed before the set is complete, also by :func:`recover`), never a file GOPose did not write: only names the
earlier manifest lists, of this stem, with the size it recorded (a file changed since is kept, with a warning).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from core.errors import InputError
from core.io.files import stale_temp_files, temp_owner, write_json_atomic

LOG = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
VERSION = 1


def manifest_path(out_dir: str | Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}{MANIFEST_SUFFIX}"


def input_identity(spec: str | Path) -> dict[str, Any]:
    """What identifies an input between runs: its absolute path with size and modification time (a folder of
    images: its image count and a digest of every image's name, size and time, since an image replaced in place
    changes neither the count nor the folder's time; other files, such as the outputs when ``--out`` is that
    folder, are not part of the input), or the URL / source name as given."""
    from app.sources import is_frame_image

    text = str(spec)
    path = Path(text)
    try:
        st = path.stat()
        if not path.is_dir():
            return {"input": input_name(text), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        images = sorted((e for e in os.scandir(path) if is_frame_image(Path(e.name)) and e.is_file()),
                        key=lambda e: e.name)
        files = hashlib.sha256()
        for entry in images:
            est = entry.stat()
            files.update(f"{entry.name}\0{est.st_size}\0{est.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    except OSError:
        return {"input": text}
    return {"input": input_name(text), "images": len(images), "files": files.hexdigest()[:32]}


def input_name(spec: str | Path) -> str:
    """The input as its manifest records it: its absolute path with ``..`` resolved when it exists (``job/../a.mp4``
    from ``job`` and ``a.mp4`` from its parent are one input), else the URL / name as given."""
    path = Path(str(spec))
    return os.path.abspath(path) if path.exists() else str(spec)


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest's content, or None when it is absent, unreadable or not ours. An input path recorded with
    ``..`` (by earlier versions) reads as :func:`input_name` records it now."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("gopose_manifest") != VERSION:
        return None
    if isinstance(data.get("input"), str) and os.path.isabs(data["input"]):
        data["input"] = os.path.normpath(data["input"])
    return data


class Manifest:
    """The journal of one :class:`app.sinks.OutputSet`: ``begin`` before the renames, ``commit`` after them,
    ``discard`` when the set is abandoned. ``details()`` is called at ``begin`` for the recorded facts (frames,
    model, ...)."""

    def __init__(self, path: str | Path, identity: dict[str, Any],
                 details: Callable[[], dict[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.identity = dict(identity)
        self.details = details
        self._data: dict[str, Any] | None = None
        self.removed: list[Path] = []  # earlier outputs of this input that the published set superseded
        self.kept: list[Path] = []     # such outputs left in place: changed since GOPose wrote them

    def begin(self, pending: dict[Path, Path]) -> None:
        self._check_owner()
        outputs = {Path(final).name: {"size": Path(tmp).stat().st_size} for final, tmp in pending.items()}
        data = {"gopose_manifest": VERSION, **self.identity, **(self.details() if self.details else {}),
                "outputs": outputs, "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "state": "publishing",
                "pending": {Path(final).name: Path(tmp).name for final, tmp in pending.items()}}
        superseded = self._superseded(outputs)
        if superseded:
            data["superseded"] = superseded
        write_json_atomic(self.path, data, indent=2)
        self._data = data  # only now is the manifest ours: a failed write leaves an earlier run's in place

    def _superseded(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """The outputs the earlier manifest here lists (a run of this input with other ``--formats``) that this set
        does not replace: ``{name: {"size": recorded size}}``, removed when the set is published."""
        earlier = read_manifest(self.path) or {}
        return {name: {"size": entry.get("size")} for name, entry in (earlier.get("outputs") or {}).items()
                if name not in outputs and isinstance(entry, dict) and _own_output_name(self.path, name)}

    def _check_owner(self) -> None:
        """``InputError`` when the manifest here records another input: a run into the same folder at the same time
        chose this name too and published first (its outputs must not be replaced; a new run picks another name)."""
        other = (read_manifest(self.path) or {}).get("input")
        mine = self.identity.get("input")
        if other is not None and mine is not None and other != mine:
            stem = self.path.name[: -len(MANIFEST_SUFFIX)]
            raise InputError(f"another run into {self.path.parent} wrote the outputs of {other} as {stem}.* "
                             f"meanwhile; none of this input's was kept (run it again to write them under "
                             f"another name)")

    def commit(self) -> None:
        """Record the set as complete, after removing the earlier outputs it supersedes (:attr:`removed`; one
        changed since the earlier run wrote it is kept, :attr:`kept`)."""
        if self._data is None:
            return
        self.removed, self.kept = remove_superseded(self.path, self._data.get("superseded") or {})
        data = {k: v for k, v in self._data.items() if k not in ("pending", "superseded")}
        data["state"] = "complete"
        write_json_atomic(self.path, data, indent=2)
        self._data = None

    def discard(self) -> None:
        """Remove the manifest this journal began (a complete one from an earlier run is left alone)."""
        if self._data is not None:
            self.path.unlink(missing_ok=True)
            self._data = None


def _own_output_name(manifest: Path, name: str) -> bool:
    """True for a plain file name of the manifest's own stem (``clip.csv`` beside ``clip.manifest.json``): the only
    names a manifest may have GOPose remove."""
    stem = manifest.name[: -len(MANIFEST_SUFFIX)]
    return (isinstance(name, str) and name == Path(name).name and name.startswith(f"{stem}.")
            and name != manifest.name)


def remove_superseded(manifest: Path, superseded: dict[str, Any]) -> tuple[list[Path], list[Path]]:
    """Remove the earlier outputs ``superseded`` lists (``{name: {"size": ...}}``) beside ``manifest``, each only
    when named like its outputs and while it still has the size GOPose recorded for it; ``(removed, kept)``. A kept
    file (changed since, by someone else) is named in a warning: it is no longer part of the input's outputs."""
    removed: list[Path] = []
    kept: list[Path] = []
    for name, entry in superseded.items():
        if not _own_output_name(manifest, name) or not isinstance(entry, dict):
            continue
        path = manifest.parent / name
        try:
            size = path.stat().st_size
        except OSError:
            continue  # already gone
        if size != entry.get("size"):
            LOG.warning("kept %s: an earlier run wrote it for this input, but it changed since; it is not one of "
                        "the outputs of this run (see the manifest)", path)
            kept.append(path)
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed, kept


def completed(path: str | Path, identity: dict[str, Any], outputs: Iterable[Path]) -> dict[str, Any] | None:
    """The complete manifest at ``path`` when it describes ``identity`` and lists every one of ``outputs``,
    each present with its recorded size; else None."""
    data = read_manifest(path)
    if data is None or data.get("state") != "complete":
        return None
    if any(data.get(k) != v for k, v in identity.items()):
        return None
    listed = data.get("outputs") or {}
    for out in outputs:
        entry = listed.get(Path(out).name)
        try:
            if entry is None or Path(out).stat().st_size != entry.get("size"):
                return None
        except OSError:
            return None
    return data


@dataclass
class Recovery:
    """What :func:`recover` did: inputs whose interrupted publishing it completed (or had to drop), and the
    temporary files of dead runs it removed."""

    completed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.completed or self.dropped or self.removed)


def recover(out_dir: str | Path, names: set[str] | None = None) -> Recovery:
    """Finish what killed runs left in ``out_dir``: complete the renames of publishing manifests whose writer is
    gone, then remove the temporary files of dead processes. ``names`` limits both to these final file names
    (the outputs and manifests of this run's inputs), so concurrent shards never touch each other's files."""
    folder = Path(out_dir)
    report = Recovery()
    if not folder.is_dir():
        return report
    stale = set(stale_temp_files(folder))
    for mf in sorted(folder.glob(f"*{MANIFEST_SUFFIX}")):
        if names is not None and mf.name not in names:
            continue
        data = read_manifest(mf)
        if data is None or data.get("state") != "publishing":
            continue
        temps = {folder / final: folder / tmp for final, tmp in (data.get("pending") or {}).items()}
        if any(t.exists() and t not in stale for t in temps.values()):
            continue  # its writer still runs
        for final, tmp in temps.items():
            if tmp.exists():
                os.replace(tmp, final)
                stale.discard(tmp)
        if all(final.exists() for final in temps):
            remove_superseded(mf, data.pop("superseded", None) or {})
            data.pop("pending", None)
            data["state"] = "complete"
            write_json_atomic(mf, data, indent=2)
            report.completed.append(str(data.get("input", mf.name)))
        else:
            mf.unlink(missing_ok=True)
            report.dropped.append(str(data.get("input", mf.name)))
    for tmp in sorted(stale):
        owner = temp_owner(tmp)
        if names is not None and (owner is None or owner[0] not in names):
            continue
        tmp.unlink(missing_ok=True)
        report.removed.append(tmp)
    if report:
        LOG.info("recovered %s: completed %d, dropped %d, removed %d temporary files", folder,
                 len(report.completed), len(report.dropped), len(report.removed))
    return report


__all__ = ["MANIFEST_SUFFIX", "Manifest", "Recovery", "completed", "input_identity", "manifest_path",
           "read_manifest", "recover", "remove_superseded"]
