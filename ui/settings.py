"""Remembered settings and recent files on one ``QSettings`` instance (no process-global configuration).

The input size and the decoder thresholds are *overrides*: None (the default, not stored) means "the loaded
model's own" (its codec's ``long_edge`` and tuned decoder defaults); a value is one the user chose. Files written
before settings version 2 stored the window's fixed defaults (512 px, 0.04, 0.0) in those fields, so their values
there are read as unset."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from PyQt5.QtCore import QSettings

from core.geometry import long_edge_problem

ORGANISATION = "GOPose"
APPLICATION = "gopose"
MAX_RECENT = 10
VERSION = 2                   # settings layout; 1 (no version key): model-tuned fields were always written
VERSION_KEY = "viewer/settings_version"
GROUPS = ("viewer", "recent", "window")  # the groups GOPose writes: a file with none of them is not its settings
MAX_SETTINGS_BYTES = 1 << 20             # GOPose's settings take a few kB: a bigger file is something else


def _long_edge(raw: Any) -> int:
    value = int(raw)
    problem = long_edge_problem(value)
    if problem is not None:
        raise ValueError(f"long edge {problem}")
    return value


def _fraction(raw: Any, low_open: bool) -> float:
    value = float(raw)
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ValueError(f"threshold {value} out of range")
    return value


#: the settings a model is tuned for (None = the model's own) and how a stored value is read back
MODEL_TUNED: dict[str, Callable[[Any], Any]] = {
    "long_edge": _long_edge,
    "keypoint_threshold": lambda raw: _fraction(raw, low_open=True),
    "person_threshold": lambda raw: _fraction(raw, low_open=False),
}
#: the threshold settings -> the decoder settings (``core.decoder.DecoderConfig`` fields) they set
DECODER_FIELDS = {"keypoint_threshold": "threshold", "person_threshold": "person_threshold"}


@dataclass
class ViewerSettings:
    """Everything the window remembers between runs (defaults work without any saved state)."""

    model: str = ""            # the model used last time (name or checkpoint path): used at start only when the
    #                            default model (as `gopose annotate` chooses it) is ambiguous
    device: str = "auto"       # auto | cpu | cuda
    precision: str = "auto"    # auto | fp32 | fp16 | bf16 (AMP on CUDA only)
    backend: str = "auto"      # auto | torch | onnx | openvino | onnx-int8 | openvino-int8 (models.backends)
    long_edge: int | None = None             # the user's input size; None: the model's own (codec long_edge)
    flip: bool = False
    keypoint_threshold: float | None = None  # the user's decoder thresholds; None: the model's tuned ones
    person_threshold: float | None = None
    smoothing: bool = True
    show_boxes: bool = False
    show_ids: bool = False
    speed: float = 1.0
    last_dir: str = ""
    export_formats: str = "coco,jsonl,csv"

    def overrides(self) -> dict[str, float]:
        """The model-tuned settings the user set (the others are the model's own)."""
        return {name: getattr(self, name) for name in MODEL_TUNED if getattr(self, name) is not None}

    def clear_overrides(self) -> None:
        """Back to the model's own input size and thresholds."""
        for name in MODEL_TUNED:
            setattr(self, name, None)


def _read(raw: Any, default: Any, parse: Callable[[Any], Any] | None) -> Any:
    """A stored value as the type of its field (``parse`` for the model-tuned ones); ValueError when corrupt."""
    if parse is not None:
        return parse(raw)
    if isinstance(default, bool):
        return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
    if isinstance(default, str) and isinstance(raw, list):  # Qt reads a hand-written unquoted "a,b" as a list
        return ",".join(str(part).strip() for part in raw)
    return type(default)(raw)


def default_qsettings() -> QSettings:
    """The user's settings store (an INI file in the user's config folder)."""
    return QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANISATION, APPLICATION)


def settings_file_problem(path: str | Path) -> str | None:
    """Why ``path`` must not be used as the settings file (saving would overwrite what it holds), or None when it
    can: a file that does not exist yet, an empty one, or an INI file holding GOPose's settings. Reads nothing
    bigger than ``MAX_SETTINGS_BYTES``."""
    file = Path(path)
    if not file.exists():
        return None
    if not file.is_file():
        return "is not a regular file"
    not_ours = "is not a GOPose settings (INI) file"
    if file.stat().st_size > MAX_SETTINGS_BYTES:
        return not_ours
    try:
        data = file.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not data.strip():
        return None
    if b"\0" in data:
        return not_ours
    qsettings = QSettings(str(file), QSettings.IniFormat)
    if qsettings.status() != QSettings.NoError:
        return not_ours
    if not any(key.split("/", 1)[0] in GROUPS for key in qsettings.allKeys()):
        sections = ", ".join(f"[{g}]" for g in GROUPS[:-1]) + f" or [{GROUPS[-1]}]"
        return f"{not_ours} (it has no {sections} section)"
    return None


class SettingsStore:
    """Typed access to a ``QSettings``: ``load()``/``save()`` a ``ViewerSettings``, a recent-files list."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.qsettings = qsettings if qsettings is not None else default_qsettings()

    def version(self) -> int:
        """The layout version of the stored settings (1 for files written before versions were stored)."""
        try:
            return int(self.qsettings.value(VERSION_KEY, 1))
        except (TypeError, ValueError):
            return 1

    def load(self) -> ViewerSettings:
        """The stored settings; a missing or corrupt entry keeps its default, and the model-tuned fields of a file
        written before version 2 stay unset (the model's own)."""
        out = ViewerSettings()
        legacy = self.version() < VERSION
        for f in fields(ViewerSettings):
            key = f"viewer/{f.name}"
            if not self.qsettings.contains(key) or (legacy and f.name in MODEL_TUNED):
                continue
            try:
                value = _read(self.qsettings.value(key), getattr(out, f.name), MODEL_TUNED.get(f.name))
            except (TypeError, ValueError):
                continue  # a corrupt entry falls back to the default
            setattr(out, f.name, value)
        return out

    def save(self, settings: ViewerSettings) -> None:
        """Store ``settings``; an unset override (None) is removed, so the model's own value applies."""
        for name, value in asdict(settings).items():
            if value is None:
                self.qsettings.remove(f"viewer/{name}")
            else:
                self.qsettings.setValue(f"viewer/{name}", value)
        self.qsettings.setValue(VERSION_KEY, VERSION)
        self.qsettings.sync()

    def recent_files(self) -> list[str]:
        raw = self.qsettings.value("recent/files", [])
        if isinstance(raw, str):
            raw = [raw] if raw else []
        return [str(x) for x in (raw or [])][:MAX_RECENT]

    def add_recent(self, source: str) -> list[str]:
        """Move ``source`` (a file path, URL or ``webcam:N``) to the top of the recent list."""
        if source and "://" not in source and not source.startswith("webcam:"):
            source = str(Path(source).resolve())
        items = [source] + [s for s in self.recent_files() if s != source]
        items = items[:MAX_RECENT]
        self.qsettings.setValue("recent/files", items)
        self.qsettings.sync()
        return items

    def clear_recent(self) -> None:
        self.qsettings.setValue("recent/files", [])
        self.qsettings.sync()

    def geometry(self):
        return self.qsettings.value("window/geometry")

    def save_geometry(self, data) -> None:
        self.qsettings.setValue("window/geometry", data)
