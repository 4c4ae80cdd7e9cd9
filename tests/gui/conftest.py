from __future__ import annotations

import pytest

from isengard_desktop.app import build_app
from isengard_desktop.core import logging as applog
from tests.helpers.qt import close_apps


@pytest.fixture
def make_app(qtbot):
    """Build the real app (services + main window) on this test's ISENGARD_HOME; closed at the
    end as ``__main__`` closes it (on the test's ``qt_asyncio_loop`` when it has one: the
    whole test runs inside that loop, which so outlives the app as the app's loop does)."""
    made = []

    def make():
        ctx = build_app(install_excepthook=False)
        ctx.window.show()
        qtbot.waitUntil(lambda: ctx.library.is_ready and ctx.training.is_ready, timeout=10_000)
        made.append(ctx)
        return ctx

    yield make
    close_apps(qtbot, made)
    for ctx in made:
        ctx.window.deleteLater()
    applog.shutdown_logging()
