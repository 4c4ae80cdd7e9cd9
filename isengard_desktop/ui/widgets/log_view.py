"""A live, read-only log of a trainer's output with a level filter.

It keeps the last :data:`MAX_LINES` lines. New lines scroll into view unless the user has
scrolled up to read something; scrolling back to the bottom resumes following. The filter
shows all lines or only warnings and errors (recognised by words such as "error",
"warning", "traceback", "out of memory"). No signals.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

from PySide6.QtGui import QColor, QFontDatabase, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton,
                               QVBoxLayout, QWidget)

MAX_LINES = 5000
ALL, PROBLEMS = "all", "problems"
_ERROR = re.compile(r"\b(error|exception|traceback|fatal|failed|out of memory|oom|"
                    r"cuda error|killed|nan)\b", re.IGNORECASE)
_WARNING = re.compile(r"\b(warn|warning|warnings|deprecated|userwarning)\b", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_COLORS = {"error": "#f0a3a3", "warning": "#ead9a8", "info": "#c9d0dc", "app": "#8fb3ff"}


def line_level(line: str) -> str:
    """"error", "warning" or "info" for one log line."""
    if _ERROR.search(line):
        return "error"
    if _WARNING.search(line):
        return "warning"
    return "info"


class LogViewWidget(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lines: deque[tuple[str, str, str]] = deque(maxlen=MAX_LINES)  # stream, level, text
        self.text = QPlainTextEdit()
        self.text.setObjectName("LogText")
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setUndoRedoEnabled(False)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(8.0, font.pointSizeF() - 0.5))
        self.text.setFont(font)
        self.text.setPlaceholderText("The trainer's output appears here.")

        self.filter_combo = QComboBox()
        self.filter_combo.addItem("All lines", ALL)
        self.filter_combo.addItem("Warnings & errors", PROBLEMS)
        self.filter_combo.setToolTip("Show every line, or only lines that mention a warning or "
                                     "an error.")
        self.follow_button = QPushButton("Follow")
        self.follow_button.setToolTip("Jump to the newest line and keep following new output.")
        self.follow_button.setVisible(False)
        title = QLabel("Log")
        title.setProperty("subtle", True)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(title)
        top.addStretch(1)
        top.addWidget(self.follow_button)
        top.addWidget(self.filter_combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.text, 1)

        self._formats: dict[str, QTextCharFormat] = {}
        for level, color in _COLORS.items():
            fmt = QTextCharFormat()
            fmt.setForeground(QColor(color))
            self._formats[level] = fmt
        self.filter_combo.currentIndexChanged.connect(lambda _: self._refill())
        self.follow_button.clicked.connect(self.scroll_to_end)
        bar = self.text.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)

    # -- state -----------------------------------------------------------------------------
    @property
    def filter(self) -> str:
        return self.filter_combo.currentData()

    def set_filter(self, value: str) -> None:
        self.filter_combo.setCurrentIndex(self.filter_combo.findData(value))

    def lines(self) -> list[str]:
        """The lines currently shown (after the filter)."""
        text = self.text.toPlainText()
        return text.split("\n") if text else []

    def is_following(self) -> bool:
        bar = self.text.verticalScrollBar()
        return bar.value() >= bar.maximum() - 2

    def scroll_to_end(self) -> None:
        bar = self.text.verticalScrollBar()
        bar.setValue(bar.maximum())

    def clear(self) -> None:
        self._lines.clear()
        self.text.clear()
        self.follow_button.setVisible(False)

    # -- appending -------------------------------------------------------------------------
    def append_lines(self, stream: str, lines: Iterable[str]) -> None:
        """Add lines from ``stream`` ("stdout", "stderr", "app", ...)."""
        batch = []
        for raw in lines:
            line = _ANSI.sub("", str(raw)).rstrip("\r\n")
            level = "app" if stream == "app" and line_level(line) == "info" else line_level(line)
            self._lines.append((stream, level, line))
            batch.append((level, line))
        self._show(batch)

    def _visible(self, level: str) -> bool:
        return self.filter != PROBLEMS or level in ("warning", "error")

    def _show(self, batch: list[tuple[str, str]]) -> None:
        shown = [(level, line) for level, line in batch if self._visible(level)]
        if not shown:
            return
        follow = self.is_following()
        bar = self.text.verticalScrollBar()
        keep = bar.value()
        cursor = QTextCursor(self.text.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()
        first = self.text.document().isEmpty()
        for level, line in shown:
            if not first:
                cursor.insertBlock()
            first = False
            cursor.insertText(line, self._formats[level])
        cursor.endEditBlock()
        if follow:
            self.scroll_to_end()
        else:
            bar.setValue(min(keep, bar.maximum()))

    def _refill(self) -> None:
        self.text.clear()
        self._show([(level, line) for _, level, line in self._lines])
        self.scroll_to_end()

    def _on_scrolled(self, _value: int) -> None:
        self.follow_button.setVisible(not self.is_following())
