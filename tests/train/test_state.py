"""Run checkpoints: retention and what a killed writer leaves behind."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from train import state as S

_KILLED_WRITER = """
import os, signal, sys
from core.io.files import AtomicFile
f = AtomicFile(sys.argv[1], "wb")
f.handle.write(b"half a checkpoint")
f.handle.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_while_writing(path: Path) -> None:
    """A real atomic checkpoint writer SIGKILLed in the middle of its write (as the OOM killer would)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], cwd=root)
    assert proc.returncode < 0  # killed, not finished


def test_prune_keeps_the_newest_and_removes_what_a_killed_writer_left(tmp_path):
    """A run killed while writing a checkpoint leaves its hidden temporary file; the next save's prune removes it
    (it would otherwise hold a checkpoint's worth of disk forever), and keeps the newest ``keep_last``."""
    for step in (1, 2, 3):
        S.checkpoint_path(tmp_path, step).parent.mkdir(parents=True, exist_ok=True)
        S.checkpoint_path(tmp_path, step).write_bytes(b"done")
    _killed_while_writing(S.checkpoint_path(tmp_path, 4))
    folder = tmp_path / "checkpoints"
    assert len([p for p in folder.iterdir() if p.name.endswith(".part")]) == 1
    S.prune(tmp_path, keep_last=2)
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt_00000002.pt", "ckpt_00000003.pt"]


def test_rng_state_saved_with_more_gpus_than_visible_now_restores_theirs():
    """A resume on fewer GPUs (CUDA_VISIBLE_DEVICES) must not fail on the extra saved generator states."""
    import pytest
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: the CUDA generator states exist only on a GPU machine")
    state = S.rng_state()
    state["cuda"] = list(state["cuda"]) + [state["cuda"][0].clone()]  # one GPU more than this machine has
    S.set_rng_state(state)
    assert torch.equal(torch.cuda.get_rng_state(0), state["cuda"][0])
