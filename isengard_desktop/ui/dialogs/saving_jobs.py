"""The small "Saving the job…" dialog shown after "Stop & save and quit": it stays up while
the trainers save their checkpoint and LoRA, keeps the window responsive, and offers
"Quit now" for someone who cannot wait."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QLabel, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

__all__ = ["SavingJobsDialog"]


class SavingJobsDialog(QDialog):
    """Window-modal wait for jobs that are saving before the app quits.

    Signals:
        quit_now_requested(): the user chose not to wait (the job ends "interrupted", resumable
            from its newest checkpoint if it has one).
    """

    quit_now_requested = Signal()

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Saving the job…")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        bar = QProgressBar()
        bar.setRange(0, 0)            # busy: the trainer does not say how long a save takes
        bar.setTextVisible(False)
        self.quit_now_button = QPushButton("Quit now")
        self.quit_now_button.setToolTip(
            "Stop waiting: the trainer is ended now and the job is marked interrupted. "
            "Resume continues from its newest saved checkpoint, if it has one.")
        buttons = QDialogButtonBox()
        buttons.addButton(self.quit_now_button, QDialogButtonBox.ButtonRole.DestructiveRole)
        self.quit_now_button.clicked.connect(self.quit_now_requested.emit)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(bar)
        layout.addWidget(buttons)
        self.setMinimumWidth(380)

    def set_text(self, text: str) -> None:
        self.label.setText(text)

    def reject(self) -> None:
        """Esc and the title bar's close do not abandon the save: only "Quit now" does."""
