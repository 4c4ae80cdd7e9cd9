from __future__ import annotations

import pytest

from isengard_desktop.app import build_app
from isengard_desktop.core import logging as applog


@pytest.fixture
def make_app(qtbot):
    """Build the real app (services + main window) on this test's ISENGARD_HOME."""
    made = []

    def make():
        ctx = build_app(install_excepthook=False)
        ctx.window.show()
        qtbot.waitUntil(lambda: ctx.library.is_ready and ctx.training.is_ready, timeout=10_000)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.window.close()
        ctx.shutdown()
        ctx.window.deleteLater()
    applog.shutdown_logging()
