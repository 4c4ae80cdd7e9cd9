"""Run blocking work on an executor and get the result back on the Qt main thread.

The callbacks run on the main thread (a queued signal carries them back), so they may touch
widgets and services. ``fn`` runs on a worker thread: no UI calls in ``fn``.

Services use :func:`run_in_executor` (callbacks) or :func:`await_executor` (a coroutine
awaits it) with executors they own; widgets use ``background.BackgroundOp`` instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from concurrent.futures import Executor, Future
from typing import Any
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot


class _MainThreadBridge(QObject):
    """Carries callables from worker threads to the thread this object lives in."""

    delivered = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.delivered.connect(self._run)

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        fn()


_bridge: _MainThreadBridge | None = None


def _get_bridge() -> _MainThreadBridge:
    global _bridge
    if _bridge is None:
        _bridge = _MainThreadBridge()
    return _bridge


def init_main_thread_bridge() -> None:
    """Create the bridge on the main thread (call once at start-up)."""
    _get_bridge()


def call_in_main_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` soon on the main thread (safe from any thread)."""
    _get_bridge().delivered.emit(fn)


def report_unexpected(exc: BaseException) -> None:
    """Send ``exc`` to ``sys.excepthook`` (logged with the correlation id and shown)."""
    sys.excepthook(type(exc), exc, exc.__traceback__)


def run_in_executor(executor: Executor, fn: Callable[[], Any],
                    on_success: Callable[[Any], None] | None = None,
                    on_failure: Callable[[BaseException], None] | None = None) -> Future:
    """Submit ``fn``; call ``on_success(result)`` or ``on_failure(exc)`` on the main thread.

    Without ``on_failure`` an exception goes to ``sys.excepthook`` (logged and shown): no
    failure is ever silent. The caller's context (correlation id) follows ``fn``.
    """
    _get_bridge()
    ctx = contextvars.copy_context()
    future = executor.submit(ctx.run, fn)

    def done(f: Future) -> None:
        exc = f.exception()
        if exc is not None:
            call_in_main_thread(lambda: (on_failure or report_unexpected)(exc))
        elif on_success is not None:
            result = f.result()
            call_in_main_thread(lambda: on_success(result))

    future.add_done_callback(done)
    return future


def await_executor(executor: Executor, fn: Callable[[], Any]) -> asyncio.Future:
    """Run ``fn`` on ``executor`` (:func:`run_in_executor`) and await its result on the loop."""
    future = asyncio.get_running_loop().create_future()

    def ok(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def bad(exc: BaseException) -> None:
        if not future.done():
            future.set_exception(exc)

    run_in_executor(executor, fn, ok, bad)
    return future
