"""The wizard's "Base models" page: families pre-ticked from the detected GPU, files the user
already has shown as such and never queued, Download queues exactly the missing files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from isengard_desktop.core.models_catalogue import (Catalogue, CatalogueFile, Family,
                                                   load_catalogue)
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.ui.wizard import FirstRunWizard
from isengard_desktop.ui.wizard.base_models_page import BaseModelsPage
from tests.helpers.wizard_fakes import (GTX_1060, RTX_3060, FakeRuntime, SettingsStore,
                                        lock_for, machine, trainer_python_none)
from isengard_desktop.core.hardware.machine import GpuInfo, GpuVendor
from isengard_desktop.core.discovery import discover
from tests.gui.test_downloads_panel import host, service  # noqa: F401 - fixtures
from tests.helpers.download_host import HostedFile, generated_bytes

RTX_4090 = dataclasses.replace(RTX_3060, name="NVIDIA GeForce RTX 4090", vram_mb=24564)
RTX_4060TI_16 = dataclasses.replace(RTX_3060, name="NVIDIA GeForce RTX 4060 Ti", vram_mb=16380)
assert isinstance(RTX_4090, GpuInfo) and RTX_4090.vendor is GpuVendor.NVIDIA


class FakeDownloads:
    """Records what DownloadService.enqueue_catalogue_file was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path]] = []

    def enqueue_catalogue_file(self, item, models_root: Path) -> Path:
        self.calls.append((item.id, models_root))
        return models_root / item.folder / item.name


def make_page(qtbot, store=None, downloads=None):
    paths = resolve_paths().ensure()
    store = store or SettingsStore()
    page = BaseModelsPage(paths, store.get, downloads)
    qtbot.addWidget(page)
    page.resize(680, 520)
    page.show()
    page.refresh()
    qtbot.waitUntil(lambda: page.catalogue is not None, timeout=5000)
    return page, paths


def ticked(page) -> set[str]:
    return {k for k, b in page.boxes.items() if b.isChecked()}


@pytest.mark.parametrize("gpu, expected", [
    (RTX_4090, {"flux-dev"}),
    (RTX_4060TI_16, {"sdxl", "flux-schnell"}),
    (RTX_3060, {"sdxl", "flux-schnell"}),
    (GTX_1060, {"sd15", "sdxl"}),
    (None, {"sd15"}),
])
def test_families_are_ticked_from_the_detected_gpu(qtbot, tmp_path, gpu, expected):
    info = machine(gpu) if gpu is not None else machine()
    store = SettingsStore()
    home = tmp_path / "empty-home"
    home.mkdir()
    wizard = FirstRunWizard(resolve_paths().ensure(), store.get, store.update,
                            FakeRuntime(tmp_path / "rt"), lambda: (info, lock_for(info)),
                            trainer_python_none, lambda: discover(home, env={}, os_name="Linux"),
                            downloads=FakeDownloads())
    qtbot.addWidget(wizard)
    wizard.show()
    wizard.go_to("base_models")
    page = wizard.base_models
    qtbot.waitUntil(lambda: page.machine_known and page.catalogue is not None
                    and len(page.boxes) == 5, timeout=5000)
    assert ticked(page) == expected
    if gpu is not None and gpu.vram_mb <= 16 * 1024:
        assert "fp8 T5" in page.details["flux-schnell"].text()
    assert "non-commercial" in page.details["flux-dev"].text()
    assert "non-commercial" not in page.details["flux-schnell"].text()


def test_already_have_and_download_enqueues_only_missing_files(qtbot, tmp_path):
    cat = load_catalogue()
    linked = tmp_path / "my-comfy-models"
    store = SettingsStore(dataclasses.replace(SettingsStore().settings,
                                              model_folders=[str(linked)]))
    paths = resolve_paths().ensure()
    # SD 1.5 already in the app's models folder (name + the catalogue's exact size) ...
    sd15 = cat.files["sd15-checkpoint"]
    (paths.models / "checkpoints").mkdir(parents=True, exist_ok=True)
    with open(paths.models / "checkpoints" / sd15.name, "wb") as fh:
        fh.truncate(sd15.size)
    # ... a wrong-size copy of the IP-Adapter file does not count; the SDXL VAE (size unknown
    # in the catalogue) in a linked folder counts by name
    (linked / "vae").mkdir(parents=True)
    (linked / "vae" / cat.files["sdxl-vae"].name).write_bytes(b"x")
    downloads = FakeDownloads()
    page, _ = make_page(qtbot, store, downloads)
    page.set_vram(8.0)
    assert ticked(page) == {"sdxl"}                      # sd15 is already here: not ticked
    assert not page.boxes["sd15"].isEnabled()
    assert "already have all files" in page.details["sd15"].text()
    assert "already have 1 of 2 files" in page.details["sdxl"].text()
    assert page.present["sdxl-vae"].path == linked / "vae" / "sdxl_vae.safetensors"
    assert page.total.text() == "To download: 1 file(s), 6.9 GB"
    page.boxes["flux-schnell"].setChecked(True)
    qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    assert [c[0] for c in downloads.calls] == [
        "sdxl-checkpoint", "flux-schnell-transformer", "clip-l", "t5xxl-fp16", "flux-ae",
        "t5xxl-fp8"]
    assert {c[1] for c in downloads.calls} == {paths.models}
    assert "Queued 6 file(s)" in page.message.text()
    assert page.complete
    # ticking SDXL again queues nothing twice
    page.boxes["sdxl"].setChecked(True)
    assert not page.download_button.isEnabled()


def test_without_a_download_service_download_is_off(qtbot):
    page, _ = make_page(qtbot)
    page.set_vram(24.0)
    assert ticked(page) == {"flux-dev"}
    assert not page.download_button.isEnabled()
    assert "not available" in page.download_button.toolTip()


def test_base_models_page_screenshot(qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication

    from isengard_desktop.ui.theme import apply_dark_theme

    apply_dark_theme(QApplication.instance())
    info = machine(RTX_3060)
    store = SettingsStore()
    home = tmp_path / "empty-home"
    home.mkdir()
    wizard = FirstRunWizard(resolve_paths().ensure(), store.get, store.update,
                            FakeRuntime(tmp_path / "rt"), lambda: (info, lock_for(info)),
                            trainer_python_none, lambda: discover(home, env={}, os_name="Linux"),
                            downloads=FakeDownloads())
    qtbot.addWidget(wizard)
    wizard.resize(900, 600)
    wizard.show()
    wizard.go_to("base_models")
    page = wizard.base_models
    qtbot.waitUntil(lambda: page.machine_known and len(page.boxes) == 5, timeout=5000)
    wizard.grab().save("/tmp/wizard_base_models.png")
    # everything fits: the Download button and the last family are inside the page
    assert page.download_button.isVisible()
    assert page.download_button.geometry().bottom() <= page.height()


def test_download_with_the_real_service_fetches_only_the_missing_files(qtbot, host, service):
    """Base models page → real DownloadService → local host: the missing files land in their
    ComfyUI folders under the app's models folder; the one already there is never asked for;
    afterwards the page shows the family as 'already have'."""
    size = 256 * 1024
    paths = resolve_paths().ensure()
    hosted = {name: host.add(f"/org/resolve/main/{name}", HostedFile(size=size))
              for name in ("sdxl.safetensors", "vae.safetensors", "sd15.safetensors")}

    def file(fid: str, name: str, folder: str) -> CatalogueFile:
        return CatalogueFile(id=fid, name=name, folder=folder,
                             urls=(host.url(f"/org/resolve/main/{name}"),), page="",
                             sha256=hosted[name].sha256, size=size, approx_size="",
                             licence="test", non_commercial=False, gated=False, min_vram_gb=0)

    files = {f.id: f for f in (file("xl", "sdxl.safetensors", "checkpoints"),
                               file("xl-vae", "vae.safetensors", "vae"),
                               file("one-five", "sd15.safetensors", "checkpoints"))}
    fams = {"sd15": Family("sd15", "SD 1.5", ("one-five",), ("one-five",), (), 8, 4),
            "sdxl": Family("sdxl", "SDXL", ("xl",), ("xl", "xl-vae"), (), 12, 8)}
    cat = Catalogue(1, "test", fams, files, ())
    (paths.models / "vae").mkdir(parents=True, exist_ok=True)
    (paths.models / "vae" / "vae.safetensors").write_bytes(generated_bytes(size))
    page = BaseModelsPage(paths, SettingsStore().get, service, catalogue=lambda: cat)
    qtbot.addWidget(page)
    page.refresh()
    qtbot.waitUntil(lambda: page.catalogue is not None, timeout=5000)
    page.set_vram(8.0)                                    # → SD 1.5 + SDXL ticked
    assert page.total.text() == "To download: 2 file(s), 1 MB"
    qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(service.views()) == 2
                    and all(v.state == "done" for v in service.views()), timeout=20_000)
    assert (paths.models / "checkpoints" / "sdxl.safetensors").read_bytes() == \
        generated_bytes(size)
    assert (paths.models / "checkpoints" / "sd15.safetensors").stat().st_size == size
    assert not [r for r in host.requests if r.path.endswith("/vae.safetensors")]
    page.refresh()
    qtbot.waitUntil(lambda: "already have all files" in page.details["sdxl"].text(),
                    timeout=5000)
    assert not page.boxes["sdxl"].isEnabled() and page.complete


def test_the_page_never_reaches_for_the_network_until_download(qtbot, monkeypatch):
    """With every socket connection refused except loopback, the page reads the catalogue,
    looks for files and ticks families; only Download hands files to the service."""
    import socket

    tried: list[object] = []
    real_connect = socket.socket.connect

    def loopback_only(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") \
                and self.family in (socket.AF_INET, socket.AF_INET6):
            tried.append(address)
            raise OSError("network blocked by the test")
        return real_connect(self, address)

    def no_dns(*args, **kwargs):
        tried.append(args)
        raise OSError("DNS blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    downloads = FakeDownloads()
    page, _ = make_page(qtbot, downloads=downloads)
    page.set_vram(12.0)
    page.refresh()
    qtbot.wait(200)
    assert ticked(page) == {"sdxl", "flux-schnell"} and downloads.calls == [] and tried == []
