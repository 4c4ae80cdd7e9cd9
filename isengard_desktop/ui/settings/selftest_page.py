"""Settings page "Self-test": runs the self-test and shows each finding as it arrives.

The page never runs anything itself: it asks the injected factory for a
:class:`~isengard_desktop.services.selftest_runner.SelfTestService` (made once, owned by the page)
and shows its signals — the stage on a progress bar, one row per check (with what to do when
it failed), the losses and the LoRA path at the end, and "Copy report".
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Callable

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from ...core.selftest_report import Check, SelfTestResult
from ...core.types import Progress

if TYPE_CHECKING:
    from ...services.selftest_runner import SelfTestService

__all__ = ["SelfTestFactory", "SelfTestPageWidget"]

SelfTestFactory = Callable[[], "SelfTestService"]

_DEVICES = [("Automatic (the GPU when it works)", "auto"), ("CPU", "cpu"),
            ("GPU (CUDA)", "cuda")]
_OK_COLOUR = QColor("#6fbf73")
_FAILED_COLOUR = QColor("#e57373")
_WARNING_COLOUR = QColor("#e0b050")


class SelfTestPageWidget(QWidget):
    """Run the self-test and show what works and what does not."""

    def __init__(self, factory: SelfTestFactory, parent: QWidget | None = None,
                 steps: int = 20) -> None:
        super().__init__(parent)
        self._factory = factory
        self._service: SelfTestService | None = None
        self._steps = steps
        self.result: SelfTestResult | None = None

        intro = QLabel("Is my setup broken? The self-test checks Python, PyTorch, the GPU, "
                       "the training libraries and the disk, then trains a tiny random model "
                       "for a few steps through the real trainer. It takes about a minute "
                       "and does not touch your characters or LoRAs.")
        intro.setWordWrap(True)

        self.device = QComboBox()
        self.device.setObjectName("selftest_device")
        for label, key in _DEVICES:
            self.device.addItem(label, key)
        self.device.setToolTip("Where the tiny model trains. Automatic uses the GPU when "
                               "PyTorch can use it, else the CPU; GPU (CUDA) fails clearly "
                               "when the GPU cannot be used.")
        self.run_button = QPushButton("Run self-test")
        self.run_button.setObjectName("selftest_run")
        self.run_button.setToolTip("Start the checks and the tiny training run.")
        self.run_button.setAutoDefault(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("selftest_cancel")
        self.cancel_button.setToolTip("Stop the self-test (the trainer is ended).")
        self.cancel_button.setAutoDefault(False)
        self.cancel_button.setEnabled(False)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Device:"))
        controls.addWidget(self.device)
        controls.addStretch(1)
        controls.addWidget(self.run_button)
        controls.addWidget(self.cancel_button)

        self.progress = QProgressBar()
        self.progress.setObjectName("selftest_progress")
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        self.status = QLabel("Not run yet.")
        self.status.setObjectName("selftest_status")
        self.status.setWordWrap(True)

        self.checks = QTreeWidget()
        self.checks.setObjectName("selftest_checks")
        self.checks.setHeaderLabels(["Check", "Result", "Details"])
        self.checks.setRootIsDecorated(False)
        self.checks.setWordWrap(True)
        self.checks.setUniformRowHeights(False)
        self.checks.setToolTip("Each check as it completes; failed ones say what to do.")
        self.checks.setColumnWidth(0, 150)
        self.checks.setColumnWidth(1, 70)

        self.summary = QLabel()
        self.summary.setObjectName("selftest_summary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setVisible(False)

        self.copy_button = QPushButton("Copy report")
        self.copy_button.setObjectName("selftest_copy")
        self.copy_button.setToolTip("Copy the whole report as text (for a support request).")
        self.copy_button.setAutoDefault(False)
        self.copy_button.setEnabled(False)
        self.open_button = QPushButton("Open test folder")
        self.open_button.setObjectName("selftest_open_folder")
        self.open_button.setToolTip("Open the folder with the test's LoRA and logs.")
        self.open_button.setAutoDefault(False)
        self.open_button.setEnabled(False)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.open_button)
        bottom.addWidget(self.copy_button)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(controls)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.checks, 1)
        layout.addWidget(self.summary)
        layout.addLayout(bottom)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.copy_button.clicked.connect(self.copy_report)
        self.open_button.clicked.connect(self._open_folder)

    # -- actions ---------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._service is not None and self._service.is_running

    def run(self) -> None:
        if self.is_running:
            return
        if self._service is None:
            service = self._factory()
            service.setParent(self)
            service.progressed.connect(self.on_progressed)
            service.check_finished.connect(self.on_check_finished)
            service.finished.connect(self.on_finished)
            self._service = service
        self.result = None
        self.checks.clear()
        self.summary.setVisible(False)
        self.copy_button.setEnabled(False)
        self.open_button.setEnabled(False)
        self.run_button.setEnabled(False)
        self.device.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText("Starting…")
        self._service.start(steps=self._steps, device=self.device.currentData())

    def cancel(self) -> None:
        if self._service is not None and self._service.is_running:
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling…")
            self._service.cancel()

    def report_text(self) -> str:
        return self.result.report_text() if self.result is not None else ""

    def copy_report(self) -> None:
        text = self.report_text()
        if text:
            QGuiApplication.clipboard().setText(text)
            self.status.setText("The report was copied to the clipboard.")

    def _open_folder(self) -> None:
        folder = self.result.folder if self.result else None
        if folder and not QDesktopServices.openUrl(QUrl.fromLocalFile(folder)):
            self.status.setText(f"No file manager opened {folder}; open it by hand.")

    # -- service signals -----------------------------------------------------------------------
    def on_progressed(self, progress: Progress) -> None:
        if progress.total:
            self.progress.setRange(0, progress.total)
            self.progress.setValue(progress.done)
        self.status.setText(progress.label + (f" ({progress.detail})" if progress.detail
                                              else ""))

    def on_check_finished(self, check: Check) -> None:
        word = "Failed" if not check.ok else "Warning" if check.warning else "OK"
        item = QTreeWidgetItem([check.title, word, check.detail])
        item.setData(0, Qt.ItemDataRole.UserRole, check.name)
        colour = _FAILED_COLOUR if not check.ok else _WARNING_COLOUR if check.warning \
            else _OK_COLOUR
        item.setForeground(1, QBrush(colour))
        tip = check.detail + (f"\n\nWhat to do: {check.fix}" if check.fix else "")
        for column in range(3):
            item.setToolTip(column, tip)
        self.checks.addTopLevelItem(item)
        if check.fix:
            fix = QTreeWidgetItem(["", "", f"What to do: {check.fix}"])
            fix.setToolTip(2, check.fix)
            self.checks.addTopLevelItem(fix)
        self.checks.scrollToItem(item)

    def on_finished(self, result: SelfTestResult) -> None:
        self.result = result
        self.run_button.setEnabled(True)
        self.device.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        failed = [c for c in result.checks if not c.ok]
        if result.cancelled:
            head = "The self-test was cancelled."
        elif result.ok:
            head = "Everything works: this computer can train LoRAs."
        else:
            head = (f"{len(failed)} problem{'s' if len(failed) != 1 else ''} found: "
                    + ", ".join(c.title for c in failed) + ". See what to do above.")
        self.status.setText(f"{head} ({result.seconds:.0f} s)")
        lines = result.summary_lines()
        self.summary.setText("\n".join(lines))
        self.summary.setVisible(bool(lines))
        self.copy_button.setEnabled(True)
        self.open_button.setEnabled(result.folder is not None and Path(result.folder).is_dir())
