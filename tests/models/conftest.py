"""Fixtures for the network tests: the authors' Hourglass-104 filled with the data README's deterministic weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch


def deterministic_state_dict(layout: list) -> dict[str, torch.Tensor]:
    """Fill every entry of an ordered ``[key, shape]`` layout by the rule in ../shared/data/README.md."""
    out = {}
    for k, (key, shape) in enumerate(layout):
        n = int(np.prod(shape)) if shape else 1
        s = np.sin(0.7 * np.arange(n, dtype=np.float64) + k).reshape(shape)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        if key.endswith("running_var"):
            v = 1 + 0.25 * (1 + s)
        elif key.endswith("running_mean"):
            v = 0.01 * s
        elif len(shape) == 1 and key.endswith(".weight"):
            v = 0.5 + 0.1 * s
        elif key.endswith(".bias"):
            v = 0.01 * s
        else:
            v = s * np.sqrt(1.0 / np.prod(shape[1:]))
        out[key] = torch.from_numpy(np.asarray(v, dtype=np.float32))
    return out


@pytest.fixture(scope="session")
def hg_dir(data_dir: Path) -> Path:
    return data_dir / "hourglass104"


@pytest.fixture(scope="session")
def hg_layout(hg_dir: Path) -> dict:
    return json.loads((hg_dir / "state_dict_layout.json").read_text())


@pytest.fixture(scope="session")
def hg_reference(hg_dir: Path) -> dict[str, np.ndarray]:
    with np.load(hg_dir / "reference_outputs.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def hg_input() -> torch.Tensor:
    return torch.from_numpy(np.sin(0.001 * np.arange(3 * 128 * 128)).reshape(1, 3, 128, 128).astype(np.float32))


@pytest.fixture(scope="session")
def hg_weights(hg_layout: dict) -> dict[str, torch.Tensor]:
    return deterministic_state_dict(hg_layout["hmp_omp"])


@pytest.fixture(scope="session")
def hourglass(hg_weights):
    """One Hourglass-104 (COCO, no scale head) for the whole session; tests must not modify its weights."""
    from models.factory import build_model, make_config
    model = build_model(make_config("hourglass104"))
    model.load_state_dict(hg_weights)
    return model.eval()
