"""The managed ComfyUI box (Settings → ComfyUI and the wizard's Models and ComfyUI page): which
release Isengard installed, an "Install ComfyUI for me" / "Update" / "Repair" button with
progress, Cancel, and the install's log.

It talks only to :class:`~...services.generation.comfy_install.ComfyInstallService`; reading
the state (a few small files) runs off the UI thread.

Signals:
    installed(str, str): the install ended READY: the ComfyUI folder and its Python.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QGroupBox, QHBoxLayout, QLabel, QPlainTextEdit,
                               QProgressBar, QPushButton, QVBoxLayout, QWidget)

from ...core.comfy_install.layout import ComfyInstallStatus
from ...core.runtime.status import RuntimeState
from ...services.background import BackgroundOp

__all__ = ["ComfyInstallWidget", "describe_install"]

LOG_LINES = 400

_BUTTON = {RuntimeState.MISSING: "Install ComfyUI for me",
           RuntimeState.INCOMPLETE: "Continue the install",
           RuntimeState.BROKEN: "Repair",
           RuntimeState.OUTDATED: "Update",
           RuntimeState.READY: "Install again"}


def describe_install(status: ComfyInstallStatus) -> str:
    """One or two sentences about the managed ComfyUI."""
    if status.state == RuntimeState.READY:
        return (f"ComfyUI {status.installed_tag} (commit {status.commit[:10]}) is installed "
                f"and passed its check: {status.comfy}")
    if status.state == RuntimeState.INSTALLING:
        return f"Installing ComfyUI {status.tag}…"
    if status.state == RuntimeState.OUTDATED and status.installed_tag:
        return status.problem
    return status.problem or f"ComfyUI {status.tag} is not installed."


class ComfyInstallWidget(QGroupBox):
    """See the module docstring."""

    installed = Signal(str, str)

    def __init__(self, service: Any, parent: QWidget | None = None) -> None:
        super().__init__("ComfyUI installed by Isengard", parent)
        self.setObjectName("comfy_install_box")
        self.setToolTip("Isengard can install a pinned ComfyUI release into its data folder, "
                        "with its own Python environment that shares PyTorch with the trainer "
                        "(the same wheels, so little extra disk), checked by starting it.")
        self._service = service
        layout = QVBoxLayout(self)
        self.state_label = QLabel("Reading the install…")
        self.state_label.setObjectName("comfy_install_state")
        self.state_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setObjectName("comfy_install_progress")
        self.progress.setVisible(False)
        self.detail = QLabel("")
        self.detail.setObjectName("comfy_install_detail")
        self.detail.setWordWrap(True)
        self.detail.setVisible(False)
        self.install_button = QPushButton("Install ComfyUI for me")
        self.install_button.setObjectName("comfy_install_button")
        self.install_button.setToolTip(
            "Download the pinned ComfyUI release (about 5 MB) and its packages (PyTorch is "
            "shared with the trainer runtime; ComfyUI's own packages add about 0.5-1 GB), "
            "add Isengard's LoRA upload node, then start it once to check it. Continues where "
            "it stopped after a cancel.")
        self.install_button.setAutoDefault(False)
        self.install_button.clicked.connect(self.start_install)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("comfy_install_cancel")
        self.cancel_button.setToolTip("Stop the install; what was downloaded is kept.")
        self.cancel_button.setAutoDefault(False)
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(service.cancel)
        self.log_button = QPushButton("Show log")
        self.log_button.setObjectName("comfy_install_log_button")
        self.log_button.setToolTip("The output of the install's steps (uv, the check).")
        self.log_button.setCheckable(True)
        self.log_button.setAutoDefault(False)
        self.log = QPlainTextEdit()
        self.log.setObjectName("comfy_install_log")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setVisible(False)
        self.log.setMaximumHeight(160)
        self.log_button.toggled.connect(self.log.setVisible)
        row = QHBoxLayout()
        row.addWidget(self.install_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.log_button)
        row.addStretch(1)
        layout.addWidget(self.state_label)
        self.packs_layout = QVBoxLayout()
        self.pack_boxes: dict[str, QCheckBox] = {}
        layout.addLayout(self.packs_layout)
        layout.addWidget(self.progress)
        layout.addWidget(self.detail)
        layout.addLayout(row)
        layout.addWidget(self.log)
        service.progress.connect(self.on_progress)
        service.finished.connect(self.on_finished)
        service.log_line.connect(self.log.appendPlainText)
        if service.busy:
            self._set_busy(True)
            self.state_label.setText("Installing ComfyUI…")
        else:
            self.refresh()

    # -- actions -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the install's state off the UI thread."""
        service = self._service

        def read() -> tuple[ComfyInstallStatus, tuple[Any, ...]]:
            return service.status(), tuple(service.node_packs())

        def show(result: tuple[ComfyInstallStatus, tuple[Any, ...]]) -> None:
            self.show_status(result[0])
            self._show_packs(result[1])

        BackgroundOp(parent=self, op=read).success(show) \
            .supersede("comfy-install-status").run()

    def _show_packs(self, packs: tuple[Any, ...]) -> None:
        for pack in packs:
            if pack.name in self.pack_boxes or not pack.commit:
                continue
            box = QCheckBox(f"Also install {pack.name} — for {pack.purpose}"
                            if pack.purpose else f"Also install {pack.name}")
            box.setObjectName(f"comfy_pack_{pack.name}")
            box.setToolTip(f"Custom nodes from {pack.repo}, pinned to commit "
                           f"{pack.commit[:12]}; put into ComfyUI's custom_nodes folder with "
                           "their Python packages.")
            self.pack_boxes[pack.name] = box
            self.packs_layout.addWidget(box)

    def ticked_packs(self) -> list[str]:
        return [name for name, box in self.pack_boxes.items() if box.isChecked()]

    def start_install(self) -> None:
        self.log.clear()
        self._set_busy(True)
        self.state_label.setText("Installing ComfyUI…")
        self._service.install(None, self.ticked_packs())

    # -- slots -------------------------------------------------------------------------------
    def show_status(self, status: ComfyInstallStatus) -> None:
        self.state_label.setText(describe_install(status))
        self.state_label.setStyleSheet("" if status.state == RuntimeState.READY
                                       else "color: #f0c674;")
        if status.state != RuntimeState.INSTALLING:
            self._set_busy(False)
            self.install_button.setText(_BUTTON.get(status.state, "Install ComfyUI for me"))

    def on_progress(self, progress: Any) -> None:
        self._set_busy(True)
        self.progress.setRange(0, max(progress.total, 0))
        if progress.total:
            self.progress.setValue(min(progress.done, progress.total))
        self.detail.setText(f"{progress.label.capitalize()}: {progress.detail}")

    def on_finished(self, status: ComfyInstallStatus) -> None:
        self.show_status(status)
        self.detail.setText(status.problem if status.problem else "")
        self.detail.setVisible(bool(status.problem))
        if status.state == RuntimeState.READY and status.comfy and status.python:
            self.installed.emit(str(status.comfy), str(status.python))

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.detail.setVisible(busy or bool(self.detail.text()))
        self.cancel_button.setVisible(busy)
        self.install_button.setEnabled(not busy)
