"""Edits the caption of one selected image; Save writes it to the DB and the sidecar.

An edit is never dropped: it is saved when the text box loses focus and before another
image (or none) is shown.

Signals:
    caption_saved(int, str): image id and the new caption.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from ...core.dataset.captions import caption_problem
from ...core.db.records import ImageRecord


class CaptionEditorWidget(QWidget):
    caption_saved = Signal(int, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: ImageRecord | None = None
        self._saved_text = ""
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
        self.edit.installEventFilter(self)
        self.set_image(None)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if watched is self.edit and event.type() == QEvent.Type.FocusOut:
            self.save_pending()
        return super().eventFilter(watched, event)

    def is_dirty(self) -> bool:
        return self._image is not None and self.edit.toPlainText() != self._saved_text

    def save_pending(self) -> None:
        """Save the typed caption if it differs from the saved one."""
        if self.is_dirty():
            self.save()

    def set_image(self, image: ImageRecord | None) -> None:
        if image is not None and self._image is not None and image.id == self._image.id:
            # the same photo refreshed: keep typed text and the state line; take a caption
            # changed elsewhere (bulk edits), never one older than a save still being written
            previous, self._image = self._image, image
            if not self.is_dirty() and image.caption != previous.caption \
                    and image.caption != self._saved_text.strip():
                self._saved_text = image.caption
                self.edit.blockSignals(True)
                self.edit.setPlainText(image.caption)
                self.edit.blockSignals(False)
            return
        self.save_pending()
        self._image = image
        self._saved_text = image.caption if image else ""
        self.edit.blockSignals(True)
        self.edit.setPlainText(self._saved_text)
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
        dirty = self.is_dirty()
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
        self._saved_text = self.edit.toPlainText()
        self.caption_saved.emit(self._image.id, text)
        self.save_button.setEnabled(False)
        self.state.setText("Saved")
