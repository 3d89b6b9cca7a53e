"""The user's model folder: installed checkpoints by name, added from files or downloaded from URLs.

Location: ``$GOPOSE_HOME/models`` when ``GOPOSE_HOME`` is set, else ``$XDG_DATA_HOME/gopose/models``
(``~/.local/share/gopose/models``). Every function takes an explicit ``root`` too. Each model is
``<name>.pt`` plus ``<name>.json`` (architecture, output contract, sha256, size, origin). ``add`` loads the
checkpoint before installing it, so only checkpoints that load are ever listed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from core.io.files import atomic_path, write_json_atomic
from core.errors import InputError

LOG = logging.getLogger(__name__)

AUTHORS_URL = "https://github.com/hellojialee/OffsetGuided"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class NoModelError(InputError):
    """No model was given and none is installed; the message explains how to get one."""

    def __init__(self, detail: str = "no pose model is installed", root: Path | None = None) -> None:
        where = f" (model folder: {root})" if root else ""
        super().__init__(
            f"{detail}{where}. Get a checkpoint - the paper authors' Hourglass-104 weights "
            f"(PoseNet_77_epoch.pth for COCO, PoseNet_190_epoch.pth for CrowdPose, linked from {AUTHORS_URL}) "
            f"or one trained with `gopose train` - then install it with `gopose models add FILE` "
            f"(add `--arch hourglass104` for the authors' files) or pass `--model FILE`.")


@dataclass
class ModelEntry:
    """One installed model."""

    name: str
    path: Path
    arch: str
    contract: dict
    sha256: str
    size: int
    added: str
    source: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def store_dir(root: str | Path | None = None) -> Path:
    """The model folder (not created)."""
    if root is not None:
        return Path(root)
    home = os.environ.get("GOPOSE_HOME")
    if home:
        return Path(home) / "models"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "gopose" / "models"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def list_models(root: str | Path | None = None) -> list[ModelEntry]:
    """Installed models sorted by name (entries whose file is missing are skipped with a warning)."""
    folder = store_dir(root)
    if not folder.is_dir():
        return []
    entries = []
    for meta in sorted(folder.glob("*.json")):
        try:
            d = json.loads(meta.read_text(encoding="utf-8"))
            entry = ModelEntry(**{**d, "path": folder / Path(d["path"]).name})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            LOG.warning("ignoring unreadable model entry %s: %s", meta, exc)
            continue
        if not entry.path.is_file():
            LOG.warning("model %s: file %s is missing", entry.name, entry.path)
            continue
        entries.append(entry)
    return entries


def get_model(name: str, root: str | Path | None = None) -> ModelEntry | None:
    return next((e for e in list_models(root) if e.name == name), None)


def _validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return name


def add_model(path: str | Path, name: str | None = None, arch: str | None = None, root: str | Path | None = None,
              force: bool = False, source: str = "") -> ModelEntry:
    """Validate (load) the checkpoint at ``path`` and copy it into the model folder as ``name``."""
    from models.checkpoint import load_checkpoint

    src = Path(path)
    if not src.is_file():
        raise InputError(f"checkpoint file not found: {path}")
    name = _validate_name(name or src.stem)
    folder = store_dir(root)
    if get_model(name, folder) is not None and not force:
        raise InputError(f"a model named {name!r} is already installed in {folder} (use --force to replace it)")
    model, _info = load_checkpoint(src, arch=arch, map_location="cpu")
    model_arch = getattr(getattr(model, "config", None), "arch", None) or arch or ""
    contract = model.contract.to_dict()
    del model
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create model folder {folder}: {exc.strerror or exc}") from None
    dst = folder / f"{name}.pt"
    digest = hashlib.sha256()
    try:
        with atomic_path(dst) as tmp, open(src, "rb") as fin, open(tmp, "wb") as fout:
            for block in iter(lambda: fin.read(1 << 20), b""):
                digest.update(block)
                fout.write(block)
    except OSError as exc:
        raise InputError(f"cannot copy {src} into {folder}: {exc.strerror or exc}") from None
    entry = ModelEntry(name=name, path=dst, arch=model_arch, contract=contract, sha256=digest.hexdigest(),
                       size=dst.stat().st_size, added=time.strftime("%Y-%m-%dT%H:%M:%S"),
                       source=source or str(src.resolve()))
    write_json_atomic(folder / f"{name}.json", {**entry.to_dict(), "path": dst.name}, indent=2)
    LOG.info("installed model %s (%s, %s) in %s", name, model_arch, contract.get("spec"), folder)
    return entry


def download_model(url: str, sha256: str, name: str | None = None, arch: str | None = None,
                   root: str | Path | None = None, timeout: float = 30.0, force: bool = False,
                   progress: Callable[[int, int | None], None] | None = None) -> ModelEntry:
    """Download ``url``, check its sha256 (hex) and install it with :func:`add_model`; nothing is installed
    (and no file is left behind) when the download fails or the digest differs."""
    expected = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise InputError(f"sha256 must be 64 hex digits, got {sha256!r}")
    folder = store_dir(root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create model folder {folder}: {exc.strerror or exc}") from None
    base = Path(urllib.request.url2pathname(url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])).stem or "model"
    tmp = folder / f".download-{os.getpid()}-{base}.part"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            for block in iter(lambda: resp.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        if digest.hexdigest() != expected:
            raise InputError(f"download of {url} failed verification: sha256 {digest.hexdigest()} "
                             f"differs from the expected {expected}")
        return add_model(tmp, name=name or base, arch=arch, root=folder, force=force, source=url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        reason = getattr(exc, "reason", None) or exc
        raise InputError(f"cannot download {url}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def resolve_model(model: str | Path | None, root: str | Path | None = None) -> tuple[Path, str | None]:
    """``(checkpoint path, architecture or None)`` for a file path, an installed name, or None (the installed
    model; with several, the most recently added)."""
    folder = store_dir(root)
    if model is None or str(model) == "":
        entries = list_models(folder)
        if not entries:
            raise NoModelError(root=folder)
        entry = max(entries, key=lambda e: (e.added, e.name))
        return entry.path, entry.arch or None
    path = Path(model)
    if path.is_file():
        return path, None
    entry = get_model(str(model), folder)
    if entry is not None:
        return entry.path, entry.arch or None
    if path.suffix or os.sep in str(model):
        raise InputError(f"checkpoint file not found: {model}")
    names = [e.name for e in list_models(folder)]
    if not names:
        raise NoModelError(f"no installed model named {model!r} and no model is installed", root=folder)
    raise InputError(f"no installed model named {model!r}; installed: {', '.join(names)}")


def remove_model(name: str, root: str | Path | None = None) -> None:
    entry = get_model(name, root)
    if entry is None:
        raise InputError(f"no installed model named {name!r}")
    entry.path.unlink(missing_ok=True)
    (store_dir(root) / f"{name}.json").unlink(missing_ok=True)


__all__ = ["NoModelError", "ModelEntry", "store_dir", "list_models", "get_model", "add_model", "download_model",
           "resolve_model", "remove_model", "sha256_file"]
