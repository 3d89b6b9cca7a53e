"""Remembered settings and recent files on one ``QSettings`` instance (no process-global configuration)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from PyQt5.QtCore import QSettings

ORGANISATION = "GOPose"
APPLICATION = "gopose"
MAX_RECENT = 10


@dataclass
class ViewerSettings:
    """Everything the window remembers between runs (defaults work without any saved state)."""

    model: str = ""            # the model used last time (name or checkpoint path): used at start only when the
    #                            default model (as `gopose annotate` chooses it) is ambiguous
    device: str = "auto"       # auto | cpu | cuda
    precision: str = "auto"    # auto | fp32 | fp16 | bf16 (AMP on CUDA only)
    backend: str = "auto"      # auto | torch | onnx | openvino | onnx-int8 | openvino-int8 (models.backends)
    long_edge: int = 512
    flip: bool = False
    keypoint_threshold: float = 0.04
    person_threshold: float = 0.0
    smoothing: bool = True
    show_boxes: bool = False
    show_ids: bool = False
    speed: float = 1.0
    last_dir: str = ""
    export_formats: str = "coco,jsonl,csv"


def default_qsettings() -> QSettings:
    """The user's settings store (an INI file in the user's config folder)."""
    return QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANISATION, APPLICATION)


class SettingsStore:
    """Typed access to a ``QSettings``: ``load()``/``save()`` a ``ViewerSettings``, a recent-files list."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.qsettings = qsettings if qsettings is not None else default_qsettings()

    def load(self) -> ViewerSettings:
        out = ViewerSettings()
        for f in fields(ViewerSettings):
            key = f"viewer/{f.name}"
            if not self.qsettings.contains(key):
                continue
            raw = self.qsettings.value(key)
            default = getattr(out, f.name)
            try:
                if isinstance(default, bool):
                    value = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
                else:
                    value = type(default)(raw)
            except (TypeError, ValueError):
                continue  # a corrupt entry falls back to the default
            setattr(out, f.name, value)
        return out

    def save(self, settings: ViewerSettings) -> None:
        for name, value in asdict(settings).items():
            self.qsettings.setValue(f"viewer/{name}", value)
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
