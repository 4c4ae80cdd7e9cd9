"""Settings → ComfyUI and the wizard's Models and ComfyUI page with the managed-install box,
driving the real :class:`ComfyInstallService` (online path: the release zip from a local
download host, packages from a local wheel folder; real uv children and the ComfyUI double)."""

from __future__ import annotations

import dataclasses

import pytest

from isengard_desktop.core.comfy_install.layout import comfy_dir, install_folder
from isengard_desktop.core.discovery import Discovery
from isengard_desktop.core.runtime.layout import venv_python
from isengard_desktop.core.settings import Settings
from isengard_desktop.services.generation.comfy_install import ComfyInstallService
from isengard_desktop.services.ops import init_main_thread_bridge
from isengard_desktop.ui.settings.comfyui_page import ComfyUIPageWidget
from isengard_desktop.ui.wizard.links_page import LinksPage
from tests.helpers.comfy_release import TAG, make_world, serve_online
from tests.helpers.generate_ui import click

pytestmark = pytest.mark.timeout(180)
WAIT = 120_000


@pytest.fixture
def online(tmp_path, monkeypatch, qt_asyncio_loop):
    init_main_thread_bridge()
    world = make_world(tmp_path, monkeypatch)
    serve_online(world, {})
    service = ComfyInstallService(world["paths"])
    service.verify_timeout_s = 90.0
    yield world, service
    service.shutdown()
    world["host"].__exit__(None, None, None)


def test_settings_page_installs_comfyui_and_points_at_it(qtbot, online):
    world, service = online
    page = ComfyUIPageWidget(Settings(), comfy_install=service)
    qtbot.addWidget(page)
    box = page.install_box
    assert box is not None
    qtbot.waitUntil(lambda: "not installed" in box.state_label.text(), timeout=10_000)
    assert box.install_button.text() == "Install ComfyUI for me"
    assert box.install_button.toolTip()
    assert box.pack_boxes == {}          # the test release lists no custom-node packs
    with qtbot.waitSignal(service.finished, timeout=WAIT):
        click(qtbot, box.install_button)
        assert not box.install_button.isEnabled() and box.cancel_button.isVisibleTo(box)
    folder = install_folder(world["paths"], TAG)
    assert page.comfyui_folder() == str(comfy_dir(folder))
    assert page.comfyui_python() == str(venv_python(folder))
    assert TAG in box.state_label.text() and "passed its check" in box.state_label.text()
    assert box.install_button.isEnabled() and box.install_button.text() == "Install again"
    assert not box.cancel_button.isVisibleTo(box)
    assert "Installed" in box.log.toPlainText()      # uv's output reached the log view
    click(qtbot, box.log_button)
    assert box.log.isVisibleTo(box)


def test_wizard_links_page_offers_install_comfyui_for_me(qtbot, online):
    world, service = online
    saved: list[Settings] = [Settings()]

    def save(settings: Settings) -> None:
        saved.append(settings)

    # as app.py does: a READY install becomes the local ComfyUI in the settings
    service.finished.connect(lambda st: save(dataclasses.replace(
        saved[-1], comfyui_folder=str(st.comfy), comfyui_python=str(st.python)))
        if st.comfy else None)
    page = LinksPage(lambda: Discovery(), lambda: saved[-1], save,
                     paths=world["paths"], comfy_install=service)
    qtbot.addWidget(page)
    assert page.install_box is not None and not page.complete
    qtbot.waitUntil(lambda: page.install_box.install_button.text() == "Install ComfyUI for me",
                    timeout=10_000)
    with qtbot.waitSignal(page.completeness_changed, timeout=WAIT):
        click(qtbot, page.install_box.install_button)
    assert page.complete
    assert "ComfyUI is installed in" in page.message.text()
    assert saved[-1].comfyui_folder == str(comfy_dir(install_folder(world["paths"], TAG)))


def test_pinned_node_packs_are_offered_as_ticks(qtbot, online):
    world, service = online
    world["release"].write_text(world["release"].read_text() + (
        '\n[[custom_nodes]]\nname = "ComfyUI-Impact-Pack"\nrepo = "https://example.invalid/x"\n'
        'commit = "a9440d63ec9c0a0db8e8374e9f50e9c440c68ec2"\nfor = "FaceDetailer"\n'
        '\n[[custom_nodes]]\nname = "NotPinned"\nrepo = "https://example.invalid/y"\n'
        'commit = ""\n'))
    page = ComfyUIPageWidget(Settings(), comfy_install=service)
    qtbot.addWidget(page)
    box = page.install_box
    assert box is not None
    qtbot.waitUntil(lambda: bool(box.pack_boxes), timeout=10_000)
    assert list(box.pack_boxes) == ["ComfyUI-Impact-Pack"]     # an unpinned pack is not offered
    tick = box.pack_boxes["ComfyUI-Impact-Pack"]
    assert "FaceDetailer" in tick.text() and "a9440d63ec9c" in tick.toolTip()
    assert box.ticked_packs() == []
    tick.setChecked(True)
    assert box.ticked_packs() == ["ComfyUI-Impact-Pack"]
