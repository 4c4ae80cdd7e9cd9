"""Settings page "This machine" (issue 12, item 2): recorded detection results shown, the chosen
build and why (or the problem), the override stored in settings; detection off the UI thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel, QWidget

from isengard_desktop.core.hardware.gpu import detect_machine
from isengard_desktop.core.hardware.machine import GpuInfo, GpuVendor, MachineInfo
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.secrets import SecretStore
from isengard_desktop.core.settings import Settings
from isengard_desktop.ui.settings.machine_page import MachinePageWidget
from isengard_desktop.ui.settings.settings_dialog import SettingsDialog
from tests.helpers.keyring import MemoryKeyring
from tests.helpers.recorded_gpus import (DRIVER_560, DRIVER_570, GTX_1080, RTX_3060_12GB,
                                         RTX_5090, RecordedCard, RecordedNvml)

pytestmark = pytest.mark.gui


def recorded(tmp_path: Path, cards: list[RecordedCard], driver: tuple[str, int]) -> MachineInfo:
    return detect_machine(tmp_path, nvml=RecordedNvml(cards, driver=driver),
                          sysfs_root=tmp_path / "no-sys", system="Linux", machine="x86_64")


class Detector:
    """A detection seam that hands back a prepared result and notes the thread it ran on."""

    def __init__(self, info: MachineInfo | Exception) -> None:
        self.info = info
        self.threads: list[threading.Thread] = []

    def __call__(self) -> MachineInfo:
        self.threads.append(threading.current_thread())
        if isinstance(self.info, Exception):
            raise self.info
        return self.info


def shown_page(qtbot, detector: Detector, override: str = "") -> MachinePageWidget:
    page = MachinePageWidget(override, detector, data_folder="/data/isengard")
    qtbot.addWidget(page)
    page.resize(760, 560)
    with qtbot.waitSignal(page.detected, timeout=5000):
        page.show()                       # the first show starts detection
    return page


def table_row(page: MachinePageWidget, row: int) -> list[str]:
    table = page.gpu_table
    return [table.item(row, c).text() for c in range(table.columnCount())]


def test_detection_runs_off_the_ui_thread_and_fills_the_page(qtbot, tmp_path) -> None:
    detector = Detector(recorded(tmp_path, [RTX_3060_12GB], DRIVER_560))
    page = shown_page(qtbot, detector)
    assert detector.threads and detector.threads[0] is not threading.main_thread()
    assert page.status.text() == "1 GPU found."
    assert table_row(page, 0) == ["NVIDIA GeForce RTX 3060", "12 GB", "560.35.03", "12.6", "8.6"]
    assert page.lock_label.text() == "Chosen build: NVIDIA, CUDA 12.6 (older cards and drivers)"
    assert "CUDA 13.0 needs driver 580 or newer" in page.reason_label.text()
    assert page.problem_label.isHidden()
    assert page.override.itemText(0) == "Automatic (NVIDIA, CUDA 12.6 (older cards and drivers))"
    ram = page.findChild(QLabel, "machine_ram")
    assert ram is not None and ram.text().endswith("GB")
    assert page.findChild(QLabel, "machine_system").text() == "Linux, x86_64"


def test_every_technical_item_has_a_tooltip(qtbot, tmp_path) -> None:
    page = shown_page(qtbot, Detector(recorded(tmp_path, [RTX_3060_12GB], DRIVER_560)))
    table = page.gpu_table
    for column in range(table.columnCount()):
        assert table.horizontalHeaderItem(column).toolTip(), column
        assert table.item(0, column).toolTip(), column
    for label in page.findChildren(QLabel):
        if label.objectName().startswith("machine_"):
            assert label.toolTip(), label.objectName()
    for widget in (page.override, page.detect_button):
        assert widget.toolTip()
    assert all(page.override.itemData(i, 3) for i in range(1, page.override.count()))


def test_a_card_no_build_supports_shows_the_problem(qtbot, tmp_path) -> None:
    page = shown_page(qtbot, Detector(recorded(tmp_path, [RTX_5090], DRIVER_570)))
    assert page.lock_label.text() == "Chosen build: CPU only"
    problem = page.problem_label.text()
    assert not page.problem_label.isHidden()
    assert "RTX 5090" in problem and "570.133.07" in problem and "580 or newer" in problem
    assert "No usable GPU" in page.advice_label.text()


def test_small_cards_and_no_gpu_get_plain_advice(qtbot, tmp_path) -> None:
    page = shown_page(qtbot, Detector(recorded(tmp_path, [GTX_1080], DRIVER_560)))
    assert "SD 1.5 and SDXL" in page.advice_label.text()
    none = shown_page(qtbot, Detector(recorded(tmp_path, [], DRIVER_560)))
    assert none.status.text() == "No GPU found."
    assert none.gpu_table.item(0, 0).text().startswith("None found")
    assert none.lock_label.text() == "Chosen build: CPU only"
    assert "hours" in none.advice_label.text()


def test_detection_notes_and_failures_are_shown(qtbot, tmp_path) -> None:
    apple = MachineInfo((GpuInfo(GpuVendor.APPLE, "Apple M1 GPU", 8192),), 8192, 8, "Darwin",
                        "arm64", free_disk_mb=2048, notes=("Apple chip name unreadable.",),
                        os_version="13.6")
    page = shown_page(qtbot, Detector(apple))
    assert "macOS 14.0 or newer" in page.problem_label.text()
    assert page.notes_label.text() == "Detection notes: Apple chip name unreadable."
    assert "Only 2 GB free" in page.advice_label.text()
    assert table_row(page, 0)[1] == "8 GB (shared)"

    broken = MachinePageWidget("", Detector(RuntimeError("sysfs exploded")))
    qtbot.addWidget(broken)
    broken.show()
    qtbot.waitUntil(lambda: "Detection failed" in broken.status.text(), timeout=5000)
    assert "sysfs exploded" in broken.status.text() and broken.detect_button.isEnabled()


def test_the_override_is_kept_and_compared(qtbot, tmp_path) -> None:
    page = shown_page(qtbot, Detector(recorded(tmp_path, [GTX_1080], DRIVER_560)), override="cpu")
    assert page.device_override() == "cpu"
    assert "detection recommends NVIDIA, CUDA 12.6" in page.override_note.text()
    page.override.setCurrentIndex(page.override.findData("cu126"))
    assert page.device_override() == "cu126" and page.override_note.isHidden()
    page.override.setCurrentIndex(0)
    assert page.device_override() == ""


def test_detect_again_runs_detection_again(qtbot, tmp_path) -> None:
    detector = Detector(recorded(tmp_path, [GTX_1080], DRIVER_560))
    page = shown_page(qtbot, detector)
    detector.info = recorded(tmp_path, [RTX_3060_12GB], DRIVER_560)
    with qtbot.waitSignal(page.detected, timeout=5000):
        page.detect_button.click()
    assert len(detector.threads) == 2
    assert table_row(page, 0)[0] == "NVIDIA GeForce RTX 3060"


def test_the_dialog_saves_the_override(qtbot, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path / "home"))
    detector = Detector(recorded(tmp_path, [RTX_3060_12GB], DRIVER_560))
    dialog = SettingsDialog(resolve_paths(), SecretStore(MemoryKeyring()),
                            Settings(runtime_device_override="rocm"), detect=detector)
    qtbot.addWidget(dialog)
    dialog.show()
    page = dialog.machine_page
    assert detector.threads == []            # not detected until the page is shown
    with qtbot.waitSignal(page.detected, timeout=5000):
        dialog.tabs.setCurrentWidget(page)
    assert page.device_override() == "rocm"
    page.override.setCurrentIndex(page.override.findData("cu130"))
    with qtbot.waitSignal(dialog.settings_saved, timeout=1000) as blocker:
        dialog.accept()
    assert blocker.args[0].runtime_device_override == "cu130"


def test_screenshot(qtbot, tmp_path) -> None:
    """A picture of the page for people to look at (tmp_path/machine_page.png)."""
    page = shown_page(qtbot, Detector(recorded(tmp_path, [RTX_3060_12GB, GTX_1080], DRIVER_560)))
    target = tmp_path / "machine_page.png"
    assert page.grab().save(str(target))
    assert target.stat().st_size > 10_000
    assert isinstance(page, QWidget)


def test_the_app_opens_settings_on_this_machine(qtbot, make_app) -> None:
    """From the real app (a button elsewhere can open this page): detection runs for real
    here, through the real NVML adapter and /sys, and ends in a result, not an exception."""
    from isengard_desktop.app import open_settings

    ctx = make_app()
    open_settings(ctx, "machine")
    dialog = ctx.window.findChildren(SettingsDialog)[-1]
    assert dialog.tabs.currentWidget() is dialog.machine_page
    qtbot.waitUntil(lambda: dialog.machine_page.machine is not None, timeout=10_000)
    page = dialog.machine_page
    assert page.machine.ram_mb > 0 and page.choice is not None
    assert page.lock_label.text().startswith("Chosen build: ")
    dialog.close()


def test_an_amd_card_shows_its_gpu_target(qtbot) -> None:
    rx6600 = GpuInfo(GpuVendor.AMD, "Radeon RX 6600", 8176, arch="gfx1032")
    page = shown_page(qtbot, Detector(MachineInfo((rx6600,), 32768, 12, "Linux", "x86_64",
                                                  free_disk_mb=500_000)))
    assert table_row(page, 0) == ["Radeon RX 6600", "8 GB", "—", "—", "gfx1032"]
    assert "HSA_OVERRIDE_GFX_VERSION=10.3.0" in page.problem_label.text()
