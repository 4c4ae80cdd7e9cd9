"""The Video tab's keyframes: the start picture, an optional end keyframe, more for a sequence.

Pictures come from a file dialog (started in the character's photo folder or the generated
gallery), or by drag and drop from the file manager or another tab. One keyframe makes an
image-to-video clip; two make a first-last-frame clip; three or more a keyframe sequence.

Signals:
    changed(): the keyframes or their order changed.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QIcon, QPixmap
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QVBoxLayout, QWidget)

from ..widgets.drop_zone import local_paths

__all__ = ["KeyframeStripWidget"]

PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
PICTURE_FILTER = "Pictures (*.png *.jpg *.jpeg *.webp *.bmp);;All files (*)"


class _List(QListWidget):
    dropped = Signal(list)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: ANN001
        if local_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.dropped.emit(paths)
        else:
            super().dropEvent(event)     # reordering inside the strip


class KeyframeStripWidget(QWidget):
    """See the module docstring."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start_folders: list[Path] = []     # where "+ keyframe" opens (character, gallery)
        self.list = _List(self)
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setFlow(QListWidget.Flow.LeftToRight)
        self.list.setWrapping(False)
        self.list.setIconSize(QSize(96, 96))
        self.list.setFixedHeight(140)
        self.list.setAcceptDrops(True)
        self.list.setDragDropMode(QListWidget.DragDropMode.InternalMove)
        self.list.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.list.setToolTip("Drop pictures here. The first is where the clip starts; a second is "
                             "where it ends; three or more make a keyframe sequence. Drag to "
                             "reorder.")
        self.list.dropped.connect(self.add_paths)
        self.list.model().rowsMoved.connect(lambda *_: self.changed.emit())
        self.add_button = QPushButton("+ keyframe…", self)
        self.add_button.setToolTip("Add a picture: a character photo, a generated image or any file.")
        self.add_button.clicked.connect(self._browse)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.clicked.connect(self.remove_selected)
        self.summary = QLabel(self)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.summary, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self._update_summary()

    def paths(self) -> list[str]:
        return [str(self.list.item(i).data(Qt.ItemDataRole.UserRole))
                for i in range(self.list.count())]

    def set_paths(self, paths: list[str] | tuple[str, ...]) -> None:
        self.list.clear()
        self.add_paths([Path(p) for p in paths])

    def add_paths(self, paths: list[Path]) -> None:
        added = False
        for path in paths:
            path = Path(path)
            if path.suffix.lower() not in PICTURE_SUFFIXES:
                continue
            item = QListWidgetItem(path.name)
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(str(path))
            pix = QPixmap(str(path))
            if not pix.isNull():
                item.setIcon(QIcon(pix.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio)))
            self.list.addItem(item)
            added = True
        if added:
            self._update_summary()
            self.changed.emit()

    def remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))
        self._update_summary()
        self.changed.emit()

    def _browse(self) -> None:
        start = next((str(f) for f in self.start_folders if f.is_dir()), "")
        files, _ = QFileDialog.getOpenFileNames(self, "Add keyframes", start, PICTURE_FILTER)
        self.add_paths([Path(f) for f in files])

    def _update_summary(self) -> None:
        n = self.list.count()
        self.summary.setText(
            "No picture: text to video" if n == 0 else
            "1 picture: image to video" if n == 1 else
            "2 keyframes: first → last frame" if n == 2 else
            f"{n} keyframes: a sequence of {n - 1} segments")
