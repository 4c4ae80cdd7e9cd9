"""The "Dataset score" card: one character's (or several characters') face-based dataset
summary — photos usable, faces found, variety of pose, light and framing, what to add —
from :class:`~...core.faces.checks.DatasetScore`. Shown on the Dataset tab's checks panel and
on a character's page."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from ...core.faces.checks import DatasetScore

__all__ = ["DatasetScoreWidget", "score_html"]

EMPTY_TEXT = "Run the checks with “Check faces” on the Dataset tab to score the dataset."


def score_html(name: str, ds: DatasetScore) -> str:
    """The card's text for one character (rich text)."""
    lines = [f"<b>{escape(name)}: {ds.score}/100</b> — {ds.usable} of {ds.photos} photos "
             f"usable, faces found in {ds.with_face}."]
    if ds.variety_text():
        lines.append(f"Variety: {escape(ds.variety_text())}.")
    lines += [f"• {escape(a)}" for a in ds.advice]
    return "<br>".join(lines)


class DatasetScoreWidget(QGroupBox):
    """A titled card holding :func:`score_html` text (no signals)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Dataset score", parent)
        self.label = QLabel(EMPTY_TEXT)
        self.label.setWordWrap(True)
        self.setToolTip(
            "Photos usable (a face of the right person, big enough, not cut), faces found, "
            "variety of pose, light, framing and clothing colour, and what to add. The score "
            "(0–100) is a rough guide: the usable share × (0.6 + 0.1 per varied axis of "
            "four), not a prediction of the LoRA's quality.")
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)

    def show_scores(self, items: Sequence[tuple[str, DatasetScore]]) -> None:
        self.label.setText("<br><br>".join(score_html(n, ds) for n, ds in items)
                           if items else EMPTY_TEXT)

    def text(self) -> str:
        return self.label.text()
