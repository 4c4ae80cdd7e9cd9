"""Helpers for driving the real app in pytest-qt tests."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

from tests.helpers.service_harness import run_on_loop

APP_CLOSE_TIMEOUT_MS = 30_000


def close_app(qtbot, ctx, runner=None) -> None:
    """Close the real app as ``__main__`` does when its window closes: the window, then
    ``await ctx.aclose()`` on the app's loop (see ``run_on_loop``; ``runner``: the
    ``qt_asyncio_loop`` fixture's value, for a fixture's teardown)."""
    close_apps(qtbot, [ctx], runner)


def close_apps(qtbot, contexts, runner=None) -> None:
    """:func:`close_app` for several apps, closed one after the other in one run of the
    loop (a run that ended while an app still worked would leave its work half done)."""
    for ctx in contexts:
        ctx.window.close()

    async def close_all() -> None:
        for ctx in contexts:
            await ctx.aclose()

    run_on_loop(qtbot, close_all(), APP_CLOSE_TIMEOUT_MS, runner)


def drop_files(widget: QWidget, paths: Sequence[Path], pos: QPoint | None = None) -> bool:
    """Drag local files onto ``widget`` the way a file manager does; True if accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    point = pos or widget.rect().center()
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(point, actions, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    move = QDragMoveEvent(point, actions, mime, Qt.MouseButton.LeftButton,
                          Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, move)
    drop = QDropEvent(QPointF(point), actions, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()
