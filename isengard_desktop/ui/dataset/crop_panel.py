"""The Dataset tab's crops box: the family whose bucket aspects crops use, "Propose face
crops", "Adjust crop…", "Reset crop", and what the last proposal did (the photos it skipped,
each clickable to select it).

Signals:
    propose_requested(str): the family key to propose crops for.
    adjust_requested(): open the editor for the selected photo.
    reset_requested(): remove the selected photos' crops.
    photo_clicked(int): a skipped photo's id (select it in the grid).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QGroupBox, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QPushButton, QVBoxLayout, QWidget)

from ...core.comfy.model_family import label as family_label
from ...core.training.buckets import family_buckets
from ...core.training.presets import min_short_side
from ...core.training.spec import FAMILIES
from ...services.crops import CropProposalOutcome

__all__ = ["DEFAULT_CROP_FAMILY", "CropPanelWidget"]

DEFAULT_CROP_FAMILY = "sdxl"


class CropPanelWidget(QGroupBox):
    """See the module docstring."""

    propose_requested = Signal(str)
    adjust_requested = Signal()
    reset_requested = Signal()
    photo_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Face crops", parent)
        self.family_combo = QComboBox()
        self.family_combo.setToolTip(
            "The model family whose training buckets (sizes and aspect ratios) the crops are "
            "made for. Each crop gets the aspect of one bucket, so the trainer scales it "
            "without cutting it again.")
        for key in FAMILIES:
            self.family_combo.addItem(family_label(key), key)
        self.family_combo.setCurrentIndex(max(0, self.family_combo.findData(DEFAULT_CROP_FAMILY)))
        self.propose_button = QPushButton("Propose face crops")
        self.propose_button.setToolTip(
            "For every photo shown: a crop at the bucket aspect closest to the photo that "
            "centres the face, puts the eyes a third from the top and keeps the shoulders. "
            "Photos are never changed; the trainer reads the crop. Crops you adjusted by "
            "hand are kept.")
        self.adjust_button = QPushButton("Adjust crop…")
        self.adjust_button.setToolTip("Move or resize the selected photo's crop "
                                      "(or double-click a photo).")
        self.reset_button = QPushButton("Reset crop")
        self.reset_button.setToolTip("Remove the selected photos' crops: the trainer uses "
                                     "the whole photos.")
        self.summary = QLabel("Crops: none proposed yet.")
        self.summary.setProperty("subtle", True)
        self.summary.setWordWrap(True)
        self.skipped_list = QListWidget()
        self.skipped_list.setToolTip("Photos the proposal skipped. Click one to select it.")
        self.skipped_list.setMaximumHeight(110)
        self.skipped_list.setVisible(False)

        row = QHBoxLayout()
        row.addWidget(self.family_combo, 1)
        row.addWidget(self.propose_button)
        edit = QHBoxLayout()
        edit.addWidget(self.adjust_button)
        edit.addWidget(self.reset_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(edit)
        layout.addWidget(self.summary)
        layout.addWidget(self.skipped_list)

        self.propose_button.clicked.connect(lambda: self.propose_requested.emit(self.family()))
        self.adjust_button.clicked.connect(self.adjust_requested.emit)
        self.reset_button.clicked.connect(self.reset_requested.emit)
        self.skipped_list.itemClicked.connect(
            lambda item: self.photo_clicked.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.set_selection(0)

    def family(self) -> str:
        return str(self.family_combo.currentData())

    def buckets(self) -> list[tuple[int, int]]:
        return family_buckets(self.family())

    def set_selection(self, count: int) -> None:
        self.adjust_button.setEnabled(count == 1)
        self.reset_button.setEnabled(count >= 1)

    def set_busy(self, count: int) -> None:
        self.propose_button.setEnabled(False)
        self.summary.setText(f"Proposing crops for {count} photo{'s' if count != 1 else ''}…")

    def show_outcome(self, outcome: CropProposalOutcome, name_of: Callable[[int], str]) -> None:
        self.propose_button.setEnabled(True)
        parts = [f"{len(outcome.proposed)} proposed ({family_label(outcome.family)})"]
        if outcome.small:
            parts.append(f"{len(outcome.small)} under {min_short_side(outcome.family)} px on "
                         "the short side (training upscales them)")
        if outcome.kept_manual:
            parts.append(f"{len(outcome.kept_manual)} adjusted by hand kept")
        if outcome.skipped:
            parts.append(f"{len(outcome.skipped)} skipped")
        self.summary.setText("Crops: " + ", ".join(parts) + ".")
        self.skipped_list.clear()
        for image_id, reason in outcome.skipped:
            item = QListWidgetItem(f"{name_of(image_id)} — {reason}")
            item.setData(Qt.ItemDataRole.UserRole, image_id)
            item.setToolTip(item.text())
            self.skipped_list.addItem(item)
        self.skipped_list.setVisible(bool(outcome.skipped))

    def show_failure(self, message: str) -> None:
        self.propose_button.setEnabled(True)
        self.summary.setText(message)
