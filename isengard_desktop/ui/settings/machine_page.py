"""Settings page "This machine": the GPUs, driver, VRAM, RAM and free disk detection found, the
trainer build (runtime lock) chosen for them and why, or the plain problem that stops it, and
a "Trainer build" override.

Detection (NVML, sysfs, a subprocess on some systems) runs off the UI thread through
:class:`~isengard_desktop.services.background.BackgroundOp`, once when the page is first
shown and again on "Detect again". The injected ``detect`` callable makes the facts (tests
pass recorded ones). The page saves nothing itself: :meth:`MachinePageWidget.device_override`
gives ``Settings.runtime_device_override`` and the dialog hands it to its owner on OK.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGridLayout, QGroupBox,
                               QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ...core.hardware.advice import gb_text, machine_advice
from ...core.hardware.locks import LockChoice, choose_lock, device_label
from ...core.hardware.machine import GpuInfo, GpuVendor, MachineInfo
from ...core.runtime.status import RuntimeDevice
from ...services.background import BackgroundOp

__all__ = ["DetectMachine", "MachinePageWidget"]

DetectMachine = Callable[[], MachineInfo]

_ERROR_STYLE = "color: #f0a3a3;"
_WARN_STYLE = "color: #e0b050;"

_GPU_COLUMNS = ("GPU", "Memory", "Driver", "CUDA (driver)", "Architecture")
_GPU_TIPS = (
    "The graphics card as its driver names it.",
    "The card's own memory (VRAM). Apple silicon shares the computer's memory with the GPU. "
    "Flux LoRAs want 16 GB or more; SD 1.5 and SDXL train in 8-12 GB.",
    "The graphics driver's version. NVIDIA: the CUDA 13 build needs driver 580 or newer, the "
    "CUDA 12.6 build 525 or newer.",
    "The newest CUDA version this NVIDIA driver supports (not a CUDA toolkit you installed: "
    "the trainer brings its own).",
    "NVIDIA: the compute capability. 7.5 or newer runs the CUDA 13 build; 5.0-7.0 (Maxwell, "
    "Pascal, Volta) need the CUDA 12.6 build; 12.x is an RTX 50. AMD: the GPU target (gfx…), "
    "which must be one the ROCm build has kernels for.",
)
_DEVICE_TIPS = {
    RuntimeDevice.CUDA13: "PyTorch's CUDA 13.0 build (PyPI's default on Linux): Turing (RTX 20) "
                          "and newer, RTX 50 included; driver 580 or newer.",
    RuntimeDevice.CUDA126: "PyTorch's CUDA 12.6 build: Maxwell, Pascal (GTX 10), Volta and "
                           "newer up to Hopper, for drivers 525 or newer; no RTX 50 kernels.",
    RuntimeDevice.ROCM: "PyTorch's ROCm 7.2 build for AMD cards, Linux only.",
    RuntimeDevice.MPS: "PyTorch for Apple silicon (Metal); macOS 14 or newer.",
    RuntimeDevice.CPU: "No GPU: every step runs on the processor. A LoRA takes hours.",
}


def _cell(text: str, tip: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setToolTip(tip)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled)
    return item


def _label(name: str, tip: str, *, wrap: bool = True) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setToolTip(tip)
    label.setWordWrap(wrap)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class MachinePageWidget(QWidget):
    """What this computer has for training, the trainer build chosen for it, and the override.

    Signals:
        detected(MachineInfo): detection finished and the page shows its result.
    """

    detected = Signal(object)

    def __init__(self, current_override: str, detect: DetectMachine, data_folder: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._detect = detect
        self._data_folder = data_folder
        self._started = False
        self.machine: MachineInfo | None = None
        self.choice: LockChoice | None = None

        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.status = _label("machine_status", "What detection found, in one line.")
        self.status.setText("Detection has not run yet.")
        self.detect_button = QPushButton("Detect again")
        self.detect_button.setObjectName("machine_detect")
        self.detect_button.setToolTip("Read the GPUs, driver, memory and disk again (after a "
                                      "driver update, for example). Nothing is installed.")
        self.detect_button.setAutoDefault(False)
        self.detect_button.clicked.connect(self.detect)
        top.addWidget(self.status, 1)
        top.addWidget(self.detect_button)
        layout.addLayout(top)

        gpu_box = QGroupBox("Graphics cards")
        gpu_box.setToolTip("Read without starting PyTorch: NVIDIA through its driver (NVML), "
                           "AMD through the kernel or rocm-smi, Apple from the system.")
        gpu_layout = QVBoxLayout(gpu_box)
        self.gpu_table = QTableWidget(0, len(_GPU_COLUMNS))
        self.gpu_table.setObjectName("machine_gpus")
        self.gpu_table.setHorizontalHeaderLabels(list(_GPU_COLUMNS))
        for column, tip in enumerate(_GPU_TIPS):
            header = self.gpu_table.horizontalHeaderItem(column)
            if header is not None:
                header.setToolTip(tip)
        self.gpu_table.verticalHeader().setVisible(False)
        self.gpu_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.gpu_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.gpu_table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.Stretch)
        gpu_layout.addWidget(self.gpu_table)
        layout.addWidget(gpu_box)

        system_box = QGroupBox("Memory and disk")
        system_box.setToolTip("The rest of this computer, as far as training cares.")
        grid = QGridLayout(system_box)
        rows = (
            ("RAM", "machine_ram", "Installed memory. Loading a base model takes up to about "
                                   "twice its file size in RAM for a moment."),
            ("Free disk", "machine_disk", "Free space on the disk that holds the data folder"
                                          + (f" ({data_folder})" if data_folder else "")
                                          + ": runtimes, models, datasets and LoRAs go there."),
            ("Processors", "machine_cpus", "Logical processors (used for data loading; and for "
                                           "everything when there is no GPU)."),
            ("System", "machine_system", "Operating system and processor architecture; they "
                                         "decide which PyTorch builds exist."),
        )
        self.facts: dict[str, QLabel] = {}
        for row, (title, name, tip) in enumerate(rows):
            head = QLabel(title)
            head.setToolTip(tip)
            value = _label(name, tip, wrap=False)
            grid.addWidget(head, row, 0)
            grid.addWidget(value, row, 1)
            self.facts[name] = value
        grid.setColumnStretch(1, 1)
        layout.addWidget(system_box)

        build_box = QGroupBox("Trainer build")
        build_box.setToolTip("The PyTorch build the trainer runtime is installed with. It is "
                             "chosen from the GPU and driver above; you can override it.")
        build = QGridLayout(build_box)
        self.lock_label = _label("machine_lock", "The build detection chose for this machine.")
        self.lock_label.setStyleSheet("font-weight: 600;")
        self.reason_label = _label("machine_reason", "Why this build: the card, its driver and "
                                   "what each build supports.")
        self.problem_label = _label("machine_problem", "What stops this machine from training "
                                    "on its GPU, and what to do about it.")
        self.problem_label.setStyleSheet(_ERROR_STYLE)
        self.problem_label.setVisible(False)
        self.override = QComboBox()
        self.override.setObjectName("machine_override")
        self.override.setToolTip("Automatic uses the build chosen above. Pick another only if "
                                 "you know it fits (e.g. a card detection cannot read); a build "
                                 "without kernels for your card fails when training starts.")
        self.override.addItem("Automatic", "")
        for device in RuntimeDevice:
            self.override.addItem(device_label(device), device.value)
            self.override.setItemData(self.override.count() - 1, _DEVICE_TIPS[device],
                                      Qt.ItemDataRole.ToolTipRole)
        index = self.override.findData(current_override)
        self.override.setCurrentIndex(max(0, index))
        self.override.currentIndexChanged.connect(lambda _i: self._show_override())
        self.override_note = _label("machine_override_note", "How your choice compares with "
                                    "the automatic one.")
        self.override_note.setStyleSheet(_WARN_STYLE)
        self.override_note.setVisible(False)
        override_title = QLabel("Trainer build:")
        override_title.setToolTip(self.override.toolTip())
        build.addWidget(self.lock_label, 0, 0, 1, 2)
        build.addWidget(self.reason_label, 1, 0, 1, 2)
        build.addWidget(self.problem_label, 2, 0, 1, 2)
        build.addWidget(override_title, 3, 0)
        build.addWidget(self.override, 3, 1)
        build.addWidget(self.override_note, 4, 0, 1, 2)
        build.setColumnStretch(1, 1)
        layout.addWidget(build_box)

        self.advice_label = _label("machine_advice", "What these facts mean for training.")
        self.advice_label.setStyleSheet(_WARN_STYLE)
        self.advice_label.setVisible(False)
        layout.addWidget(self.advice_label)
        self.notes_label = _label("machine_notes", "What detection could not read (also in "
                                  "the log).")
        self.notes_label.setVisible(False)
        layout.addWidget(self.notes_label)
        layout.addStretch(1)

    # -- detection ----------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._started:
            self.detect()

    def detect(self) -> None:
        """Run detection on a worker thread; the page updates when it is done."""
        self._started = True
        self.detect_button.setEnabled(False)
        self.status.setText("Detecting GPUs, memory and disk…")
        self.status.setStyleSheet("")
        BackgroundOp(parent=self, op=self._detect).success(self.show_machine) \
            .failure(self._detect_failed).supersede("detect").run()

    def _detect_failed(self, exc: BaseException) -> None:
        self.detect_button.setEnabled(True)
        self.status.setText(f"Detection failed: {exc}. Press Detect again.")
        self.status.setStyleSheet(_ERROR_STYLE)

    def show_machine(self, info: MachineInfo) -> None:
        """Show ``info`` and the build chosen for it."""
        self.machine = info
        self.choice = choice = choose_lock(info)
        self.detect_button.setEnabled(True)
        self._started = True
        count = len(info.gpus)
        self.status.setText(f"{count} GPU{'s' if count != 1 else ''} found." if count
                            else "No GPU found.")
        self.status.setStyleSheet("")
        self._fill_gpus(info.gpus)
        self.facts["machine_ram"].setText(gb_text(info.ram_mb) if info.ram_mb else "unknown")
        self.facts["machine_disk"].setText(gb_text(info.free_disk_mb) + " free"
                                           if info.free_disk_mb is not None else "unknown")
        self.facts["machine_cpus"].setText(str(info.cpu_count))
        system = info.os_name + (f" {info.os_version}" if info.os_version else "")
        self.facts["machine_system"].setText(f"{system}, {info.arch}")

        self.lock_label.setText(f"Chosen build: {device_label(choice.device)}")
        self.lock_label.setToolTip(_DEVICE_TIPS[choice.device])
        self.reason_label.setText(choice.reason)
        self.problem_label.setText(choice.problem)
        self.problem_label.setVisible(bool(choice.problem))
        self.override.setItemText(0, f"Automatic ({device_label(choice.device)})")
        self._show_override()

        tips = machine_advice(info, choice)
        self.advice_label.setText("\n".join(tips))
        self.advice_label.setVisible(bool(tips))
        self.notes_label.setText("Detection notes: " + " ".join(info.notes) if info.notes else "")
        self.notes_label.setVisible(bool(info.notes))
        self.detected.emit(info)

    def _fill_gpus(self, gpus: tuple[GpuInfo, ...]) -> None:
        table = self.gpu_table
        table.setRowCount(max(1, len(gpus)))
        if not gpus:
            table.setSpan(0, 0, 1, len(_GPU_COLUMNS))
            table.setItem(0, 0, _cell("None found: training would run on the processor.",
                                      "No NVIDIA, AMD or Apple GPU was found (see the notes "
                                      "below for what could not be read)."))
            self._fit_table_height()
            return
        table.clearSpans()
        for row, gpu in enumerate(gpus):
            memory = gb_text(gpu.vram_mb) + (" (shared)" if gpu.vendor is GpuVendor.APPLE else "") \
                if gpu.vram_mb else "unknown"
            cuda = f"{gpu.cuda_driver_version[0]}.{gpu.cuda_driver_version[1]}" \
                if gpu.cuda_driver_version else "—"
            cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}" \
                if gpu.compute_capability else gpu.arch or "—"
            values = (gpu.name, memory, gpu.driver_version or "—", cuda, cc)
            for column, (value, tip) in enumerate(zip(values, _GPU_TIPS, strict=True)):
                table.setItem(row, column, _cell(value, f"{tip}\n{gpu.name}"))
        for column in range(1, len(_GPU_COLUMNS)):
            table.resizeColumnToContents(column)
        self._fit_table_height()

    def _fit_table_height(self) -> None:
        table = self.gpu_table
        rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setFixedHeight(table.horizontalHeader().height() + rows + 2 * table.frameWidth())

    # -- override -----------------------------------------------------------------------------
    def device_override(self) -> str:
        """"" for automatic, else the chosen :class:`RuntimeDevice` value."""
        return str(self.override.currentData() or "")

    def _show_override(self) -> None:
        chosen = self.device_override()
        note = ""
        if chosen and self.choice is not None and chosen != self.choice.device.value:
            note = (f"You chose {device_label(RuntimeDevice(chosen))}; detection recommends "
                    f"{device_label(self.choice.device)}. The runtime is installed with your "
                    "choice.")
        self.override_note.setText(note)
        self.override_note.setVisible(bool(note))
