"""The window runs each model at the input size and decoder thresholds it was tuned for (its codec), unless the user
chose otherwise: the controls show what runs, the user's choices survive a model switch, *Model defaults* forgets
them, and a settings file of an older version (which always stored 512 px / 0.04) pins nothing. Real checkpoints
(``gopose models init`` with a codec of 256 px / 0.11), real widgets offscreen."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PyQt5.QtCore import QSettings, Qt

from app.model_store import add_model
from ui.settings import MODEL_TUNED, SettingsStore, ViewerSettings

pytestmark = pytest.mark.gui

WAIT = 60000  # ms, a hang guard only


@pytest.fixture(scope="session")
def tuned_checkpoint(tmp_path_factory) -> Path:
    """A real-time network whose codec says: run at 256 px with keypoint threshold 0.11, person threshold 0.05."""
    from app.cli import main as cli_main
    from models.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path_factory.mktemp("tuned") / "tuned.pt"
    assert cli_main(["models", "init", "--arch", "realtime", "--spec", "coco", "--out", str(path)]) == 0
    model, _info = load_checkpoint(path)
    decoder = model.codec.decoder.with_(threshold=0.11, person_threshold=0.05)
    model.codec = model.codec.replace(long_edge=256, decoder=decoder)
    save_checkpoint(path, model)
    return path


def _runs_at(window) -> tuple[int, float, float]:
    """(long edge, keypoint threshold, person threshold) of the estimator in use."""
    est = window.estimator
    return est.long_edge, round(est.decoder_config.threshold, 4), round(est.decoder_config.person_threshold, 4)


def _shown(panel) -> tuple[int, float, float]:
    """The same, as the model panel's controls show it."""
    return panel.long_edge.currentData(), panel.threshold.value() / 1000, panel.person_threshold.value() / 1000


def _pick(qtbot, window, name: str) -> None:
    """Choose an installed model in the panel, as a user does, and wait until it runs."""
    combo = window.panel.model
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        combo.setCurrentIndex(combo.findData(name))
        combo.activated.emit(combo.currentIndex())


def test_the_default_model_opens_at_its_tuned_settings_and_the_controls_show_them(qtbot, make_window, tmp_path,
                                                                                    tuned_checkpoint):
    builtin = tmp_path / "package" / "resources" / "models" / "default.pt"
    builtin.parent.mkdir(parents=True)
    shutil.copyfile(tuned_checkpoint, builtin)
    window = make_window(builtin_model=builtin)
    assert window.settings.overrides() == {}  # fresh settings: every model's own values
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        window.load_default_model()
    panel = window.panel
    assert _runs_at(window) == (256, 0.11, 0.05) == _shown(panel)
    assert panel.long_edge.currentText() == "256 px (model)"
    assert panel.threshold_label.text() == "Keypoint ≥ 0.11 (model)"
    assert panel.person_label.text() == "Person ≥ 0.05 (model)"
    assert not panel.defaults.isEnabled() and not window.errors
    window.save_settings()
    assert window.store.load().overrides() == {}  # nothing pinned for the next model


def test_user_choices_survive_a_model_switch_and_model_defaults_restore_each_models_own(
        qtbot, make_window, tuned_checkpoint, realtime_checkpoint):
    add_model(tuned_checkpoint, name="tuned")        # 256 px, 0.11, 0.05
    add_model(realtime_checkpoint, name="plain")     # the codec's defaults: 512 px, 0.04, 0.0
    window = make_window()
    panel = window.panel
    _pick(qtbot, window, "tuned")
    assert _runs_at(window) == (256, 0.11, 0.05)
    panel.threshold.setValue(200)  # the user's keypoint threshold applies live
    assert _runs_at(window) == (256, 0.2, 0.05)
    assert panel.threshold_label.text() == "Keypoint ≥ 0.20 (custom)" and panel.defaults.isEnabled()

    _pick(qtbot, window, "plain")  # its own input size and person threshold, the user's keypoint threshold
    assert _runs_at(window) == (512, 0.2, 0.0) == _shown(panel)
    assert panel.long_edge.currentText() == "512 px (model)" and panel.person_label.text() == "Person ≥ 0.00 (model)"
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):  # the user's input size: the model reloads at it
        panel.long_edge.setCurrentIndex(panel.long_edge.findData(384))
    assert _runs_at(window) == (384, 0.2, 0.0)

    _pick(qtbot, window, "tuned")  # both choices carry over; the person threshold is this model's own
    assert _runs_at(window) == (384, 0.2, 0.05) == _shown(panel)
    assert panel.long_edge.currentText() == "384 px"
    assert panel.long_edge.itemText(panel.long_edge.findData(256)) == "256 px (model)"
    window.save_settings()
    assert window.store.load().overrides() == {"long_edge": 384, "keypoint_threshold": 0.2}

    with qtbot.waitSignal(window.model_ready, timeout=WAIT):  # "Model defaults": back to the model's own values
        qtbot.mouseClick(panel.defaults, Qt.LeftButton)
        assert _runs_at(window)[1:] == (0.11, 0.05)  # thresholds at once, the input size after a reload
    assert _runs_at(window) == (256, 0.11, 0.05) == _shown(panel)
    assert window.settings.overrides() == {} and not panel.defaults.isEnabled()
    assert panel.threshold_label.text() == "Keypoint ≥ 0.11 (model)"

    _pick(qtbot, window, "plain")
    assert _runs_at(window) == (512, 0.04, 0.0)
    panel.person_threshold.setValue(300)
    assert _runs_at(window) == (512, 0.04, 0.3) and panel.person_label.text() == "Person ≥ 0.30 (custom)"
    loaded = window.estimator
    window.act_defaults.trigger()  # Model ▸ Model defaults; only a threshold differed: no reload
    assert window.estimator is loaded and not window.models.loading
    assert _runs_at(window) == (512, 0.04, 0.0) == _shown(panel) and window.settings.overrides() == {}
    window.save_settings()
    assert window.store.load().overrides() == {} and not window.errors


def test_an_old_settings_file_does_not_pin_every_model(qtbot, make_window, tmp_path, tuned_checkpoint):
    old = tmp_path / "old.ini"  # as versions before settings_version 2 wrote it: the fixed defaults, always
    old.write_text("[viewer]\nlong_edge=512\nkeypoint_threshold=0.04\nperson_threshold=0\ndevice=cpu\n"
                   "show_ids=true\n")
    window = make_window(old)
    assert window.settings.overrides() == {}
    assert (window.settings.device, window.settings.show_ids) == ("cpu", True)  # the rest is still remembered
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        window.load_model(str(tuned_checkpoint))
    assert _runs_at(window) == (256, 0.11, 0.05) == _shown(window.panel)
    window.close()  # saved in the new layout: the old fixed values are gone
    again = SettingsStore(QSettings(str(old), QSettings.IniFormat))
    assert again.version() == 2 and again.load().overrides() == {}
    assert again.load().device == "cpu" and "long_edge" not in old.read_text()


def test_settings_store_keeps_overrides_and_reads_bad_ones_as_unset(tmp_path):
    path = tmp_path / "s.ini"
    store = SettingsStore(QSettings(str(path), QSettings.IniFormat))
    store.save(ViewerSettings(long_edge=384, keypoint_threshold=0.2))
    again = SettingsStore(QSettings(str(path), QSettings.IniFormat))
    assert again.load().overrides() == {"long_edge": 384, "keypoint_threshold": 0.2}
    for key, bad in (("long_edge", "16"), ("keypoint_threshold", "0"), ("person_threshold", "x")):
        again.qsettings.setValue(f"viewer/{key}", bad)  # values no engine accepts: the model's own
    assert again.load().overrides() == {}
    again.save(ViewerSettings())  # unset overrides are not written
    assert not any(name in path.read_text() for name in MODEL_TUNED)


def test_model_defaults_while_a_model_loads_applies_to_it(qtbot, make_window, tuned_checkpoint):
    window = make_window()
    window.settings.long_edge = 384  # as `gopose gui --long-edge 384` sets it
    window.panel.apply(window.settings)
    window.load_model(str(tuned_checkpoint))  # loads at 384 in a worker...
    window.act_defaults.trigger()  # ...while the user asks for the model's own values: it then reloads at 256
    assert window.settings.overrides() == {} and window.models.loading
    qtbot.waitUntil(lambda: window.estimator is not None and not window.models.loading
                    and window.estimator.long_edge == 256, timeout=WAIT)
    assert _runs_at(window) == (256, 0.11, 0.05) == _shown(window.panel) and not window.errors


def test_the_runtime_chosen_in_the_panel_rebuilds_the_model_on_it_and_is_remembered(qtbot, make_window,
                                                                                     realtime_checkpoint):
    pytest.importorskip("onnxruntime")
    window = make_window()
    window.settings.backend = "torch"
    window.panel.apply(window.settings)
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        window.models.load(str(realtime_checkpoint))
    assert window.estimator.backend == "torch" and window.panel.backend.currentText() == "torch"
    combo = window.panel.backend
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        combo.setCurrentIndex(combo.findData("onnx"))  # as a user picks it: the engine is rebuilt
    assert window.estimator.backend == "onnx" and window.settings.backend == "onnx"
    window.save_settings()
    assert window.store.load().backend == "onnx"


@pytest.mark.parametrize("keypoint, person", [(0.7, 0.9), (1.0, 0.0), (0.006, 0.85)])
def test_threshold_sliders_cover_every_accepted_value(qtbot, keypoint, person):
    """Any threshold the settings and ``--threshold`` accept sits where the slider shows it, and one step moves it
    one step (before: 0.7 sat at the slider's end, 0.5, and a step down set 0.495)."""
    from ui.controls import ModelPanel

    panel = ModelPanel()
    qtbot.addWidget(panel)
    panel.apply(ViewerSettings(keypoint_threshold=keypoint, person_threshold=person))
    assert (panel.threshold.value() / 1000, panel.person_threshold.value() / 1000) == (keypoint, person)
    changed = []
    panel.decoder_changed.connect(changed.append)
    panel.threshold.triggerAction(panel.threshold.SliderSingleStepSub)
    panel.person_threshold.triggerAction(panel.person_threshold.SliderSingleStepAdd)
    step = panel.threshold.singleStep() / 1000
    assert changed == [{"threshold": pytest.approx(keypoint - step)}, {"person_threshold": pytest.approx(person + step)}]
    panel.apply(ViewerSettings(keypoint_threshold=0.001, person_threshold=1.0))  # the ends of both ranges
    assert (panel.threshold.value(), panel.person_threshold.value()) == (1, 1000)


def test_a_model_or_device_that_fails_to_load_leaves_the_panel_on_what_runs(qtbot, make_window, model_home,
                                                                            realtime_checkpoint):
    """The model in use keeps running when its replacement does not load: the panel goes back to it and to the
    options it runs with, and those are what is saved (before: the panel kept the failed choice, its info went
    blank, and a saved device "cuda" on a machine without CUDA made every later start load no model)."""
    import torch

    broken = add_model(realtime_checkpoint, name="broken")
    broken.path.write_bytes(b"not a checkpoint any more")  # still listed, no longer loads
    window = make_window()
    window.settings.backend = "torch"  # no backend measurement
    window.panel.apply(window.settings)
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        window.models.load(str(realtime_checkpoint))
    info, combo = window.panel.info.text(), window.panel.model
    combo.setCurrentIndex(combo.findData("broken"))
    combo.activated.emit(combo.currentIndex())  # as a user picks it
    qtbot.waitUntil(lambda: len(window.errors) == 1, timeout=WAIT)
    assert combo.currentData() == str(realtime_checkpoint) and window.panel.info.text() == info
    if torch.cuda.is_available():
        return  # the device part needs a machine without CUDA
    device = window.panel.device
    device.setCurrentIndex(device.findData("cuda"))  # as a user picks it: the engine is rebuilt, and fails
    qtbot.waitUntil(lambda: len(window.errors) == 2, timeout=WAIT)
    assert "CUDA" in window.errors[1]
    assert device.currentData() == "auto" and window.panel.info.text() == info and window.estimator is not None
    window.save_settings()
    assert (window.store.load().device, window.store.load().backend) == ("auto", "torch")
