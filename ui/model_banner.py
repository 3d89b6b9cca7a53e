"""The banner above the video while no model is loaded: what is missing and buttons that fix it."""
from __future__ import annotations

import html

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget


class ModelBanner(QWidget):
    """Explains the missing model and offers the actions: open a checkpoint file for this session, or add one to
    the user's models (listed in the model panel and loaded at every start). Hidden while a model runs."""

    open_requested = pyqtSignal()
    add_requested = pyqtSignal()

    def __init__(self, help_url: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("model_banner")
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.help_url = help_url
        row = QHBoxLayout(self)
        self.text = QLabel(self)
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.RichText)
        self.text.setOpenExternalLinks(True)
        self.text.setTextInteractionFlags(Qt.TextBrowserInteraction)
        row.addWidget(self.text, 1)
        self.open_button = QPushButton("Open checkpoint…", self)
        self.open_button.setToolTip("Use a checkpoint file now (not remembered as an installed model)")
        self.open_button.clicked.connect(self.open_requested)
        row.addWidget(self.open_button)
        self.add_button = QPushButton("Add to my models…", self)
        self.add_button.setToolTip("Copy a checkpoint into your models: listed in the Model panel, loaded at start")
        self.add_button.clicked.connect(self.add_requested)
        row.addWidget(self.add_button)

    def show_state(self, *, loaded: bool, installed: bool, loading: bool) -> None:
        """Hide while a model is loaded; else say why there are no poses and what the buttons do."""
        if loaded:
            self.hide()
            return
        if loading:
            message = "Loading the model… The video plays without poses until it is ready."
        elif installed:
            message = ("No model is loaded: pick one in the Model panel, open a checkpoint or add one to your "
                       "models. The video plays without poses.")
        else:
            link = f'<a href="{html.escape(self.help_url)}">the paper authors\' Hourglass-104 checkpoints</a>'
            message = ("<b>No pose model is installed.</b> The video plays without poses until you open a "
                       f"checkpoint or add one to your models: {link} (PoseNet_77_epoch.pth for COCO, "
                       "PoseNet_190_epoch.pth for CrowdPose) or a network you trained.")
        self.text.setText(message)
        self.show()

    def plain_text(self) -> str:
        """The message without markup (what a user reads)."""
        from PyQt5.QtGui import QTextDocument

        doc = QTextDocument()
        doc.setHtml(self.text.text())
        return doc.toPlainText()
