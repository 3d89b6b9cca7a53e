"""Fixtures for the GUI tests: a window on a temporary settings file, an empty model folder and no built-in model
(unless a test places one), and a real (randomly initialised) real-time network saved as a checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5.QtCore import QSettings


@pytest.fixture
def model_home(tmp_path, monkeypatch) -> Path:
    """An empty user model folder (``GOPOSE_HOME``), so no installed model leaks in from the machine."""
    home = tmp_path / "gopose_home"
    home.mkdir()
    monkeypatch.setenv("GOPOSE_HOME", str(home))
    return home


@pytest.fixture
def make_window(qtbot, tmp_path, model_home):
    """``make_window()`` -> a shown MainWindow with its own settings file; shut down after the test. The built-in
    model is looked for at ``builtin_model`` (default: a file that does not exist, so the package's built-in model
    does not leak in)."""
    from ui.main_window import MainWindow
    from ui.settings import SettingsStore

    windows = []

    def make(settings_file: Path | None = None, builtin_model: Path | None = None):
        store = SettingsStore(QSettings(str(settings_file or tmp_path / "settings.ini"), QSettings.IniFormat))
        window = MainWindow(store, threads=1, builtin_model=builtin_model or tmp_path / "no_builtin" / "default.pt")
        qtbot.addWidget(window)
        window.resize(960, 600)
        window.show()
        windows.append(window)
        return window

    yield make
    for w in windows:
        w.shutdown()


@pytest.fixture(scope="session")
def realtime_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised real-time COCO network saved with the project's checkpoint writer."""
    import torch

    from core.contract import PoseContract
    from core.keypoints import COCO
    from models.checkpoint import save_checkpoint
    from models.factory import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("realtime", PoseContract(COCO), {}))
    path = tmp_path_factory.mktemp("ckpt") / "realtime_random.pt"
    save_checkpoint(path, model)
    return path
