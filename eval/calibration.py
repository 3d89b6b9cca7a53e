"""The INT8 calibration images of GOPose's models: LSPET ``train`` and COCO ``train2017_mini`` from the shared data
(never an evaluation set). Absent on a user's machine without the shared data folder (then the INT8 builder asks for
``--calibration DIR``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from eval.shared_data import shared_path
from models.backends.int8 import DEFAULT_IMAGES, CalibrationSource, calibration_images


def default_sources() -> list[CalibrationSource]:
    """The shared calibration sources that exist here."""
    lspet = shared_path("lspet")
    coco = shared_path("coco/train2017_mini/images")
    out = []
    if (lspet / "annotations.json").is_file() and (lspet / "images").is_dir():
        out.append(CalibrationSource(lspet / "images", lspet / "annotations.json", split="train"))
    if coco.is_dir():
        out.append(CalibrationSource(coco))
    return out


def sources_from(folders: Sequence[str | Path] | None) -> list[CalibrationSource]:
    """``--calibration DIR ...`` as sources, else the shared defaults."""
    return [CalibrationSource(Path(f)) for f in folders] if folders else default_sources()


def default_images(folders: Sequence[str | Path] | None = None, limit: int = DEFAULT_IMAGES) -> list[Path]:
    """The calibration images: ``folders`` when given, else the shared LSPET train + COCO train2017_mini."""
    sources = sources_from(folders)
    return calibration_images(sources, limit) if sources else []
