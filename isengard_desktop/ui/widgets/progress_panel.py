"""Status-bar panel showing the running background operation, with Cancel.

It tracks import tasks (anything with ``progressed(Progress)``, ``finished(outcome)`` and
``cancel()``: imports, captioning, face checks); when one ends it shows the outcome's
summary (``outcome.summary()``, else ``outcome.report.summary()``).

Signals:
    summary_ready(str): the human summary of an operation that just ended.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMessageBox, QProgressBar, QPushButton, QWidget

from ...core.types import Progress


class ProgressPanelWidget(QWidget):
    summary_ready = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tasks: list = []
        self.last_summary = ""
        self.label = QLabel("")
        self.bar = QProgressBar()
        self.bar.setFixedWidth(180)
        self.bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current file. Files already done are kept.")
        self.cancel_button.clicked.connect(self._cancel_current)
        self.details_button = QPushButton("Details")
        self.details_button.setToolTip("What was imported, skipped or rejected, and why.")
        self.details_button.clicked.connect(self._show_details)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 6, 0)
        for w in (self.label, self.bar, self.cancel_button, self.details_button):
            layout.addWidget(w)
        self._set_running(False)
        self.details_button.hide()

    def track(self, task) -> None:  # noqa: ANN001
        self._tasks.append(task)
        task.progressed.connect(self._on_progressed)
        task.finished.connect(lambda outcome, t=task: self._on_finished(t, outcome))
        self.label.setText(getattr(task, "label", "Working…"))
        self.bar.setRange(0, 0)
        self._set_running(True)
        self.details_button.hide()

    def _set_running(self, running: bool) -> None:
        self.bar.setVisible(running)
        self.cancel_button.setVisible(running)
        if not running:
            self.label.setText("")

    def _cancel_current(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.cancel_button.setEnabled(False)
        self.label.setText("Cancelling…")

    def _on_progressed(self, progress: Progress) -> None:
        if progress.total:
            self.bar.setRange(0, progress.total)
            self.bar.setValue(progress.done)
            self.bar.setFormat(f"{progress.done}/{progress.total}")
        self.label.setText(progress.label + (f" — {progress.detail}" if progress.detail else ""))

    def _on_finished(self, task, outcome) -> None:  # noqa: ANN001
        if task in self._tasks:
            self._tasks.remove(task)
        own = getattr(outcome, "summary", None)       # e.g. the face checks' outcome
        report = getattr(outcome, "report", None)
        summary = own() if callable(own) else \
            report.summary() if report is not None else "Done."
        self.last_summary = summary
        self.label.setText("")  # the window shows the summary; Details holds the rest
        self.cancel_button.setEnabled(True)
        if not self._tasks:
            self._set_running(False)
        self.details_button.setVisible(len(summary.splitlines()) > 1)
        self.summary_ready.emit(summary)

    def _show_details(self) -> None:
        box = QMessageBox(QMessageBox.Icon.Information, "Import summary",
                          self.last_summary.splitlines()[0], QMessageBox.StandardButton.Ok, self)
        box.setDetailedText(self.last_summary)
        box.setModal(False)
        box.show()
