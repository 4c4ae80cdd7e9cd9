"""Yes/No confirmations for destructive actions, default No."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


PERMANENT_NOTE = ("\n\nThe app's data folder is on a drive without a Recycle Bin (a removable "
                  "or network drive): the files will be deleted for good and cannot be "
                  "restored.")


def confirm_trash_photos(parent: QWidget | None, count: int, permanent: bool = False) -> bool:
    """``permanent``: there is no trash where the photos are (they are deleted for good)."""
    photos = f"{count} photo{'s' if count != 1 else ''}"
    if permanent:
        return confirm(parent, "Delete photos for good",
                       f"Delete {photos} and their captions?" + PERMANENT_NOTE)
    return confirm(parent, "Delete photos",
                   f"Move {photos} and their captions to the "
                   "trash?\n\nYou can restore the files from the trash.")
