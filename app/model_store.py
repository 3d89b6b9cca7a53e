"""The user's model folder: installed checkpoints by name, added from files or downloaded from URLs.

Location: ``$GOPOSE_HOME/models`` when ``GOPOSE_HOME`` is set, else ``$XDG_DATA_HOME/gopose/models``
(``~/.local/share/gopose/models``). Every function takes an explicit ``root`` too. Each model is
``<name>.pt`` plus ``<name>.json`` (architecture, output contract, sha256, size, origin). ``add`` loads the
checkpoint before installing it, so only checkpoints that load are ever listed.

Which model runs when none is named (:func:`choose_model`), in this order: the user's explicit default
(``gopose models default NAME``, stored in ``<folder>/.default-model``); else the built-in model shipped as package
data (``resources/models/default.pt``, listed as ``default``) when it exists; else the only installed model; with
several installed and no default, an error asks to choose one (adding a model never changes the default).
``--model`` always wins.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from core.io.files import (AtomicFile, atomic_path, exclusive, stale_temp_files, write_json_atomic,
                           write_text_atomic)
from core.errors import InputError

LOG = logging.getLogger(__name__)

AUTHORS_URL = "https://github.com/hellojialee/OffsetGuided"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would let a trailing newline in
BUILTIN_NAME = "default"  # the built-in model's name (reserved)
DEFAULT_FILE = ".default-model"  # in the model folder: the name chosen with `gopose models default NAME`
STORE_LOCK = ".store"  # <folder>/.store.lock: one install at a time, so each .pt matches its .json


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
    builtin: bool = False

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
        hint = _name_from_file(name)
        raise InputError(f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (max 64), "
                         f"e.g. {hint!r}")
    if name == BUILTIN_NAME:
        raise InputError(f"the model name {BUILTIN_NAME!r} is reserved for the built-in model; choose another")
    return name


def _name_from_file(stem: str) -> str:
    """A valid model name made from a file name (``my model (v2)`` -> ``my-model-v2``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64]
    return name if name and name != BUILTIN_NAME else f"{name or 'model'}-1"


def _name_from_url(url: str) -> str:
    """A valid model name made from the file name ending a URL's path, %-escapes decoded
    (``https://host/my%20model.pt?dl=1`` -> ``my-model``); an escaped ``/`` (``%2F``) is part of that one name, so
    ``coco%2Fhg.pt`` -> ``coco-hg``, never a folder."""
    segment = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    file_name = urllib.parse.unquote(segment).replace("/", "-").replace("\\", "-")
    return _name_from_file(Path(file_name).stem)


def builtin_model_path() -> Path:
    """Where the built-in model ships: ``resources/models/default.pt`` (package data; may not exist)."""
    import resources

    return Path(resources.__file__).resolve().parent / "models" / "default.pt"


def builtin_entry(builtin: str | Path | None = None) -> ModelEntry | None:
    """The built-in model as a listing entry (reads the file's header; sha256 of its bytes), or None."""
    path = builtin_model_path() if builtin is None else Path(builtin)
    if not path.is_file():
        return None
    from models.checkpoint import read_checkpoint  # torch: only when there is a file to read

    config = read_checkpoint(path).get("model_config") or {}
    return ModelEntry(name=BUILTIN_NAME, path=path, arch=str(config.get("arch", "")),
                      contract=dict(config.get("contract") or {}), sha256=sha256_file(path),
                      size=path.stat().st_size, added="", source="built-in", builtin=True)


def get_default(root: str | Path | None = None) -> str | None:
    """The name chosen with ``gopose models default NAME``, or None."""
    try:
        name = (store_dir(root) / DEFAULT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return name or None


def set_default(name: str, root: str | Path | None = None, builtin: str | Path | None = None) -> "ModelChoice":
    """Make ``name`` (an installed model, or ``default`` for the built-in one) the default model."""
    folder = store_dir(root)
    builtin_path = builtin_model_path() if builtin is None else Path(builtin)
    if name == BUILTIN_NAME:
        if not builtin_path.is_file():
            raise InputError(f"this installation has no built-in model ({builtin_path} is absent)")
        choice = ModelChoice(BUILTIN_NAME, builtin_path, None, "the built-in model, set as default")
    else:
        entry = get_model(name, folder)
        if entry is None:
            names = [e.name for e in list_models(folder)]
            listed = f"; installed: {', '.join(names)}" if names else "; none is installed"
            raise InputError(f"no installed model named {name!r}{listed}")
        choice = ModelChoice(entry.name, entry.path, entry.arch or None, "the default set with `gopose models default`")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / DEFAULT_FILE, name + "\n")
    except OSError as exc:
        raise InputError(f"cannot write the default model setting in {folder}: {exc.strerror or exc}") from None
    return choice


def clear_default(root: str | Path | None = None) -> bool:
    """Forget the explicit default; True when one was set."""
    path = store_dir(root) / DEFAULT_FILE
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


@dataclass
class ModelChoice:
    """The model a run uses and why (printed at the start of every run)."""

    name: str
    path: Path
    arch: str | None
    reason: str

    def describe(self) -> str:
        return f"{self.name} ({self.reason}): {self.path}"


def _remove_stale(folder: Path) -> None:
    for tmp in stale_temp_files(folder):
        tmp.unlink(missing_ok=True)


def _check_free(name: str, folder: Path, force: bool) -> None:
    """``InputError`` when ``name`` is installed in ``folder`` and ``force`` does not allow replacing it."""
    if get_model(name, folder) is not None and not force:
        raise InputError(f"a model named {name!r} is already installed in {folder} (use --force to replace it)")


def add_model(path: str | Path, name: str | None = None, arch: str | None = None, root: str | Path | None = None,
              force: bool = False, source: str = "") -> ModelEntry:
    """Validate (load) the checkpoint at ``path`` and copy it into the model folder as ``name``."""
    from models.checkpoint import load_checkpoint

    src = Path(path)
    if src.is_dir():
        raise InputError(f"{path} is a folder, not a checkpoint file")
    if not src.is_file():
        raise InputError(f"checkpoint file not found: {path}")
    name = _validate_name(name if name is not None else _name_from_file(src.stem))
    folder = store_dir(root)
    _check_free(name, folder, force)
    model, _info = load_checkpoint(src, arch=arch, map_location="cpu")
    model_arch = getattr(getattr(model, "config", None), "arch", None) or arch or ""
    contract = model.contract.to_dict()
    del model
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create model folder {folder}: {exc.strerror or exc}") from None
    _remove_stale(folder)
    try:
        with exclusive(folder / STORE_LOCK):
            _check_free(name, folder, force)  # again: another add may have installed it while this one loaded
            entry = _install(src, name, folder, model_arch, contract, source or str(src.resolve()))
    except OSError as exc:
        raise InputError(f"cannot copy {src} into {folder}: {exc.strerror or exc}") from None
    LOG.info("installed model %s (%s, %s) in %s", name, model_arch, contract.get("spec"), folder)
    return entry


def _install(src: Path, name: str, folder: Path, arch: str, contract: dict, source: str) -> ModelEntry:
    """Copy ``src`` to ``<folder>/<name>.pt``, then write its ``<name>.json`` (under :data:`STORE_LOCK`)."""
    dst = folder / f"{name}.pt"
    digest = hashlib.sha256()
    with atomic_path(dst) as tmp, open(src, "rb") as fin, open(tmp, "wb") as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            digest.update(block)
            fout.write(block)
    entry = ModelEntry(name=name, path=dst, arch=arch, contract=contract, sha256=digest.hexdigest(),
                       size=dst.stat().st_size, added=time.strftime("%Y-%m-%dT%H:%M:%S"), source=source)
    write_json_atomic(folder / f"{name}.json", {**entry.to_dict(), "path": dst.name}, indent=2)
    return entry


def _is_html(head: bytes) -> bool:
    """Whether the first bytes of a download are an HTML page (a sign-in or share page instead of the file)."""
    return head.lstrip()[:14].lower().startswith((b"<!doctype html", b"<html"))


def download_model(url: str, sha256: str, name: str | None = None, arch: str | None = None,
                   root: str | Path | None = None, timeout: float = 30.0, force: bool = False,
                   progress: Callable[[int, int | None], None] | None = None) -> ModelEntry:
    """Download ``url``, check its sha256 (hex) and install it with :func:`add_model`; nothing is installed
    (and no file is left behind) when the download fails or the digest differs."""
    expected = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise InputError(f"sha256 must be 64 hex digits, got {sha256!r}")
    folder = store_dir(root)
    from_url = _name_from_url(url)
    name = _validate_name(name if name is not None else from_url)
    _check_free(name, folder, force)  # before the download, not after it
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create model folder {folder}: {exc.strerror or exc}") from None
    _remove_stale(folder)
    part = AtomicFile(folder / f"{from_url}.download", "wb")  # never committed: removed below
    tmp = part.tmp
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, part.handle as out:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            page = resp.headers.get_content_type() == "text/html"
            done = 0
            for block in iter(lambda: resp.read(1 << 20), b""):
                page = page or (done == 0 and _is_html(block))
                digest.update(block)
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        if total is not None and done < total:
            raise InputError(f"download of {url} is incomplete: {done} of {total} bytes arrived before the "
                             f"connection closed; nothing was installed, try again")
        if digest.hexdigest() != expected:
            what = ("the server sent a web page (HTML), not the file; is the URL a direct download link? "
                    if page else "")
            raise InputError(f"download of {url} failed verification: {what}sha256 {digest.hexdigest()} "
                             f"differs from the expected {expected}")
        try:
            return add_model(tmp, name=name, arch=arch, root=folder, force=force, source=url)
        except InputError as exc:  # name what the user asked for, not the temporary file it was read from
            raise InputError(str(exc).replace(str(tmp), url)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        reason = getattr(exc, "reason", None) or exc
        raise InputError(f"cannot download {url}: {type(exc).__name__ if not str(reason) else reason}") from None
    finally:
        part.discard()


def choose_model(model: str | Path | None, root: str | Path | None = None,
                 builtin: str | Path | None = None) -> ModelChoice:
    """The model to run: ``model`` (a checkpoint file or an installed name) when given, else the default (see
    the module docstring). ``builtin`` overrides where the built-in model is looked for."""
    folder = store_dir(root)
    builtin_path = builtin_model_path() if builtin is None else Path(builtin)
    if model is not None and str(model) != "":
        return _named_model(str(model), folder, builtin_path)
    name = get_default(folder)
    if name == BUILTIN_NAME and builtin_path.is_file():
        return ModelChoice(BUILTIN_NAME, builtin_path, None, "the built-in model, set as default")
    if name is not None:
        entry = get_model(name, folder)
        if entry is None:
            raise InputError(f"the default model {name!r} is not installed in {folder}: choose another with "
                             f"`gopose models default NAME` or pass --model")
        return ModelChoice(entry.name, entry.path, entry.arch or None, "the default set with `gopose models default`")
    if builtin_path.is_file():
        return ModelChoice(BUILTIN_NAME, builtin_path, None, "the built-in model")
    entries = list_models(folder)
    if len(entries) == 1:
        return ModelChoice(entries[0].name, entries[0].path, entries[0].arch or None, "the only installed model")
    if entries:
        raise InputError(f"{len(entries)} models are installed ({', '.join(e.name for e in entries)}) and none is "
                         f"the default: choose one with `gopose models default NAME` or pass --model")
    raise NoModelError(root=folder)


def _named_model(model: str, folder: Path, builtin_path: Path) -> ModelChoice:
    path = Path(model)
    if path.is_file():
        return ModelChoice(path.stem, path, None, "--model")
    entry = get_model(model, folder)
    if entry is not None:  # also when a folder of that name happens to be in the working directory
        return ModelChoice(entry.name, entry.path, entry.arch or None, "--model")
    if path.is_dir():  # named without its option: `--model` and `--checkpoint` are one
        best = path / "best.pt"
        hint = f" (a training run? its best checkpoint is {best})" if best.is_file() else ""
        raise InputError(f"{model} is a folder, not a checkpoint file or an installed model name{hint}")
    if model == BUILTIN_NAME and builtin_path.is_file():
        return ModelChoice(BUILTIN_NAME, builtin_path, None, "--model, the built-in model")
    if path.suffix or os.sep in model:
        raise InputError(f"checkpoint file not found: {model}")
    names = [e.name for e in list_models(folder)]
    if not names:
        raise NoModelError(f"no installed model named {model!r} and no model is installed", root=folder)
    raise InputError(f"no installed model named {model!r}; installed: {', '.join(names)}")


def resolve_model(model: str | Path | None, root: str | Path | None = None) -> tuple[Path, str | None]:
    """``(checkpoint path, architecture or None)`` for a file path, an installed name, or None (the default
    model, see :func:`choose_model`)."""
    choice = choose_model(model, root)
    return choice.path, choice.arch


def remove_model(name: str, root: str | Path | None = None) -> bool:
    """Uninstall ``name`` (also one whose ``.pt`` was deleted by hand); True when it was the explicit default
    (which is then cleared)."""
    if name == BUILTIN_NAME:
        raise InputError(f"the built-in model {BUILTIN_NAME!r} is part of the package and cannot be removed "
                         "(choose another default with `gopose models default NAME`)")
    folder = store_dir(root)
    files = (folder / f"{name}.pt", folder / f"{name}.json")
    if not _NAME.match(name) or not any(f.exists() for f in files):
        installed = ", ".join(e.name for e in list_models(root)) or "none"
        raise InputError(f"no installed model named {name!r} in {folder} (installed: {installed})")
    with exclusive(folder / STORE_LOCK):  # not while an add of the same name writes its pair
        for f in files:
            f.unlink(missing_ok=True)
        if get_default(root) == name:
            clear_default(root)
            return True
    return False


__all__ = ["NoModelError", "ModelEntry", "ModelChoice", "BUILTIN_NAME", "store_dir", "list_models", "get_model",
           "add_model", "download_model", "choose_model", "resolve_model", "remove_model", "sha256_file",
           "builtin_model_path", "builtin_entry", "get_default", "set_default", "clear_default"]
