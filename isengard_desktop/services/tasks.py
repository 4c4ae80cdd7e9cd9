"""The one way to start background coroutines: a :class:`TaskOwner` per service.

``owner.spawn(coro)`` schedules ``coro`` on the running asyncio loop (the app's qasync loop,
started once in ``__main__`` by :func:`isengard_desktop.lifecycle.run`) and keeps a strong
reference until it ends. A task that fails is never lost: its exception goes to
``sys.excepthook`` (the app's hook logs it with a reference and shows a calm dialog).
Cancellation is not a failure. Without a running loop ``spawn`` raises
:class:`NoRunningLoop` instead of dropping the coroutine. ``await owner.aclose()`` (from the
service's ``aclose()``) cancels what still runs and waits for it to end; after that ``spawn``
refuses.

No Qt here: services and plain-asyncio code can use it alike.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from loguru import logger

__all__ = ["NoRunningLoop", "OwnerClosed", "TaskOwner", "cancel_once", "wait_ended"]

T = TypeVar("T")


class NoRunningLoop(RuntimeError):
    """``spawn`` was called where no asyncio loop runs (the coroutine was not started)."""


class OwnerClosed(RuntimeError):
    """``spawn`` was called on an owner after its ``aclose()`` (or ``cancel_all(close=True)``)."""


def cancel_once(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` unless a cancellation is already on its way: a second ``cancel()``
    would interrupt the clean-up the first one started (an HTTP connection being closed by
    httpcore after the first CancelledError is then dropped unclosed, and its socket leaks)."""
    if task.done() or (isinstance(task, asyncio.Task) and task.cancelling()):
        return
    task.cancel()


class TaskOwner:
    """Owns the tasks one service starts: keeps them alive, reports their failures, and
    cancels and awaits them on :meth:`aclose`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- starting ----------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None,
              also: set[asyncio.Future[Any]] | None = None) -> asyncio.Task[T]:
        """Run ``coro`` as a task on the running loop; returns the task.

        ``also``: a set the task is added to while it runs (e.g. the tasks using one
        connection, cancelled together before it closes).
        Raises :class:`NoRunningLoop` without a running loop and :class:`OwnerClosed` after
        :meth:`aclose`; the coroutine is closed then (never left un-awaited)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            raise NoRunningLoop(f"{self.name}: no asyncio loop is running; start the app "
                                "through isengard_desktop.lifecycle (or a test's "
                                "qt_asyncio_loop fixture)") from None
        if self._closed:
            coro.close()
            raise OwnerClosed(f"{self.name} is closed; no new work is started")
        task = loop.create_task(coro, name=name or f"{self.name}: {getattr(coro, '__qualname__', 'task')}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        if also is not None:
            also.add(task)
            task.add_done_callback(also.discard)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        logger.debug("task {!r} failed: {!r}", task.get_name(), exc)
        try:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        except Exception:   # a broken hook must not hide the original error
            sys.__excepthook__(type(exc), exc, exc.__traceback__)

    # -- reads -------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._tasks)

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks still running (a copy)."""
        return [t for t in self._tasks if not t.done()]

    # -- ending ------------------------------------------------------------------------------
    def cancel_all(self, *, close: bool = False) -> list[asyncio.Task[Any]]:
        """Cancel every running task (``close``: refuse new ones from now on); returns them."""
        if close:
            self._closed = True
        running = self.tasks()
        for task in running:
            cancel_once(task)
        return running

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Refuse new work, cancel what runs and wait until it has ended (at most
        ``timeout_s`` seconds when given). Idempotent."""
        await wait_ended(self.cancel_all(close=True), timeout_s)


async def wait_ended(tasks: Iterable[asyncio.Future[Any]], timeout_s: float | None = None
                     ) -> None:
    """Wait until ``tasks`` are done (results and errors are left to their owners)."""
    pending = [t for t in tasks if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout_s)
