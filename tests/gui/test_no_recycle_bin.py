"""Deleting photos and characters where the OS has no trash (issue 13, item 5): on Windows,
drives without a Recycle Bin (USB, network). The app's data folder is made to look like one
through trash_support's has_recycle_bin; the real tabs, confirms and library service run."""

from __future__ import annotations


from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from isengard_desktop.services import library as library_module
from isengard_desktop.services import trash_support
from tests.gui.test_characters_dataset import _create_character, _wait_images
from tests.helpers.photos import make_photos
from tests.helpers.trash import trashed_names


def _no_recycle_bin(monkeypatch) -> list[tuple[str, str]]:
    no_bin = lambda path, **kwargs: False  # noqa: E731
    monkeypatch.setattr(trash_support, "has_recycle_bin", no_bin)
    monkeypatch.setattr(library_module, "has_recycle_bin", no_bin)
    asked: list[tuple[str, str]] = []

    def question(parent, title, text, *args):
        asked.append((title, text))
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


def test_photos_are_deleted_for_good_only_after_saying_so(qtbot, make_app, tmp_path,
                                                          monkeypatch):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Ines", make_photos(tmp_path / "a", 3))
    _wait_images(qtbot, ctx, ch.id, 3)
    asked = _no_recycle_bin(monkeypatch)
    assert ctx.library.trash_is_permanent

    # the service never deletes for good unless told: the photo stays, the user hears why
    first = ctx.library.images(ch.id)[0]
    failures: list[str] = []
    ctx.library.failed.connect(failures.append)
    ctx.library.delete_images([first.id])
    qtbot.waitUntil(lambda: bool(failures), timeout=10_000)
    assert "without a Recycle Bin" in failures[0] and first.path.exists()
    assert ctx.library.image(first.id) is not None

    # the Characters tab asks once, saying it is for good, then deletes
    tab = ctx.tabs["Characters"]
    tab.open_character(ch.id)
    grid = tab.detail.grid
    qtbot.waitUntil(lambda: grid.grid_model.rowCount() == 3)
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=grid.checkbox_point(0))
    (image_id,) = grid.selected_ids()
    path = ctx.library.image(image_id).path
    before = trashed_names()
    qtbot.mouseClick(tab.detail.delete_images_button, Qt.MouseButton.LeftButton)
    _wait_images(qtbot, ctx, ch.id, 2)
    assert len(asked) == 1
    title, text = asked[0]
    assert title == "Delete photos for good" and "cannot be restored" in text
    assert not path.exists() and trashed_names() == before

    # deleting the character says so too
    folder = ctx.paths.characters / ch.folder
    qtbot.mouseClick(tab.detail.delete_character_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: ctx.library.character(ch.id) is None, timeout=10_000)
    assert "cannot be restored" in asked[1][1] and not folder.exists()
    assert trashed_names() == before
