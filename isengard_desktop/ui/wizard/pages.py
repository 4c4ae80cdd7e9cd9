"""The wizard's simple pages: welcome, this computer, the data folder, the first character."""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger
from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from ... import APP_NAME
from ...core.hardware.advice import gb_text, machine_advice
from ...core.hardware.locks import LockChoice
from ...core.hardware.machine import GpuVendor, MachineInfo
from ...core.paths import ENV_HOME, AppPaths
from ...core.runtime.status import RuntimeDevice
from ...services.background import BackgroundOp
from .common import WizardPage, heading, note, problem_label

__all__ = ["CharacterPage", "DataFolderPage", "DEVICE_LABELS", "MachinePage", "ReadMachine",
           "WelcomePage"]

ReadMachine = Callable[[], tuple[MachineInfo, LockChoice]]

DEVICE_LABELS: dict[RuntimeDevice, str] = {
    RuntimeDevice.CUDA13: "NVIDIA GPU (CUDA 13 build)",
    RuntimeDevice.CUDA126: "NVIDIA GPU, older card or driver (CUDA 12.6 build)",
    RuntimeDevice.ROCM: "AMD GPU (ROCm build)",
    RuntimeDevice.MPS: "Apple silicon (Metal build)",
    RuntimeDevice.CPU: "CPU only (no GPU build)",
}


class WelcomePage(WizardPage):
    key = "welcome"
    title = "Welcome"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_.addWidget(heading(f"Welcome to {APP_NAME}"))
        self.layout_.addWidget(note(
            f"{APP_NAME} trains a LoRA of a person from 15–40 photos and makes new pictures of "
            "them with ComfyUI, on your own computer. A few steps get it ready:"))
        steps = note(
            "<ol style='margin-left: -20px'>"
            "<li><b>This computer</b>: the GPU, its memory and which trainer build fits it.</li>"
            "<li><b>Data folder</b>: where photos, LoRAs and pictures are kept.</li>"
            "<li><b>Trainer runtime</b>: PyTorch and the training libraries, downloaded once or "
            "installed from a folder (a USB stick works offline).</li>"
            "<li><b>Models and ComfyUI</b>: link what you already have.</li>"
            "<li><b>Your first character</b>.</li></ol>")
        self.layout_.addWidget(steps)
        self.layout_.addWidget(note(
            "Every step can be skipped and done later: Help → Set-up assistant… opens this "
            "again, and each tab says what it still needs.", subtle=True))
        self.layout_.addStretch(1)


class MachinePage(WizardPage):
    """What this computer has (read off the UI thread by ``read_machine``) and the trainer build
    chosen for it; a problem from the lock choice is shown first, in red.

    Signals:
        machine_read(MachineInfo, LockChoice): detection finished.
    """

    key = "machine"
    title = "This computer"
    machine_read = Signal(object, object)

    def __init__(self, read_machine: ReadMachine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._read = read_machine
        self.machine: MachineInfo | None = None
        self.lock: LockChoice | None = None
        self._reading = False
        self.layout_.addWidget(heading("This computer"))
        self.status = note("Reading this computer's GPU, memory and disk…", subtle=True)
        self.status.setObjectName("machine_status")
        self.layout_.addWidget(self.status)
        self.problem = problem_label("error")
        self.problem.setObjectName("machine_problem")
        self.layout_.addWidget(self.problem)
        grid = QGridLayout()
        grid.setHorizontalSpacing(18)
        grid.setVerticalSpacing(6)
        self.values: dict[str, QLabel] = {}
        rows = (
            ("gpu", "GPU", "The graphics card training runs on (the one with the most memory "
                           "when there are several)."),
            ("vram", "GPU memory", "VRAM: decides which model families can be trained. SD 1.5 "
                                   "and SDXL fit in 8 GB; Flux and Chroma need 12 GB or more."),
            ("driver", "Driver", "The GPU driver's version and the newest CUDA version it "
                                 "supports; the trainer build must not need a newer one."),
            ("ram", "Memory (RAM)", "The computer's main memory; 16 GB or more is comfortable."),
            ("disk", "Free disk", "Free space on the disk that holds the data folder."),
            ("build", "Trainer build", "Which PyTorch build the trainer runtime is made from; "
                                       "chosen from the GPU and its driver. You can pick "
                                       "another on the Trainer runtime page."),
        )
        for row, (key, title, tip) in enumerate(rows):
            name = QLabel(title)
            name.setProperty("subtle", True)
            name.setToolTip(tip)
            value = QLabel("…")
            value.setObjectName(f"machine_{key}")
            value.setWordWrap(True)
            value.setToolTip(tip)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name, row, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(value, row, 1)
            self.values[key] = value
        grid.setColumnStretch(1, 1)
        self.layout_.addLayout(grid)
        self.warnings = problem_label("warning")
        self.warnings.setObjectName("machine_warnings")
        self.layout_.addWidget(self.warnings)
        self.notes = note("", subtle=True)
        self.layout_.addWidget(self.notes)
        self.layout_.addStretch(1)
        again = QPushButton("Read again")
        again.setToolTip("Look at the GPU, memory and disk again (after installing a driver).")
        again.clicked.connect(self.refresh)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(again)
        self.layout_.addLayout(bottom)

    def refresh(self) -> None:
        """Read the machine again, off the UI thread."""
        self._reading = True
        self.status.setText("Reading this computer's GPU, memory and disk…")
        self.status.show()
        BackgroundOp(parent=self, op=self._read).success(self._on_read) \
            .failure(self._on_failed).supersede("machine").run()

    def _on_failed(self, exc: BaseException) -> None:
        self._reading = False
        logger.warning("machine detection failed: {!r}", exc)
        self.status.setText(f"Could not read this computer's GPU and memory ({exc}). You can "
                            "still choose a trainer build on the next page.")
        for value in self.values.values():
            value.setText("unknown")

    def _on_read(self, result: tuple[MachineInfo, LockChoice]) -> None:
        self._reading = False
        machine, lock = result
        self.machine, self.lock = machine, lock
        self.status.hide()
        gpu = machine.best_gpu
        v = self.values
        if gpu is None:
            v["gpu"].setText("None found")
            v["vram"].setText("—")
            v["driver"].setText("—")
        else:
            others = f" (and {len(machine.gpus) - 1} more)" if len(machine.gpus) > 1 else ""
            v["gpu"].setText(f"{gpu.name}{others}")
            v["vram"].setText(gb_text(gpu.vram_mb) if gpu.vram_mb else "unknown")
            driver = gpu.driver_version or "unknown"
            if gpu.cuda_driver_version:
                driver += f" (supports CUDA {gpu.cuda_driver_version[0]}." \
                          f"{gpu.cuda_driver_version[1]})"
            if gpu.vendor is not GpuVendor.NVIDIA and not gpu.driver_version:
                driver = "—"
            v["driver"].setText(driver)
        v["ram"].setText(f"{gb_text(machine.ram_mb)}, {machine.cpu_count} CPU threads"
                         if machine.ram_mb else f"unknown, {machine.cpu_count} CPU threads")
        v["disk"].setText(gb_text(machine.free_disk_mb) if machine.free_disk_mb is not None
                          else "unknown")
        v["build"].setText(f"{DEVICE_LABELS.get(lock.device, lock.device)}. {lock.reason}")
        self.problem.setText(lock.problem)
        self.problem.setVisible(bool(lock.problem))
        warnings = machine_advice(machine, lock)
        self.warnings.setText("\n\n".join(warnings))
        self.warnings.setVisible(bool(warnings))
        self.notes.setText(" ".join(machine.notes))
        self.notes.setVisible(bool(machine.notes))
        self.machine_read.emit(machine, lock)


class DataFolderPage(WizardPage):
    """The data folder: shown with Open; moving it is explained (it is fixed while the app
    runs: the platform's folder, or ``ISENGARD_HOME``)."""

    key = "data"
    title = "Data folder"

    def __init__(self, paths: AppPaths, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_.addWidget(heading("Data folder"))
        self.layout_.addWidget(note(
            "Your characters' photos and captions, trained LoRAs, generated pictures and the "
            "trainer runtime are kept here:"))
        row = QHBoxLayout()
        self.folder = QLabel(str(paths.data))
        self.folder.setObjectName("data_folder")
        self.folder.setStyleSheet("font-family: monospace; padding: 6px; background: #111318;"
                                  " border: 1px solid #2f3440; border-radius: 5px;")
        self.folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder.setWordWrap(True)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip(f"Show {paths.data} in the file manager.")
        self.open_button.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(paths.data))))
        row.addWidget(self.folder, 1)
        row.addWidget(self.open_button)
        self.layout_.addLayout(row)
        if paths.portable:
            root = paths.data.parent
            how = (f"Portable mode: {ENV_HOME} is set to {root}, so data, models, logs and "
                   f"settings all live there. To move everything, quit {APP_NAME}, move that "
                   f"folder, and start {APP_NAME} with {ENV_HOME} set to the new place.")
        else:
            how = (f"This is the standard place for this system. To keep everything somewhere "
                   f"else (another disk, a USB drive), quit {APP_NAME}, set the environment "
                   f"variable {ENV_HOME} to a folder there, and start {APP_NAME} again; move "
                   f"the contents of the folder above into its 'data' subfolder to keep what "
                   f"you made. The folder cannot change while the app runs.")
        self.how = note(how, subtle=True)
        self.how.setObjectName("data_folder_how")
        self.how.setToolTip(f"{ENV_HOME}: when set, every folder of the app (data, models, "
                            "outputs, logs, tmp, cache, config) lives under it.")
        self.layout_.addWidget(self.how)
        self.layout_.addWidget(note(
            "The trainer runtime needs a few GB and each base model 2–24 GB: a disk with "
            "room to spare is best.", subtle=True))
        self.layout_.addStretch(1)


class CharacterPage(WizardPage):
    """The last step: the wizard's "Create my first character" button closes it and opens
    Characters → New character."""

    key = "character"
    title = "First character"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layout_.addWidget(heading("Create your first character"))
        self.layout_.addWidget(note(
            "A character is one person: a name, a trigger word and 15–40 photos of them. "
            "Varied photos train best — different clothes, places, light and angles, the "
            "face clearly visible, no one else in the picture."))
        self.layout_.addWidget(note(
            "Then: Dataset checks the photos and writes captions, Training makes the LoRA, "
            "Generate makes new pictures with it. Help → Getting started has the steps.",
            subtle=True))
        self.layout_.addWidget(note(
            "Press <b>Create my first character</b> below to name them and add the photos, "
            "or Close to look around first.", subtle=True))
        self.layout_.addStretch(1)
