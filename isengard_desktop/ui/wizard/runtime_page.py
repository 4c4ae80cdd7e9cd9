"""The wizard's trainer-runtime page: download the runtime or install it from an offline folder,
with the service's progress (phase, MB, MB/s, ETA), Cancel and Retry.

The page only talks to a :class:`~isengard_desktop.services.runtime.RuntimeService` (or a
stand-in with the same signals and methods): it calls ``status``/``install``/``cancel`` and
listens to ``progress`` and ``finished``. What the runtime's state is comes from a background
read (``trainer_python`` and ``status`` read a few small files).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loguru import logger
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFileDialog, QHBoxLayout, QLineEdit,
                               QProgressBar, QPushButton, QRadioButton, QVBoxLayout, QWidget)

from ...core.hardware.locks import LockChoice
from ...core.runtime.python import PythonSource, TrainerPython
from ...core.runtime.status import RuntimeDevice, RuntimeState, RuntimeStatus
from ...core.types import Progress
from ...services.background import BackgroundOp
from ...core.hardware.advice import gb_text
from .common import WizardPage, heading, note, problem_label
from .pages import DEVICE_LABELS

__all__ = ["RuntimePage"]

FindPython = Callable[[], TrainerPython]
STATE_WORDS = {
    RuntimeState.MISSING: "The trainer runtime is not installed yet.",
    RuntimeState.INCOMPLETE: "An earlier install was cut short. Install again to finish it: "
                             "what was already downloaded is used.",
    RuntimeState.BROKEN: "The trainer runtime is installed but does not work",
    RuntimeState.OUTDATED: "The trainer runtime was made for another version of the app; a new "
                           "one is needed.",
}


class RuntimePage(WizardPage):
    key = "runtime"
    title = "Trainer runtime"
    has_goal = True

    def __init__(self, runtime: Any, find_python: FindPython,
                 download_sizes: Mapping[RuntimeDevice, int] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._runtime = runtime
        self._find_python = find_python
        self._sizes = dict(download_sizes or {})
        self.state = "unknown"     # unknown | checkout | ready | choose | installing | failed
        self.last_request: tuple[RuntimeDevice, Path | None] | None = None
        self._device_chosen_by_user = False

        self.layout_.addWidget(heading("Trainer runtime"))
        self.layout_.addWidget(note(
            "Training runs in its own Python environment with PyTorch and the training "
            "libraries (a few GB). It is installed once, into the data folder.", subtle=True))
        self.status = note("Looking at the trainer runtime…")
        self.status.setObjectName("runtime_status")
        self.layout_.addWidget(self.status)
        self.problem = problem_label("error")
        self.problem.setObjectName("runtime_problem")
        self.layout_.addWidget(self.problem)

        self.choices = QWidget()
        c = self.choices
        cl = QVBoxLayout(c)
        cl.setContentsMargins(0, 0, 0, 0)
        device_row = QHBoxLayout()
        device_label = note("Build:")
        device_label.setToolTip("Which PyTorch build to install. Chosen from your GPU and "
                                "driver on the previous page; change it only if you know "
                                "better (e.g. the CPU build on a computer without a GPU).")
        self.device = QComboBox()
        self.device.setObjectName("runtime_device")
        self.device.setToolTip(device_label.toolTip())
        for device in RuntimeDevice:
            self.device.addItem(DEVICE_LABELS[device], device)
        self.device.setCurrentIndex(self.device.findData(RuntimeDevice.CPU))
        self.device.activated.connect(self._device_picked)
        device_row.addWidget(device_label)
        device_row.addWidget(self.device, 1)
        cl.addLayout(device_row)
        self.download_choice = QRadioButton("Download from the internet")
        self.download_choice.setObjectName("runtime_download")
        self.download_choice.setToolTip("Download PyTorch and the training libraries from the "
                                        "package index, checked against the hashes in the "
                                        "app's lock file.")
        self.folder_choice = QRadioButton("Install from a folder (no internet needed)")
        self.folder_choice.setObjectName("runtime_offline")
        self.folder_choice.setToolTip(
            "An offline payload: a folder made with 'make offline-payload' on a connected "
            "computer (e.g. on a USB stick). Every file is checked against its manifest "
            "before anything is installed.")
        group = QButtonGroup(self)
        group.addButton(self.download_choice)
        group.addButton(self.folder_choice)
        self.download_choice.setChecked(True)
        cl.addWidget(self.download_choice)
        cl.addWidget(self.folder_choice)
        folder_row = QHBoxLayout()
        folder_row.setContentsMargins(24, 0, 0, 0)
        self.folder = QLineEdit()
        self.folder.setObjectName("runtime_folder")
        self.folder.setPlaceholderText("The offline payload folder (holds manifest.json)")
        self.folder.setToolTip(self.folder_choice.toolTip())
        self.browse = QPushButton("Choose…")
        self.browse.setToolTip("Choose the offline payload folder.")
        self.browse.clicked.connect(self.choose_folder)
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.browse)
        cl.addLayout(folder_row)
        self.layout_.addWidget(c)

        self.progress_label = note("")
        self.progress_label.setObjectName("runtime_phase")
        self.bar = QProgressBar()
        self.bar.setObjectName("runtime_bar")
        self.bar.setTextVisible(False)
        self.detail = note("", subtle=True)
        self.detail.setObjectName("runtime_detail")
        self.detail.setToolTip("Downloaded so far, speed and time left; while installing, which "
                               "package of how many.")
        self.going_on = note("The install goes on if you move to the next step or close "
                             "this window; Training says when it is ready.", subtle=True)
        for w in (self.progress_label, self.bar, self.detail, self.going_on):
            self.layout_.addWidget(w)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.install_button = QPushButton("Install")
        self.install_button.setObjectName("runtime_install")
        self.install_button.setProperty("primary", True)
        self.install_button.setToolTip("Create the trainer runtime now. You can go on with the "
                                       "other steps (or close this window) while it installs.")
        self.install_button.clicked.connect(self.install)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("runtime_cancel")
        self.cancel_button.setToolTip("Stop the install. What was downloaded is kept, so a "
                                      "retry continues from there.")
        self.cancel_button.clicked.connect(self.cancel)
        self.retry_button = QPushButton("Retry")
        self.retry_button.setObjectName("runtime_retry")
        self.retry_button.setProperty("primary", True)
        self.retry_button.setToolTip("Install again (with the choice above); downloads "
                                     "continue where they stopped.")
        self.retry_button.clicked.connect(self.retry)
        for b in (self.install_button, self.cancel_button, self.retry_button):
            buttons.addWidget(b)
        self.layout_.addLayout(buttons)
        self.layout_.addStretch(1)

        runtime.progress.connect(self.on_progress)
        runtime.finished.connect(self.on_finished)
        self.download_choice.toggled.connect(self._update_size)
        self._show("unknown")
        self._update_size()

    # -- state ---------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return self.state in ("checkout", "ready")

    def next_text(self) -> str:
        return "Next" if self.state == "installing" else super().next_text()

    def selected_device(self) -> RuntimeDevice:
        return RuntimeDevice(self.device.currentData())

    def set_lock(self, lock: LockChoice) -> None:
        """The machine page's choice (kept when the user picked a build by hand)."""
        if not self._device_chosen_by_user:
            self.device.setCurrentIndex(self.device.findData(lock.device))
            self._update_size()

    def _device_picked(self) -> None:
        self._device_chosen_by_user = True
        self._update_size()

    def _update_size(self) -> None:
        size = self._sizes.get(self.selected_device())
        self.download_choice.setText("Download from the internet"
                                     + (f" (about {gb_text(size)})" if size else ""))

    def entered(self) -> None:
        if self.state in ("unknown", "choose"):
            self.refresh()

    def refresh(self) -> None:
        """Read the runtime's state again (off the UI thread)."""
        device = self.selected_device()

        def read() -> tuple[TrainerPython, RuntimeStatus]:
            return self._find_python(), self._runtime.status(device)

        BackgroundOp(parent=self, op=read).success(self._on_read).failure(self._on_read_failed) \
            .supersede("runtime-status").run()

    def _on_read(self, result: tuple[TrainerPython, RuntimeStatus]) -> None:
        if self.state == "installing":
            return
        python, status = result
        if python.source == PythonSource.CHECKOUT:
            self.status.setText(f"Using this checkout's Python ({python.executable}): it has "
                                "PyTorch, so no trainer runtime is needed.")
            self._show("checkout")
        elif status.state == RuntimeState.READY:
            self._ready(status)
        elif status.state == RuntimeState.INSTALLING:
            # started earlier (the assistant was closed and opened again): follow it
            self.status.setText(f"Installing the {DEVICE_LABELS.get(status.device, '')} "
                                "runtime…")
            self.progress_label.setText("Installing…")
            self.bar.setRange(0, 0)
            self._show("installing")
        else:
            words = STATE_WORDS.get(status.state, "")
            if status.state == RuntimeState.BROKEN and status.problem:
                words = f"{words}: {status.problem}"
            elif status.problem and status.problem not in words:
                words = f"{words} {status.problem}".strip()
            self.status.setText(words or "The trainer runtime is not installed yet.")
            self._show("choose")

    def _on_read_failed(self, exc: BaseException) -> None:
        logger.warning("could not read the trainer runtime's state: {!r}", exc)
        if self.state == "installing":
            return
        self.status.setText(f"Could not read the trainer runtime's state ({exc}). You can "
                            "still install it.")
        self._show("choose")

    def _ready(self, status: RuntimeStatus) -> None:
        build = DEVICE_LABELS.get(status.device, str(status.device))
        self.status.setText(f"✓ The trainer runtime is ready ({build}) in {status.folder}.")
        self._show("ready")

    def _show(self, state: str) -> None:
        self.state = state
        choosing = state in ("choose", "failed")
        self.choices.setVisible(choosing)
        self.choices.setEnabled(choosing)
        busy = state == "installing"
        for w in (self.progress_label, self.bar, self.detail):
            w.setVisible(busy)
        self.install_button.setVisible(state == "choose")
        self.cancel_button.setVisible(busy)
        self.going_on.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self.retry_button.setVisible(state == "failed")
        if state != "failed":
            self.problem.hide()
        self.completeness_changed.emit()

    # -- actions -------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Offline payload folder",
                                                  self.folder.text())
        if folder:
            self.folder.setText(folder)
            self.folder_choice.setChecked(True)

    def install(self) -> None:
        offline: Path | None = None
        if self.folder_choice.isChecked():
            text = self.folder.text().strip()
            if not text:
                self.problem.setText("Choose the offline payload folder first (Choose…).")
                self.problem.show()
                return
            offline = Path(text).expanduser()
        self._start(self.selected_device(), offline)

    def retry(self) -> None:
        """Install again with what the page shows (the last choice, unless changed since):
        the service continues from what was already downloaded."""
        self.install()

    def _start(self, device: RuntimeDevice, offline: Path | None) -> None:
        self.last_request = (device, offline)
        self.problem.hide()
        self.progress_label.setText("Starting…")
        self.detail.setText("")
        self.bar.setRange(0, 0)
        self.status.setText(f"Installing the {DEVICE_LABELS.get(device, device)} runtime"
                            + (f" from {offline}" if offline else "") + "…")
        self._show("installing")
        try:
            self._runtime.install(device, offline)
        except Exception as exc:       # shown to the user and logged, never swallowed
            logger.exception("the trainer runtime install could not start")
            self._failed(f"The install could not start: {exc}")

    def cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.progress_label.setText("Cancelling…")
        self._runtime.cancel()

    # -- from the service ----------------------------------------------------------------------
    def on_progress(self, progress: Progress) -> None:
        if self.state != "installing":
            return
        self.progress_label.setText(progress.label.capitalize() if progress.label else "")
        if progress.total > 0:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(round(progress.fraction * 1000)))
        else:
            self.bar.setRange(0, 0)
        self.detail.setText(progress.detail)

    def on_finished(self, status: RuntimeStatus) -> None:
        if status.state == RuntimeState.READY:
            self._ready(status)
            return
        if self.state != "installing":
            return
        self._failed(status.problem or STATE_WORDS.get(status.state, "The install did not "
                                                                    "finish."))

    def _failed(self, text: str) -> None:
        self.status.setText("The trainer runtime is not installed.")
        self.problem.setText(text)
        self._show("failed")
        self.problem.show()
        self.bar.setRange(0, 1000)
