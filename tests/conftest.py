"""Shared fixtures: the real data folder (skip with a reason when absent) and offscreen Qt."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from eval.shared_data import shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent (set GOPOSE_DATA or place ../shared/data)")
    return path


@pytest.fixture(scope="session")
def coco_538(data_dir: Path) -> Path:
    return data_dir / "coco" / "person_keypoints_val2017_538img.json"
