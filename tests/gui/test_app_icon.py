"""The window carries the app icon (resources/icons/, rendered from isengard.svg)."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QApplication

from isengard_desktop.ui.theme import app_icon


def test_app_icon_has_every_rendered_size(qapp):
    icon = app_icon()
    assert not icon.isNull()
    sizes = {(s.width(), s.height()) for s in icon.availableSizes()}
    assert {(16, 16), (32, 32), (48, 48), (256, 256), (512, 512)} <= sizes
    # Qt paints the small size from the 16 px file (not a blurred 512): a tile, not empty
    image = icon.pixmap(QSize(16, 16)).toImage()
    assert image.width() == 16 and image.pixelColor(8, 8).alpha() == 255


def test_the_built_app_sets_the_window_icon(make_app):
    ctx = make_app()
    sizes = {(s.width(), s.height()) for s in QApplication.windowIcon().availableSizes()}
    assert (16, 16) in sizes and (256, 256) in sizes
    assert not ctx.window.windowIcon().isNull()
