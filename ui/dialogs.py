"""Small dialogs: webcam picker, export options and adding a model."""
from __future__ import annotations

from pathlib import Path

from PyQt5.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                             QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget)

RESOLUTIONS = ((0, 0), (640, 480), (1280, 720), (1920, 1080))


def _with_browse(parent: QWidget, edit: QLineEdit, slot) -> QHBoxLayout:
    """``edit`` with a "…" button calling ``slot`` beside it."""
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    button = QPushButton("…", parent)
    button.clicked.connect(slot)
    row.addWidget(button)
    return row


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
        form.addRow("Video", _with_browse(self, self.input, self._browse_input))
        self.out_dir = QLineEdit(out_dir, self)
        form.addRow("Output folder", _with_browse(self, self.out_dir, self._browse_out))
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


class AddModelDialog(QDialog):
    """A checkpoint to copy into the user's models: its file, the name it is listed under and its kind (ours
    describe their network; the paper authors' files hold Hourglass-104 weights only)."""

    KINDS = (("GOPose checkpoint (describes its network)", ""),
             ("Paper authors' checkpoint (Hourglass-104)", "hourglass104"))

    def __init__(self, start_dir: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a model")
        self.start_dir = start_dir
        form = QFormLayout(self)
        self.path = QLineEdit(self)
        self.path.setPlaceholderText("checkpoint file (.pt, .pth, .ckpt)")
        form.addRow("Checkpoint", _with_browse(self, self.path, self._browse))
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("the file's name without extension")
        form.addRow("Name", self.name)
        self.kind = QComboBox(self)
        for label, arch in self.KINDS:
            self.kind.addItem(label, arch)
        form.addRow("Kind", self.kind)
        self._kind_picked = False  # the user chose the kind: a file chosen later no longer changes it
        self.kind.activated.connect(self._on_kind_picked)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, parent=self)
        self.buttons.button(QDialogButtonBox.Ok).setText("Add")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.path.textChanged.connect(self._on_path)
        self._on_path("")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", self.path.text() or self.start_dir,
                                              "Checkpoints (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.path.setText(path)

    def _on_path(self, text: str) -> None:
        path = Path(text.strip()) if text.strip() else None
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(bool(path and path.is_file()))
        if path is not None:
            self.name.setPlaceholderText(path.stem)
            if not self._kind_picked:  # the authors' release names are theirs; any other file describes itself
                self.kind.setCurrentIndex(1 if path.name.startswith("PoseNet_") else 0)

    def _on_kind_picked(self, _index: int) -> None:
        self._kind_picked = True

    def values(self) -> tuple[str, str, str]:
        """(checkpoint path, name or "" for the file's stem, architecture or "" when the file describes it)."""
        return self.path.text().strip(), self.name.text().strip(), str(self.kind.currentData() or "")
