"""Yes/No confirmations for destructive actions, default No."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def confirm_trash_photos(parent: QWidget | None, count: int) -> bool:
    return confirm(parent, "Delete photos",
                   f"Move {count} photo{'s' if count != 1 else ''} and their captions to the "
                   "trash?\n\nYou can restore the files from the trash.")
