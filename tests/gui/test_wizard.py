"""The first-run set-up assistant, driven with stand-ins for GPU detection, the runtime
service and the folder search (tests/helpers/wizard_fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from isengard_desktop.core.discovery import discover
from isengard_desktop.core.paths import resolve_paths
from isengard_desktop.core.runtime.status import RuntimeDevice, RuntimeState
from isengard_desktop.ui.wizard import PAGES, FirstRunWizard
from tests.helpers.wizard_fakes import (GTX_1060, RTX_3060, FakeRuntime, SettingsStore,
                                        lock_for, machine, trainer_python_checkout,
                                        trainer_python_none)
from tests.unit.test_discovery import comfy, stability, webui


@pytest.fixture
def make_wizard(qtbot, tmp_path):
    from PySide6.QtWidgets import QApplication

    from isengard_desktop.ui.theme import apply_dark_theme

    apply_dark_theme(QApplication.instance())      # as build_app does (for the screenshots)

    def make(info=None, problem="", runtime=None, python=trainer_python_none, home=None,
             store=None, sizes=None, read=None):
        info = info if info is not None else machine(RTX_3060)
        store = store or SettingsStore()
        runtime = runtime or FakeRuntime(tmp_path / "runtime")
        home = home or tmp_path / "empty-home"
        home.mkdir(exist_ok=True)
        wizard = FirstRunWizard(
            resolve_paths().ensure(), store.get, store.update, runtime,
            read or (lambda: (info, lock_for(info, problem))), python,
            lambda: discover(home, env={}, os_name="Linux"), sizes)
        qtbot.addWidget(wizard)
        wizard.show()
        qtbot.waitUntil(lambda: not wizard.machine._reading
                        and wizard.links.found is not None, timeout=5000)
        return wizard, store, runtime
    return make


def test_walk_every_page_to_the_first_character(qtbot, make_wizard):
    wizard, store, _runtime = make_wizard()
    created = []
    wizard.create_character_requested.connect(lambda: created.append(True))
    seen = []
    for _ in PAGES:
        seen.append(wizard.current_page())
        if wizard.current_page() == "runtime":
            qtbot.waitUntil(lambda: wizard.runtime.state == "choose")
            assert wizard.next_button.text() == "Skip this step"   # nothing installed yet
        qtbot.mouseClick(wizard.next_button, Qt.MouseButton.LeftButton)
    assert seen == list(PAGES)
    assert created == [True] and not wizard.isVisible()
    assert store.settings.wizard_completed


def test_machine_page_shows_the_facts_the_build_and_warnings(qtbot, make_wizard):
    wizard, _store, _ = make_wizard(machine(GTX_1060, free_disk_mb=10_000),
                                    problem="The GTX 1060's driver 470 is too old: install "
                                            "driver 525 or newer.")
    wizard.go_to("machine")
    page = wizard.machine
    assert page.values["gpu"].text() == "NVIDIA GeForce GTX 1060 6GB"
    assert page.values["vram"].text() == "6 GB"
    assert "470.42.01" in page.values["driver"].text() and "CUDA 11.4" in \
        page.values["driver"].text()
    assert page.values["ram"].text().startswith("32 GB")
    assert "CUDA 12.6" in page.values["build"].text()
    assert page.problem.isVisible() and "driver 525" in page.problem.text()
    warnings = page.warnings.text()
    assert "SD 1.5" in warnings and "Flux" in warnings        # < 12 GB
    assert "free on the data folder's disk" in warnings        # 10 GB free
    # the chosen build reaches the runtime page
    assert wizard.runtime.selected_device() == RuntimeDevice.CUDA126


def test_no_gpu_says_training_takes_hours(qtbot, make_wizard):
    wizard, _store, _ = make_wizard(machine())
    wizard.go_to("machine")
    assert wizard.machine.values["gpu"].text() == "None found"
    assert "takes hours" in wizard.machine.warnings.text()
    assert not wizard.machine.problem.isVisible()
    assert wizard.runtime.selected_device() == RuntimeDevice.CPU


def test_runtime_install_shows_progress_and_ends_ready(qtbot, make_wizard):
    wizard, _store, runtime = make_wizard(sizes={RuntimeDevice.CUDA126: 2400})
    wizard.go_to("runtime")
    page = wizard.runtime
    qtbot.waitUntil(lambda: page.state == "choose")
    assert "2.3 GB" in page.download_choice.text()               # the known size is shown
    assert "not installed" in page.status.text()
    details = []
    runtime.progress.connect(lambda p: details.append(page.detail.text()))
    qtbot.mouseClick(page.install_button, Qt.MouseButton.LeftButton)
    assert page.state == "installing" and page.cancel_button.isVisible()
    qtbot.waitUntil(lambda: page.state == "ready", timeout=3000)
    assert runtime.installs == [(RuntimeDevice.CUDA126, None)]
    assert "312 of 2,400 MB · 24 MB/s · about 1 min left" in details
    assert "package 12 of 40" in details
    assert "ready" in page.status.text() and not page.cancel_button.isVisible()
    assert wizard.next_button.text() == "Next"
    assert wizard.steps.item(PAGES.index("runtime")).text().startswith("✓")


def test_runtime_progress_bar_follows_the_service(qtbot, make_wizard, tmp_path):
    runtime = FakeRuntime(tmp_path / "rt", outcomes=["hold"])
    wizard, _store, _ = make_wizard(runtime=runtime)
    wizard.go_to("runtime")
    page = wizard.runtime
    qtbot.waitUntil(lambda: page.state == "choose")
    page.install()
    qtbot.waitUntil(lambda: page.detail.text() == "package 12 of 40", timeout=3000)
    assert page.progress_label.text() == "Installing"
    assert page.bar.maximum() == 1000 and page.bar.value() == 300     # 12 of 40


def test_runtime_cancel_then_retry(qtbot, make_wizard, tmp_path):
    runtime = FakeRuntime(tmp_path / "rt", outcomes=["hold", "fail", "ready"])
    wizard, _store, _ = make_wizard(runtime=runtime)
    wizard.go_to("runtime")
    page = wizard.runtime
    qtbot.waitUntil(lambda: page.state == "choose")
    page.install()
    qtbot.waitUntil(lambda: bool(page.detail.text()), timeout=3000)
    qtbot.mouseClick(page.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == "failed", timeout=3000)
    assert runtime.cancelled == 1
    assert "cancelled" in page.problem.text() and page.retry_button.isVisible()
    qtbot.mouseClick(page.retry_button, Qt.MouseButton.LeftButton)      # fails this time
    qtbot.waitUntil(lambda: page.state == "failed" and "connection reset" in
                    page.problem.text(), timeout=3000)
    assert wizard.grab().save("/tmp/wizard_runtime_failed.png")     # looked at by hand
    qtbot.mouseClick(page.retry_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == "ready", timeout=3000)
    assert len(runtime.installs) == 3 and len(set(runtime.installs)) == 1   # same choice


def test_install_from_a_folder_passes_the_folder(qtbot, make_wizard, tmp_path, monkeypatch):
    payload = tmp_path / "usb" / "isengard-offline-cpu"
    payload.mkdir(parents=True)
    wizard, _store, runtime = make_wizard(machine())
    wizard.go_to("runtime")
    page = wizard.runtime
    qtbot.waitUntil(lambda: page.state == "choose")
    page.folder_choice.setChecked(True)
    page.install()                                   # no folder chosen yet: says so
    assert runtime.installs == [] and "Choose the offline payload folder" in \
        page.problem.text()
    from PySide6.QtWidgets import QFileDialog
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        staticmethod(lambda *a, **k: str(payload)))
    page.choose_folder()
    assert page.folder.text() == str(payload)
    qtbot.mouseClick(page.install_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.state == "ready", timeout=3000)
    assert runtime.installs == [(RuntimeDevice.CPU, payload)]


def test_ready_runtime_and_checkout_are_shown_as_done(qtbot, make_wizard, tmp_path):
    ready = FakeRuntime(tmp_path / "rt", state=RuntimeState.READY)
    wizard, _store, _ = make_wizard(runtime=ready)
    wizard.go_to("runtime")
    qtbot.waitUntil(lambda: wizard.runtime.state == "ready")
    assert not wizard.runtime.install_button.isVisible()
    wizard2, _store, _ = make_wizard(python=trainer_python_checkout)
    wizard2.go_to("runtime")
    qtbot.waitUntil(lambda: wizard2.runtime.state == "checkout")
    assert "this checkout's Python" in wizard2.runtime.status.text()
    assert wizard2.next_button.text() == "Next"


def test_skip_sets_the_flag_and_opens_at_a_page(qtbot, make_wizard):
    wizard, store, _ = make_wizard()
    wizard.go_to("models")
    assert wizard.current_page() == "models"
    assert not store.settings.wizard_completed
    qtbot.mouseClick(wizard.skip_all, Qt.MouseButton.LeftButton)
    assert not wizard.isVisible()
    assert store.settings.wizard_completed


def test_models_page_links_what_was_found(qtbot, make_wizard, tmp_path):
    home = tmp_path / "home"
    comfy(home / "ComfyUI")
    comfy(home / "Documents" / "ComfyUI", python=False)
    webui(home / "stable-diffusion-webui-forge")
    stability(home / "StabilityMatrix" / "Data")
    wizard, store, _ = make_wizard(home=home)
    wizard.go_to("models")
    page = wizard.links
    assert page.list.count() == 4
    assert wizard.next_button.text() == "Skip this step"
    # one ComfyUI at most: ticking the second unticks the first
    items = [page.list.item(i) for i in range(page.list.count())]
    assert items[0].checkState() == Qt.CheckState.Checked
    items[1].setCheckState(Qt.CheckState.Checked)
    assert items[0].checkState() == Qt.CheckState.Unchecked
    items[1].setCheckState(Qt.CheckState.Unchecked)
    items[0].setCheckState(Qt.CheckState.Checked)
    page.add_path(tmp_path / "my-models")
    qtbot.mouseClick(page.link_button, Qt.MouseButton.LeftButton)
    s = store.settings
    assert s.comfyui_folder == str(home / "ComfyUI")
    assert s.comfyui_python == str(home / "ComfyUI" / "venv" / "bin" / "python")
    assert s.comfyui_models_folder == str(home / "ComfyUI" / "models")
    assert s.model_folders == [
        str(home / "stable-diffusion-webui-forge" / "models" / "Stable-diffusion"),
        str(home / "StabilityMatrix" / "Data" / "Models"), str(tmp_path / "my-models")]
    assert "Linked ComfyUI" in page.message.text()
    assert wizard.next_button.text() == "Next"
    # linked items show as linked and cannot be linked twice
    linked = [page.list.item(i).text() for i in range(page.list.count())]
    assert sum("✓ linked" in t for t in linked) == 4   # all but the second ComfyUI
    assert not page.link_button.isEnabled()


def test_each_page_screenshot(qtbot, make_wizard, tmp_path):
    home = tmp_path / "home"
    comfy(home / "ComfyUI")
    webui(home / "stable-diffusion-webui")
    runtime = FakeRuntime(tmp_path / "rt", outcomes=["hold"])
    wizard, _store, _ = make_wizard(machine(GTX_1060), runtime=runtime, home=home,
                                    problem="The driver 470.42 is too old for this build: "
                                            "install NVIDIA driver 525 or newer.")
    wizard.resize(900, 600)
    for key in PAGES:
        wizard.go_to(key)
        if key == "runtime":
            qtbot.waitUntil(lambda: wizard.runtime.state == "choose")
            wizard.grab().save(str(Path("/tmp") / "wizard_runtime_choose.png"))
            wizard.runtime.install()
            qtbot.waitUntil(lambda: wizard.runtime.detail.text() == "package 12 of 40")
        qtbot.wait(20)
        image = wizard.grab()
        assert image.width() == 900 and image.height() == 600
        assert image.save(str(Path("/tmp") / f"wizard_{key}.png"))


def test_enter_goes_to_the_next_step_and_escape_skips(qtbot, make_wizard):
    wizard, store, _ = make_wizard()
    wizard.go_to("machine")
    qtbot.keyClick(wizard, Qt.Key.Key_Return)
    assert wizard.isVisible() and wizard.current_page() == "data"
    assert not store.settings.wizard_completed
    qtbot.keyClick(wizard, Qt.Key.Key_Escape)
    assert not wizard.isVisible() and store.settings.wizard_completed


def test_quitting_the_app_is_not_skipping(qtbot, make_wizard):
    wizard, store, _ = make_wizard()
    wizard.close_for_quit()
    assert not wizard.isVisible() and not store.settings.wizard_completed


def test_an_install_already_running_is_followed(qtbot, make_wizard, tmp_path):
    runtime = FakeRuntime(tmp_path / "rt", state=RuntimeState.INSTALLING)
    wizard, _store, _ = make_wizard(runtime=runtime)
    wizard.go_to("runtime")
    page = wizard.runtime
    qtbot.waitUntil(lambda: page.state == "installing")
    assert page.cancel_button.isVisible() and not page.install_button.isVisible()
    runtime._end(RuntimeState.READY)
    assert page.state == "ready"


def test_detection_failure_is_said_and_nothing_blocks(qtbot, make_wizard):
    def broken():
        raise OSError("NVML could not be loaded (libnvidia-ml.so.1 missing)")

    wizard, _store, _ = make_wizard(read=broken)
    wizard.go_to("machine")
    assert "libnvidia-ml.so.1" in wizard.machine.status.text()
    assert wizard.machine.values["gpu"].text() == "unknown"
    qtbot.mouseClick(wizard.next_button, Qt.MouseButton.LeftButton)
    assert wizard.current_page() == "data"


def test_linking_a_comfyui_writes_our_section_into_its_yaml(qtbot, make_wizard, tmp_path):
    import yaml

    home = tmp_path / "home"
    comfy(home / "ComfyUI")
    user_yaml = "# mine\nmy_ui:\n    base_path: /x\n    vae: vae\n"
    (home / "ComfyUI" / "extra_model_paths.yaml").write_text(user_yaml)
    wizard, store, _ = make_wizard(home=home)
    wizard.go_to("models")
    page = wizard.links
    assert page.share_box.isVisible() and page.share_box.isChecked()
    assert "'isengard:'" in page.share_note.text()
    assert "extra_model_paths.yaml" in page.share_note.text()
    assert str(resolve_paths().models) in page.share_box.toolTip()
    qtbot.mouseClick(page.link_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "section" in page.message.text(), timeout=5000)
    target = home / "ComfyUI" / "extra_model_paths.yaml"
    assert f"Added the 'isengard:' section to {target}" in page.message.text()
    text = target.read_text()
    assert text.endswith(user_yaml)
    parsed = yaml.safe_load(text)
    assert parsed["isengard"]["base_path"] == str(resolve_paths().models)
    assert parsed["my_ui"] == {"base_path": "/x", "vae": "vae"}
    assert (resolve_paths().models / "checkpoints").is_dir()
    # "Remove it" leaves the user's file as it was
    assert page.unshare_button.isVisible()
    qtbot.mouseClick(page.unshare_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Took the 'isengard:' section out" in page.message.text(),
                    timeout=5000)
    assert target.read_text() == user_yaml


def test_linking_a_comfyui_with_a_broken_yaml_says_so_and_writes_nothing(qtbot, make_wizard,
                                                                         tmp_path):
    home = tmp_path / "home"
    comfy(home / "ComfyUI")
    target = home / "ComfyUI" / "extra_model_paths.yaml"
    target.write_text("a:\n  b: [oops\n")
    wizard, store, _ = make_wizard(home=home)
    wizard.go_to("models")
    qtbot.mouseClick(wizard.links.link_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "not changed" in wizard.links.message.text(), timeout=5000)
    assert f"{target}, line 3" in wizard.links.message.text()
    assert target.read_text() == "a:\n  b: [oops\n"
    assert store.settings.comfyui_folder == str(home / "ComfyUI")   # the link itself stands


def test_comfyui_desktop_without_its_app_links_its_models_and_address(qtbot, make_wizard,
                                                                      tmp_path):
    from tests.unit.test_discovery import desktop_data

    home = tmp_path / "home"
    data = desktop_data(home / "Documents" / "ComfyUI", windows=False)
    wizard, store, _ = make_wizard(home=home)
    wizard.go_to("models")
    page = wizard.links
    assert page.list.count() == 1
    item = page.list.item(0)
    assert "ComfyUI Desktop (connect by its address, usually http://127.0.0.1:8000)" \
        in item.text() and str(data / "models") in item.text()
    assert "Settings → ComfyUI's servers" in item.toolTip()
    assert item.checkState() == Qt.CheckState.Checked
    qtbot.mouseClick(page.link_button, Qt.MouseButton.LeftButton)
    s = store.settings
    assert s.model_folders == [str(data / "models")]
    assert s.remote_servers == ["http://127.0.0.1:8000"]
    assert s.comfyui_folder == ""
    assert "ComfyUI Desktop's address http://127.0.0.1:8000" in page.message.text()
