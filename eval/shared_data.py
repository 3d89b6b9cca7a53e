"""Where the shared test and benchmark data lives: ``$GOPOSE_DATA`` or ``../shared/data`` beside the project."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared data folder (it may not exist on a user's checkout)."""
    env = os.environ.get("GOPOSE_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


def shared_path(relative: str) -> Path:
    return shared_data_dir() / relative
