"""Pieces the wizard's pages share: the page base class, headings, and number wording."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

__all__ = ["WizardPage", "heading", "note", "problem_label"]


def heading(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("Title")
    return label


def note(text: str = "", subtle: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                  | Qt.TextInteractionFlag.LinksAccessibleByMouse)
    label.setOpenExternalLinks(False)
    if subtle:
        label.setProperty("subtle", True)
    return label


def problem_label(kind: str = "warning") -> QLabel:
    """A hidden, word-wrapped box for a warning ("warning") or a blocking problem ("error")."""
    label = QLabel("")
    label.setWordWrap(True)
    label.setObjectName("WizardProblem" if kind == "error" else "WizardWarning")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if kind == "error":
        label.setStyleSheet("background: #3a2427; border: 1px solid #6b3338; border-radius: 6px;"
                            " padding: 8px; color: #f6c4c4; font-weight: 600;")
    else:
        label.setStyleSheet("background: #2a2417; border: 1px solid #5c4a1f; border-radius: 6px;"
                            " padding: 8px; color: #ead9a8;")
    label.hide()
    return label


class WizardPage(QWidget):
    """One step. ``key`` names it for ``open_wizard(page=...)``; ``complete`` says whether
    this step's goal is reached (the Next button then reads "Next", else "Skip this step").

    Signals:
        completeness_changed(): ``complete`` may have changed.
    """

    completeness_changed = Signal()
    key = ""
    title = ""
    has_goal = False        # a step that installs or links something (✓ in the list when done)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"wizard_page_{self.key}")
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(24, 18, 24, 12)
        self.layout_.setSpacing(10)

    @property
    def complete(self) -> bool:
        return True

    def next_text(self) -> str:
        """The Next button's text on this page."""
        return "Next" if self.complete else "Skip this step"

    def entered(self) -> None:
        """The page is being shown (override to refresh what it shows)."""
