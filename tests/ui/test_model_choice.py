"""Which model the window opens with: the built-in model (package data) is listed and the default is chosen as
``gopose annotate`` chooses it (the user's default > the built-in model > the only installed model); the status
bar says which model is in use and why. A small real checkpoint stands in for the built-in file."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.model_store import add_model, choose_model, set_default

pytestmark = pytest.mark.gui

WAIT = 60000  # ms, a hang guard only


@pytest.fixture
def builtin(tmp_path, realtime_checkpoint) -> Path:
    """A real checkpoint placed as the built-in model file (where ``resources/models/default.pt`` ships)."""
    path = tmp_path / "package" / "resources" / "models" / "default.pt"
    path.parent.mkdir(parents=True)
    shutil.copyfile(realtime_checkpoint, path)
    return path


def _items(window) -> list[tuple[str, str]]:
    combo = window.panel.model
    return [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]


def _open_default(qtbot, window) -> str:
    with qtbot.waitSignal(window.model_ready, timeout=WAIT) as ready:
        window.load_default_model()
    return ready.args[0]


def test_builtin_model_is_listed_opened_by_default_and_shown_with_why(qtbot, make_window, builtin,
                                                                      realtime_checkpoint):
    window = make_window(builtin_model=builtin)
    assert _items(window) == [("default (built-in)", "default")]
    assert window.status.text("model") == "model: none"
    assert _open_default(qtbot, window) == "default"
    assert choose_model(None, builtin=builtin).name == "default"  # the model `gopose annotate` would use
    assert window.estimator is not None and window.models.path == builtin
    assert window.status.text("model") == "model: default (the built-in model)"
    assert window.status.fields["model"].toolTip() == f"default (the built-in model): {builtin}"
    assert window.panel.model.currentData() == "default" and not window.banner.isVisible()
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):
        window.load_model(str(realtime_checkpoint))  # what `gopose gui --model FILE` does
    assert window.status.text("model") == f"model: {realtime_checkpoint.name} (--model)"
    combo = window.panel.model
    with qtbot.waitSignal(window.model_ready, timeout=WAIT):  # back to the built-in model, picked in the panel
        combo.setCurrentIndex(combo.findData("default"))
        combo.activated.emit(combo.currentIndex())
    assert window.status.text("model") == "model: default (built-in, chosen in the model panel)"
    assert not window.errors


@pytest.mark.parametrize("installed, default, with_builtin, expected, reason", [
    (["rt_a"], None, True, "default", "the built-in model"),  # the built-in model before the only installed one
    (["rt_a", "rt_b"], "rt_b", True, "rt_b", "the default set with `gopose models default`"),
    (["rt_a"], None, False, "rt_a", "the only installed model"),
], ids=["builtin-over-only-installed", "user-default-over-builtin", "only-installed"])
def test_default_model_is_the_one_gopose_annotate_uses(qtbot, make_window, model_home, tmp_path, builtin,
                                                       realtime_checkpoint, installed, default, with_builtin,
                                                       expected, reason):
    for name in installed:
        add_model(realtime_checkpoint, name=name)
    if default:
        set_default(default)
    where = builtin if with_builtin else tmp_path / "absent" / "default.pt"
    window = make_window(builtin_model=where)
    listed = [value for _, value in _items(window)]
    assert listed == (["default"] if with_builtin else []) + installed
    assert _open_default(qtbot, window) == expected == choose_model(None, builtin=where).name
    assert window.status.text("model") == f"model: {expected} ({reason})"
    assert not window.errors


def test_ambiguous_default_falls_back_to_the_last_model_used_or_says_why(qtbot, make_window, model_home, tmp_path,
                                                                          realtime_checkpoint):
    for name in ("rt_a", "rt_b"):
        add_model(realtime_checkpoint, name=name)
    window = make_window()  # no built-in model, two installed, none is the default
    ran = []
    window.load_default_model(then=lambda: ran.append(True))
    assert ran and window.estimator is None  # nothing loaded; the start-up source would still open
    assert window.status.text("model") == "model: none (pick one in the Model panel)"
    assert "2 models are installed (rt_a, rt_b) and none is the default" in window.status.fields["model"].toolTip()
    assert "pick one in the Model panel" in window.banner.plain_text()
    window.settings.model = "rt_b"  # the model used last time
    assert _open_default(qtbot, window) == "rt_b"
    assert window.status.text("model") == "model: rt_b (the model used last time)"
