"""Settings → Servers & tiers: one row per GPU server (defaults from the cards) and per remote
server; OK saves the choices that differ from the defaults."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton  # noqa: E402

from isengard_desktop.core import logging as applog  # noqa: E402
from isengard_desktop.core.hardware.machine import GpuInfo, GpuVendor, MachineInfo  # noqa: E402
from isengard_desktop.core.paths import resolve_paths  # noqa: E402
from isengard_desktop.core.secrets import SecretStore  # noqa: E402
from isengard_desktop.core.settings import Settings  # noqa: E402
from isengard_desktop.ui.settings.settings_dialog import SettingsDialog  # noqa: E402
from tests.gui.test_settings_dialog import MemoryKeyring  # noqa: E402

pytestmark = pytest.mark.gui

REMOTE = "http://gpu-box:8188"


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("ISENGARD_HOME", str(tmp_path))
    yield resolve_paths()
    applog._clear_redaction_values()


def machine(*vrams_gb: int) -> MachineInfo:
    gpus = tuple(GpuInfo(GpuVendor.NVIDIA, f"Card {i}", vram_mb=gb * 1024, index=i)
                 for i, gb in enumerate(vrams_gb))
    return MachineInfo(gpus=gpus, ram_mb=65536, cpu_count=16, os_name="Linux", arch="x86_64")


def open_tiers(qtbot, paths, settings, info):
    dialog = SettingsDialog(paths, SecretStore(MemoryKeyring()), settings, detect=lambda: info)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.tabs.setCurrentWidget(dialog.tiers_page)
    status = dialog.findChild(QLabel, "tiers_status")
    qtbot.waitUntil(lambda: "found" in status.text(), timeout=10_000)
    return dialog


def combo(dialog, key: str) -> QComboBox:
    box = dialog.findChild(QComboBox, f"tier_{key}")
    assert box is not None, key
    return box


def test_rows_per_gpu_with_defaults_and_ok_saves_changes(qtbot, paths):
    dialog = open_tiers(qtbot, paths, Settings(remote_servers=[REMOTE]), machine(12, 24, 8))
    page = dialog.tiers_page
    assert page.table.rowCount() == 4
    assert "GPU 1 (Card 1 · 24 GB)" in page.table.item(1, 0).text()
    assert [page.tier_of(k) for k in ("gpu0", "gpu1", "gpu2", REMOTE)] == \
        ["standard", "final", "draft", "standard"]
    assert combo(dialog, "gpu1").currentText() == "Final (default)"
    assert combo(dialog, "gpu1").toolTip()          # technical setting: explained
    combo(dialog, "gpu2").setCurrentIndex(1)         # standard
    combo(dialog, REMOTE).setCurrentIndex(2)         # draft
    with qtbot.waitSignal(dialog.settings_saved, timeout=1000) as blocker:
        dialog.accept()
    assert blocker.args[0].server_tiers == {"gpu2": "standard", REMOTE: "draft"}


def test_saved_tiers_are_shown_and_a_removed_server_loses_its_tier(qtbot, paths):
    settings = Settings(remote_servers=[REMOTE, "http://other:8188"],
                        server_tiers={"gpu0": "draft", "http://other:8188": "final"})
    dialog = open_tiers(qtbot, paths, settings, machine(24, 24))
    assert [dialog.tiers_page.tier_of(k) for k in ("gpu0", "gpu1")] == ["draft", "standard"]
    assert dialog.tiers_page.tier_of("http://other:8188") == "final"
    # remove the other server on the ComfyUI page; the tiers page is shown again
    dialog.tabs.setCurrentWidget(dialog.comfyui_page)
    page = dialog.comfyui_page
    page.server_list.setCurrentRow(1)
    page.server_list.item(1).setSelected(True)
    remove = next(b for b in page.findChildren(QPushButton) if b.text().startswith("Remove"))
    remove.click()
    assert page.remote_servers() == [REMOTE]
    dialog.tabs.setCurrentWidget(dialog.tiers_page)
    assert dialog.tiers_page.tier_of("http://other:8188") == ""
    with qtbot.waitSignal(dialog.settings_saved, timeout=1000) as blocker:
        dialog.accept()
    assert blocker.args[0].server_tiers == {"gpu0": "draft"}


def test_one_gpu_is_one_managed_row(qtbot, paths):
    dialog = open_tiers(qtbot, paths, Settings(), machine(24))
    assert dialog.tiers_page.table.rowCount() == 1
    assert dialog.tiers_page.tier_of("local") == "final"
    with qtbot.waitSignal(dialog.settings_saved, timeout=1000) as blocker:
        dialog.accept()
    assert blocker.args[0].server_tiers == {}


def test_the_server_chip_tooltip_names_the_tier():
    from isengard_desktop.core.comfy.jobs import ServerState, ServerStatus
    from isengard_desktop.ui.generate.backend_bar import server_tooltip

    status = ServerStatus("gpu1", "http://127.0.0.1:9001", "This computer · GPU 1 (Card 1)",
                          "managed", ServerState.READY, tier="draft")
    assert "Tier: draft" in server_tooltip(status)
    assert "Tier" not in server_tooltip(ServerStatus("x", "u", "x", "remote",
                                                     ServerState.READY))
