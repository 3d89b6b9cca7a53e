"""Control widgets: the playback bar (play/pause, step, seek, speed) and the model panel."""
from __future__ import annotations

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import (QAction, QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QPushButton,
                             QSlider, QToolButton, QVBoxLayout, QWidget)

from app.engine import BACKENDS
from ui.settings import DECODER_FIELDS, MODEL_TUNED, ViewerSettings

SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)
LONG_EDGES = (256, 384, 512, 640, 768, 1024)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
SLIDER_SCALE = 1000  # threshold sliders step in thousandths
THRESHOLD_NAMES = {"keypoint_threshold": "Keypoint", "person_threshold": "Person"}


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
    """Model picker, engine options (reload the model) and live options (decoder thresholds, smoothing, style).

    The input size and the thresholds show the values the model runs at (``show_tuning``): the model's own
    ("(model)") unless the user changed them ("(custom)", kept in ``overridden``); *Model defaults* asks to go back
    to the model's own."""

    model_chosen = pyqtSignal(str)       # an installed model name or a checkpoint path
    open_checkpoint = pyqtSignal()       # the "Open checkpoint…" button
    engine_changed = pyqtSignal()        # device, precision, runtime or flip changed: rebuild the estimator
    long_edge_chosen = pyqtSignal(int)   # the user picked an input size: rebuild the estimator at it
    decoder_changed = pyqtSignal(dict)   # DecoderConfig fields the user changed, to update live
    defaults_requested = pyqtSignal()    # the "Model defaults" button
    smoothing_changed = pyqtSignal(bool)
    style_changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tuned: dict[str, float] = {}           # what the loaded model was tuned for (empty: no model)
        self.values: dict[str, float | None] = dict.fromkeys(MODEL_TUNED)  # what runs now (None: not known yet)
        self.overridden: set[str] = set()           # the fields the user set
        outer = QVBoxLayout(self)
        form = QFormLayout()
        outer.addLayout(form)
        self.model = QComboBox(self)
        self.model.setObjectName("model")
        self.model.setMinimumContentsLength(14)
        self.model.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model.currentIndexChanged.connect(lambda _i: self._model_tooltip())
        form.addRow("Model", self.model)
        browse = QPushButton("Open checkpoint…", self)
        browse.clicked.connect(self.open_checkpoint)
        form.addRow("", browse)
        self.device = self._combo(DEVICES, "device")
        form.addRow("Device", self.device)
        self.precision = self._combo(PRECISIONS, "precision")
        form.addRow("Precision", self.precision)
        self.backend = self._combo(BACKENDS, "backend")
        self.backend.setToolTip("Network runtime on the CPU: torch, ONNX Runtime or OpenVINO, fp32 or INT8 "
                                "(auto: the fastest, measured once per machine and model)")
        form.addRow("Runtime", self.backend)
        self.long_edge = QComboBox(self)
        self.long_edge.setObjectName("long_edge")
        for v in LONG_EDGES:
            self.long_edge.addItem(f"{v} px", v)
        self.long_edge.setCurrentIndex(LONG_EDGES.index(512))
        form.addRow("Input size", self.long_edge)
        self.flip = QCheckBox("flip test", self)
        self.flip.setToolTip("Average the network's output with its mirrored input: more accurate, 2× slower")
        form.addRow("", self.flip)
        # every value the settings and --threshold accept: keypoint (0, 1], person [0, 1]. Each label ("Keypoint ≥
        # 0.035 (custom)") spans the panel above its slider: in the label column it left the fields too narrow
        # for their text (clipped buttons, check boxes and pickers at the default window size)
        self.threshold, self.threshold_label = self._slider("keypoint_threshold", 1, SLIDER_SCALE)
        form.addRow(self.threshold_label)
        form.addRow(self.threshold)
        self.person_threshold, self.person_label = self._slider("person_threshold", 0, SLIDER_SCALE)
        form.addRow(self.person_label)
        form.addRow(self.person_threshold)
        self.defaults = QPushButton("Model defaults", self)
        self.defaults.setObjectName("model_defaults")
        self.defaults.setToolTip("Run at the input size and thresholds the model was tuned for (forget your changes)")
        form.addRow("", self.defaults)
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
        for combo in (self.device, self.precision, self.backend):
            combo.currentIndexChanged.connect(lambda _i: self.engine_changed.emit())
        self.flip.toggled.connect(lambda _b: self.engine_changed.emit())
        self.long_edge.currentIndexChanged.connect(self._on_long_edge)
        self.threshold.valueChanged.connect(lambda v: self._on_threshold("keypoint_threshold", v))
        self.person_threshold.valueChanged.connect(lambda v: self._on_threshold("person_threshold", v))
        self.defaults.clicked.connect(self.defaults_requested)
        self.smoothing.toggled.connect(self.smoothing_changed.emit)
        self.show_boxes.toggled.connect(lambda _b: self.style_changed.emit())
        self.show_ids.toggled.connect(lambda _b: self.style_changed.emit())
        self._relabel()

    def _combo(self, values, name: str) -> QComboBox:
        combo = QComboBox(self)
        combo.setObjectName(name)
        for v in values:
            combo.addItem(v, v)
        return combo

    def _slider(self, name: str, lo: int, hi: int) -> tuple[QSlider, QLabel]:
        """A slider in thousandths with a label showing its value."""
        slider = QSlider(Qt.Horizontal, self)
        slider.setObjectName(name)
        slider.setRange(lo, hi)
        slider.setSingleStep(5)
        slider.setPageStep(50)
        return slider, QLabel(self)

    def _sliders(self) -> dict[str, QSlider]:
        return {"keypoint_threshold": self.threshold, "person_threshold": self.person_threshold}

    # -- the user's changes --------------------------------------------------------------------------------------
    def _on_long_edge(self, _index: int) -> None:
        value = int(self.long_edge.currentData())
        self.values["long_edge"] = value
        self.overridden.add("long_edge")
        self._relabel()
        self.long_edge_chosen.emit(value)

    def _on_threshold(self, name: str, position: int) -> None:
        value = position / SLIDER_SCALE
        self.values[name] = value
        self.overridden.add(name)
        self._relabel()
        self.decoder_changed.emit({DECODER_FIELDS[name]: value})

    # -- showing what runs ---------------------------------------------------------------------------------------
    def show_tuning(self, values: dict[str, float], tuned: dict[str, float] | None,
                    overridden: set[str]) -> None:
        """Show the input size and thresholds the model runs at (``values``: a None value is not known yet; a
        missing key keeps what is shown), what it was tuned for (``tuned``; None keeps the last known) and which of
        them the user set, without emitting change signals."""
        if tuned is not None:
            self.tuned = dict(tuned)
        self.values.update({k: v for k, v in values.items() if k in MODEL_TUNED})
        self.overridden = set(overridden) & set(MODEL_TUNED)
        self._relabel()

    def _relabel(self) -> None:
        """Controls, labels and the *Model defaults* button from ``values``, ``tuned`` and ``overridden``."""
        widgets = [self.long_edge, *self._sliders().values()]
        for w in widgets:
            w.blockSignals(True)
        edge = self.values["long_edge"]
        if edge is not None:
            self.long_edge.setCurrentIndex(self._edge_index(int(edge)))
        model_edge = self.tuned.get("long_edge")
        for i in range(self.long_edge.count()):
            v = self.long_edge.itemData(i)
            self.long_edge.setItemText(i, f"{v} px (model)" if v == model_edge else f"{v} px")
        for name, slider in self._sliders().items():
            value = self.values[name]
            if value is not None:
                slider.setValue(int(round(value * SLIDER_SCALE)))
        for w in widgets:
            w.blockSignals(False)
        self.threshold_label.setText(self._threshold_text("keypoint_threshold"))
        self.person_label.setText(self._threshold_text("person_threshold"))
        self.defaults.setEnabled(bool(self.overridden))

    def _edge_index(self, edge: int) -> int:
        """The long-edge item for ``edge``, added in order when it is not a preset (e.g. a model's 320 px)."""
        index = self.long_edge.findData(edge)
        if index < 0:
            index = sum(1 for i in range(self.long_edge.count()) if self.long_edge.itemData(i) < edge)
            self.long_edge.insertItem(index, f"{edge} px", edge)
        return index

    def _threshold_text(self, name: str) -> str:
        value, label = self.values[name], THRESHOLD_NAMES[name]
        if value is None:
            return f"{label} ≥ the model's"
        whose = "custom" if name in self.overridden else "model" if self.tuned else ""
        return f"{label} ≥ {format_threshold(value)}" + (f" ({whose})" if whose else "")

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
        self._model_tooltip()

    def _model_tooltip(self) -> None:
        """The picker shows about 14 characters of a long model name: its tooltip holds the whole name."""
        self.model.setToolTip(self.model.currentText())

    def apply(self, s: ViewerSettings) -> None:
        """Show ``s`` without emitting change signals (the input size and thresholds it sets count as the user's;
        the model's own values appear with ``show_tuning`` once it is loaded)."""
        widgets = (self.device, self.precision, self.backend, self.flip, self.smoothing, self.show_boxes,
                   self.show_ids)
        for w in widgets:
            w.blockSignals(True)
        self.device.setCurrentIndex(max(0, self.device.findData(s.device)))
        self.precision.setCurrentIndex(max(0, self.precision.findData(s.precision)))
        self.backend.setCurrentIndex(max(0, self.backend.findData(s.backend)))
        self.flip.setChecked(s.flip)
        self.smoothing.setChecked(s.smoothing)
        self.show_boxes.setChecked(s.show_boxes)
        self.show_ids.setChecked(s.show_ids)
        for w in widgets:
            w.blockSignals(False)
        chosen = s.overrides()
        self.show_tuning(chosen, None, set(chosen))

    def collect(self, s: ViewerSettings) -> ViewerSettings:
        """Copy the panel's values into ``s`` and return it (not the input size and thresholds: those are the
        user's overrides, set by the model controller when the user changes them)."""
        s.model = str(self.model.currentData() or "")
        s.device = str(self.device.currentData())
        s.precision = str(self.precision.currentData())
        s.backend = str(self.backend.currentData())
        s.flip = self.flip.isChecked()
        s.smoothing = self.smoothing.isChecked()
        s.show_boxes = self.show_boxes.isChecked()
        s.show_ids = self.show_ids.isChecked()
        return s


def format_threshold(value: float) -> str:
    """0.11 -> "0.11", 0.035 -> "0.035", 0 -> "0.00", 2e-4 -> "0.0002"."""
    text = f"{value:.4f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.partition(".")[2]))
