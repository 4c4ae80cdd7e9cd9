"""The Downloads panel: every queued, running, paused, finished or failed download, one row
each with its MB, MB/s and ETA and the buttons that apply (Pause, Resume, Cancel, Retry).

The dialog never calls a service: it shows the views it is given (:meth:`set_items`, connected
to ``DownloadService.items_changed`` in ``app.py``) and emits what the user asked for.

Signals:
    pause_requested(int), resume_requested(int), cancel_requested(int), retry_requested(int):
        the item id.
    clear_requested(): forget finished and cancelled items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton,
    QScrollArea, QVBoxLayout, QWidget,
)

__all__ = ["DownloadRowWidget", "DownloadsDialog"]

STATE_TEXT = {
    "queued": "Waiting", "running": "Downloading", "paused": "Paused", "done": "Done",
    "failed": "Failed", "cancelled": "Cancelled",
}


class DownloadRowWidget(QFrame):
    """One download: name and state, a bar, "MB of MB · MB/s · ETA", the error, buttons."""

    def __init__(self, item_id: int, dialog: DownloadsDialog) -> None:
        super().__init__()
        self.item_id = item_id
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.detail = QLabel()
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setObjectName("DownloadError")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pause = QPushButton("Pause")
        self.pause.setToolTip("Stop for now; the part already downloaded is kept.")
        self.resume = QPushButton("Resume")
        self.resume.setToolTip("Go on from where it stopped.")
        self.cancel = QPushButton("Cancel")
        self.cancel.setToolTip("Stop and delete the partly downloaded file.")
        self.retry = QPushButton("Retry")
        self.retry.setToolTip("Try again (goes on from the part already downloaded, if any).")
        self.pause.clicked.connect(lambda: dialog.pause_requested.emit(self.item_id))
        self.resume.clicked.connect(lambda: dialog.resume_requested.emit(self.item_id))
        self.cancel.clicked.connect(lambda: dialog.cancel_requested.emit(self.item_id))
        self.retry.clicked.connect(lambda: dialog.retry_requested.emit(self.item_id))
        buttons = QHBoxLayout()
        buttons.addWidget(self.detail, 1)
        for button in (self.pause, self.resume, self.cancel, self.retry):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.bar)
        layout.addLayout(buttons)
        layout.addWidget(self.error)

    def show_view(self, view: Any) -> None:
        self.title.setText(f"<b>{view.name}</b> — {STATE_TEXT.get(view.state, view.state)}")
        progress = view.progress
        self.bar.setValue(int(progress.fraction * 1000))
        self.detail.setText(progress.detail)
        self.error.setText(view.error)
        self.error.setVisible(bool(view.error))
        self.pause.setVisible(view.can_pause)
        self.resume.setVisible(view.can_resume)
        self.cancel.setVisible(view.can_cancel)
        self.retry.setVisible(view.can_retry)


class DownloadsDialog(QDialog):
    """A small non-modal window listing the downloads (see the module text)."""

    pause_requested = Signal(int)
    resume_requested = Signal(int)
    cancel_requested = Signal(int)
    retry_requested = Signal(int)
    clear_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Downloads")
        self.setModal(False)
        self.resize(640, 420)
        self.rows: dict[int, DownloadRowWidget] = {}
        self.empty = QLabel("Nothing is downloading. Models you choose to download appear "
                            "here, with their progress.")
        self.empty.setWordWrap(True)
        self._list = QVBoxLayout()
        self._list.addWidget(self.empty)
        self._list.addStretch(1)
        inner = QWidget()
        inner.setLayout(self._list)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.hide)
        self.clear_button = close.addButton("Clear finished",
                                            QDialogButtonBox.ButtonRole.ActionRole)
        self.clear_button.setToolTip("Remove finished and cancelled downloads from this list; "
                                     "the files stay where they are.")
        self.clear_button.clicked.connect(self.clear_requested.emit)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(close)

    def set_items(self, views: Sequence[Any]) -> None:
        seen = set()
        for view in views:
            seen.add(view.id)
            row = self.rows.get(view.id)
            if row is None:
                row = DownloadRowWidget(view.id, self)
                self.rows[view.id] = row
                self._list.insertWidget(self._list.count() - 1, row)
            row.show_view(view)
        for item_id in set(self.rows) - seen:
            self.rows.pop(item_id).deleteLater()
        self.empty.setVisible(not self.rows)


def button_text(count: int) -> str:
    """The status-bar button's text: "Downloads" or "Downloads (2)"."""
    return f"Downloads ({count})" if count else "Downloads"
