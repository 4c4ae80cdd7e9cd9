"""A horizontal strip of sample images made during training, newest first.

Thumbnails are decoded off the UI thread (QImageReader with a scaled size, a
``BackgroundOp``); a click opens the full image with its step and prompt in a dialog.

Signals:
    sample_clicked(str path): a thumbnail was clicked (the dialog opens as well).
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QImageReader, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem,
                               QScrollArea, QVBoxLayout, QWidget)

from ...services.background import BackgroundOp, alive

THUMB = 112
PathRole = Qt.ItemDataRole.UserRole + 1
StepRole = Qt.ItemDataRole.UserRole + 2
PromptRole = Qt.ItemDataRole.UserRole + 3


def load_scaled(path: str, box: int) -> QImage:
    """Decode ``path`` scaled to fit ``box`` px (any thread); a null image when unreadable."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and (size.width() > box or size.height() > box):
        reader.setScaledSize(size.scaled(box, box, Qt.AspectRatioMode.KeepAspectRatio))
    return reader.read()


class SampleDialog(QDialog):
    """One sample at full size (fitted to the screen) with its step and prompt."""

    def __init__(self, path: str, step: int, prompt: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Sample at step {step}")
        image = load_scaled(path, 1024)
        self.image_label = QLabel()
        self.image_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        if image.isNull():
            self.image_label.setText(f"This sample could not be opened:\n{path}")
        else:
            self.image_label.setPixmap(QPixmap.fromImage(image))
        scroll = QScrollArea()
        scroll.setWidget(self.image_label)
        scroll.setWidgetResizable(True)
        caption = QLabel(f"Step {step} — {prompt}" if prompt else f"Step {step}")
        caption.setWordWrap(True)
        caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(caption)
        layout.addWidget(buttons)
        if not image.isNull():
            self.resize(min(image.width() + 60, 1100), min(image.height() + 120, 900))


class SamplesStripWidget(QListWidget):
    sample_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SamplesStrip")
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListWidget.Movement.Static)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 16, THUMB + 26))
        self.setSpacing(2)
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(THUMB + 50)
        self.setStyleSheet(
            "QScrollBar:horizontal { background: transparent; height: 10px; }"
            "QScrollBar::handle:horizontal { background: #353b47; border-radius: 5px;"
            " min-width: 30px; }"
            "QScrollBar::add-line:horizontal, QScrollBar::sub-line:horizontal { width: 0; }")
        self.setToolTip("Samples made during training, newest first. Click one to enlarge it.")
        self.last_dialog: SampleDialog | None = None
        self.empty_text = "Samples appear here as training makes them."
        self._placeholder = QPixmap(THUMB, THUMB)
        self._placeholder.fill(Qt.GlobalColor.transparent)
        self._generation = 0
        self.itemClicked.connect(self._open)

    # -- content -------------------------------------------------------------------------------
    def add_sample(self, step: int, path: str | Path, prompt: str = "") -> None:
        """Show a new sample at the front; its thumbnail is decoded in the background."""
        path = str(path)
        item = QListWidgetItem(QIcon(self._placeholder), f"step {step}")
        item.setData(PathRole, path)
        item.setData(StepRole, int(step))
        item.setData(PromptRole, prompt)
        item.setToolTip(f"Step {step}\n{prompt}" if prompt else f"Step {step}")
        item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.insertItem(0, item)
        generation = self._generation

        def loaded(image: QImage) -> None:
            if generation != self._generation:
                return
            for row in range(self.count()):
                it = self.item(row)
                if it.data(PathRole) == path and it.data(StepRole) == int(step):
                    if image.isNull():
                        it.setText(f"step {step} (unreadable)")
                    else:
                        it.setIcon(QIcon(QPixmap.fromImage(image)))
                        it.setData(Qt.ItemDataRole.UserRole + 4, True)
                    break

        BackgroundOp(parent=self, op=lambda: load_scaled(path, THUMB)).success(loaded) \
            .failure(lambda _exc: loaded(QImage())).run()

    def set_samples(self, samples: Iterable[tuple[int, str | Path, str]]) -> None:
        """Replace the strip with (step, path, prompt) samples, oldest first."""
        self.clear()
        for step, path, prompt in samples:
            self.add_sample(step, path, prompt)

    def clear(self) -> None:  # noqa: D102 - also forgets pending decodes
        self._generation += 1
        super().clear()

    def paths(self) -> list[str]:
        """Sample paths as shown, newest first."""
        return [self.item(r).data(PathRole) for r in range(self.count())]

    def is_loaded(self, row: int) -> bool:
        return bool(self.item(row).data(Qt.ItemDataRole.UserRole + 4))

    def paintEvent(self, event) -> None:  # noqa: ANN001
        super().paintEvent(event)
        if self.count() == 0:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter,
                             self.empty_text)
            painter.end()

    # -- enlarge -------------------------------------------------------------------------------
    def _open(self, item: QListWidgetItem) -> None:
        path = item.data(PathRole)
        self.sample_clicked.emit(path)
        if self.last_dialog is not None and alive(self.last_dialog):
            self.last_dialog.close()
        dialog = SampleDialog(path, item.data(StepRole), item.data(PromptRole), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.last_dialog = dialog
        dialog.open()
