"""Run checkpoints: everything needed to continue a run exactly, written atomically, with retention.

A run checkpoint is a ``models.checkpoint`` file (so ``gopose eval --checkpoint`` and ``load_checkpoint`` read
it) whose ``extra`` holds the training state: optimizer, GradScaler, LR scheduler, the data position (epoch and
batches done in it) and the RNG states of Python, NumPy and torch, all as plain containers and tensors so it
loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import InputError
from core.io.files import stale_temp_files, temp_owner

LOG = logging.getLogger(__name__)

CKPT_RE = re.compile(r"^ckpt_(\d{8})\.pt$")


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) global RNG states as weights-only-loadable values."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # a resume that sees fewer GPUs restores theirs only
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])


def pack_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """Optimizer state with its integer parameter keys kept as ``[key, value]`` pairs (checkpoint dicts get
    string keys, which ``Optimizer.load_state_dict`` would not match to parameters)."""
    return {"state": [[int(k), v] for k, v in state["state"].items()], "param_groups": state["param_groups"]}


def unpack_optimizer_state(packed: dict[str, Any]) -> dict[str, Any]:
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in packed["param_groups"]]
    return {"state": {int(k): v for k, v in packed["state"]}, "param_groups": groups}


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"ckpt_{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's step/epoch checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CKPT_RE.match(p.name))


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint of ``run_dir`` (``InputError`` naming the folder when there is none)."""
    if not Path(run_dir).is_dir():
        raise InputError(f"run folder {run_dir} does not exist")
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise InputError(f"run folder {run_dir} holds no checkpoints/ckpt_*.pt to resume from")
    return ckpts[-1]


def prune(run_dir: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step/epoch checkpoints (``best.pt`` is separate), and the temporary
    checkpoint files of writers that were killed mid-write (SIGKILL, the OOM killer: nothing removed them)."""
    for old in list_checkpoints(run_dir)[:-keep_last] + _stale_checkpoint_temps(run_dir):
        try:
            old.unlink()
        except FileNotFoundError:
            pass


def _stale_checkpoint_temps(run_dir: Path) -> list[Path]:
    """The ``checkpoints/`` temporary files of a checkpoint whose writing process no longer runs."""
    return [p for p in stale_temp_files(Path(run_dir) / "checkpoints") if CKPT_RE.match(temp_owner(p)[0])]


def load_training_state(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (weights only); ``InputError`` when it is not a run checkpoint."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling or I/O failure is a bad checkpoint file
        raise InputError(f"checkpoint {path} cannot be read: {exc}") from None
    extra = ckpt.get("extra") if isinstance(ckpt, dict) else None
    if not isinstance(extra, dict) or "train_state" not in extra:
        raise InputError(f"checkpoint {path} is not a training checkpoint of a GOPose run (no train_state)")
    return ckpt


