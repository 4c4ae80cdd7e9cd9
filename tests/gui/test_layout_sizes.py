"""Issue 11, item 19: nothing is hidden or cut at 1280×800 and at the 900×600 minimum."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QScrollArea, QWidget

from isengard_desktop.app import open_settings
from isengard_desktop.ui.generate.options import LoraOption
from isengard_desktop.ui.settings import SettingsDialog
from tests.gui.test_characters_dataset import _create_character, _wait_images
from tests.gui.test_training_tab import model
from tests.helpers.photos import make_photos
from tests.helpers.qt import drop_files

SIZES = ((1280, 800), (900, 600))


def _rect_in(widget: QWidget, ancestor: QWidget) -> QRect:
    return QRect(widget.mapTo(ancestor, QPoint(0, 0)), widget.size())


def _visible_part(widget: QWidget, scroll: QScrollArea) -> QRect:
    viewport = scroll.viewport()
    return _rect_in(widget, viewport).intersected(viewport.rect())


@pytest.fixture
def app_with_character(qtbot, make_app, tmp_path):
    ctx = make_app()
    ch = _create_character(qtbot, ctx, "Anna", make_photos(tmp_path / "a", 3))
    _wait_images(qtbot, ctx, ch.id, 3)
    return ctx, ch


@pytest.mark.parametrize("size", SIZES)
def test_lora_hint_is_not_behind_the_generate_button(qtbot, app_with_character, size):
    ctx, ch = app_with_character
    ctx.window.resize(*size)
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Generate"])
    page = ctx.tabs["Generate"].page
    form = page.form
    form.set_loras([LoraOption(character_id=ch.id, name="Anna", trigger="anna",
                               path="/loras/anna.safetensors", family="sdxl")])
    form.lora.combo.setCurrentIndex(1)
    scroll = page.findChild(QScrollArea, "GenerateScroll")
    hint = form.lora.hint
    qtbot.waitUntil(lambda: _visible_part(hint, scroll).height() == hint.height(),
                    timeout=3_000)
    button = _rect_in(form.generate_button, ctx.window)
    assert not _rect_in(hint, ctx.window).intersects(button)


@pytest.mark.parametrize("size", SIZES)
def test_training_column_bottom_hint_is_whole(qtbot, app_with_character, tmp_path, size):
    ctx, _ = app_with_character
    ctx.window.resize(*size)
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Training"])
    page = ctx.tabs["Training"].page
    page.form.set_models([model(tmp_path, "sdxl")])
    page.form.error_label.setText("The trainer could not start: " + "a long reason " * 12)
    page.form.error_label.setVisible(True)
    page.form.start_hint.setText("The job runs in the background; " * 4)
    scroll = page.findChild(QScrollArea, "SetupScroll")
    qtbot.wait(50)
    bar = scroll.verticalScrollBar()
    bar.setValue(bar.maximum())
    hint = page.form.start_hint
    assert hint.text()
    assert hint.height() >= hint.heightForWidth(hint.width())
    assert _visible_part(hint, scroll).height() == hint.height()
    error = page.form.error_label
    assert error.height() >= error.heightForWidth(error.width())
    assert _visible_part(error, scroll).height() == error.height()


def test_trainers_table_fits_without_sideways_scrolling(qtbot, app_with_character):
    ctx, _ = app_with_character
    ctx.window.resize(1280, 800)
    open_settings(ctx)
    dialog = ctx.window.findChildren(SettingsDialog)[-1]
    dialog.tabs.setCurrentWidget(dialog.trainers_page)
    qtbot.waitExposed(dialog)
    table = dialog.trainers_page.matrix
    assert not table.horizontalScrollBar().isVisible()
    header = table.horizontalHeader()
    assert header.length() <= table.viewport().width()
    for column in range(table.columnCount()):
        assert header.sectionSize(column) > 0
    dialog.close()


def test_create_dialog_drop_summary_wraps(qtbot, app_with_character, tmp_path):
    ctx, _ = app_with_character
    tab = ctx.tabs["Characters"]
    ctx.window.tabs.setCurrentWidget(tab)
    tab.new_button.click()
    dialog = tab.create_dialog
    assert drop_files(dialog.drop_zone, make_photos(tmp_path / "b", 5, start_seed=30))
    summary = dialog.drop_summary
    qtbot.waitUntil(lambda: "Create" in summary.text(), timeout=3_000)
    assert summary.wordWrap()
    assert summary.width() <= dialog.width()
    qtbot.waitUntil(lambda: summary.height() >= summary.heightForWidth(summary.width()),
                    timeout=3_000)


def test_job_title_is_not_clipped_at_the_minimum_size(qtbot, app_with_character):
    ctx, _ = app_with_character
    ctx.window.resize(900, 600)
    ctx.window.tabs.setCurrentWidget(ctx.tabs["Training"])
    panel = ctx.tabs["Training"].page.panel
    panel.title_label.setText("Anna Marie · Stable Diffusion XL")
    qtbot.wait(50)
    title = panel.title_label
    fits_on_one_line = title.fontMetrics().horizontalAdvance(title.text()) <= title.width()
    assert fits_on_one_line or (title.wordWrap()
                                and title.height() >= title.heightForWidth(title.width()))


def test_first_window_fits_a_1280x800_screen():
    from PySide6.QtCore import QSize

    from isengard_desktop.ui.main_window import MINIMUM_SIZE, PREFERRED_SIZE, initial_size

    assert initial_size(QSize(1920, 1080)) == PREFERRED_SIZE
    small = initial_size(QSize(1280, 760))          # 1280×800 less a title bar / panel
    assert small.height() <= 760 and small.width() == 1280
    assert initial_size(QSize(800, 500)) == MINIMUM_SIZE
    assert initial_size(None) == PREFERRED_SIZE


def test_main_window_starts_inside_the_screen(make_app):
    ctx = make_app()
    free = ctx.window.screen().availableGeometry()
    size = ctx.window.size()
    assert size.height() <= max(free.height(), 600)
    assert size.width() <= max(free.width(), 900)

