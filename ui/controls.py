"""Control widgets: the playback bar (play/pause, step, seek, speed) and the model panel."""
from __future__ import annotations

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import (QAction, QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton,
                             QSlider, QToolButton, QVBoxLayout, QWidget)

from ui.settings import ViewerSettings

SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)
LONG_EDGES = (256, 384, 512, 640, 768, 1024)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def format_time(seconds: float) -> str:
    seconds = max(0.0, seconds)
    m, s = divmod(seconds, 60.0)
    return f"{int(m):d}:{s:05.2f}"


class PlaybackBar(QWidget):
    """Play/pause and step buttons (driven by the window's actions, see ``set_actions``), a seek slider in ms and
    a speed picker."""

    seek_requested = pyqtSignal(float)
    speed_changed = pyqtSignal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        self.buttons = []
        for _ in range(2):
            button = QToolButton(self)
            button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
            layout.addWidget(button)
            self.buttons.append(button)
        self.slider = QSlider(Qt.Horizontal, self)
        self.slider.setObjectName("seek_slider")
        self.slider.setRange(0, 0)
        self.slider.setPageStep(5000)
        self.slider.setSingleStep(1000)
        self.slider.setFocusPolicy(Qt.NoFocus)  # arrow keys belong to the window's seek shortcuts
        layout.addWidget(self.slider, 1)
        self.time_label = QLabel(format_time(0) + " / –", self)
        layout.addWidget(self.time_label)
        layout.addWidget(QLabel("speed", self))
        self.speed = QComboBox(self)
        self.speed.setObjectName("speed")
        for s in SPEEDS:
            self.speed.addItem(f"{s:g}×", s)
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        layout.addWidget(self.speed)
        self._duration: float | None = None
        self._live = False
        self.slider.sliderReleased.connect(self._emit_seek)
        self.slider.actionTriggered.connect(self._on_action)
        self.speed.currentIndexChanged.connect(lambda _i: self.speed_changed.emit(float(self.speed.currentData())))
        self.set_duration(None)

    def set_actions(self, play_action: QAction, step_action: QAction) -> None:
        """The actions the play and step buttons trigger (and show)."""
        for button, action in zip(self.buttons, (play_action, step_action)):
            button.setDefaultAction(action)

    def set_speed(self, speed: float) -> None:
        best = min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - speed))
        self.speed.setCurrentIndex(best)

    def set_duration(self, seconds: float | None, live: bool = False) -> None:
        """The file's length; None for live sources (``live``) and no source (slider disabled)."""
        self._duration = seconds
        self._live = live
        self.slider.setEnabled(bool(seconds))
        self.slider.setRange(0, int(round((seconds or 0) * 1000)))
        self.set_position(0.0)

    def set_position(self, seconds: float) -> None:
        if not self.slider.isSliderDown():
            self.slider.blockSignals(True)
            self.slider.setValue(int(round(seconds * 1000)))
            self.slider.blockSignals(False)
        total = format_time(self._duration) if self._duration else "live" if self._live else "–"
        self.time_label.setText(f"{format_time(seconds)} / {total}")

    def _on_action(self, action: int) -> None:
        if action in (QSlider.SliderPageStepAdd, QSlider.SliderPageStepSub, QSlider.SliderSingleStepAdd,
                      QSlider.SliderSingleStepSub, QSlider.SliderToMinimum, QSlider.SliderToMaximum):
            # sliderPosition already holds the new value when actionTriggered fires
            self.seek_requested.emit(self.slider.sliderPosition() / 1000.0)

    def _emit_seek(self) -> None:
        self.seek_requested.emit(self.slider.value() / 1000.0)


class ModelPanel(QWidget):
    """Model picker, engine options (reload the model) and live options (decoder thresholds, smoothing, style)."""

    model_chosen = pyqtSignal(str)       # an installed model name or a checkpoint path
    open_checkpoint = pyqtSignal()       # the "Open checkpoint…" button
    engine_changed = pyqtSignal()        # device, precision, input size or flip changed: rebuild the estimator
    decoder_changed = pyqtSignal(dict)   # DecoderConfig fields to update live
    smoothing_changed = pyqtSignal(bool)
    style_changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        form = QFormLayout()
        outer.addLayout(form)
        self.model = QComboBox(self)
        self.model.setObjectName("model")
        self.model.setMinimumContentsLength(14)
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        form.addRow("Model", self.model)
        browse = QPushButton("Open checkpoint…", self)
        browse.clicked.connect(self.open_checkpoint)
        form.addRow("", browse)
        self.device = self._combo(DEVICES, "device")
        form.addRow("Device", self.device)
        self.precision = self._combo(PRECISIONS, "precision")
        form.addRow("Precision", self.precision)
        self.long_edge = QComboBox(self)
        self.long_edge.setObjectName("long_edge")
        for v in LONG_EDGES:
            self.long_edge.addItem(f"{v} px", v)
        form.addRow("Input size", self.long_edge)
        self.flip = QCheckBox("flip test", self)
        self.flip.setToolTip("Average the network's output with its mirrored input: more accurate, 2× slower")
        form.addRow("", self.flip)
        self.threshold, self.threshold_label = self._slider("keypoint_threshold", 1, 50)
        form.addRow(self.threshold_label, self.threshold)
        self.person_threshold, self.person_label = self._slider("person_threshold", 0, 80)
        form.addRow(self.person_label, self.person_threshold)
        self.smoothing = QCheckBox("smoothing", self)
        self.smoothing.setToolTip("One-Euro filtering of keypoints per track (less jitter)")
        form.addRow("", self.smoothing)
        self.show_boxes = QCheckBox("boxes", self)
        self.show_ids = QCheckBox("ids", self)
        row = QHBoxLayout()
        row.addWidget(self.show_boxes)
        row.addWidget(self.show_ids)
        form.addRow("Show", row)
        self.info = QLabel(self)
        self.info.setWordWrap(True)
        self.info.setObjectName("model_info")
        outer.addWidget(self.info)
        outer.addStretch(1)

        self.model.activated.connect(lambda _i: self.model_chosen.emit(str(self.model.currentData() or "")))
        for combo in (self.device, self.precision, self.long_edge):
            combo.currentIndexChanged.connect(lambda _i: self.engine_changed.emit())
        self.flip.toggled.connect(lambda _b: self.engine_changed.emit())
        self.threshold.valueChanged.connect(self._on_thresholds)
        self.person_threshold.valueChanged.connect(self._on_thresholds)
        self.smoothing.toggled.connect(self.smoothing_changed.emit)
        self.show_boxes.toggled.connect(lambda _b: self.style_changed.emit())
        self.show_ids.toggled.connect(lambda _b: self.style_changed.emit())
        self._on_thresholds(emit=False)

    def _combo(self, values, name: str) -> QComboBox:
        combo = QComboBox(self)
        combo.setObjectName(name)
        for v in values:
            combo.addItem(v, v)
        return combo

    def _slider(self, name: str, lo: int, hi: int) -> tuple[QSlider, QLabel]:
        """A slider in hundredths (0.01 steps) with a label showing its value."""
        slider = QSlider(Qt.Horizontal, self)
        slider.setObjectName(name)
        slider.setRange(lo, hi)
        return slider, QLabel(self)

    def _on_thresholds(self, *_args, emit: bool = True) -> None:
        kp, person = self.threshold.value() / 100.0, self.person_threshold.value() / 100.0
        self.threshold_label.setText(f"Keypoint ≥ {kp:.2f}")
        self.person_label.setText(f"Person ≥ {person:.2f}")
        if emit:
            self.decoder_changed.emit({"threshold": max(kp, 0.01), "person_threshold": person})

    # -- state <-> settings ------------------------------------------------------------------------------------
    def set_models(self, names: list[tuple[str, str]], current: str) -> None:
        """``names``: (label, value) pairs; value is a model name or a checkpoint path."""
        self.model.blockSignals(True)
        self.model.clear()
        for label, value in names:
            self.model.addItem(label, value)
        if not names:
            self.model.addItem("(no model installed)", "")
        index = self.model.findData(current)
        self.model.setCurrentIndex(max(0, index))
        self.model.blockSignals(False)

    def apply(self, s: ViewerSettings) -> None:
        """Show ``s`` without emitting change signals."""
        widgets = (self.device, self.precision, self.long_edge, self.flip, self.threshold, self.person_threshold,
                   self.smoothing, self.show_boxes, self.show_ids)
        for w in widgets:
            w.blockSignals(True)
        self.device.setCurrentIndex(max(0, self.device.findData(s.device)))
        self.precision.setCurrentIndex(max(0, self.precision.findData(s.precision)))
        edge = min(LONG_EDGES, key=lambda v: abs(v - s.long_edge))
        self.long_edge.setCurrentIndex(self.long_edge.findData(edge))
        self.flip.setChecked(s.flip)
        self.threshold.setValue(int(round(s.keypoint_threshold * 100)))
        self.person_threshold.setValue(int(round(s.person_threshold * 100)))
        self.smoothing.setChecked(s.smoothing)
        self.show_boxes.setChecked(s.show_boxes)
        self.show_ids.setChecked(s.show_ids)
        for w in widgets:
            w.blockSignals(False)
        self._on_thresholds(emit=False)

    def collect(self, s: ViewerSettings) -> ViewerSettings:
        """Copy the panel's values into ``s`` and return it."""
        s.model = str(self.model.currentData() or "")
        s.device = str(self.device.currentData())
        s.precision = str(self.precision.currentData())
        s.long_edge = int(self.long_edge.currentData())
        s.flip = self.flip.isChecked()
        s.keypoint_threshold = max(0.01, self.threshold.value() / 100.0)
        s.person_threshold = self.person_threshold.value() / 100.0
        s.smoothing = self.smoothing.isChecked()
        s.show_boxes = self.show_boxes.isChecked()
        s.show_ids = self.show_ids.isChecked()
        return s
