"""Fixtures for the app tests: the shared videos, damaged copies of them, real poses and a real network."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.keypoints import COCO
from core.poses import Poses


@pytest.fixture(scope="session")
def videos(data_dir: Path) -> Path:
    return data_dir / "videos"


@pytest.fixture(scope="session")
def street_video(videos: Path) -> Path:
    return videos / "street_5frames_960x540.mp4"


@pytest.fixture(scope="session")
def ped_video(videos: Path) -> Path:
    return videos / "pedestrians_480x360.mp4"


@pytest.fixture
def without_builtin_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installation whose built-in model is absent (a source checkout without it, or a user who removed it):
    the package's model is looked for at a path that does not exist. Returns that path."""
    from app import model_store

    absent = tmp_path / "no_builtin" / "default.pt"
    monkeypatch.setattr(model_store, "builtin_model_path", lambda: absent)
    return absent


@pytest.fixture(scope="session")
def coco_people(coco_538: Path) -> list[Poses]:
    """Ground-truth people of the real COCO annotations, one Poses per image with at least two people."""
    data = json.loads(coco_538.read_text())
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        if ann.get("num_keypoints", 0) >= 8 and not ann.get("iscrowd"):
            kp = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
            kp[:, 2] = np.where(kp[:, 2] > 0, 1.0, 0.0)
            by_image.setdefault(ann["image_id"], []).append(kp)
    out = []
    for kps in by_image.values():
        if len(kps) >= 2:
            out.append(Poses(np.stack(kps), np.linspace(0.9, 0.5, len(kps))))
    return out


@pytest.fixture(scope="session")
def random_model():
    """A real, randomly initialised real-time network (seed 0)."""
    import torch

    from core.contract import PoseContract
    from models.config import ModelConfig
    from models.factory import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig("realtime", PoseContract(COCO), {}))


@pytest.fixture(scope="session")
def estimator(random_model):
    """The random network with a very low decoder threshold, so its (meaningless but real) outputs contain
    people; small input for speed."""
    from app.engine import EngineConfig, PoseEstimator
    from core.decoder import DecoderConfig

    return PoseEstimator(random_model, EngineConfig(device="cpu", long_edge=256, backend="torch",
                                                    decoder=DecoderConfig(threshold=1e-4)))


def damaged_copy(src: Path, dst: Path, *, keep_fraction: float | None = None, overwrite: int = 0,
                 seed: int = 0) -> Path:
    """A truncated copy (``keep_fraction`` of the bytes) and/or one with ``overwrite`` random 2 kB blocks
    overwritten in the middle of the file."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    for off in np.linspace(len(data) * 0.1, len(data) * 0.9, overwrite).astype(int) if overwrite else []:
        data[off:off + 2048] = rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    if keep_fraction is not None:
        data = data[: int(len(data) * keep_fraction)]
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="session")
def make_damaged():
    return damaged_copy


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, random_model) -> Path:
    """The estimator's real random network saved as a GOPose checkpoint."""
    from models.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "realtime_random.pt", random_model, epoch=0)
