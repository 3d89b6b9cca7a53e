"""The model panel at the window's default size shows every text whole: before, the threshold labels ("Keypoint ≥
0.035 (custom)") sat in the form's label column and left the fields too narrow (the model picker, *Open
checkpoint…*, *Model defaults*, smoothing, boxes and ids, the input size were cut off)."""
from __future__ import annotations

from PyQt5.QtCore import QSettings
from PyQt5.QtWidgets import QAbstractButton, QComboBox, QLabel, QStyle, QStyleOptionComboBox


def _combo_text_room(combo: QComboBox) -> int:
    """The width the combo box's style leaves for its text."""
    option = QStyleOptionComboBox()
    combo.initStyleOption(option)
    rect = combo.style().subControlRect(QStyle.CC_ComboBox, option, QStyle.SC_ComboBoxEditField, combo)
    return rect.width()


def _clipped(panel) -> list[str]:
    """Every widget of ``panel`` whose text does not fit, as "kind 'text': width < needed"."""
    out = []
    for label in panel.findChildren(QLabel):
        need = label.fontMetrics().horizontalAdvance(label.text())
        if label.isVisible() and not label.wordWrap() and label.width() < need:
            out.append(f"label {label.text()!r}: {label.width()} < {need}")
    for button in panel.findChildren(QAbstractButton):
        need = button.sizeHint().width()
        if button.isVisible() and button.width() < need:
            out.append(f"button {button.text()!r}: {button.width()} < {need}")
    for combo in panel.findChildren(QComboBox):
        need, room = combo.fontMetrics().horizontalAdvance(combo.currentText()), _combo_text_room(combo)
        if combo.isVisible() and room < need:
            out.append(f"picker {combo.currentText()!r}: {room} < {need}")
    return out


def test_no_text_of_the_model_panel_is_cut_off_at_the_default_size(qtbot, tmp_path, model_home):
    from ui.main_window import MainWindow
    from ui.settings import SettingsStore

    store = SettingsStore(QSettings(str(tmp_path / "new.ini"), QSettings.IniFormat))  # no saved geometry
    window = MainWindow(store, threads=1, builtin_model=tmp_path / "no_builtin" / "default.pt")
    qtbot.addWidget(window)
    window.show()
    try:
        panel = window.panel
        # the longest texts the panel shows once the built-in model runs with a custom keypoint threshold
        panel.set_models([("default (built-in)", "default")], "default")
        panel.show_tuning({"long_edge": 192, "keypoint_threshold": 0.035, "person_threshold": 0.35},
                          {"long_edge": 192, "keypoint_threshold": 0.2, "person_threshold": 0.35},
                          {"keypoint_threshold"})
        qtbot.waitUntil(lambda: panel.isVisible() and panel.width() > 0)
        window.layout().activate()
        assert (window.width(), window.height()) == (1200, 720)
        assert panel.threshold_label.text() == "Keypoint ≥ 0.035 (custom)"
        assert panel.long_edge.currentText() == "192 px (model)"
        assert _clipped(panel) == []
        assert panel.model.toolTip() == "default (built-in)"  # a name longer than the picker: whole in its tooltip
    finally:
        window.shutdown()
