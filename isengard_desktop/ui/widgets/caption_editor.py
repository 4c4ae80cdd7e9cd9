"""Edits the caption of one selected image; Save writes it to the DB and the sidecar.

Signals:
    caption_saved(int, str): image id and the new caption.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from ...core.dataset.captions import caption_problem
from ...core.db.records import ImageRecord


class CaptionEditorWidget(QWidget):
    caption_saved = Signal(int, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: ImageRecord | None = None
        self.title = QLabel("Caption")
        self.title.setProperty("subtle", True)
        self.edit = QPlainTextEdit()
        self.edit.setObjectName("CaptionEdit")
        self.edit.setPlaceholderText("Describe what varies in this photo (clothes, setting, "
                                     "lighting). The trigger word is added for training.")
        self.edit.setToolTip("Saved to the library and to a .txt file beside the image, "
                             "which trainers read.")
        self.save_button = QPushButton("Save caption")
        self.save_button.setProperty("primary", True)
        self.save_button.setToolTip("Ctrl+Enter")
        self.state = QLabel("")
        self.state.setProperty("subtle", True)
        row = QHBoxLayout()
        row.addWidget(self.state, 1)
        row.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.edit, 1)
        layout.addLayout(row)
        self.save_button.clicked.connect(self.save)
        shortcut = QShortcut(QKeySequence("Ctrl+Return"), self.edit,
                             context=Qt.ShortcutContext.WidgetShortcut)
        shortcut.activated.connect(self.save)
        self.edit.textChanged.connect(self._on_text_changed)
        self.set_image(None)

    def set_image(self, image: ImageRecord | None) -> None:
        self._image = image
        self.edit.blockSignals(True)
        self.edit.setPlainText(image.caption if image else "")
        self.edit.blockSignals(False)
        self.edit.setEnabled(image is not None)
        self.save_button.setEnabled(False)
        self.title.setText(f"Caption — {image.filename}" if image else
                           "Caption — select one image to edit")
        self.state.setText("")

    def _problem(self) -> str | None:
        """Why the typed caption cannot be saved (naming the photo), or None."""
        if self._image is None:
            return None
        return caption_problem(self.edit.toPlainText(), self._image.filename)

    def _on_text_changed(self) -> None:
        dirty = self._image is not None and self.edit.toPlainText() != self._image.caption
        problem = self._problem() if dirty else None
        self.save_button.setEnabled(dirty and problem is None)
        self.state.setText(problem or ("Unsaved changes" if dirty else ""))

    def save(self) -> None:
        if self._image is None:
            return
        problem = self._problem()
        if problem is not None:
            self.state.setText(problem)
            return
        text = self.edit.toPlainText().strip()
        self.caption_saved.emit(self._image.id, text)
        self.save_button.setEnabled(False)
        self.state.setText("Saved")
