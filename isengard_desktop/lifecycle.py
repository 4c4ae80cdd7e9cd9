"""The app's one asyncio lifecycle: a qasync loop over the Qt event loop, started once.

``__main__`` runs ``main()`` with :func:`run` (``asyncio.Runner(loop_factory=QEventLoop)``:
on Python 3.11 ``asyncio.run`` has no ``loop_factory``); ``main()`` builds the app on the
running loop, waits until the window closes and awaits ``AppContext.aclose()`` once, so every
network connection closes on the loop that made it. The Runner then cancels what is left and
closes the loop. Tests build their loop the same way (``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from PySide6.QtCore import QCoreApplication

__all__ = ["new_loop", "run", "runner"]

T = TypeVar("T")


def new_loop(app: QCoreApplication | None = None) -> asyncio.AbstractEventLoop:
    """A qasync event loop driven by ``app``'s (or the current application's) Qt loop."""
    import qasync

    loop: asyncio.AbstractEventLoop = qasync.QEventLoop(app or QCoreApplication.instance())
    return loop


def runner(app: QCoreApplication | None = None, *, debug: bool | None = None
           ) -> asyncio.Runner:
    """An ``asyncio.Runner`` whose loop is a qasync loop on ``app`` (use as a context
    manager; ``runner.run(coro)`` as often as needed, the loop closes on exit)."""
    return asyncio.Runner(loop_factory=lambda: new_loop(app), debug=debug)


def run(main: Coroutine[Any, Any, T], app: QCoreApplication | None = None) -> T:
    """Run ``main`` on a fresh qasync loop and close the loop after it (the app's entry)."""
    with runner(app) as r:
        return r.run(main)
