"""Small dialogs: webcam picker and export options."""
from __future__ import annotations

from PyQt5.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                             QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget)

RESOLUTIONS = ((0, 0), (640, 480), (1280, 720), (1920, 1080))


class WebcamDialog(QDialog):
    """Pick one of the cameras OpenCV can open (probed by the window in a worker) and a resolution."""

    def __init__(self, cameras: list[tuple[int, tuple[int, int]]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open webcam")
        form = QFormLayout(self)
        self.camera = QComboBox(self)
        for index, (w, h) in cameras:
            self.camera.addItem(f"Camera {index} ({w}×{h})", index)
        if not cameras:
            form.addRow(QLabel("No camera could be opened (none connected, busy or not permitted).", self))
        form.addRow("Camera", self.camera)
        self.resolution = QComboBox(self)
        for w, h in RESOLUTIONS:
            self.resolution.addItem("camera default" if not w else f"{w}×{h}", (w, h))
        form.addRow("Resolution", self.resolution)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, parent=self)
        buttons.button(QDialogButtonBox.Ok).setEnabled(bool(cameras))
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def choice(self) -> tuple[int, int | None, int | None]:
        w, h = self.resolution.currentData()
        return int(self.camera.currentData()), (w or None), (h or None)


class ExportDialog(QDialog):
    """Input video, output folder and formats for an export (the same files as ``gopose annotate``)."""

    FORMATS = ("coco", "jsonl", "csv", "video")

    def __init__(self, input_path: str, out_dir: str, formats: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export annotations")
        form = QFormLayout(self)
        self.input = QLineEdit(input_path, self)
        form.addRow("Video", self._with_browse(self.input, self._browse_input))
        self.out_dir = QLineEdit(out_dir, self)
        form.addRow("Output folder", self._with_browse(self.out_dir, self._browse_out))
        row = QHBoxLayout()
        self.checks: dict[str, QCheckBox] = {}
        for f in self.FORMATS:
            box = QCheckBox(f, self)
            box.setChecked(f in formats)
            self.checks[f] = box
            row.addWidget(box)
        form.addRow("Formats", row)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, parent=self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _with_browse(self, edit: QLineEdit, slot) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        button = QPushButton("…", self)
        button.clicked.connect(slot)
        row.addWidget(button)
        return row

    def _browse_input(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video to export", self.input.text())
        if path:
            self.input.setText(path)

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder", self.out_dir.text())
        if path:
            self.out_dir.setText(path)

    def values(self) -> tuple[str, str, list[str]]:
        return (self.input.text().strip(), self.out_dir.text().strip(),
                [f for f, box in self.checks.items() if box.isChecked()])
