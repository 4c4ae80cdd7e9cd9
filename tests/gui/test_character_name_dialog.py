"""Issue 11 item 8: the create and rename dialogs refuse unsafe character names."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox


def test_create_dialog_refuses_reserved_and_control_names(qtbot, make_app, monkeypatch):
    ctx = make_app()
    tab = ctx.tabs["Characters"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.mouseClick(tab.new_button, Qt.MouseButton.LeftButton)
    dialog = tab.create_dialog
    assert dialog is not None
    for bad in ("CON", "com1.txt", "An\tna"):
        dialog.name_edit.setText(bad)
        assert not dialog.create_button.isEnabled()
        assert dialog.error_label.text()
    dialog.name_edit.setText("x" * 500)
    assert len(dialog.name_edit.text()) < 500 or not dialog.create_button.isEnabled()
    dialog.name_edit.setText("Anna")
    assert dialog.create_button.isEnabled() and not dialog.error_label.text()
    qtbot.mouseClick(dialog.create_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: any(c.name == "Anna" for c in ctx.library.characters()),
                    timeout=10_000)
    ch = next(c for c in ctx.library.characters() if c.name == "Anna")
    # the service refuses too (what the rename dialog reports)
    assert ctx.library.create_character("NUL", "zzq_vokzi", "") is not None
    warnings: list[str] = []
    monkeypatch.setattr(QInputDialog, "getText",
                        staticmethod(lambda *a, **k: ("AUX", True)))
    monkeypatch.setattr(QMessageBox, "warning",
                        staticmethod(lambda _p, _t, text, *a, **k: warnings.append(text)))
    tab.detail.show_character(ch.id)
    tab.detail._rename()
    assert warnings and "reserved" in warnings[0].lower()
    assert ctx.library.character(ch.id).name == "Anna"
