"""Issue 11 rough edges a new user hit: caption edits kept when the selection or focus moves,
checks findings of deleted photos dropped."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tests.gui.test_characters_dataset import _create_character, _wait_images
from tests.helpers.photos import make_photo, make_photos


def _tile_center(grid, row):
    return grid.visualRect(grid.grid_model.index(row)).center()


def _activate(qtbot, ctx):
    ctx.window.activateWindow()
    qtbot.waitUntil(lambda: ctx.window.isActiveWindow(), timeout=5_000)


def test_dataset_caption_edit_is_saved_when_another_photo_is_clicked(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Ivy", make_photos(tmp_path / "a", 2))
    _wait_images(qtbot, ctx, ch.id, 2)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    _activate(qtbot, ctx)
    grid = tab.grid
    qtbot.waitUntil(lambda: grid.grid_model.rowCount() == 2)
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=_tile_center(grid, 0))
    first = grid.selected_ids()
    assert len(first) == 1
    editor = tab.caption_editor
    editor.edit.setFocus()
    qtbot.keyClicks(editor.edit, "green coat")
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=_tile_center(grid, 1))
    assert grid.selected_ids() != first
    qtbot.waitUntil(lambda: ctx.library.image(first[0]).caption == "green coat", timeout=5_000)


def test_caption_edit_is_saved_when_focus_leaves_the_text(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Jon", make_photos(tmp_path / "a", 2))
    _wait_images(qtbot, ctx, ch.id, 2)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    _activate(qtbot, ctx)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 2)
    tab.grid.select_ids([tab.grid.grid_model.records()[0].id])
    image_id = tab.grid.selected_ids()[0]
    tab.caption_editor.edit.setFocus()
    qtbot.waitUntil(lambda: tab.caption_editor.edit.hasFocus(), timeout=5_000)
    qtbot.keyClicks(tab.caption_editor.edit, "hat")
    tab.search_edit.setFocus()
    qtbot.waitUntil(lambda: ctx.library.image(image_id).caption == "hat", timeout=5_000)
    assert tab.caption_editor.state.text() == "Saved"


def test_character_view_caption_edit_is_saved_when_another_photo_is_clicked(
        qtbot, make_app, tmp_path):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Kai", make_photos(tmp_path / "a", 2))
    _wait_images(qtbot, ctx, ch.id, 2)
    chars = ctx.tabs["Characters"]
    chars.open_character(ch.id)
    _activate(qtbot, ctx)
    detail = chars.detail
    grid = detail.grid
    qtbot.waitUntil(lambda: grid.grid_model.rowCount() == 2)
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=_tile_center(grid, 0))
    first = grid.selected_ids()
    assert len(first) == 1
    detail.caption_editor.edit.setFocus()
    qtbot.keyClicks(detail.caption_editor.edit, "blue scarf")
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=_tile_center(grid, 1))
    qtbot.waitUntil(lambda: ctx.library.image(first[0]).caption == "blue scarf", timeout=5_000)


def test_checks_panel_forgets_deleted_photos(qtbot, make_app, tmp_path, monkeypatch):
    ctx = make_app()
    src = tmp_path / "mix"
    make_photo(src / "sharp.jpg", (640, 800), seed=1)
    make_photo(src / "small1.jpg", (300, 400), seed=2)
    make_photo(src / "small2.jpg", (300, 400), seed=3)
    ch = _create_character(qtbot, ctx, "Lea", [src])
    _wait_images(qtbot, ctx, ch.id, 3)
    tab = ctx.tabs["Dataset"]
    ctx.window.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.grid.grid_model.rowCount() == 3)
    with qtbot.waitSignal(ctx.checks.finished, timeout=30_000):
        qtbot.mouseClick(tab.checks_button, Qt.MouseButton.LeftButton)
    # the run ends when the face analysis has too (it redraws the findings list then)
    qtbot.waitUntil(tab.checks_button.isEnabled, timeout=30_000)
    small = [i.id for i in ctx.library.images(ch.id) if Path(i.source).name.startswith("small")]
    assert {f.image_id for f in tab.findings()} >= set(small)
    tab.grid.select_ids(small)
    monkeypatch.setattr(QMessageBox, "question",
                        staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    qtbot.mouseClick(tab.delete_button, Qt.MouseButton.LeftButton)
    _wait_images(qtbot, ctx, ch.id, 1)
    qtbot.waitUntil(lambda: not {f.image_id for f in tab.findings()} & set(small),
                    timeout=5_000)
    tree = tab.checks_tree
    texts = [tree.topLevelItem(i).child(j).text(0) for i in range(tree.topLevelItemCount())
             for j in range(tree.topLevelItem(i).childCount())]
    assert not any("small" in t for t in texts)
    assert "2 photos" not in tab.checks_summary.text()
