"""Issue 11 item 4 in the running app: Cancel and quit while an import's read is stuck.

What is simulated: a network share that stops answering. The importer's one function for a
photo's bytes (``importer._read_source``) is replaced by one that blocks on a
``threading.Event`` for one chosen file, exactly as a thread in ``read()`` on a dead share is
stuck (only the Event wakes it); the other files are read for real. The Event is set only
after the assertions, so Cancel and quit are shown not to wait for that read.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Qt

from isengard_desktop.app import build_app
from isengard_desktop.core.dataset import importer
from tests.helpers.photos import make_photos
from tests.helpers.qt import close_apps


def _stick(monkeypatch, name: str) -> tuple[threading.Event, threading.Event]:
    release, entered = threading.Event(), threading.Event()
    real = importer._read_source

    def source(path: Path, *args: object) -> bytes:
        if path.name == name:
            entered.set()
            release.wait()
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importer, "_read_source", source)
    return release, entered


def _character(qtbot, lib) -> int:  # type: ignore[no-untyped-def]
    lib.create_character("Gwen", "gwn_test", "")
    qtbot.waitUntil(lambda: len(lib.characters()) == 1)
    return lib.characters()[0].id


def test_cancel_button_ends_an_import_stuck_in_a_read(qtbot, make_app, tmp_path,
                                                      monkeypatch) -> None:
    ctx = make_app()
    photos = make_photos(tmp_path / "share", 3)
    release, entered = _stick(monkeypatch, photos[1].name)
    try:
        with qtbot.waitSignal(ctx.library.import_started, timeout=5000) as started:
            ctx.library.import_photos(_character(qtbot, ctx.library), photos)
        task = started.args[0]
        assert entered.wait(10)
        panel = ctx.window.progress
        qtbot.waitUntil(lambda: panel.cancel_button.isVisible()
                        and panel.cancel_button.isEnabled())
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: task.outcome is not None, timeout=1000)  # the bound
        assert not release.is_set()        # the read is still stuck: nobody waited for it
        assert task.outcome.report.cancelled
        assert photos[1].name not in {Path(i.source).name for i in task.outcome.report.imported}
    finally:
        release.set()


def test_quitting_during_an_import_stuck_in_a_read_does_not_wait_for_it(
        qtbot, tmp_path, monkeypatch) -> None:
    ctx = build_app(install_excepthook=False)
    ctx.window.show()
    photos = make_photos(tmp_path / "share", 3)
    release, entered = _stick(monkeypatch, photos[0].name)
    try:
        qtbot.waitUntil(lambda: ctx.library.is_ready, timeout=10_000)
        task = ctx.library.import_photos(_character(qtbot, ctx.library), photos)
        assert task is not None and entered.wait(10)
        close_apps(qtbot, [ctx])           # the app's own close path (window, then aclose)
        assert not release.is_set()        # closed while the read is still stuck
        qtbot.waitUntil(lambda: task.outcome is not None)
        assert task.outcome.report.cancelled
    finally:
        release.set()
        ctx.window.deleteLater()
