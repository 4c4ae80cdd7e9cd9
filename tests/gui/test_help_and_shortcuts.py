"""Issue 11, item 20: Help → Getting started, a way to the logs and debug bundle, and the
standard shortcuts (Preferences, Ctrl+Enter to start training and to generate)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut

from isengard_desktop.ui.dialogs.getting_started import STEPS
from tests.gui.test_training_tab import library, make_form, model  # noqa: F401 (fixture)
from tests.helpers.characters import add_character


def _menu_texts(window, title):
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == title)
    return [a.text().replace("&", "") for a in menu.actions() if a.text()]


def test_help_menu_has_getting_started_logs_and_debug_bundle(qtbot, make_app):
    ctx = make_app()
    window = ctx.window
    texts = _menu_texts(window, "&Help")
    assert texts[0] == "Getting started"
    assert "Open logs folder" in texts and any("debug bundle" in t for t in texts)
    window.getting_started_action.trigger()
    dialog = window.getting_started
    assert dialog is not None and dialog.isVisible()
    shown = dialog.text.text()
    assert len(STEPS) == 5 and all(title in shown for title, _ in STEPS)
    for need in ("GPU", "base model", "ComfyUI"):
        assert need in shown
    dialog.close()
    window.debug_bundle_action.trigger()
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Training"
    assert "Export debug bundle" in window.status_message.text()


def test_settings_has_the_preferences_shortcut(make_app):
    ctx = make_app()
    keys = ctx.window.settings_action.shortcuts()
    for binding in QKeySequence.keyBindings(QKeySequence.StandardKey.Preferences):
        assert binding in keys
    assert QKeySequence("Ctrl+,") in keys


def test_ctrl_enter_starts_training_from_the_form(qtbot, library, tmp_path):  # noqa: F811
    add_character(qtbot, library, "Anna", photos=12, photo_root=tmp_path, size=(1024, 1280))
    form, _ = make_form(qtbot, library)
    form.set_models([model(tmp_path, "sdxl")])
    assert form.start_button.isEnabled()
    form.activateWindow()
    qtbot.waitUntil(form.isActiveWindow, timeout=5_000)
    form.prompts_edit.setFocus()
    qtbot.waitUntil(form.prompts_edit.hasFocus, timeout=5_000)
    with qtbot.waitSignal(form.start_requested, timeout=2_000):
        qtbot.keyClick(form.prompts_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def test_generate_tab_has_ctrl_enter_for_generate(make_app):
    ctx = make_app()
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Generate"])
    page = ctx.tabs["Generate"].page
    keys = {s.key() for s in page.findChildren(QShortcut)
            if s.context() == Qt.ShortcutContext.WidgetWithChildrenShortcut}
    assert QKeySequence("Ctrl+Return") in keys
