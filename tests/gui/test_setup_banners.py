"""Every tab says what is missing, with a button to the set-up assistant's page that fixes it;
the assistant opens from Help and Settings, and by itself only on a real first run."""

from __future__ import annotations

import re

import pytest

from isengard_desktop.app import open_settings, should_show_first_run
from isengard_desktop.core.runtime import python as runtime_python
from isengard_desktop.core.runtime.status import RuntimeDevice, RuntimeState, RuntimeStatus
from isengard_desktop.core.selftest_report import GpuStatus
from isengard_desktop.core.settings import Settings
from tests.helpers.comfy_double import make_comfy_double  # noqa: F401 - fixture
from tests.helpers.generate_ui import click, configure_remote, open_generate
from tests.helpers.wizard_fakes import trainer_python_checkout, trainer_python_none


def open_training(qtbot, ctx):
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Training"])
    tab = ctx.training_tab
    qtbot.waitUntil(tab.isVisible, timeout=5000)
    return tab


def wizard_at(qtbot, ctx, page):
    qtbot.waitUntil(lambda: ctx.wizard is not None and ctx.wizard.isVisible(), timeout=5000)
    assert ctx.wizard.current_page() == page
    return ctx.wizard


def test_first_run_shows_only_on_a_real_screen_until_done():
    fresh, done = Settings(), Settings(wizard_completed=True)
    assert should_show_first_run(fresh, platform="xcb")
    assert should_show_first_run(fresh, platform="wayland")
    assert not should_show_first_run(done, platform="xcb")
    assert not should_show_first_run(fresh, smoke_test=True, platform="xcb")
    assert not should_show_first_run(fresh, platform="offscreen")     # tests, CI


def test_training_banners_open_the_wizard_at_their_page(qt_asyncio_loop, qtbot, make_app,
                                                        monkeypatch):
    monkeypatch.setattr(runtime_python, "trainer_python", lambda paths: trainer_python_none())
    ctx = make_app()
    assert ctx.wizard is None                         # never by itself in tests
    tab = open_training(qtbot, ctx)
    # no trainer Python: the runtime banner, whose button opens the runtime page
    qtbot.waitUntil(tab.runtime_banner.isVisible, timeout=5000)
    assert "trainer runtime is not installed" in tab.runtime_banner.text()
    click(qtbot, tab.runtime_banner.button)
    wizard = wizard_at(qtbot, ctx, "runtime")
    # no base model in the (empty) model folders: the models page
    qtbot.waitUntil(tab.models_banner.isVisible, timeout=5000)
    assert "No base model found" in tab.models_banner.text()
    # ... with the catalogue's offer for the family this card suits, and its size
    offer = re.search(r"Get the (SD 1\.5|SDXL) base model \((\d+\.\d) GB\)",
                      tab.models_banner.text())
    assert offer is not None, tab.models_banner.text()
    assert tab.models_banner.button.text() == f"Get {offer.group(1)}…"
    assert offer.group(2) == {"SD 1.5": "4.3", "SDXL": "6.9"}[offer.group(1)]
    click(qtbot, tab.models_banner.button)
    assert ctx.wizard is wizard and wizard.current_page() == "base_models"   # one assistant
    family = {"SD 1.5": "sd15", "SDXL": "sdxl"}[offer.group(1)]
    qtbot.waitUntil(lambda: family in wizard.base_models.boxes, timeout=5000)
    assert wizard.base_models.boxes[family].isChecked()          # the one the banner offered
    # no usable GPU: the page about this computer
    tab.set_gpu_status(GpuStatus(usable=False, hint="cpu", why="no CUDA device"))
    assert tab.grab().save("/tmp/wizard_banners_training.png")     # looked at by hand
    click(qtbot, tab.no_gpu_banner.button)
    assert wizard.current_page() == "machine"
    # an install ended: Training asks again and the runtime banner goes
    monkeypatch.setattr(runtime_python, "trainer_python",
                        lambda paths: trainer_python_checkout())
    ctx.runtime.finished.emit(RuntimeStatus(RuntimeState.READY, RuntimeDevice.CPU,
                                            ctx.paths.data / "runtime"))
    qtbot.waitUntil(lambda: not tab.runtime_banner.isVisible(), timeout=5000)
    # closing the assistant marks it as seen
    wizard.close()
    qtbot.waitUntil(lambda: ctx.wizard is None, timeout=5000)
    assert ctx.settings.settings.wizard_completed


def test_help_menu_and_settings_open_the_wizard(qt_asyncio_loop, qtbot, make_app):
    ctx = make_app()
    assert ctx.window.setup_action in ctx.window.menuBar().actions()[-1].menu().actions()
    ctx.window.setup_action.trigger()
    wizard = wizard_at(qtbot, ctx, "welcome")
    wizard.go_to("data")
    assert str(ctx.paths.data) == wizard.data.folder.text()
    click(qtbot, wizard.skip_all)
    qtbot.waitUntil(lambda: ctx.wizard is None, timeout=5000)
    assert ctx.settings.settings.wizard_completed

    open_settings(ctx)
    from isengard_desktop.ui.settings.settings_dialog import SettingsDialog
    qtbot.waitUntil(lambda: ctx.window.findChild(SettingsDialog) is not None, timeout=5000)
    dialog = ctx.window.findChild(SettingsDialog)
    dialog.folders_page.comfy_models.setText("/somewhere/ComfyUI/models")
    click(qtbot, dialog.wizard_button)
    wizard_at(qtbot, ctx, "welcome")
    assert not dialog.isVisible()
    # what was typed in Settings is kept, and the assistant starts from it
    assert ctx.settings.settings.comfyui_models_folder == "/somewhere/ComfyUI/models"


def test_wizard_finish_opens_the_create_character_dialog(qt_asyncio_loop, qtbot, make_app):
    ctx = make_app()
    ctx.window.setup_action.trigger()
    wizard = wizard_at(qtbot, ctx, "welcome")
    wizard.go_to("character")
    click(qtbot, wizard.next_button)
    characters = ctx.tabs["Characters"]
    qtbot.waitUntil(lambda: characters.create_dialog is not None
                    and characters.create_dialog.isVisible(), timeout=5000)
    assert ctx.window.tabs.currentWidget() is characters
    characters.create_dialog.reject()


@pytest.fixture
def double(make_comfy_double):  # noqa: F811 - the fixture imported above
    return make_comfy_double(models={"checkpoints": [], "loras": []},
                             gpu_name="NVIDIA GeForce RTX 4090", vram_total=24 * 2**30,
                             vram_free=20 * 2**30)


def test_generate_banner_no_comfyui_then_no_model(qt_asyncio_loop, qtbot, make_app, double):
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    # said once, by the server bar, with both ways out: no second banner repeating it
    assert not tab.setup_banner.isVisible()
    assert tab.backends.empty_label.isVisible() and tab.backends.find_button.isVisible()
    assert tab.grab().save("/tmp/wizard_banners_generate.png")     # looked at by hand
    click(qtbot, tab.backends.find_button)
    wizard = wizard_at(qtbot, ctx, "models")
    wizard.close()
    qtbot.waitUntil(lambda: ctx.wizard is None, timeout=5000)
    # a server without any checkpoint: the banner says so
    ctx.settings.update(Settings(remote_servers=[double.url], wizard_completed=True))
    qtbot.waitUntil(lambda: any(s.state == "ready" for s in tab.backends.servers),
                    timeout=15_000)
    qtbot.waitUntil(lambda: "has no" in tab.setup_banner.text(), timeout=5000)
    assert tab.setup_banner.isVisible()
    tab.form.set_family("sdxl")
    tab.refresh_context()
    qtbot.waitUntil(lambda: "Get the SDXL base model (7.3 GB)" in tab.setup_banner.text(),
                    timeout=5000)
    assert tab.setup_banner.text().startswith("The ComfyUI server has no SDXL model.")
    assert tab.setup_banner.button.text() == "Get SDXL…"
    click(qtbot, tab.setup_banner.button)
    wizard = wizard_at(qtbot, ctx, "base_models")
    # the page it opens offers SDXL with the same total
    qtbot.waitUntil(lambda: "sdxl" in wizard.base_models.boxes, timeout=5000)
    assert wizard.base_models.boxes["sdxl"].text() == "SDXL — 7.3 GB"
    assert wizard.base_models.boxes["sdxl"].isChecked()


def test_generate_banner_hides_when_a_model_is_there(qt_asyncio_loop, qtbot, make_app,
                                                     make_comfy_double):  # noqa: F811
    server = make_comfy_double(models={"checkpoints": ["sd_xl_base_1.0.safetensors"],
                                       "loras": []})
    configure_remote(server.url)
    ctx = make_app()
    tab = open_generate(qtbot, ctx)
    qtbot.waitUntil(lambda: any(s.state == "ready" for s in tab.backends.servers),
                    timeout=15_000)
    qtbot.waitUntil(lambda: not tab.setup_banner.isVisible(), timeout=5000)
